//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so that a
//! transaction is on disk when `COMMIT` returns, and readers never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::rules::{self, Current, Tombstone, Txn, Write};
use crate::{
    Applied, Counts, Digest, Error, MAX_NUMBER, Op, Origin, Outcome, Post, PostKind, PostStore, Result, Row,
    content_hash, join_tags,
};

/// The store's file name inside an index directory (with its `-wal` and `-shm` companions).
pub const STORE_FILE: &str = "posts.sqlite";

/// Bumped when the tables change.
const FORMAT: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    kind INTEGER,
    parent_id INTEGER,
    deleted INTEGER NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    origin INTEGER NOT NULL,
    written_at INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    accepted_answer_id INTEGER,
    score INTEGER NOT NULL,
    created INTEGER NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL,
    body TEXT NOT NULL
);";

/// Indexes, created after a bulk load (faster than keeping them up to date row by row).
/// `posts_digest` covers what a delta reads, so that scanning it never touches the texts.
const INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS posts_seq ON posts(seq);
CREATE INDEX IF NOT EXISTS posts_parent ON posts(parent_id) WHERE kind = 2;
CREATE INDEX IF NOT EXISTS posts_digest ON posts(id, kind, deleted, origin, written_at, hash);";

const COLUMNS: &str = "id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body";

/// How often a waiting reader looks for changes written by another process.
const POLL: Duration = Duration::from_millis(100);

/// Posts per transaction of a bulk load.
const LOAD_BATCH: usize = 20_000;

/// The SQLite post store.
pub struct SqliteStore {
    path: PathBuf,
    store_id: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Bumped after each commit of this process, to wake waiting readers at once.
    generation: Mutex<u64>,
    changed: Condvar,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).field("store_id", &self.store_id).finish()
    }
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| match source {
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::NotADatabase => {
            Error::NotAStore { path: path.display().to_string(), reason: "the file is not an SQLite database".into() }
        }
        source => Error::Sqlite { path: path.display().to_string(), source },
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_error(path))?;
    // WAL: readers never block the writer; FULL: the WAL is synced at every commit, so a
    // committed write survives power loss. Another process (a delta) may hold the write lock
    // for a moment: wait for it.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 30000; PRAGMA cache_size = -32768;",
    )
    .map_err(sql_error(path))?;
    Ok(conn)
}

fn to_i64(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::OutOfRange { what, value, max: MAX_NUMBER })
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (and its tables) when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_connection(path)?;
        let store_id = init_schema(&conn, path)?;
        conn.execute_batch(INDEXES).map_err(sql_error(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            store_id,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            generation: Mutex::new(0),
            changed: Condvar::new(),
        })
    }

    /// Creates a new store at `path` (replacing any file there) for a bulk load: fast,
    /// unjournalled writes, made durable and indexed by [`BulkLoader::finish`].
    pub fn bulk_load(path: &Path) -> Result<BulkLoader> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::NotAStore {
                        path: file.display().to_string(),
                        reason: format!("cannot remove the old file ({err})"),
                    });
                }
            }
        }
        let conn = Connection::open(path).map_err(sql_error(path))?;
        // Nothing here must survive a crash: the build publishes the file only when finished.
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536;")
            .map_err(sql_error(path))?;
        let store_id = init_schema(&conn, path)?;
        conn.execute_batch("BEGIN").map_err(sql_error(path))?;
        Ok(BulkLoader { conn, path: path.to_path_buf(), store_id, pending: 0, seq: 0, loaded: 0 })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        sql_error(&self.path)
    }

    /// Runs `work` on a reader connection (opened on demand, returned to the pool after).
    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| Error::Closed)?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path)?,
        };
        let outcome = work(&conn);
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(conn);
        }
        outcome
    }

    fn notify(&self) {
        if let Ok(mut generation) = self.generation.lock() {
            *generation += 1;
            self.changed.notify_all();
        }
    }
}

/// Creates the tables when missing, checks the format, and returns the store's id.
fn init_schema(conn: &Connection, path: &Path) -> Result<String> {
    let error = sql_error(path);
    conn.execute_batch(TABLES).map_err(&error)?;
    let format: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| row.get(0))
        .optional()
        .map_err(&error)?;
    match format {
        Some(found) if found != FORMAT => {
            return Err(Error::Incompatible { path: path.display().to_string(), found, expected: FORMAT });
        }
        Some(_) => {}
        None => {
            let id = format!("{:032x}", rand::random::<u128>());
            conn.execute("INSERT INTO meta (key, value) VALUES ('format', ?1), ('store_id', ?2)", params![FORMAT, id])
                .map_err(&error)?;
        }
    }
    conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| row.get(0)).map_err(error)
}

/// A bulk load into a new store (a full build): posts in, duplicates of an id ignored (the
/// first one stays, as the join keeps it).
pub struct BulkLoader {
    conn: Connection,
    path: PathBuf,
    store_id: String,
    pending: usize,
    seq: u64,
    loaded: u64,
}

impl std::fmt::Debug for BulkLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoader").field("path", &self.path).field("loaded", &self.loaded).finish()
    }
}

impl BulkLoader {
    /// Adds a post of the dump, written at `written_at`.
    pub fn load(&mut self, post: &Post, written_at: i64) -> Result<()> {
        let error = sql_error(&self.path);
        let id = to_i64("Id", post.id)?;
        let seq = self.seq + 1;
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO posts (id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body) VALUES (?1, ?2, ?3, 0, 0, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    id,
                    kind_code(post.kind),
                    post.parent_id.map(|p| p as i64),
                    seq as i64,
                    written_at,
                    content_hash(post) as i64,
                    post.accepted_answer_id.map(|a| a as i64),
                    post.score,
                    post.created,
                    post.title,
                    join_tags(&post.tags),
                    post.body_html,
                ])
            })
            .map_err(&error)?;
        if inserted > 0 {
            self.seq = seq;
            self.loaded += 1;
        }
        self.pending += 1;
        if self.pending >= LOAD_BATCH {
            self.conn.execute_batch("COMMIT; BEGIN").map_err(error)?;
            self.pending = 0;
        }
        Ok(())
    }

    /// The new store's id.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Posts loaded so far (duplicates not counted).
    pub fn loaded(&self) -> u64 {
        self.loaded
    }

    /// Commits, builds the indexes, switches to WAL with `synchronous=FULL` and syncs the
    /// file. Returns the store's last sequence number.
    pub fn finish(self) -> Result<u64> {
        let error = sql_error(&self.path);
        self.conn.execute_batch("COMMIT").map_err(&error)?;
        self.conn.execute_batch(INDEXES).map_err(&error)?;
        self.conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(&error)?;
        drop(self.conn);
        let file = std::fs::File::open(&self.path).and_then(|file| file.sync_all());
        file.map_err(|source| Error::Io { path: self.path.display().to_string(), source })?;
        Ok(self.seq)
    }
}

fn kind_code(kind: PostKind) -> i64 {
    match kind {
        PostKind::Question => 1,
        PostKind::Answer => 2,
    }
}

fn kind_of(code: Option<i64>) -> Option<PostKind> {
    match code {
        Some(1) => Some(PostKind::Question),
        Some(2) => Some(PostKind::Answer),
        _ => None,
    }
}

fn origin_code(origin: Origin) -> i64 {
    match origin {
        Origin::Dump => 0,
        Origin::Api => 1,
    }
}

fn origin_of(code: i64) -> Origin {
    if code == 1 { Origin::Api } else { Origin::Dump }
}

/// A row of `COLUMNS`.
fn row_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let id: i64 = row.get(0)?;
    let kind = kind_of(row.get(1)?);
    let deleted: bool = row.get(3)?;
    let post = match (kind, deleted) {
        (Some(kind), false) => Some(Post {
            id: id as u64,
            kind,
            parent_id: row.get::<_, Option<i64>>(2)?.map(|p| p as u64),
            accepted_answer_id: row.get::<_, Option<i64>>(9)?.map(|a| a as u64),
            score: row.get(10)?,
            created: row.get(11)?,
            title: row.get(12)?,
            tags: mathrank_dump::parse_tags(&row.get::<_, String>(13)?),
            body_html: row.get(14)?,
        }),
        _ => None,
    };
    Ok(Row {
        id: id as u64,
        kind,
        deleted,
        version: row.get::<_, i64>(4)? as u64,
        seq: row.get::<_, i64>(5)? as u64,
        origin: origin_of(row.get(6)?),
        written_at: row.get(7)?,
        hash: row.get::<_, i64>(8)? as u64,
        post,
    })
}

/// The write transaction seen by [`rules::apply_one`].
struct SqliteTxn<'a, 'c>(&'a Transaction<'c>);

impl Txn for SqliteTxn<'_, '_> {
    type Error = rusqlite::Error;

    fn current(&mut self, id: i64) -> rusqlite::Result<Option<Current>> {
        self.0
            .prepare_cached(
                "SELECT kind, deleted, version, origin, written_at, hash, parent_id FROM posts WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(Current {
                    kind: kind_of(row.get(0)?),
                    deleted: row.get(1)?,
                    version: row.get::<_, i64>(2)? as u64,
                    origin: origin_of(row.get(3)?),
                    written_at: row.get(4)?,
                    hash: row.get::<_, i64>(5)? as u64,
                    parent_id: row.get(6)?,
                })
            })
            .optional()
    }

    fn write_post(&mut self, write: &Write<'_>, seq: u64, written_at: i64) -> rusqlite::Result<()> {
        let post = write.post;
        self.0.prepare_cached(
            "INSERT OR REPLACE INTO posts (id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            post.id as i64,
            kind_code(post.kind),
            post.parent_id.map(|p| p as i64),
            write.version as i64,
            seq as i64,
            origin_code(write.origin),
            written_at,
            write.hash as i64,
            post.accepted_answer_id.map(|a| a as i64),
            post.score,
            post.created,
            post.title,
            join_tags(&post.tags),
            post.body_html,
        ])?;
        Ok(())
    }

    fn write_tombstone(&mut self, tombstone: &Tombstone, seq: u64, written_at: i64) -> rusqlite::Result<()> {
        self.0.prepare_cached(
            "INSERT OR REPLACE INTO posts (id, kind, parent_id, deleted, version, seq, origin, written_at, hash, accepted_answer_id, score, created, title, tags, body) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, 0, NULL, 0, 0, '', '', '')",
        )?
        .execute(params![
            tombstone.id,
            tombstone.was.and_then(|c| c.kind).map(kind_code),
            tombstone.was.and_then(|c| c.parent_id),
            tombstone.version as i64,
            seq as i64,
            origin_code(tombstone.origin),
            written_at,
        ])?;
        Ok(())
    }

    fn set_version(&mut self, id: i64, version: u64) -> rusqlite::Result<()> {
        self.0.prepare_cached("UPDATE posts SET version = ?2 WHERE id = ?1")?.execute(params![id, version as i64])?;
        Ok(())
    }
}

impl PostStore for SqliteStore {
    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn apply(&self, ops: &[Op], written_at: i64) -> Result<Applied> {
        let mut conn = self.writer.lock().map_err(|_| Error::Closed)?;
        let error = self.error();
        // IMMEDIATE: take the write lock before reading, so that the sequence number read
        // below is still the last one when this transaction commits.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&error)?;
        let mut seq: u64 = tx
            .query_row("SELECT coalesce(max(seq), 0) FROM posts", [], |row| row.get::<_, i64>(0))
            .map_err(&error)? as u64;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(rules::apply_one(&mut SqliteTxn(&tx), op, written_at, &mut seq).map_err(&error)?);
        }
        let changed = outcomes.iter().any(Outcome::changed);
        tx.commit().map_err(&error)?;
        drop(conn);
        if changed {
            self.notify();
        }
        Ok(Applied { seq, outcomes })
    }

    fn get(&self, id: u64) -> Result<Option<Row>> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM posts WHERE id = ?1"))
                .and_then(|mut statement| statement.query_row([id], row_of).optional())
                .map_err(self.error())
        })
    }

    fn last_seq(&self) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM posts")
                .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
                .map(|seq| seq as u64)
                .map_err(self.error())
        })
    }

    fn changes(&self, after: u64, limit: usize) -> Result<Vec<Row>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM posts WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
                .and_then(|mut statement| statement.query_map(params![after, limit], row_of)?.collect())
                .map_err(self.error())
        })
    }

    fn answers_of(&self, question_id: u64) -> Result<Vec<Post>> {
        let Ok(question_id) = i64::try_from(question_id) else { return Ok(Vec::new()) };
        self.read(|conn| answers_of(conn, question_id).map_err(self.error()))
    }

    fn wait_for_change(&self, after: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let generation = *self.generation.lock().map_err(|_| Error::Closed)?;
            let last = self.last_seq()?;
            let now = Instant::now();
            if last > after || now >= deadline {
                return Ok(last);
            }
            let guard = self.generation.lock().map_err(|_| Error::Closed)?;
            let wait = (deadline - now).min(POLL);
            let _woken =
                self.changed.wait_timeout_while(guard, wait, |g| *g == generation).map_err(|_| Error::Closed)?;
        }
    }

    fn scan_joined(&self, visit: &mut dyn FnMut(&Post, Post) -> bool) -> Result<u64> {
        self.read(|conn| {
            let error = self.error();
            // One read transaction: the sequence number and every row below come from the
            // same snapshot.
            conn.execute_batch("BEGIN").map_err(&error)?;
            let outcome = scan_joined(conn, visit).map_err(&error);
            let _ = conn.execute_batch("COMMIT");
            outcome
        })
    }

    fn scan_digests(&self, visit: &mut dyn FnMut(Digest) -> bool) -> Result<()> {
        self.read(|conn| {
            let mut statement = conn
                .prepare("SELECT id, deleted, origin, written_at, hash FROM posts INDEXED BY posts_digest")
                .map_err(self.error())?;
            let mut rows = statement.query([]).map_err(self.error())?;
            while let Some(row) = rows.next().map_err(self.error())? {
                let digest = (|| {
                    Ok::<_, rusqlite::Error>(Digest {
                        id: row.get::<_, i64>(0)? as u64,
                        deleted: row.get(1)?,
                        origin: origin_of(row.get(2)?),
                        written_at: row.get(3)?,
                        hash: row.get::<_, i64>(4)? as u64,
                    })
                })()
                .map_err(self.error())?;
                if !visit(digest) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn counts(&self) -> Result<Counts> {
        self.read(|conn| {
            let error = self.error();
            let mut counts = Counts::default();
            let mut statement = conn
                .prepare("SELECT kind, deleted, count(*) FROM posts INDEXED BY posts_digest GROUP BY kind, deleted")
                .map_err(&error)?;
            let rows = statement
                .query_map([], |row| Ok((kind_of(row.get(0)?), row.get::<_, bool>(1)?, row.get::<_, i64>(2)? as u64)))
                .map_err(&error)?;
            for row in rows {
                match row.map_err(&error)? {
                    (_, true, n) => counts.tombstones += n,
                    (Some(PostKind::Question), false, n) => counts.questions += n,
                    (Some(PostKind::Answer), false, n) => counts.answers += n,
                    (None, false, _) => {}
                }
            }
            counts.last_seq = conn
                .query_row("SELECT coalesce(max(seq), 0) FROM posts", [], |row| row.get::<_, i64>(0))
                .map_err(&error)? as u64;
            Ok(counts)
        })
    }
}

fn answers_of(conn: &Connection, question_id: i64) -> rusqlite::Result<Vec<Post>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM posts WHERE parent_id = ?1 AND kind = 2 AND deleted = 0 ORDER BY id"
    ))?;
    let rows = statement.query_map([question_id], row_of)?;
    let mut answers = Vec::new();
    for row in rows {
        answers.extend(row?.post);
    }
    Ok(answers)
}

/// Answers in question order through the parent index, each question read once.
fn scan_joined(conn: &Connection, visit: &mut dyn FnMut(&Post, Post) -> bool) -> rusqlite::Result<u64> {
    let seq = conn.query_row("SELECT coalesce(max(seq), 0) FROM posts", [], |row| row.get::<_, i64>(0))? as u64;
    let mut answers = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM posts INDEXED BY posts_parent WHERE kind = 2 AND deleted = 0 ORDER BY parent_id, id"
    ))?;
    let mut question_query = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM posts WHERE id = ?1"))?;
    let mut rows = answers.query([])?;
    // The question of the answers being read: `None` inside when it is missing or deleted.
    let mut question: Option<(u64, Option<Post>)> = None;
    while let Some(row) = rows.next()? {
        let Some(answer) = row_of(row)?.post else { continue };
        let parent = answer.parent_id.unwrap_or_default();
        if question.as_ref().is_none_or(|(id, _)| *id != parent) {
            let found = question_query.query_row([parent as i64], row_of).optional()?;
            let live = found.and_then(|row| row.post).filter(|post| post.kind == PostKind::Question);
            question = Some((parent, live));
        }
        if let Some((_, Some(question))) = &question
            && !visit(question, answer)
        {
            break;
        }
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap();
        (dir, store)
    });

    #[test]
    fn reads_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap();
        let plan = |sql: &str| -> String {
            let conn = store.writer.lock().unwrap();
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let details: Vec<String> =
                statement.query_map([], |row| row.get::<_, String>(3)).unwrap().map(|r| r.unwrap()).collect();
            details.join("; ")
        };
        assert!(plan("SELECT * FROM posts WHERE seq > 5 ORDER BY seq LIMIT 10").contains("posts_seq"));
        assert!(
            plan("SELECT * FROM posts WHERE parent_id = 5 AND kind = 2 AND deleted = 0 ORDER BY id")
                .contains("posts_parent")
        );
        assert!(plan("SELECT coalesce(max(seq), 0) FROM posts").contains("posts_seq"));
    }

    #[test]
    fn a_store_reopens_with_its_id_and_rows_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let id = {
            let store = SqliteStore::open(&path).unwrap();
            let post = crate::conformance::question(7, "title");
            store.apply(&[Op::Upsert { post, version: 1 }], 10).unwrap();
            store.store_id().to_owned()
        };
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.store_id(), id);
        assert_eq!(store.last_seq().unwrap(), 1);
        assert_eq!(store.get(7).unwrap().unwrap().version, 1);
        let other = dir.path().join("not-a-store");
        std::fs::write(&other, b"hello, this is not sqlite at all, not even close to a header").unwrap();
        let err = SqliteStore::open(&other).unwrap_err();
        assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    }

    #[test]
    fn a_bulk_load_keeps_the_first_of_duplicate_ids_and_is_then_a_normal_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let mut loader = SqliteStore::bulk_load(&path).unwrap();
        let question = crate::conformance::question(1, "first");
        loader.load(&question, 5).unwrap();
        loader.load(&crate::conformance::question(1, "second"), 5).unwrap();
        loader.load(&crate::conformance::answer(2, 1, "a"), 5).unwrap();
        assert_eq!(loader.loaded(), 2);
        assert_eq!(loader.finish().unwrap(), 2);
        let store = SqliteStore::open(&path).unwrap();
        let row = store.get(1).unwrap().unwrap();
        assert_eq!(row.post.unwrap().title, "first");
        assert_eq!((row.version, row.origin, row.seq), (0, Origin::Dump, 1));
        assert_eq!(store.answers_of(1).unwrap().len(), 1);
        let mode: String = store.writer.lock().unwrap().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
