//! What an operation does to a store, whatever the database: each store implements [`Txn`]
//! (read one stored row, write one row) inside its write transaction, and [`apply_one`] decides.
//! The conformance suite checks that every store ends up doing the same.

use crate::{MAX_NUMBER, Op, Origin, Outcome, Post, PostKind, content_hash};

/// What a write needs to know about the stored row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    pub kind: Option<PostKind>,
    pub deleted: bool,
    pub version: u64,
    pub origin: Origin,
    pub written_at: i64,
    pub hash: u64,
    pub parent_id: Option<i64>,
}

/// A post to store, replacing any row of its id.
pub(crate) struct Write<'a> {
    pub post: &'a Post,
    pub version: u64,
    pub origin: Origin,
    pub hash: u64,
}

/// A tombstone to store, replacing any row of its id; it keeps the kind and parent of the post
/// it replaces (`was`), never its text.
pub(crate) struct Tombstone {
    pub id: i64,
    pub was: Option<Current>,
    pub version: u64,
    pub origin: Origin,
}

/// The reads and writes of one store's write transaction.
pub(crate) trait Txn {
    type Error;
    /// The stored row of `id`, as this transaction sees it (its own writes included).
    fn current(&mut self, id: i64) -> Result<Option<Current>, Self::Error>;
    fn write_post(&mut self, write: &Write<'_>, seq: u64, written_at: i64) -> Result<(), Self::Error>;
    fn write_tombstone(&mut self, tombstone: &Tombstone, seq: u64, written_at: i64) -> Result<(), Self::Error>;
    /// Raises the version of a tombstone, keeping its sequence number (nothing visible changed).
    fn set_version(&mut self, id: i64, version: u64) -> Result<(), Self::Error>;
}

fn rejected(field: &'static str, message: impl Into<String>) -> Outcome {
    Outcome::Rejected { field, message: message.into() }
}

/// Range checks of the numbers a post carries.
fn check_numbers(post: &Post, version: u64) -> Option<Outcome> {
    let checks = [
        ("Id", Some(post.id)),
        ("version", Some(version)),
        ("ParentId", post.parent_id),
        ("AcceptedAnswerId", post.accepted_answer_id),
    ];
    checks.into_iter().find_map(|(field, value)| {
        value.filter(|&v| v > MAX_NUMBER).map(|v| rejected(field, format!("{v} is larger than {MAX_NUMBER}")))
    })
}

/// Whether the write API changed this row after the dump was taken.
fn api_after(current: &Current, dump_date: i64) -> bool {
    current.origin == Origin::Api && current.written_at > dump_date
}

fn kind_name(kind: PostKind) -> &'static str {
    match kind {
        PostKind::Question => "a question (PostTypeId 1)",
        PostKind::Answer => "an answer (PostTypeId 2)",
    }
}

/// Applies one operation inside the write transaction; `seq` is the last number taken.
pub(crate) fn apply_one<T: Txn>(tx: &mut T, op: &Op, written_at: i64, seq: &mut u64) -> Result<Outcome, T::Error> {
    let take = |seq: &mut u64| {
        *seq += 1;
        *seq
    };
    match op {
        Op::Upsert { post, version } => upsert(tx, post, *version, written_at, seq),
        Op::Delete { id, version } => {
            if *id > MAX_NUMBER || *version > MAX_NUMBER {
                let field = if *id > MAX_NUMBER { "Id" } else { "version" };
                return Ok(rejected(field, format!("{} is larger than {MAX_NUMBER}", (*id).max(*version))));
            }
            let stored = tx.current(*id as i64)?;
            match stored {
                Some(stored) if *version < stored.version => Ok(Outcome::Conflict { stored_version: stored.version }),
                Some(stored) if stored.deleted => {
                    if *version > stored.version {
                        tx.set_version(*id as i64, *version)?;
                    }
                    Ok(Outcome::Noop)
                }
                was => {
                    let tombstone = Tombstone { id: *id as i64, was, version: *version, origin: Origin::Api };
                    tx.write_tombstone(&tombstone, take(seq), written_at)?;
                    Ok(Outcome::Deleted)
                }
            }
        }
        Op::FromDump { post, dump_date } => {
            if let Some(outcome) = check_numbers(post, 0) {
                return Ok(outcome);
            }
            let hash = content_hash(post);
            let stored = tx.current(post.id as i64)?;
            let version = match stored {
                Some(stored) if api_after(&stored, *dump_date) => return Ok(Outcome::Kept),
                Some(stored) if !stored.deleted && stored.kind == Some(post.kind) && stored.hash == hash => {
                    return Ok(Outcome::Noop);
                }
                Some(stored) => stored.version,
                None => 0,
            };
            let write = Write { post, version, origin: Origin::Dump, hash };
            tx.write_post(&write, take(seq), written_at)?;
            Ok(if stored.is_some_and(|s| !s.deleted) { Outcome::Updated } else { Outcome::Created })
        }
        Op::VanishedFromDump { id, dump_date } => {
            if *id > MAX_NUMBER {
                return Ok(rejected("Id", format!("{id} is larger than {MAX_NUMBER}")));
            }
            match tx.current(*id as i64)? {
                None => Ok(Outcome::Noop),
                Some(stored) if api_after(&stored, *dump_date) => Ok(Outcome::Kept),
                Some(stored) if stored.deleted => Ok(Outcome::Noop),
                Some(stored) => {
                    let tombstone =
                        Tombstone { id: *id as i64, was: Some(stored), version: stored.version, origin: Origin::Dump };
                    tx.write_tombstone(&tombstone, take(seq), written_at)?;
                    Ok(Outcome::Deleted)
                }
            }
        }
    }
}

/// A versioned upsert of the write API; `seq` is the last number taken.
fn upsert<T: Txn>(tx: &mut T, post: &Post, version: u64, written_at: i64, seq: &mut u64) -> Result<Outcome, T::Error> {
    if let Some(outcome) = check_numbers(post, version) {
        return Ok(outcome);
    }
    let stored = tx.current(post.id as i64)?;
    if let Some(stored) = stored {
        if let Some(kind) = stored.kind
            && kind != post.kind
        {
            let message = format!("post {} is stored as {}; a post cannot change its type", post.id, kind_name(kind));
            return Ok(rejected("PostTypeId", message));
        }
        if version < stored.version || (stored.deleted && version == stored.version) {
            return Ok(Outcome::Conflict { stored_version: stored.version });
        }
        if version == stored.version {
            return Ok(Outcome::Noop);
        }
    }
    if let Some(outcome) = check_parent(tx, post)? {
        return Ok(outcome);
    }
    let write = Write { post, version, origin: Origin::Api, hash: content_hash(post) };
    *seq += 1;
    tx.write_post(&write, *seq, written_at)?;
    Ok(if stored.is_some_and(|s| !s.deleted) { Outcome::Updated } else { Outcome::Created })
}

/// An answer of the write API must name a question that is not deleted (one that has not
/// arrived yet is fine: the answer waits for it).
fn check_parent<T: Txn>(tx: &mut T, post: &Post) -> Result<Option<Outcome>, T::Error> {
    if post.kind != PostKind::Answer {
        return Ok(None);
    }
    let Some(parent) = post.parent_id.filter(|&p| p != 0) else {
        return Ok(Some(rejected("ParentId", "an answer (PostTypeId 2) needs the Id of its question")));
    };
    if parent == post.id {
        return Ok(Some(rejected("ParentId", format!("post {parent} cannot answer itself"))));
    }
    let Some(stored) = tx.current(parent as i64)? else { return Ok(None) };
    if stored.deleted {
        return Ok(Some(rejected(
            "ParentId",
            format!(
                "question {parent} is deleted; an answer to it cannot be stored until the question is written again"
            ),
        )));
    }
    if stored.kind == Some(PostKind::Answer) {
        return Ok(Some(rejected("ParentId", format!("post {parent} is an answer, not a question"))));
    }
    Ok(None)
}
