//! Storage: one diesel schema over SQLite (embedded, single node) or PostgreSQL
//! (clustered). Queries are plain functions in the module of the table they touch.

pub mod alerts;
pub mod batcher;
pub mod calendars;
pub mod checkpoint;
pub mod console;
pub mod executor_load;
pub mod executors;
pub mod fires;
pub mod group_commit;
pub mod jobs;
pub mod nodes;
pub mod retention;
pub mod schema;
pub mod settings;
pub mod statement;
pub mod tokens;
pub mod triggers;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// Most ids bound in one `IN (…)` list. SQLite refuses a statement with more than
/// 32,766 parameters and PostgreSQL more than 65,535; a backlog (a long outage, a huge
/// wave) can exceed both, so id lists are sent in chunks of this size. A power of two,
/// for [`statement::fixed_chunks`].
pub const IDS_PER_STATEMENT: usize = 1_024;

/// Runs `query` on `ids` in chunks of [`IDS_PER_STATEMENT`] and joins the rows.
pub fn in_id_chunks<I, T>(
    ids: &[I],
    mut query: impl FnMut(&[I]) -> diesel::QueryResult<Vec<T>>,
) -> diesel::QueryResult<Vec<T>> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        rows.extend(query(chunk)?);
    }
    Ok(rows)
}

/// Rows of one many-row `UPDATE … FROM (VALUES …)` at most ([`rows_per_update`]).
/// SQLite: well under its parameter limit with a dozen columns, and the fewer
/// statements the single writer runs the better.
pub const ROWS_PER_UPDATE: usize = 512;
/// PostgreSQL's cost per row grew with the chunk: `pg_stat_statements` over a
/// 10,000 fires/s run had acknowledgements at 39 µs a row in chunks of 64, 48 in
/// chunks of 128, 61 in 256 and 70 in 512 (docs/performance.md, point 31).
pub const ROWS_PER_UPDATE_POSTGRES: usize = 128;

/// Rows of one many-row update on this connection's backend (a power of two).
pub fn rows_per_update(conn: &DbConnection) -> usize {
    match conn {
        DbConnection::Sqlite(_) => ROWS_PER_UPDATE,
        DbConnection::Postgresql(_) => ROWS_PER_UPDATE_POSTGRES,
    }
}

/// One `id` column, for statements that return the ids they changed.
#[derive(diesel::QueryableByName)]
pub struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub id: String,
}

/// How long a PostgreSQL session may sit idle inside a transaction before the server
/// ends it (and releases its locks), in ms.
const PG_IDLE_IN_TRANSACTION_MS: u32 = 2_000;

/// PostgreSQL advisory lock held while migrating ("cronhook" in ASCII, as a number).
const MIGRATION_LOCK_KEY: i64 = 0x63_72_6f_6e_68_6f_6f_6b;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database_url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot open the database {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Locked(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] r2d2::PoolError),
}

/// Which database a URL names. The scheme decides; diesel's MultiConnection would
/// try each backend in turn and hide the real connection error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(DbError::BadUrl {
                url: url.into(),
                reason: "no file path given".into(),
            });
        }
        if path.contains("://") {
            return Err(DbError::BadUrl {
                url: url.into(),
                reason: "unsupported scheme (use sqlite://PATH or postgres://…)".into(),
            });
        }
        Ok(Backend::Sqlite(PathBuf::from(path)))
    }

    /// A description safe for logs: PostgreSQL passwords are masked.
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite(path) => format!("SQLite file {}", path.display()),
            Backend::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    format!("PostgreSQL {parsed}")
                }
                Err(_) => "PostgreSQL (unparsable URL)".into(),
            },
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Backend::Sqlite(_))
    }
}

/// Opens connections of the backend the URL named, with the per-connection settings each needs.
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(r2d2::Error::ConnectionError)?;
                // busy_timeout first, so even switching to WAL waits for a busy file instead of
                // failing. WAL lets readers run beside the single writer; FULL sync makes every
                // committed fire row survive a power cut, not only a process crash. The
                // `checkpoint` thread copies the WAL back most of the time; the automatic
                // checkpoint stays as the bound on the WAL's size. Temporary data (a
                // statement journal, a sort) in memory, not in temporary files.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            Backend::Postgres(url) => {
                let mut conn =
                    PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                // A node frozen (SIGSTOP, a stalled VM) inside a claim would keep its
                // triggers' row locks, and the other nodes skip locked triggers: those
                // jobs would not fire until it woke. PostgreSQL ends such a session
                // instead; cronhook's transactions never wait on the client that long.
                //
                // Hash and merge joins off: every join cronhook makes is key to key
                // over few rows, and the many-row updates (`statement::update_from_rows`)
                // join a few hundred listed rows to `fires` or `triggers`. Planned from
                // statistics that lag tables changing thousands of times a second, those
                // were hash-joined against a scan of every open fire or of all triggers
                // with their dead versions (40–90 ms a statement at 10,000 fires/s); a
                // nested loop looks each listed row up by its primary key.
                conn.batch_execute(&format!(
                    "SET idle_in_transaction_session_timeout = {PG_IDLE_IN_TRANSACTION_MS}; \
                     SET enable_hashjoin = off; SET enable_mergejoin = off"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Postgresql(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection returned mid-transaction (a panicking write) or with its
    /// transaction manager in error is discarded, not reused.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::connection::TransactionManager;
        std::thread::panicking()
            || <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type Conn = PooledConnection<Manager>;

/// The database handle the rest of the server uses.
///
/// SQLite allows one writer at a time, so writes go through a pool of exactly one
/// connection: writers queue in the pool instead of failing with SQLITE_BUSY, and
/// readers (WAL) never wait for them. On PostgreSQL both pools are the same.
#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    read: Pool,
    write: Pool,
    /// SQLite: the single writer that commits waiting writes together.
    group_commit: Option<group_commit::GroupCommit>,
    /// SQLite: copies the WAL into the database file, off the writer.
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl Db {
    pub fn open(url: &str) -> Result<Db, DbError> {
        let backend = Backend::from_url(url)?;
        let manager = Manager {
            backend: backend.clone(),
        };
        if let Backend::Sqlite(path) = &backend {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| DbError::Connect {
                    target: backend.describe(),
                    reason: format!("cannot create directory {}: {e}", dir.display()),
                })?;
            }
        }
        // One direct connection first, so a bad URL or a dead server is reported as
        // it is (host, reason) instead of after a pool time-out.
        manager.connect().map_err(|e| DbError::Connect {
            target: backend.describe(),
            reason: e.to_string(),
        })?;
        // A SQLite connection to a local file does not go stale, so checking it with a
        // query at every checkout only costs a statement per use (3 % of the writer in
        // a steady stream). PostgreSQL connections are checked: the server may restart.
        let check_on_checkout = matches!(backend, Backend::Postgres(_));
        let build = |size: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .test_on_check_out(check_on_checkout)
                .connection_timeout(Duration::from_secs(10))
                .build(manager.clone())
                .map_err(|e| DbError::Connect {
                    target: backend.describe(),
                    reason: e.to_string(),
                })
        };
        let (read, write, group_commit, checkpointer) = match &backend {
            Backend::Sqlite(path) => {
                let write = build(1)?;
                let writer = group_commit::GroupCommit::start(write.clone(), path.clone());
                let checkpointer = checkpoint::Checkpointer::start(path.clone());
                (build(8)?, write, Some(writer), Some(checkpointer))
            }
            // PostgreSQL commits writes from many connections in parallel.
            Backend::Postgres(_) => {
                let pool = build(16)?;
                (pool.clone(), pool, None, None)
            }
        };
        Ok(Db {
            backend,
            read,
            write,
            group_commit,
            _checkpointer: checkpointer,
        })
    }

    pub fn read(&self) -> Result<Conn, DbError> {
        Ok(self.read.get()?)
    }

    pub fn write(&self) -> Result<Conn, DbError> {
        Ok(self.write.get()?)
    }

    /// `(pool, max, open, idle)` of each connection pool, for metrics. On PostgreSQL
    /// the read and write pools are one pool, reported once.
    pub fn pool_states(&self) -> Vec<(&'static str, u32, u32, u32)> {
        let describe = |name: &'static str, pool: &Pool| {
            let state = pool.state();
            (
                name,
                pool.max_size(),
                state.connections,
                state.idle_connections,
            )
        };
        match self.backend {
            Backend::Sqlite(_) => {
                vec![describe("read", &self.read), describe("write", &self.write)]
            }
            Backend::Postgres(_) => vec![describe("shared", &self.write)],
        }
    }

    pub fn run_migrations(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.write()?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
            DbConnection::Postgresql(c) => {
                // Nodes of a cluster may start together: one migrates, the others wait
                // for it and then find nothing pending.
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
                let applied = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect());
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
                applied
            }
        };
        applied.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// True when every embedded migration has been applied. Waits at most `wait` for
    /// a connection, so a readiness probe answers promptly while the database is away.
    pub fn migrations_applied(&self, wait: Duration) -> Result<bool, DbError> {
        let mut conn = self.read.get_timeout(wait)?;
        let pending = match &mut *conn {
            DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
            DbConnection::Postgresql(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
        };
        pending
            .map(|p| !p)
            .map_err(|e| DbError::Migration(e.to_string()))
    }

    /// Runs blocking diesel work on the blocking pool, off the async workers.
    pub async fn run<T, E, F>(&self, on_writer: bool, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + From<tokio::task::JoinError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        if let (true, Some(writer)) = (on_writer, &self.group_commit) {
            return writer.run(f).await;
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = if on_writer { db.write()? } else { db.read()? };
            f(&mut conn)
        })
        .await?
    }

    /// A write whose caller may act on its result before it is durable: on SQLite it
    /// is answered as soon as it ran in the writer's open batch, without waiting for
    /// the batch's fsync. Only for writes where losing them in a crash changes nothing
    /// a restart would not redo anyway (the dispatch fence: a fire marked sent but not
    /// answered is sent again after a restart either way). On PostgreSQL, as `run`.
    pub async fn run_answered_before_commit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + From<tokio::task::JoinError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        match &self.group_commit {
            Some(writer) => writer.run_answered_before_commit(f).await,
            None => self.run(true, f).await,
        }
    }
}

/// How long a write recording what already happened (a target's answer) keeps trying
/// while the database is unreachable.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(120);

impl Db {
    /// Like [`Db::run`] on the writer, for writes that record what already happened
    /// outside the database (a target answered): while the database is unreachable
    /// they are retried with backoff instead of being lost.
    pub async fn run_until_recorded<T, F>(&self, f: F) -> Result<T, crate::error::AppError>
    where
        T: Send + 'static,
        F: Fn(&mut DbConnection) -> Result<T, crate::error::AppError> + Clone + Send + 'static,
    {
        let give_up = std::time::Instant::now() + RECORD_RETRY_FOR;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.run(true, f.clone()).await {
                Err(e) if e.is_database_unreachable() && std::time::Instant::now() < give_up => {
                    log::warn!(
                        "database unreachable while recording ({e}); retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

impl From<DbError> for crate::error::AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Query(q) => crate::error::AppError::Database(q),
            DbError::Pool(p) => crate::error::AppError::Pool(p),
            other => crate::error::AppError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for DbError {
    fn from(e: tokio::task::JoinError) -> Self {
        DbError::Task(e.to_string())
    }
}

/// A migrated SQLite database in `dir`, for unit tests that need real storage.
#[cfg(test)]
pub fn migrated_sqlite(dir: &tempfile::TempDir) -> Db {
    let url = format!("sqlite://{}", dir.path().join("cronhook.db").display());
    let db = Db::open(&url).expect("db opens");
    db.run_migrations().expect("migrations apply");
    db
}
