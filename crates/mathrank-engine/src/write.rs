//! The write path: posts validated one by one (a bad one gets its own error, naming the
//! attribute at fault, and spoils nothing else), then written to the post store by one
//! committer thread that groups the operations of concurrent calls into one durable
//! transaction (group commit). A call returns once its transaction is durable; the indexer
//! makes it searchable soon after, and [`Engine::wait_visible`](crate::Engine::wait_visible)
//! waits for that.

use std::sync::Arc;

use mathrank_dump::{MAX_ROW_BYTES, Post, PostKind};
use mathrank_store::{Applied, Op, Outcome, PostStore};
use tokio::sync::{mpsc, oneshot};

use crate::{EngineError, Result};

/// A post as the write API received it, before validation: every attribute optional, so
/// that what is missing or wrong can be named. Names follow the dump's attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostInput {
    pub id: Option<i64>,
    pub post_type_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub accepted_answer_id: Option<i64>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
    pub score: Option<i64>,
    /// Unix seconds; unset: the time of the write.
    pub creation_date: Option<i64>,
    pub version: Option<i64>,
}

/// One operation of a write call, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteItem {
    Upsert(PostInput),
    Delete {
        id: Option<i64>,
        version: Option<i64>,
    },
    /// Something the adapter could not read (invalid JSON, a wrong type): answered in its
    /// place with this error.
    Invalid {
        id: Option<u64>,
        field: String,
        message: String,
    },
}

/// What happened to one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemResult {
    Created,
    Updated,
    Deleted,
    /// The same version again: a retry changes nothing.
    Noop,
    /// The version is older than the stored one.
    Conflict,
    Error,
}

impl ItemResult {
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Noop => "noop",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

/// Why an operation was not applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemError {
    /// A gRPC status name: `INVALID_ARGUMENT` (bad input), `FAILED_PRECONDITION` (it
    /// contradicts what is stored), `ABORTED` (a conflict), `UNAVAILABLE` (the store failed:
    /// retry).
    pub code: &'static str,
    pub message: String,
    /// The post attribute at fault (`Id`, `PostTypeId`, `Body`, `version`, ...).
    pub field: String,
}

/// One operation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemOutcome {
    /// The post's `Id`, when it could be read.
    pub id: Option<u64>,
    pub result: ItemResult,
    pub error: Option<ItemError>,
}

/// The outcome of a write call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Every change of this call has a sequence number at most this: once
    /// `searchable_seq` reaches it, the call's writes are searchable.
    pub seq: u64,
    pub items: Vec<ItemOutcome>,
}

/// The largest title or tag list accepted, in bytes (Stack Exchange caps titles at 150
/// characters; the room is for other sites and their markup).
pub const MAX_TITLE_BYTES: usize = 64 * 1024;

fn invalid(id: Option<u64>, field: &str, message: impl Into<String>) -> ItemOutcome {
    let field = field.to_owned();
    let message = format!("invalid {field}: {}", message.into());
    ItemOutcome { id, result: ItemResult::Error, error: Some(ItemError { code: "INVALID_ARGUMENT", message, field }) }
}

fn positive_id(id: Option<i64>, field: &str, known: Option<u64>) -> std::result::Result<u64, ItemOutcome> {
    match id {
        None => Err(invalid(known, field, "is required")),
        Some(value) if value <= 0 => {
            Err(invalid(known, field, format!("{value} is not a post id (a positive integer)")))
        }
        Some(value) => Ok(value as u64),
    }
}

fn version_of(version: Option<i64>, id: u64) -> std::result::Result<u64, ItemOutcome> {
    match version {
        None => Err(invalid(Some(id), "version", "is required: a non-negative integer you increase with each change")),
        Some(value) if value < 0 => {
            Err(invalid(Some(id), "version", format!("{value} is negative; versions are non-negative integers")))
        }
        Some(value) => Ok(value as u64),
    }
}

/// Validates one item into a store operation, or the error that answers it.
pub fn validate(item: WriteItem, now: i64) -> std::result::Result<Op, ItemOutcome> {
    match item {
        WriteItem::Invalid { id, field, message } => Err(invalid(id, &field, message)),
        WriteItem::Delete { id, version } => {
            let id = positive_id(id, "Id", None)?;
            Ok(Op::Delete { id, version: version_of(version, id)? })
        }
        WriteItem::Upsert(input) => validate_post(input, now),
    }
}

fn validate_post(input: PostInput, now: i64) -> std::result::Result<Op, ItemOutcome> {
    let id = positive_id(input.id, "Id", None)?;
    let known = Some(id);
    let kind = match input.post_type_id {
        None => return Err(invalid(known, "PostTypeId", "is required: 1 (question) or 2 (answer)")),
        Some(1) => PostKind::Question,
        Some(2) => PostKind::Answer,
        Some(other) => {
            return Err(invalid(
                known,
                "PostTypeId",
                format!("{other} is not a post type mathrank indexes; use 1 (question) or 2 (answer)"),
            ));
        }
    };
    let version = version_of(input.version, id)?;
    let Some(body) = input.body else { return Err(invalid(known, "Body", "is required (the post's HTML)")) };
    if body.len() > MAX_ROW_BYTES {
        return Err(invalid(
            known,
            "Body",
            format!(
                "is {} bytes; a post's body may hold at most {MAX_ROW_BYTES} bytes (the dump's row limit)",
                body.len()
            ),
        ));
    }
    let title = input.title.unwrap_or_default();
    if title.len() > MAX_TITLE_BYTES {
        return Err(invalid(known, "Title", format!("is {} bytes; at most {MAX_TITLE_BYTES}", title.len())));
    }
    let tags = input.tags.unwrap_or_default();
    if let Some(bad) = tags
        .iter()
        .find(|tag| tag.trim().is_empty() || tag.contains(['|', '<', '>']) || tag.chars().any(char::is_whitespace))
    {
        return Err(invalid(known, "Tags", format!("{bad:?} is not a tag (no spaces, `|`, `<` or `>`)")));
    }
    if tags.iter().map(String::len).sum::<usize>() > MAX_TITLE_BYTES {
        return Err(invalid(known, "Tags", format!("hold more than {MAX_TITLE_BYTES} bytes")));
    }
    let parent_id = match kind {
        PostKind::Question => {
            if title.trim().is_empty() {
                return Err(invalid(known, "Title", "is required for a question"));
            }
            None
        }
        PostKind::Answer => Some(positive_id(input.parent_id, "ParentId", known)?),
    };
    let accepted_answer_id = match (kind, input.accepted_answer_id) {
        (PostKind::Question, Some(accepted)) if accepted > 0 => Some(accepted as u64),
        (PostKind::Question, Some(0) | None) | (PostKind::Answer, _) => None,
        (PostKind::Question, Some(other)) => {
            return Err(invalid(known, "AcceptedAnswerId", format!("{other} is not a post id")));
        }
    };
    let post = Post {
        id,
        kind,
        parent_id,
        accepted_answer_id,
        title: if kind == PostKind::Question { title } else { String::new() },
        tags: if kind == PostKind::Question { tags } else { Vec::new() },
        body_html: body,
        score: input.score.unwrap_or(0),
        created: input.creation_date.unwrap_or(now),
    };
    Ok(Op::Upsert { post, version })
}

/// The outcome of an applied operation.
pub(crate) fn outcome_of(id: u64, outcome: Outcome, version: Option<u64>) -> ItemOutcome {
    let done = |result| ItemOutcome { id: Some(id), result, error: None };
    match outcome {
        Outcome::Created => done(ItemResult::Created),
        Outcome::Updated => done(ItemResult::Updated),
        Outcome::Deleted => done(ItemResult::Deleted),
        Outcome::Noop | Outcome::Kept => done(ItemResult::Noop),
        Outcome::Conflict { stored_version } => ItemOutcome {
            id: Some(id),
            result: ItemResult::Conflict,
            error: Some(ItemError {
                code: "ABORTED",
                message: format!(
                    "version {} of post {id} is older than the stored version {stored_version}; versions must increase with each change",
                    version.map_or_else(|| "?".into(), |v| v.to_string())
                ),
                field: "version".into(),
            }),
        },
        Outcome::Rejected { field, message } => ItemOutcome {
            id: Some(id),
            result: ItemResult::Error,
            error: Some(ItemError { code: "FAILED_PRECONDITION", message, field: field.into() }),
        },
    }
}

/// Operations of concurrent calls go through this queue to the committer thread.
struct Job {
    ops: Vec<Op>,
    /// The applied batch, or why the transaction failed.
    reply: oneshot::Sender<std::result::Result<Applied, String>>,
}

/// Operations one transaction takes at most (several calls' worth).
const MAX_GROUP_OPS: usize = 4096;

/// Calls whose operations may wait for the committer; beyond them callers wait (their
/// request bodies are not read meanwhile).
const QUEUE: usize = 64;

/// The group committer of a store.
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub(crate) fn start(store: Arc<dyn PostStore>) -> Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || commit_loop(store.as_ref(), receiver))
            .map_err(|err| EngineError::Unavailable(format!("cannot start the store committer thread: {err}")))?;
        Ok(Self { jobs })
    }

    /// Applies `ops` in one of the next transactions; returns once it is durable.
    pub(crate) async fn apply(&self, ops: Vec<Op>) -> Result<Applied> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { ops, reply })
            .await
            .map_err(|_| EngineError::Unavailable("the post store is closed".into()))?;
        answer
            .await
            .map_err(|_| EngineError::Unavailable("the post store committer stopped".into()))?
            .map_err(|err| EngineError::Unavailable(format!("{err}; nothing of this batch was written: retry it")))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Takes every job waiting (up to [`MAX_GROUP_OPS`] operations) and applies them in one
/// transaction: one fsync for all of them.
fn commit_loop(store: &dyn PostStore, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].ops.len();
        while count < MAX_GROUP_OPS {
            match receiver.try_recv() {
                Ok(job) => {
                    count += job.ops.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let ops: Vec<Op> = jobs.iter().flat_map(|job| job.ops.iter().cloned()).collect();
        match store.apply(&ops, now()) {
            Ok(applied) => {
                let mut outcomes = applied.outcomes.into_iter();
                for job in jobs {
                    let mine: Vec<Outcome> = outcomes.by_ref().take(job.ops.len()).collect();
                    let _ = job.reply.send(Ok(Applied { seq: applied.seq, outcomes: mine }));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, operations = ops.len(), "the post store refused a transaction");
                let message = err.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// The current time, for posts without a `CreationDate`.
pub(crate) fn unix_now() -> i64 {
    now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: i64, kind: i64) -> PostInput {
        PostInput {
            id: Some(id),
            post_type_id: Some(kind),
            parent_id: (kind == 2).then_some(1),
            title: (kind == 1).then(|| "A title".to_owned()),
            body: Some("<p>body</p>".into()),
            version: Some(1),
            ..PostInput::default()
        }
    }

    fn field_of(item: WriteItem) -> (Option<u64>, String) {
        let outcome = validate(item, 0).unwrap_err();
        let error = outcome.error.unwrap();
        assert_eq!(error.code, "INVALID_ARGUMENT");
        assert!(error.message.contains(&error.field), "{}", error.message);
        (outcome.id, error.field)
    }

    #[test]
    fn every_bad_input_names_its_field() {
        let cases = [
            (WriteItem::Upsert(PostInput { id: None, ..post(1, 1) }), (None, "Id")),
            (WriteItem::Upsert(PostInput { id: Some(-4), ..post(1, 1) }), (None, "Id")),
            (WriteItem::Upsert(post(7, 3)), (Some(7), "PostTypeId")),
            (WriteItem::Upsert(PostInput { post_type_id: None, ..post(7, 1) }), (Some(7), "PostTypeId")),
            (WriteItem::Upsert(PostInput { version: Some(-1), ..post(7, 1) }), (Some(7), "version")),
            (WriteItem::Upsert(PostInput { version: None, ..post(7, 1) }), (Some(7), "version")),
            (
                WriteItem::Upsert(PostInput { body: Some("x".repeat(MAX_ROW_BYTES + 1)), ..post(7, 2) }),
                (Some(7), "Body"),
            ),
            (WriteItem::Upsert(PostInput { body: None, ..post(7, 2) }), (Some(7), "Body")),
            (WriteItem::Upsert(PostInput { parent_id: None, ..post(7, 2) }), (Some(7), "ParentId")),
            (WriteItem::Upsert(PostInput { title: Some(" ".into()), ..post(7, 1) }), (Some(7), "Title")),
            (WriteItem::Upsert(PostInput { tags: Some(vec!["a b".into()]), ..post(7, 1) }), (Some(7), "Tags")),
            (
                WriteItem::Upsert(PostInput { accepted_answer_id: Some(-2), ..post(7, 1) }),
                (Some(7), "AcceptedAnswerId"),
            ),
            (WriteItem::Delete { id: Some(3), version: Some(-1) }, (Some(3), "version")),
            (WriteItem::Delete { id: None, version: Some(1) }, (None, "Id")),
            (
                WriteItem::Invalid { id: Some(9), field: "Score".into(), message: "not a number".into() },
                (Some(9), "Score"),
            ),
        ];
        for (item, (id, field)) in cases {
            let described = format!("{item:?}").chars().take(120).collect::<String>();
            assert_eq!(field_of(item), (id, field.to_owned()), "{described}");
        }
    }

    #[test]
    fn valid_posts_become_operations() {
        let Op::Upsert { post: valid, version } = validate(WriteItem::Upsert(post(5, 2)), 77).unwrap() else {
            panic!("an upsert")
        };
        assert_eq!(
            (valid.id, valid.kind, valid.parent_id, valid.created, version),
            (5, PostKind::Answer, Some(1), 77, 1)
        );
        let body_at_limit = PostInput { body: Some("x".repeat(MAX_ROW_BYTES)), ..post(6, 1) };
        assert!(validate(WriteItem::Upsert(body_at_limit), 0).is_ok());
        assert_eq!(
            validate(WriteItem::Delete { id: Some(3), version: Some(0) }, 0).unwrap(),
            Op::Delete { id: 3, version: 0 }
        );
    }

    #[test]
    fn conflicts_name_the_version() {
        let outcome = outcome_of(4, Outcome::Conflict { stored_version: 9 }, Some(3));
        assert_eq!(outcome.result, ItemResult::Conflict);
        let error = outcome.error.unwrap();
        assert_eq!((error.code, error.field.as_str()), ("ABORTED", "version"));
        assert!(error.message.contains("version 3") && error.message.contains('9'), "{}", error.message);
    }
}

#[cfg(test)]
mod live_tests {
    use std::time::{Duration, Instant};

    use mathrank_index::{Indexer, IndexerOptions};
    use mathrank_store::{STORE_FILE, SqliteStore};

    use super::*;
    use crate::{Engine, Limits};

    fn input(id: i64, kind: i64, parent: Option<i64>, title: &str, version: i64) -> WriteItem {
        WriteItem::Upsert(PostInput {
            id: Some(id),
            post_type_id: Some(kind),
            parent_id: parent,
            title: Some(title.into()),
            body: Some(format!("<p>post {id} version {version}</p>")),
            version: Some(version),
            ..PostInput::default()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_grouped_answered_in_order_and_become_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn PostStore> = Arc::new(SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap());
        let options = IndexerOptions { commit_interval: Duration::from_millis(5), ..IndexerOptions::default() };
        let (live, indexer) = Indexer::start(dir.path(), Arc::clone(&store), options).unwrap();
        let engine =
            Arc::new(Engine::with_live(live, None, Limits::default()).with_store(store, Some(indexer)).unwrap());
        let calls: Vec<_> = (0..8)
            .map(|call| {
                let engine = Arc::clone(&engine);
                tokio::spawn(async move {
                    let question = 100 + call;
                    let items = vec![
                        input(question, 1, None, &format!("question {call}"), 1),
                        input(1000 + call, 2, Some(question), "", 1),
                        WriteItem::Upsert(PostInput { id: None, ..PostInput::default() }),
                        input(question, 1, None, "stale", 0),
                    ];
                    engine.write(items).await.unwrap()
                })
            })
            .collect();
        let mut last = 0;
        for (call, handle) in calls.into_iter().enumerate() {
            let outcome = handle.await.unwrap();
            let results: Vec<ItemResult> = outcome.items.iter().map(|item| item.result).collect();
            assert_eq!(results, [ItemResult::Created, ItemResult::Created, ItemResult::Error, ItemResult::Conflict]);
            assert_eq!(outcome.items[1].id, Some(1000 + call as u64));
            assert_eq!(outcome.items[2].error.as_ref().unwrap().field, "Id");
            last = last.max(outcome.seq);
        }
        assert_eq!(last, 16, "8 calls x 2 changes, each its own sequence number");
        assert!(engine.wait_visible(last, Instant::now() + Duration::from_secs(30)).await);
        assert_eq!(engine.get_answer(1003).await.unwrap().title, "question 3");
        let outcome = engine.write(vec![WriteItem::Delete { id: Some(1003), version: Some(1) }]).await.unwrap();
        assert_eq!(outcome.items[0].result, ItemResult::Deleted);
        assert!(engine.wait_visible(outcome.seq, Instant::now() + Duration::from_secs(30)).await);
        assert!(matches!(engine.get_answer(1003).await, Err(EngineError::NotFound(_))), "a deleted answer is gone");
        let retry = engine.write(vec![input(100, 1, None, "question 0", 1)]).await.unwrap();
        assert_eq!((retry.items[0].result, retry.seq), (ItemResult::Noop, outcome.seq), "a retry is a no-op");
    }
}
