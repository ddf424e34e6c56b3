//! The shared store on PostgreSQL: see [`PgStore`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{IsolationLevel, NoTls, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

use crate::rules::{self, Current, Tombstone, Txn, Write};
use crate::{
    Applied, Counts, Digest, Error, MAX_NUMBER, Op, Origin, Outcome, Post, PostKind, PostStore, Result, Row, join_tags,
};

/// The key of the advisory lock every write transaction holds (any constant; this one spells
/// "mathrank" in ASCII).
pub const WRITE_LOCK: i64 = 0x6d61_7468_7261_6e6b;

/// The channel of the notifications sent at each commit that changed something.
pub const CHANNEL: &str = "mathrank_posts";

/// Rows fetched per round trip by the scans.
pub const SCAN_BATCH: i32 = 1000;

/// Bumped when the tables change.
const FORMAT: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS mathrank_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS mathrank_posts (
    id bigint PRIMARY KEY,
    kind smallint,
    parent_id bigint,
    deleted boolean NOT NULL,
    version bigint NOT NULL,
    seq bigint NOT NULL,
    origin smallint NOT NULL,
    written_at bigint NOT NULL,
    hash bigint NOT NULL,
    accepted_answer_id bigint,
    score bigint NOT NULL,
    created bigint NOT NULL,
    -- bytea, not text: a post's text is any Rust string, NUL included, as in the SQLite store.
    title bytea NOT NULL,
    tags bytea NOT NULL,
    body bytea NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS mathrank_posts_seq ON mathrank_posts (seq);
CREATE INDEX IF NOT EXISTS mathrank_posts_parent ON mathrank_posts (parent_id, id) WHERE kind = 2;";

const COLUMNS: &str = "id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body";

const UPSERT: &str = "INSERT INTO mathrank_posts (id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, parent_id = EXCLUDED.parent_id, deleted = EXCLUDED.deleted,
    version = EXCLUDED.version, seq = EXCLUDED.seq, origin = EXCLUDED.origin, written_at = EXCLUDED.written_at,
    hash = EXCLUDED.hash, accepted_answer_id = EXCLUDED.accepted_answer_id, score = EXCLUDED.score,
    created = EXCLUDED.created, title = EXCLUDED.title, tags = EXCLUDED.tags, body = EXCLUDED.body";

const LAST_SEQ: &str = "SELECT coalesce(max(seq), 0) FROM mathrank_posts";

/// How a [`PgStore`] connects and waits.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections the store opens (the listener's not counted).
    pub pool_size: u32,
    /// How long to wait for a connection before failing with a retryable error.
    pub connect_timeout: Duration,
    /// How long a writer waits for the write lock before failing with a retryable error.
    pub lock_timeout: Duration,
    /// How often [`PostStore::wait_for_change`] looks for changes without a notification.
    pub poll: Duration,
    /// Whether to `LISTEN` for notifications (else waiting only polls).
    pub listen: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            listen: true,
        }
    }
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Wakes the waiters of one store.
#[derive(Debug, Default)]
struct Waker {
    generation: Mutex<u64>,
    changed: Condvar,
    /// Set when the store is dropped: the listener thread ends.
    stop: AtomicBool,
}

impl Waker {
    fn bump(&self) {
        if let Ok(mut generation) = self.generation.lock() {
            *generation += 1;
            self.changed.notify_all();
        }
    }
}

/// The shared post store: the posts in a PostgreSQL database, so that several mathrank replicas
/// follow one source of truth, each deriving its own index from it.
///
/// The client is the synchronous `postgres` crate, because [`PostStore`] is synchronous, with an
/// `r2d2` pool that replaces connections a server restart broke. Like the SQLite store, call it
/// from blocking threads (`spawn_blocking`), never on an async worker: each connection drives
/// its own small runtime, which cannot run inside another.
///
/// # No follower skips a write: writers are serialised, in commit order
///
/// A follower reads [`PostStore::changes`] after the last sequence number it applied. Were
/// numbers taken from a PostgreSQL `SEQUENCE`, two transactions could commit out of order (7
/// before 6): a follower reading then sees 7, moves past 6, and never sees 6 once it commits.
/// So every write transaction first takes one transaction-scoped advisory lock
/// ([`WRITE_LOCK`]), and only then reads the last sequence number and numbers its changes.
/// PostgreSQL releases a transaction's locks only after its commit is durable and visible to
/// new snapshots (`CommitTransaction` in `xact.c` ends the transaction in the proc array before
/// releasing locks), so the next writer's numbers are all higher and become visible after these: at every instant the committed numbers are a
/// prefix of the sequence, and "everything after `s`" never misses a number below a visible one.
/// The transaction stays `READ COMMITTED` for this: each statement after the lock sees every
/// commit made before it was granted (under `REPEATABLE READ` the snapshot would predate it).
///
/// Writers on every replica share the lock, so PostgreSQL serialises them all; a write batch
/// costs one lock hand-over and one durable commit, and batching (group commit) is how a busy
/// site keeps up. A waiting writer gives up after `lock_timeout` with a retryable error.
///
/// # Waking followers
///
/// A write that changed something sends `NOTIFY mathrank_posts` in its transaction (delivered
/// at commit). [`PostStore::wait_for_change`] starts one listening connection per store on
/// first use; it wakes waiters on each notification and after each reconnection, and waiters
/// also poll the last sequence number every [`PgOptions::poll`], so a lost notification or a
/// dead listener only delays a follower.
///
/// # Faults
///
/// A write or read that fails because the server is unreachable, restarting or overloaded
/// returns [`Error::Unavailable`](crate::Error::Unavailable) ([`Error::is_retryable`](crate::Error::is_retryable)):
/// nothing is acknowledged, and retrying the same versions is idempotent (a write that did
/// commit before the connection dropped answers `noop` the second time). Scans run in one
/// `REPEATABLE READ` transaction, read through portals in batches of [`SCAN_BATCH`] rows, so
/// memory stays bounded at any size; a connection lost mid-scan fails the scan (retryable).
///
/// ```no_run
/// use mathrank_store::{PgStore, PostStore};
///
/// # fn main() -> Result<(), mathrank_store::Error> {
/// let store = PgStore::connect("postgres://mathrank:secret@db.example:5432/mathrank")?;
/// let mut applied = store.last_seq()?;
/// // A follower: apply what changed after `applied`, then wait (woken by NOTIFY) for more.
/// loop {
///     for row in store.changes(applied, 1000)? {
///         applied = row.seq;
///     }
///     store.wait_for_change(applied, std::time::Duration::from_secs(1))?;
/// #   break;
/// }
/// # Ok(()) }
/// ```
pub struct PgStore {
    /// The URL without its password, for messages.
    location: String,
    store_id: String,
    config: postgres::Config,
    pool: Pool,
    options: PgOptions,
    waker: Arc<Waker>,
    listener: Once,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("location", &self.location).field("store_id", &self.store_id).finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.waker.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether `location` names a PostgreSQL database (a `postgres://` or `postgresql://` URL).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `url` without the password of its user.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_owned() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// Errors a retry may cure: the server is unreachable, restarting, shutting down, out of
/// connections, or the write waited too long for the lock.
fn retryable(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let code = code.code();
        // 08: connection exception; 53: insufficient resources; 57: operator intervention
        // (shutdown, cannot connect now); 40001/40P01: serialization failure, deadlock;
        // 55P03: lock not available.
        return ["08", "53", "57"].iter().any(|class| code.starts_with(class))
            || matches!(code, "40001" | "40P01" | "55P03");
    }
    // Without a SQLSTATE: connecting, reading or writing the socket failed.
    std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
}

/// The error with its causes: the client's own message ("db error") says nothing without the
/// server's.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(source) = cause {
        message.push_str(": ");
        message.push_str(&source.to_string().replace('\n', "; "));
        cause = source.source();
    }
    message
}

fn classify(location: &str, source: postgres::Error) -> Error {
    let message = describe(&source);
    if retryable(&source) {
        Error::Unavailable { store: location.to_owned(), reason: message, source: Some(Box::new(source)) }
    } else {
        Error::Postgres { store: location.to_owned(), message, source }
    }
}

/// Session settings of every pooled connection.
#[derive(Debug)]
struct Session {
    lock_timeout: Duration,
}

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for Session {
    fn on_acquire(&self, client: &mut postgres::Client) -> Result<(), postgres::Error> {
        // A write is acknowledged only once durable, whatever the server's default.
        client.batch_execute(&format!(
            "SET synchronous_commit = on; SET lock_timeout = {}",
            self.lock_timeout.as_millis().max(1)
        ))
    }
}

/// Connection failures of the pool's background work, logged through `tracing`.
#[derive(Debug)]
struct LogErrors {
    location: String,
}

impl r2d2::HandleError<postgres::Error> for LogErrors {
    fn handle_error(&self, error: postgres::Error) {
        tracing::warn!(store = %self.location, %error, "post store connection failed");
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creating the store's tables when missing.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PgOptions::default())
    }

    /// [`connect`](Self::connect) with options.
    pub fn connect_with(url: &str, options: PgOptions) -> Result<Self> {
        let mut config: postgres::Config =
            url.parse().map_err(|source| Error::Postgres { store: redact(url), message: describe(&source), source })?;
        if config.get_application_name().is_none() {
            config.application_name("mathrank");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // A server that vanished without closing the connection fails a request instead of
        // holding it forever.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(30));
        }
        let location = location_of(&config);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.connect_timeout)
            .connection_customizer(Box::new(Session { lock_timeout: options.lock_timeout }))
            .error_handler(Box::new(LogErrors { location: location.clone() }))
            .build(PostgresConnectionManager::new(config.clone(), NoTls))
            .map_err(|source| unavailable(&location, source))?;
        let mut store = Self {
            location,
            store_id: String::new(),
            config,
            pool,
            options,
            waker: Arc::default(),
            listener: Once::new(),
        };
        store.store_id = store.init_schema()?;
        Ok(store)
    }

    /// The database's URL, without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn client(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        self.pool.get().map_err(|source| unavailable(&self.location, source))
    }

    fn error(&self) -> impl Fn(postgres::Error) -> Error + '_ {
        |source| classify(&self.location, source)
    }

    /// Creates the tables when missing (under the write lock: replicas may start together),
    /// checks the format, and returns the store's id.
    fn init_schema(&self) -> Result<String> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(self.error())?;
        let init = |tx: &mut Transaction<'_>| -> Result<Option<i64>, postgres::Error> {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            // Only when missing: a role without the right to create tables can use a store.
            let exists: bool = tx.query_one("SELECT to_regclass('mathrank_posts') IS NOT NULL", &[])?.get(0);
            if !exists {
                tx.batch_execute(TABLES)?;
            }
            let format = tx.query_opt("SELECT value FROM mathrank_meta WHERE key = 'format'", &[])?;
            Ok(format.map(|row| row.get::<_, String>(0).parse().unwrap_or(-1)))
        };
        match init(&mut tx).map_err(self.error())? {
            Some(found) if found != FORMAT => {
                return Err(Error::Incompatible { path: self.location.clone(), found, expected: FORMAT });
            }
            Some(_) => {}
            None => {
                let id = format!("{:032x}", rand::random::<u128>());
                tx.execute(
                    "INSERT INTO mathrank_meta (key, value) VALUES ('format', $1), ('store_id', $2)",
                    &[&FORMAT.to_string(), &id],
                )
                .map_err(self.error())?;
            }
        }
        let id = tx.query_one("SELECT value FROM mathrank_meta WHERE key = 'store_id'", &[]).map_err(self.error())?;
        let id: String = id.get(0);
        tx.commit().map_err(self.error())?;
        Ok(id)
    }

    /// Starts the listening thread once.
    fn listen(&self) {
        if !self.options.listen {
            return;
        }
        self.listener.call_once(|| {
            let (config, waker, location) = (self.config.clone(), Arc::clone(&self.waker), self.location.clone());
            let spawned = std::thread::Builder::new()
                .name("mathrank-store-listen".into())
                .spawn(move || listen(&config, &waker, &location));
            if let Err(error) = spawned {
                tracing::warn!(store = %self.location, %error, "cannot start the listener; followers poll");
            }
        });
    }
}

fn unavailable(location: &str, source: r2d2::Error) -> Error {
    Error::Unavailable { store: location.to_owned(), reason: describe(&source), source: Some(Box::new(source)) }
}

/// `postgres://user@host:port/database`, never the password.
fn location_of(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config.get_user().map(|user| format!("{user}@")).unwrap_or_default();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

/// The listening thread: wakes the store's waiters on each notification, and after each
/// (re)connection, since a change may have come while it was not listening.
fn listen(config: &postgres::Config, waker: &Waker, location: &str) {
    let mut backoff = Duration::from_millis(100);
    while !waker.stop.load(Ordering::Relaxed) {
        let connected = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(client)
        });
        let mut client = match connected {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(store = %location, %error, "listener cannot connect; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        waker.bump();
        while !waker.stop.load(Ordering::Relaxed) {
            // Wakes at least every second to see the stop flag.
            let next = client.notifications().timeout_iter(Duration::from_secs(1)).next();
            match next {
                Ok(Some(_)) => waker.bump(),
                Ok(None) if client.is_closed() => break,
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(store = %location, %error, "listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

fn kind_code(kind: PostKind) -> i16 {
    match kind {
        PostKind::Question => 1,
        PostKind::Answer => 2,
    }
}

fn kind_of(code: Option<i16>) -> Option<PostKind> {
    match code {
        Some(1) => Some(PostKind::Question),
        Some(2) => Some(PostKind::Answer),
        _ => None,
    }
}

fn origin_code(origin: Origin) -> i16 {
    match origin {
        Origin::Dump => 0,
        Origin::Api => 1,
    }
}

fn origin_of(code: i16) -> Origin {
    if code == 1 { Origin::Api } else { Origin::Dump }
}

fn text(row: &postgres::Row, index: usize) -> String {
    String::from_utf8_lossy(row.get::<_, &[u8]>(index)).into_owned()
}

/// A row of `COLUMNS`, starting at column `at`.
fn row_of(row: &postgres::Row, at: usize) -> Row {
    let id = row.get::<_, i64>(at) as u64;
    let kind = kind_of(row.get(at + 1));
    let deleted: bool = row.get(at + 3);
    let post = match (kind, deleted) {
        (Some(kind), false) => Some(Post {
            id,
            kind,
            parent_id: row.get::<_, Option<i64>>(at + 2).map(|p| p as u64),
            accepted_answer_id: row.get::<_, Option<i64>>(at + 9).map(|a| a as u64),
            score: row.get(at + 10),
            created: row.get(at + 11),
            title: text(row, at + 12),
            tags: mathrank_dump::parse_tags(&text(row, at + 13)),
            body_html: text(row, at + 14),
        }),
        _ => None,
    };
    Row {
        id,
        kind,
        deleted,
        version: row.get::<_, i64>(at + 4) as u64,
        seq: row.get::<_, i64>(at + 5) as u64,
        origin: origin_of(row.get(at + 6)),
        written_at: row.get(at + 7),
        hash: row.get::<_, i64>(at + 8) as u64,
        post,
    }
}

/// The write transaction seen by [`rules::apply_one`]: the rows it reads are fetched in one
/// query up front (the write lock keeps them current), and kept up to date as it writes.
struct PgTxn<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    rows: HashMap<i64, Option<Current>>,
    upsert: Option<Statement>,
}

impl<'t, 'c> PgTxn<'t, 'c> {
    /// Reads the stored rows of every post `ops` touch, and of the questions they answer.
    fn prefetched(tx: &'t mut Transaction<'c>, ops: &[Op]) -> Result<Self, postgres::Error> {
        let mut ids: Vec<i64> = Vec::with_capacity(ops.len() * 2);
        for op in ops {
            ids.push(op.id() as i64);
            if let Op::Upsert { post, .. } = op {
                ids.extend(post.parent_id.map(|p| p as i64));
            }
        }
        // Numbers beyond the store are rejected before any read; drop them here.
        ids.retain(|&id| id >= 0);
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<i64, Option<Current>> = ids.iter().map(|&id| (id, None)).collect();
        let found = tx.query(
            "SELECT id, kind, deleted, version, origin, written_at, hash, parent_id FROM mathrank_posts WHERE id = ANY($1)",
            &[&ids],
        )?;
        for row in found {
            rows.insert(row.get(0), Some(current_of(&row, 1)));
        }
        Ok(Self { tx, rows, upsert: None })
    }

    fn upsert(&mut self, params: &[&(dyn ToSql + Sync)]) -> Result<(), postgres::Error> {
        let statement = match &self.upsert {
            Some(statement) => statement.clone(),
            None => {
                let statement = self.tx.prepare(UPSERT)?;
                self.upsert = Some(statement.clone());
                statement
            }
        };
        self.tx.execute(&statement, params)?;
        Ok(())
    }
}

fn current_of(row: &postgres::Row, at: usize) -> Current {
    Current {
        kind: kind_of(row.get(at)),
        deleted: row.get(at + 1),
        version: row.get::<_, i64>(at + 2) as u64,
        origin: origin_of(row.get(at + 3)),
        written_at: row.get(at + 4),
        hash: row.get::<_, i64>(at + 5) as u64,
        parent_id: row.get(at + 6),
    }
}

impl Txn for PgTxn<'_, '_> {
    type Error = postgres::Error;

    fn current(&mut self, id: i64) -> Result<Option<Current>, postgres::Error> {
        if let Some(current) = self.rows.get(&id) {
            return Ok(*current);
        }
        let row = self.tx.query_opt(
            "SELECT kind, deleted, version, origin, written_at, hash, parent_id FROM mathrank_posts WHERE id = $1",
            &[&id],
        )?;
        let current = row.map(|row| current_of(&row, 0));
        self.rows.insert(id, current);
        Ok(current)
    }

    fn write_post(&mut self, write: &Write<'_>, seq: u64, written_at: i64) -> Result<(), postgres::Error> {
        let post = write.post;
        let (id, version, seq, hash) = (post.id as i64, write.version as i64, seq as i64, write.hash as i64);
        let parent_id = post.parent_id.map(|p| p as i64);
        let accepted = post.accepted_answer_id.map(|a| a as i64);
        let (kind, origin, tags) = (kind_code(post.kind), origin_code(write.origin), join_tags(&post.tags));
        self.upsert(&[
            &id,
            &kind,
            &parent_id,
            &false,
            &version,
            &seq,
            &origin,
            &written_at,
            &hash,
            &accepted,
            &post.score,
            &post.created,
            &post.title.as_bytes(),
            &tags.as_bytes(),
            &post.body_html.as_bytes(),
        ])?;
        let current = Current {
            kind: Some(post.kind),
            deleted: false,
            version: write.version,
            origin: write.origin,
            written_at,
            hash: write.hash,
            parent_id,
        };
        self.rows.insert(id, Some(current));
        Ok(())
    }

    fn write_tombstone(&mut self, tombstone: &Tombstone, seq: u64, written_at: i64) -> Result<(), postgres::Error> {
        let kind = tombstone.was.and_then(|was| was.kind);
        let parent_id = tombstone.was.and_then(|was| was.parent_id);
        let (version, seq, origin) = (tombstone.version as i64, seq as i64, origin_code(tombstone.origin));
        let (none, zero, empty): (Option<i64>, i64, &[u8]) = (None, 0, b"");
        self.upsert(&[
            &tombstone.id,
            &kind.map(kind_code),
            &parent_id,
            &true,
            &version,
            &seq,
            &origin,
            &written_at,
            &zero,
            &none,
            &zero,
            &zero,
            &empty,
            &empty,
            &empty,
        ])?;
        let current = Current {
            kind,
            deleted: true,
            version: tombstone.version,
            origin: tombstone.origin,
            written_at,
            hash: 0,
            parent_id,
        };
        self.rows.insert(tombstone.id, Some(current));
        Ok(())
    }

    fn set_version(&mut self, id: i64, version: u64) -> Result<(), postgres::Error> {
        self.tx.execute("UPDATE mathrank_posts SET version = $2 WHERE id = $1", &[&id, &(version as i64)])?;
        if let Some(Some(current)) = self.rows.get_mut(&id) {
            current.version = version;
        }
        Ok(())
    }
}

/// One ordered query read through a portal, [`SCAN_BATCH`] rows at a time.
struct Cursor {
    portal: postgres::Portal,
    buffered: VecDeque<postgres::Row>,
    done: bool,
}

impl Cursor {
    fn open(tx: &mut Transaction<'_>, query: &str) -> Result<Self, postgres::Error> {
        Ok(Self { portal: tx.bind(query, &[])?, buffered: VecDeque::new(), done: false })
    }

    fn peek(&mut self, tx: &mut Transaction<'_>) -> Result<Option<&postgres::Row>, postgres::Error> {
        if self.buffered.is_empty() && !self.done {
            self.buffered.extend(tx.query_portal(&self.portal, SCAN_BATCH)?);
            self.done = self.buffered.is_empty();
        }
        Ok(self.buffered.front())
    }

    fn next(&mut self, tx: &mut Transaction<'_>) -> Result<Option<postgres::Row>, postgres::Error> {
        self.peek(tx)?;
        Ok(self.buffered.pop_front())
    }
}

/// Every live answer with its live question: answers by (question, id) merged with the
/// questions that have answers, by id, each read once.
fn scan_joined(tx: &mut Transaction<'_>, visit: &mut dyn FnMut(&Post, Post) -> bool) -> Result<(), postgres::Error> {
    let mut answers = Cursor::open(
        tx,
        &format!("SELECT {COLUMNS} FROM mathrank_posts WHERE kind = 2 AND NOT deleted ORDER BY parent_id, id"),
    )?;
    let mut questions = Cursor::open(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM mathrank_posts WHERE kind = 1 AND NOT deleted AND id IN \
             (SELECT parent_id FROM mathrank_posts WHERE kind = 2 AND NOT deleted) ORDER BY id"
        ),
    )?;
    let mut question: Option<Post> = None;
    while let Some(row) = answers.next(tx)? {
        let Some(answer) = row_of(&row, 0).post else { continue };
        let parent = answer.parent_id.unwrap_or_default();
        if question.as_ref().is_none_or(|q| q.id < parent) {
            question = None;
            while let Some(next) = questions.peek(tx)? {
                let id = next.get::<_, i64>(0) as u64;
                if id > parent {
                    break;
                }
                let row = questions.next(tx)?;
                if id == parent {
                    question = row.and_then(|row| row_of(&row, 0).post);
                    break;
                }
            }
        }
        if let Some(question) = question.as_ref().filter(|q| q.id == parent)
            && !visit(question, answer)
        {
            break;
        }
    }
    Ok(())
}

impl PostStore for PgStore {
    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn apply(&self, ops: &[Op], written_at: i64) -> Result<Applied> {
        let mut client = self.client()?;
        let write = |client: &mut postgres::Client| -> Result<Applied, postgres::Error> {
            let mut tx = client.transaction()?;
            // The write lock first (see the module's doc): then the last number, then ours.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            let mut seq = tx.query_one(LAST_SEQ, &[])?.get::<_, i64>(0) as u64;
            let mut txn = PgTxn::prefetched(&mut tx, ops)?;
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                outcomes.push(rules::apply_one(&mut txn, op, written_at, &mut seq)?);
            }
            if outcomes.iter().any(Outcome::changed) {
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])?;
            }
            tx.commit()?;
            Ok(Applied { seq, outcomes })
        };
        let applied = write(&mut client).map_err(self.error())?;
        drop(client);
        if applied.outcomes.iter().any(Outcome::changed) {
            self.waker.bump();
        }
        Ok(applied)
    }

    fn get(&self, id: u64) -> Result<Option<Row>> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        let query = format!("SELECT {COLUMNS} FROM mathrank_posts WHERE id = $1");
        let row = self.client()?.query_opt(&query, &[&id]).map_err(self.error())?;
        Ok(row.map(|row| row_of(&row, 0)))
    }

    fn last_seq(&self) -> Result<u64> {
        let row = self.client()?.query_one(LAST_SEQ, &[]).map_err(self.error())?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn changes(&self, after: u64, limit: usize) -> Result<Vec<Row>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = format!("SELECT {COLUMNS} FROM mathrank_posts WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = self.client()?.query(&query, &[&after, &limit]).map_err(self.error())?;
        Ok(rows.iter().map(|row| row_of(row, 0)).collect())
    }

    fn answers_of(&self, question_id: u64) -> Result<Vec<Post>> {
        let Ok(question_id) = i64::try_from(question_id) else { return Ok(Vec::new()) };
        let query = format!(
            "SELECT {COLUMNS} FROM mathrank_posts WHERE parent_id = $1 AND kind = 2 AND NOT deleted ORDER BY id"
        );
        let rows = self.client()?.query(&query, &[&question_id]).map_err(self.error())?;
        Ok(rows.iter().filter_map(|row| row_of(row, 0).post).collect())
    }

    fn wait_for_change(&self, after: u64, timeout: Duration) -> Result<u64> {
        self.listen();
        let deadline = Instant::now() + timeout;
        loop {
            let generation = *self.waker.generation.lock().map_err(|_| Error::Closed)?;
            let last = self.last_seq()?;
            let now = Instant::now();
            if last > after || now >= deadline {
                return Ok(last);
            }
            let guard = self.waker.generation.lock().map_err(|_| Error::Closed)?;
            let wait = (deadline - now).min(self.options.poll);
            let _woken =
                self.waker.changed.wait_timeout_while(guard, wait, |g| *g == generation).map_err(|_| Error::Closed)?;
        }
    }

    fn scan_joined(&self, visit: &mut dyn FnMut(&Post, Post) -> bool) -> Result<u64> {
        let mut client = self.client()?;
        let mut scan = |client: &mut postgres::Client| -> Result<u64, postgres::Error> {
            // One snapshot: the sequence number and every row come from it.
            let mut tx =
                client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
            let seq = tx.query_one(LAST_SEQ, &[])?.get::<_, i64>(0) as u64;
            scan_joined(&mut tx, visit)?;
            tx.commit()?;
            Ok(seq)
        };
        scan(&mut client).map_err(self.error())
    }

    fn scan_digests(&self, visit: &mut dyn FnMut(Digest) -> bool) -> Result<()> {
        let mut client = self.client()?;
        let mut scan = |client: &mut postgres::Client| -> Result<(), postgres::Error> {
            let mut tx = client.build_transaction().read_only(true).start()?;
            let mut rows =
                Cursor::open(&mut tx, "SELECT id, deleted, origin, written_at, hash FROM mathrank_posts ORDER BY id")?;
            while let Some(row) = rows.next(&mut tx)? {
                let digest = Digest {
                    id: row.get::<_, i64>(0) as u64,
                    deleted: row.get(1),
                    origin: origin_of(row.get(2)),
                    written_at: row.get(3),
                    hash: row.get::<_, i64>(4) as u64,
                };
                if !visit(digest) {
                    break;
                }
            }
            tx.commit()
        };
        scan(&mut client).map_err(self.error())
    }

    fn counts(&self) -> Result<Counts> {
        let mut client = self.client()?;
        let count = |client: &mut postgres::Client| -> Result<Counts, postgres::Error> {
            let mut tx =
                client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
            let mut counts = Counts::default();
            for row in tx.query("SELECT kind, deleted, count(*) FROM mathrank_posts GROUP BY kind, deleted", &[])? {
                let n = row.get::<_, i64>(2) as u64;
                match (kind_of(row.get(0)), row.get::<_, bool>(1)) {
                    (_, true) => counts.tombstones += n,
                    (Some(PostKind::Question), false) => counts.questions += n,
                    (Some(PostKind::Answer), false) => counts.answers += n,
                    (None, false) => {}
                }
            }
            counts.last_seq = tx.query_one(LAST_SEQ, &[])?.get::<_, i64>(0) as u64;
            tx.commit()?;
            Ok(counts)
        };
        count(&mut client).map_err(self.error())
    }
}

/// Keeps `MAX_NUMBER` the bound of this store too: PostgreSQL's `bigint` is signed 64-bit.
const _: () = assert!(MAX_NUMBER == i64::MAX as u64);

#[cfg(test)]
mod tests;
