//! The write API over HTTP: `POST /v1/posts:bulk` (ndjson, one operation a line),
//! `PUT /v1/posts/{id}`, `DELETE /v1/posts/{id}?version=V` and `POST /v1/index:rebuild`,
//! under the write token.
//!
//! A bulk body is read line by line and written in chunks, each chunk one call of the
//! engine (durable before its results are sent), so memory does not grow with the body. The
//! answer `{"items": [...], "seq": S}` streams out as the chunks are written; what the client
//! has not read yet waits in a small buffer and beyond it in a temporary file (a client that
//! sends its whole body before reading would otherwise stall the server, and the server it).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use futures_util::StreamExt;
use mathrank_engine::{Engine, EngineError, ItemOutcome, ItemResult, PostInput, WriteItem, WriteOutcome};
use serde::Deserialize;

use super::ApiError;
use crate::auth::{BearerToken, SEARCH_TOKEN_CANNOT_WRITE, UNAUTHENTICATED, WRITES_OFF};
use crate::state::ServerState;

/// The longest ndjson line read: a post's `Body` may hold 8 MiB (the dump's row limit), and
/// the rest of the post and JSON escapes get room beside it. A longer line is answered with an
/// error for its `Body`, read past without being held.
pub const MAX_LINE_BYTES: usize = mathrank_dump::MAX_ROW_BYTES + (1 << 20);

/// Operations per engine call, and bytes of lines read before a call.
const CHUNK_OPS: usize = 500;
const CHUNK_BYTES: usize = 16 << 20;

/// Bytes of answer held in memory for a slow reader before the rest goes to a temporary file.
const SPOOL_MEMORY_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct Posts {
    state: Arc<ServerState>,
    write_token: Option<BearerToken>,
    search_token: Option<BearerToken>,
}

/// The write routes, ready to merge beside the other HTTP routes.
pub(crate) fn router(
    state: Arc<ServerState>,
    write_token: Option<BearerToken>,
    search_token: Option<BearerToken>,
    max_body_bytes: usize,
) -> Router {
    let posts = Posts { state, write_token, search_token };
    Router::new()
        // The bulk body streams: no body limit, it is read a line at a time.
        .route("/v1/posts:bulk", post(bulk).layer(axum::extract::DefaultBodyLimit::disable()))
        .route(
            "/v1/posts/{id}",
            put(put_post).delete(delete_post).layer(axum::extract::DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/v1/index:rebuild", post(rebuild))
        .route_layer(axum::middleware::from_fn_with_state(posts.clone(), require_write_token))
        .with_state(posts)
}

fn error_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

async fn require_write_token(State(posts): State<Posts>, request: Request, next: Next) -> Response {
    let Some(token) = &posts.write_token else {
        return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", WRITES_OFF);
    };
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token.accepts(header) {
        return next.run(request).await;
    }
    if posts.search_token.as_ref().is_some_and(|search| search.accepts(header)) {
        return error_response(StatusCode::FORBIDDEN, "PERMISSION_DENIED", SEARCH_TOKEN_CANNOT_WRITE);
    }
    let mut response = error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", UNAUTHENTICATED);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

impl Posts {
    fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        let engine = self.state.ready_engine()?;
        if engine.store().is_none() {
            return Err(EngineError::Unavailable("this server's index has no post store".into()).into());
        }
        Ok(engine)
    }
}

// ---- Reading posts as the dump names their attributes.

/// A number as JSON writes it or as a dump's attribute (a string of digits).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(i64),
    Text(String),
}

/// Tags as `|a|b|` (or `<a><b>`), or as an array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tags {
    Joined(String),
    List(Vec<String>),
}

/// `CreationDate` as the dump writes it (`2024-01-31T12:00:00.000`) or as Unix seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Date {
    Seconds(i64),
    Text(String),
}

/// A post as JSON, with the dump's attribute names; other attributes of a dump row (ViewCount,
/// OwnerUserId, ...) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
struct PostJson {
    #[serde(rename = "Id")]
    id: Option<Number>,
    #[serde(rename = "PostTypeId")]
    post_type_id: Option<Number>,
    #[serde(rename = "ParentId")]
    parent_id: Option<Number>,
    #[serde(rename = "AcceptedAnswerId")]
    accepted_answer_id: Option<Number>,
    #[serde(rename = "Title")]
    title: Option<String>,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Tags>,
    #[serde(rename = "Score")]
    score: Option<Number>,
    #[serde(rename = "CreationDate")]
    creation_date: Option<Date>,
    version: Option<Number>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteJson {
    #[serde(rename = "Id")]
    id: Option<Number>,
    version: Option<Number>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationJson {
    upsert: Option<PostJson>,
    delete: Option<DeleteJson>,
}

/// A field that could not be read, with its name.
type FieldError = (&'static str, String);

fn number(value: Option<Number>, field: &'static str) -> Result<Option<i64>, FieldError> {
    match value {
        None => Ok(None),
        Some(Number::Integer(n)) => Ok(Some(n)),
        Some(Number::Text(text)) if text.trim().is_empty() => Ok(None),
        Some(Number::Text(text)) => {
            text.trim().parse().map(Some).map_err(|_| (field, format!("{text:?} is not an integer")))
        }
    }
}

impl PostJson {
    fn into_input(self) -> Result<PostInput, FieldError> {
        let creation_date = match self.creation_date {
            None => None,
            Some(Date::Seconds(seconds)) => Some(seconds),
            Some(Date::Text(text)) => Some(mathrank_dump::parse_creation_date(&text).ok_or_else(|| {
                ("CreationDate", format!("{text:?} is neither a date such as 2024-01-31T12:00:00.000 nor Unix seconds"))
            })?),
        };
        Ok(PostInput {
            id: number(self.id, "Id")?,
            post_type_id: number(self.post_type_id, "PostTypeId")?,
            parent_id: number(self.parent_id, "ParentId")?,
            accepted_answer_id: number(self.accepted_answer_id, "AcceptedAnswerId")?,
            title: self.title,
            body: self.body,
            tags: self.tags.map(|tags| match tags {
                Tags::Joined(text) => mathrank_dump::parse_tags(&text),
                Tags::List(list) => list,
            }),
            score: number(self.score, "Score")?,
            creation_date,
            version: number(self.version, "version")?,
        })
    }
}

/// Finds `"Id": N` in text that did not parse, so that its error can say which post it was.
fn sniff_id(line: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(&line[..line.len().min(64 * 1024)]);
    let at = text.find("\"Id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start().trim_start_matches('"');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The name of the field an error is about: the one a message names (`missing field
/// `Id``, `unknown field `Body``: serde reports them at the parent), else the last part of
/// the JSON path (`upsert.Tags[2]` → `Tags`), else `line`.
fn field_of_path(path: &str, message: &str) -> String {
    if (message.starts_with("missing field") || message.starts_with("unknown field"))
        && let Some(named) = message.split('`').nth(1)
    {
        return named.to_owned();
    }
    let last = path.rsplit('.').next().unwrap_or(path);
    let field = last.split('[').next().unwrap_or(last);
    if field.is_empty() || field == "?" { "line".to_owned() } else { field.to_owned() }
}

/// One ndjson line as a write item; what cannot be read becomes an `Invalid` item naming the
/// field.
fn parse_line(line: &[u8]) -> WriteItem {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let parsed: Result<OperationJson, _> = serde_path_to_error::deserialize(&mut deserializer);
    let invalid = |field: String, message: String| WriteItem::Invalid { id: sniff_id(line), field, message };
    let operation = match parsed {
        Ok(operation) => operation,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("the line is not valid JSON ({inner})")
            } else {
                inner.to_string()
            };
            return invalid(field_of_path(&path, &message), message);
        }
    };
    match (operation.upsert, operation.delete) {
        (Some(post), None) => match post.into_input() {
            Ok(input) => WriteItem::Upsert(input),
            Err((field, message)) => invalid(field.into(), message),
        },
        (None, Some(delete)) => match (number(delete.id, "Id"), number(delete.version, "version")) {
            (Ok(id), Ok(version)) => WriteItem::Delete { id, version },
            (Err((field, message)), _) | (_, Err((field, message))) => invalid(field.into(), message),
        },
        (Some(_), Some(_)) => invalid("line".into(), "holds both `upsert` and `delete`; one operation a line".into()),
        (None, None) => invalid(
            "line".into(),
            r#"holds no operation: write {"upsert": {...post...}} or {"delete": {"Id": N, "version": V}}"#.into(),
        ),
    }
}

// ---- Answers.

fn item_json(item: &ItemOutcome) -> serde_json::Value {
    let mut json = serde_json::json!({ "Id": item.id, "result": item.result.name() });
    if let Some(error) = &item.error {
        json["error"] = serde_json::json!({ "code": error.code, "message": error.message, "field": error.field });
    }
    json
}

/// The post id of an item, when it has one.
fn item_id(item: &WriteItem) -> Option<u64> {
    let id = match item {
        WriteItem::Upsert(post) => post.id,
        WriteItem::Delete { id, .. } => *id,
        WriteItem::Invalid { id, .. } => return *id,
    };
    id.filter(|&id| id > 0).map(|id| id as u64)
}

/// Every item of a chunk the store could not take, each answered with the store's error.
fn unavailable(ids: Vec<Option<u64>>, err: &EngineError) -> Vec<ItemOutcome> {
    ids.into_iter()
        .map(|id| ItemOutcome {
            id,
            result: ItemResult::Error,
            error: Some(mathrank_engine::ItemError {
                code: "UNAVAILABLE",
                message: err.to_string(),
                field: String::new(),
            }),
        })
        .collect()
}

/// The query parameters of the write routes: `wait=visible`, and `version=V` of a delete.
#[derive(Debug, Default)]
struct WriteParams {
    wait: Option<String>,
    version: Option<String>,
}

impl WriteParams {
    /// Both values are plain words or numbers, so the query is split by hand (axum's `Query`
    /// would bring a URL-encoded form parser for two parameters).
    fn of(uri: &Uri) -> Result<Self, ApiError> {
        let mut params = Self::default();
        for pair in uri.query().unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "wait" => params.wait = Some(value.to_owned()),
                "version" => params.version = Some(value.to_owned()),
                other => {
                    return Err(ApiError::invalid(
                        other.to_owned(),
                        "is not a parameter of the write API (wait, version)",
                    ));
                }
            }
        }
        Ok(params)
    }

    fn wait_visible(&self) -> Result<bool, ApiError> {
        match self.wait.as_deref() {
            None => Ok(false),
            Some("visible") => Ok(true),
            Some(other) => Err(ApiError::invalid("wait", format!("{other:?} is not a wait mode; use wait=visible"))),
        }
    }
}

/// When `?wait=visible` stops waiting: `X-Timeout-Ms`, else the server's default timeout.
fn wait_deadline(engine: &Engine, headers: &HeaderMap) -> Result<Instant, ApiError> {
    let received = Instant::now();
    let requested = super::shared::deadline_of(headers, received)?;
    Ok(engine.deadline_of(requested, received))
}

/// One operation: `PUT` and `DELETE` answer like a bulk call of one line. The status says the
/// outcome: 200, 409 for a conflict, 400 for bad input, 503 when the store failed.
async fn single(posts: Posts, headers: HeaderMap, params: WriteParams, item: WriteItem) -> Result<Response, ApiError> {
    let wait = params.wait_visible()?;
    let engine = posts.engine()?;
    let deadline = wait_deadline(&engine, &headers)?;
    let outcome = engine.write(vec![item]).await?;
    let WriteOutcome { seq, items } = outcome;
    let status = match items.first().map(|item| (item.result, item.error.as_ref().map(|e| e.code))) {
        Some((ItemResult::Conflict, _)) => StatusCode::CONFLICT,
        Some((ItemResult::Error, Some("UNAVAILABLE"))) => StatusCode::SERVICE_UNAVAILABLE,
        Some((ItemResult::Error, _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut body = serde_json::json!({ "seq": seq, "items": items.iter().map(item_json).collect::<Vec<_>>() });
    if wait {
        body["visible"] = engine.wait_visible(seq, deadline).await.into();
    }
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_SECS));
    }
    Ok(response)
}

async fn put_post(
    State(posts): State<Posts>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = WriteParams::of(&uri)?;
    let path_id: i64 =
        id.parse().map_err(|_| ApiError::invalid("Id", format!("{id:?} in the path is not a post id")))?;
    let body = body.map_err(|rejection| ApiError::invalid("body", rejection.body_text()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let item = match serde_path_to_error::deserialize::<_, PostJson>(&mut deserializer) {
        Err(err) => {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            WriteItem::Invalid { id: Some(path_id as u64), field: field_of_path(&path, &message), message }
        }
        Ok(post) => match post.into_input() {
            Err((field, message)) => WriteItem::Invalid { id: Some(path_id as u64), field: field.into(), message },
            Ok(input) if input.id.is_some_and(|body_id| body_id != path_id) => WriteItem::Invalid {
                id: Some(path_id as u64),
                field: "Id".into(),
                message: format!("the body's Id {} differs from the path's {path_id}", input.id.unwrap_or_default()),
            },
            Ok(input) => WriteItem::Upsert(PostInput { id: Some(path_id), ..input }),
        },
    };
    single(posts, headers, params, item).await
}

async fn delete_post(
    State(posts): State<Posts>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = WriteParams::of(&uri)?;
    let path_id: i64 =
        id.parse().map_err(|_| ApiError::invalid("Id", format!("{id:?} in the path is not a post id")))?;
    let item = match number(params.version.clone().map(Number::Text), "version") {
        Ok(version) => WriteItem::Delete { id: Some(path_id), version },
        Err((field, message)) => WriteItem::Invalid { id: Some(path_id as u64), field: field.into(), message },
    };
    single(posts, headers, params, item).await
}

async fn rebuild(State(posts): State<Posts>) -> Result<Response, ApiError> {
    let engine = posts.engine()?;
    engine.request_rebuild()?;
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "rebuilding": true }))).into_response())
}

/// Whether a content type is one a bulk body may have.
fn ndjson_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return true };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json" | "text/plain" | ""
    )
}

async fn bulk(State(posts): State<Posts>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let params = WriteParams::of(&uri)?;
    if !ndjson_type(&headers) {
        return Ok(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            "a bulk body is application/x-ndjson: one JSON operation a line",
        ));
    }
    let wait = params.wait_visible()?;
    let engine = posts.engine()?;
    let deadline = wait_deadline(&engine, &headers)?;
    let spool = Arc::new(Spool::default());
    let writer = Arc::clone(&spool);
    let (first, first_written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let outcome = write_bulk(&engine, body, &writer, wait, deadline, first).await;
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "a bulk write ended early");
        }
        writer.finish();
    });
    // The status is sent before the rest of the body is read: it says whether the store took
    // the first chunk. When it did not (the store is down), nothing was written and the whole
    // call is 503 with a retry hint; a later chunk the store refuses gets UNAVAILABLE items.
    if let Ok(Err(err)) = first_written.await {
        return Err(err.into());
    }
    let stream = futures_util::stream::unfold(spool, |spool| async move {
        spool.next().await.map(|bytes| (Ok::<_, std::io::Error>(bytes), spool))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Reads the body a chunk of lines at a time, writes each chunk, and spools its answer.
///
/// `first_written` hears how the first chunk went: a store error there ends the call (the
/// caller answers 503), and nothing is spooled.
async fn write_bulk(
    engine: &Engine,
    body: Body,
    spool: &Spool,
    wait: bool,
    deadline: Instant,
    first_written: tokio::sync::oneshot::Sender<Result<(), EngineError>>,
) -> Result<(), String> {
    let mut first_written = Some(first_written);
    let mut lines = LineReader::new(body);
    let mut first = true;
    let mut seq = 0;
    loop {
        let chunk = match lines.next_chunk().await {
            Ok(chunk) => chunk,
            Err(err) => {
                if let Some(sender) = first_written.take() {
                    let _ = sender.send(Ok(()));
                    spool.push(Bytes::from_static(b"{\"items\":["))?;
                }
                return Err(err);
            }
        };
        if chunk.is_empty() {
            break;
        }
        let items = tokio::task::spawn_blocking(move || chunk.iter().map(|line| line.item()).collect::<Vec<_>>())
            .await
            .map_err(|err| err.to_string())?;
        let ids: Vec<Option<u64>> = items.iter().map(item_id).collect();
        let outcomes = match engine.write(items).await {
            Ok(outcome) => {
                seq = seq.max(outcome.seq);
                outcome.items
            }
            Err(err) => match first_written.take() {
                Some(sender) => {
                    let _ = sender.send(Err(err));
                    return Ok(());
                }
                None => unavailable(ids, &err),
            },
        };
        if let Some(sender) = first_written.take() {
            let _ = sender.send(Ok(()));
            spool.push(Bytes::from_static(b"{\"items\":["))?;
        }
        let mut text = Vec::with_capacity(outcomes.len() * 48);
        for item in &outcomes {
            if !first {
                text.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut text, &item_json(item)).map_err(|err| err.to_string())?;
        }
        spool.push(Bytes::from(text))?;
    }
    if let Some(sender) = first_written.take() {
        let _ = sender.send(Ok(()));
        spool.push(Bytes::from_static(b"{\"items\":["))?;
    }
    if seq == 0 {
        // Nothing was written: the caller's `seq` is where the store stands (as last read;
        // a PostgreSQL read would block this async worker).
        seq = engine.replica_status().map_or(0, |status| status.store_seq.max(status.searchable_seq));
    }
    let mut tail = format!("],\"seq\":{seq}");
    if wait {
        let visible = engine.wait_visible(seq, deadline).await;
        tail.push_str(&format!(",\"visible\":{visible}"));
    }
    tail.push_str("}\n");
    spool.push(Bytes::from(tail))
}

/// A line of the body: its bytes, or how it overflowed.
enum Line {
    Text(Vec<u8>),
    /// Longer than [`MAX_LINE_BYTES`]: its length and its beginning (to name the post).
    TooLong {
        bytes: usize,
        head: Vec<u8>,
    },
}

impl Line {
    fn item(&self) -> WriteItem {
        match self {
            Self::Text(line) => parse_line(line),
            Self::TooLong { bytes, head } => WriteItem::Invalid {
                id: sniff_id(head),
                field: "Body".into(),
                message: format!(
                    "the line is {bytes} bytes; a post's Body may hold at most {} bytes (the dump's row limit)",
                    mathrank_dump::MAX_ROW_BYTES
                ),
            },
        }
    }
}

/// Splits a body stream into lines, holding at most one line of [`MAX_LINE_BYTES`].
struct LineReader {
    stream: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` known to hold no newline.
    scanned: usize,
    /// Inside a line that is too long: its length so far and its beginning.
    overflow: Option<(usize, Vec<u8>)>,
    done: bool,
}

impl LineReader {
    fn new(body: Body) -> Self {
        Self { stream: body.into_data_stream(), buffer: Vec::new(), scanned: 0, overflow: None, done: false }
    }

    /// The next lines, up to [`CHUNK_OPS`] of them or [`CHUNK_BYTES`]; empty at the end.
    async fn next_chunk(&mut self) -> Result<Vec<Line>, String> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < CHUNK_OPS && bytes < CHUNK_BYTES {
            match self.next_line().await? {
                Some(line) => {
                    bytes += match &line {
                        Line::Text(text) => text.len(),
                        Line::TooLong { head, .. } => head.len(),
                    };
                    chunk.push(line);
                }
                None => break,
            }
        }
        Ok(chunk)
    }

    async fn next_line(&mut self) -> Result<Option<Line>, String> {
        loop {
            let from = self.scanned.min(self.buffer.len());
            if let Some(end) = self.buffer[from..].iter().position(|&b| b == b'\n').map(|at| from + at) {
                self.scanned = 0;
                let rest = self.buffer.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buffer, rest);
                line.pop();
                if let Some((length, head)) = self.overflow.take() {
                    return Ok(Some(Line::TooLong { bytes: length + line.len(), head }));
                }
                if line.len() > MAX_LINE_BYTES {
                    let head = line[..4096].to_vec();
                    return Ok(Some(Line::TooLong { bytes: line.len(), head }));
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(Line::Text(line)));
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_LINE_BYTES || self.overflow.is_some() {
                // Too long: keep the beginning to name the post, drop the rest as it comes.
                let head = &self.buffer[..4096.min(self.buffer.len())];
                let (length, _) = self.overflow.get_or_insert_with(|| (0, head.to_vec()));
                *length += self.buffer.len();
                self.buffer.clear();
                self.scanned = 0;
            }
            if self.done {
                if let Some((length, head)) = self.overflow.take() {
                    return Ok(Some(Line::TooLong { bytes: length, head }));
                }
                self.scanned = 0;
                if self.buffer.iter().all(u8::is_ascii_whitespace) {
                    self.buffer.clear();
                    return Ok(None);
                }
                return Ok(Some(Line::Text(std::mem::take(&mut self.buffer))));
            }
            match self.stream.next().await {
                Some(Ok(data)) => self.buffer.extend_from_slice(&data),
                Some(Err(err)) => return Err(format!("reading the request body: {err}")),
                None => self.done = true,
            }
        }
    }
}

/// An answer being written by one task and sent by another: in memory up to
/// [`SPOOL_MEMORY_BYTES`], then in a temporary file, in order.
#[derive(Default)]
struct Spool {
    state: Mutex<SpoolState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct SpoolState {
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    /// The overflow file, with the bytes written to it and read from it.
    file: Option<(std::fs::File, u64, u64)>,
    finished: bool,
    /// The reader went away: writing on is pointless.
    closed: bool,
}

impl Spool {
    /// Appends bytes; fails when the client is gone or the overflow file cannot be written.
    /// (Writing the file here blocks briefly; it is page cache, and only for clients that do
    /// not read their answer while they send.)
    fn push(&self, bytes: Bytes) -> Result<(), String> {
        let mut state = self.state.lock().map_err(|_| "spool poisoned".to_owned())?;
        if state.closed {
            return Err("the client went away".into());
        }
        if state.file.is_none() && state.memory_bytes + bytes.len() <= SPOOL_MEMORY_BYTES {
            state.memory_bytes += bytes.len();
            state.memory.push_back(bytes);
        } else {
            if state.file.is_none() {
                let file = tempfile::tempfile().map_err(|err| format!("spooling the answer: {err}"))?;
                state.file = Some((file, 0, 0));
            }
            if let Some((file, written, _)) = state.file.as_mut() {
                file.seek(SeekFrom::Start(*written))
                    .and_then(|_| file.write_all(&bytes))
                    .map_err(|err| format!("spooling the answer: {err}"))?;
                *written += bytes.len() as u64;
            }
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.finished = true;
        }
        self.ready.notify_one();
    }

    /// The next bytes to send; `None` at the end.
    async fn next(&self) -> Option<Bytes> {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state.lock().ok()?;
                if let Some(bytes) = state.memory.pop_front() {
                    state.memory_bytes -= bytes.len();
                    return Some(bytes);
                }
                if let Some((file, written, read)) = state.file.as_mut() {
                    if read < written {
                        let mut buffer = vec![0u8; (*written - *read).min(64 * 1024) as usize];
                        let outcome = file.seek(SeekFrom::Start(*read)).and_then(|_| file.read_exact(&mut buffer));
                        if outcome.is_err() {
                            state.closed = true;
                            return None;
                        }
                        *read += buffer.len() as u64;
                        return Some(Bytes::from(buffer));
                    }
                    state.file = None;
                }
                if state.finished {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(line: &str) -> (Option<u64>, String) {
        match parse_line(line.as_bytes()) {
            WriteItem::Invalid { id, field, .. } => (id, field),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn lines_become_items_and_bad_ones_name_their_field() {
        let upsert = parse_line(br#"{"upsert": {"Id": "11", "PostTypeId": 2, "ParentId": 10, "Body": "<p>x</p>", "Tags": "|a|b|", "CreationDate": "2024-01-31T12:00:00.000", "version": 3, "ViewCount": 7}}"#);
        let WriteItem::Upsert(input) = upsert else { panic!("{upsert:?}") };
        assert_eq!(
            (input.id, input.post_type_id, input.parent_id, input.version),
            (Some(11), Some(2), Some(10), Some(3))
        );
        assert_eq!(input.tags.unwrap(), ["a", "b"]);
        assert_eq!(input.creation_date, mathrank_dump::parse_creation_date("2024-01-31T12:00:00"));
        let tags = parse_line(br#"{"upsert": {"Id": 1, "Tags": ["x", "y"]}}"#);
        assert!(matches!(tags, WriteItem::Upsert(PostInput { tags: Some(ref t), .. }) if t == &["x", "y"]));
        assert_eq!(
            parse_line(br#"{"delete": {"Id": 11, "version": 3}}"#),
            WriteItem::Delete { id: Some(11), version: Some(3) }
        );

        assert_eq!(field(r#"{"upsert": {"Id": 12, "Score": "many"}}"#), (Some(12), "Score".into()));
        assert_eq!(field(r#"{"upsert": {"Id": 12, "Score": [1]}}"#), (Some(12), "Score".into()));
        assert_eq!(field(r#"{"upsert": {"Id": 13, "CreationDate": "yesterday"}}"#), (Some(13), "CreationDate".into()));
        assert_eq!(field(r#"{"upsert": {"Id": 14, "Body": 5}}"#), (Some(14), "Body".into()));
        assert_eq!(field(r#"{"upsert": {"Id": 15, "Body": "unterminated"#), (Some(15), "Body".into()));
        assert_eq!(field(r#"{"upsert": {"Id": 16, "version": 1.5}}"#), (Some(16), "version".into()));
        assert_eq!(field(r#"not json at all"#), (None, "line".into()));
        assert_eq!(field(r#"{"replace": {"Id": 17}}"#).1, "replace");
        assert_eq!(field(r#"{}"#), (None, "line".into()));
        assert_eq!(field(r#"{"delete": {"Id": 18, "version": 1, "Body": "x"}}"#).1, "Body");
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks_and_overlong_ones_are_skipped_unheld() {
        let long = format!("{{\"upsert\": {{\"Id\": 77, \"Body\": \"{}\"}}}}", "x".repeat(MAX_LINE_BYTES));
        let text = format!(
            "{{\"delete\": {{\"Id\": 1, \"version\": 1}}}}\n\n{long}\n{{\"delete\": {{\"Id\": 2, \"version\": 1}}}}"
        );
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            text.as_bytes().chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let body = Body::from_stream(futures_util::stream::iter(pieces));
        let mut reader = LineReader::new(body);
        let chunk = reader.next_chunk().await.unwrap();
        let items: Vec<WriteItem> = chunk.iter().map(Line::item).collect();
        assert_eq!(items.len(), 3, "the empty line is no operation");
        assert_eq!(items[0], WriteItem::Delete { id: Some(1), version: Some(1) });
        let WriteItem::Invalid { id, field, message } = &items[1] else { panic!("the long line was read") };
        assert_eq!((*id, field.as_str()), (Some(77), "Body"));
        assert!(message.contains(&long.len().to_string()), "{message}");
        assert_eq!(items[2], WriteItem::Delete { id: Some(2), version: Some(1) });
        assert!(reader.buffer.capacity() <= 2 * MAX_LINE_BYTES + 4096, "the long line was never held whole");
        assert!(reader.next_chunk().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_spool_keeps_order_through_its_file() {
        let spool = Spool::default();
        let mut expected = Vec::new();
        for i in 0..3000u32 {
            let bytes = Bytes::from(format!("{i:08}").repeat(100));
            expected.extend_from_slice(&bytes);
            spool.push(bytes).unwrap();
        }
        spool.finish();
        assert!(spool.state.lock().unwrap().file.is_some(), "2.4 MB went past the memory part");
        let mut read = Vec::new();
        while let Some(bytes) = spool.next().await {
            read.extend_from_slice(&bytes);
        }
        assert_eq!(read, expected);
    }
}
