//! Group commit for SQLite: every write of the node goes through one writer thread,
//! which runs whatever writes are waiting inside a single transaction (each in its own
//! savepoint) and commits once. SQLite allows one writer anyway; sharing a commit
//! between many small writes (a fire acknowledged, a result recorded, …) is what lets
//! one node sustain thousands of fires per second. Writes run one after another on the
//! one connection, exactly as they would alone; only the commit is shared.
//!
//! The fsync is not on the writer: it commits with `synchronous = NORMAL` (the WAL is
//! written, not synced) and goes on with the next batch, while a second thread syncs
//! the WAL file and only then answers the batch's writes. One fsync covers every batch
//! committed before it, so "recorded" still means durable, as with `synchronous =
//! FULL`, but a slow fsync (tens of ms on a busy disk) no longer stops the writer —
//! and with it the dispatch fence.
//!
//! A batch stays open up to [`COMMIT_WINDOW`] (0.5 ms) after it began for writes that
//! arrive just after the queue ran dry: in a steady stream of fires that shares a
//! commit between more writes (each commit rewrites the index pages it touched into
//! the WAL).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;

use diesel::connection::SimpleConnection;

use diesel::connection::TransactionManager;
use diesel::Connection;

type Transactions = <DbConnection as Connection>::TransactionManager;

use super::{DbConnection, DbError, Pool};

/// Writes committed together at most.
const MAX_BATCH: usize = 256;
/// How long a batch stays open for more writes after it began, when none is waiting.
const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_micros(500);

/// Runs one write inside the batch's transaction and returns how to report its result
/// once the batch's fate is known (`None` = committed, `Some(e)` = the commit failed).
type Job = Box<dyn FnOnce(&mut DbConnection) -> Ran + Send>;

/// What running a write left: how to report it, and whether it failed (then the writer
/// checks that SQLite has not rolled the batch back under it).
struct Ran {
    report: Report,
    failed: bool,
}

/// A queued write and whether it jumps the queue.
struct Queued {
    job: Job,
    /// The dispatch fence: fires wait on it at their instant, so it runs before any
    /// write queued beside it (a claim round of hundreds of triggers, a batch of
    /// results) instead of after.
    urgent: bool,
}

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Queued>,
}

impl GroupCommit {
    /// Starts the writer thread and its syncer; the writer takes a connection from
    /// `pool` for each batch, so code holding the write connection directly
    /// (migrations, start-up) still works (with `synchronous = FULL`, the pool's setting).
    pub fn start(pool: Pool, database: PathBuf) -> GroupCommit {
        let (jobs, queue) = mpsc::channel::<Queued>();
        let (committed, to_sync) = mpsc::channel::<Committed>();
        let mut wal = database.into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || syncer(wal, to_sync))
            .expect("the sync thread starts");
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(pool, queue, committed))
            .expect("the writer thread starts");
        GroupCommit { jobs }
    }

    /// Runs `f` in the next batch; resolves after the batch is committed and synced.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &mut DbConnection| {
            // Run as if alone: statements a write makes before returning an error stay
            // (as in autocommit; e.g. a late result kept before answering 409); a write
            // that needs all-or-nothing opens its own transaction, a savepoint here.
            let result = f(conn);
            let failed = result.is_err();
            let report: Report = Box::new(move |commit_error: Option<String>| {
                let result = match commit_error {
                    None => result,
                    Some(e) => Err(E::from(DbError::Task(format!("commit failed: {e}")))),
                };
                let _ = tx.send(result);
            });
            Ran { report, failed }
        });
        self.submit(job, false, rx).await
    }

    /// Runs `f` in the next batch, ahead of the writes queued beside it, and answers as
    /// soon as it ran, before the batch is committed (see `Db::run_answered_before_commit`).
    pub async fn run_answered_before_commit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &mut DbConnection| {
            let result = f(conn);
            let failed = result.is_err();
            let _ = tx.send(result);
            Ran {
                report: Box::new(|_commit_error: Option<String>| {}),
                failed,
            }
        });
        self.submit(job, true, rx).await
    }

    /// Queues `job` for the writer and waits for the answer it sends on `answer`.
    async fn submit<T, E: From<DbError>>(
        &self,
        job: Job,
        urgent: bool,
        answer: tokio::sync::oneshot::Receiver<Result<T, E>>,
    ) -> Result<T, E> {
        self.jobs
            .send(Queued { job, urgent })
            .map_err(|_| E::from(DbError::Task("the database writer has stopped".into())))?;
        answer
            .await
            .map_err(|_| E::from(DbError::Task("the database writer dropped a write".into())))?
    }
}

/// Writes taken from the channel and not yet run, urgent ones first.
#[derive(Default)]
struct Waiting {
    urgent: VecDeque<Job>,
    normal: VecDeque<Job>,
}

impl Waiting {
    fn push(&mut self, queued: Queued) {
        match queued.urgent {
            true => self.urgent.push_back(queued.job),
            false => self.normal.push_back(queued.job),
        }
    }

    /// Moves whatever was sent meanwhile out of the channel, without waiting.
    fn take_sent(&mut self, queue: &mpsc::Receiver<Queued>) {
        while let Ok(queued) = queue.try_recv() {
            self.push(queued);
        }
    }

    fn next(&mut self) -> Option<Job> {
        self.urgent.pop_front().or_else(|| self.normal.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.normal.is_empty()
    }

    fn len(&self) -> usize {
        self.urgent.len() + self.normal.len()
    }
}

/// A committed batch's answers, waiting for the WAL to be synced (`None` = committed,
/// `Some(e)` = the commit failed, answered at once).
type Committed = (Vec<Report>, Option<String>);
type Report = Box<dyn FnOnce(Option<String>) + Send>;

fn writer(pool: Pool, queue: mpsc::Receiver<Queued>, committed: mpsc::Sender<Committed>) {
    let mut waiting = Waiting::default();
    loop {
        if waiting.is_empty() {
            match queue.recv() {
                Ok(queued) => waiting.push(queued),
                Err(_) => return,
            }
        }
        // A panicking write (a bug) must not take the writer down: its batch is lost
        // — its callers get an error, nothing of it is committed — and the connection,
        // left inside a transaction, is discarded by the pool (`Manager::has_broken`).
        // Writes still waiting go into the next batch.
        let batch = std::panic::catch_unwind(AssertUnwindSafe(|| {
            commit_batch(&pool, &queue, &mut waiting, COMMIT_WINDOW)
        }));
        match batch {
            Ok(Some(batch)) => {
                if committed.send(batch).is_err() {
                    log::error!("database writer: the sync thread has stopped");
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => log::error!(
                "database writer: a write panicked; the writes of its batch were not recorded"
            ),
        }
    }
}

/// Runs up to [`MAX_BATCH`] waiting writes in one transaction and commits it (not
/// synced). Writes sent while the batch runs, or until `window` after it began, join
/// it; an urgent one runs next, before older normal ones. Returns the batch's answers,
/// or `None` when nothing ran.
fn commit_batch(
    pool: &Pool,
    queue: &mpsc::Receiver<Queued>,
    waiting: &mut Waiting,
    window: std::time::Duration,
) -> Option<Committed> {
    waiting.take_sent(queue);
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            // Dropping the jobs tells their callers the writes were not done.
            log::error!(
                "database writer: no connection for {} write(s): {e}",
                waiting.len()
            );
            *waiting = Waiting::default();
            return None;
        }
    };
    let conn: &mut DbConnection = &mut conn;
    // The syncer makes the commit durable; FULL again afterwards for anyone else
    // using the write connection directly.
    if let Err(e) = conn.batch_execute("PRAGMA synchronous = NORMAL") {
        log::error!("database writer: cannot defer the sync: {e}");
        *waiting = Waiting::default();
        return None;
    }
    if let Err(e) = Transactions::begin_transaction(conn) {
        log::error!("database writer: cannot begin a transaction: {e}");
        *waiting = Waiting::default();
        return None;
    }
    let mut reports = Vec::new();
    let mut rolled_back = false;
    let started = std::time::Instant::now();
    while reports.len() < MAX_BATCH {
        waiting.take_sent(queue);
        if waiting.is_empty() {
            // In a steady stream the next write is usually a fraction of a millisecond
            // away: waiting that long for it shares the commit (each commit rewrites
            // the index pages it touched into the WAL).
            let left = window.saturating_sub(started.elapsed());
            match queue.recv_timeout(left) {
                Ok(queued) => waiting.push(queued),
                Err(_) => break,
            }
        }
        let Some(job) = waiting.next() else { break };
        let ran = job(conn);
        reports.push(ran.report);
        if ran.failed && batch_was_rolled_back(conn) {
            // The writes still waiting go into the next batch.
            rolled_back = true;
            break;
        }
    }
    let commit_error = if rolled_back {
        Some("SQLite rolled the batch back (an I/O error or a full disk)".to_string())
    } else {
        Transactions::commit_transaction(conn)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(e) = &commit_error {
        log::error!(
            "database writer: commit of {} write(s) failed: {e}",
            reports.len()
        );
        let _ = Transactions::rollback_transaction(conn);
    }
    if let Err(e) = conn.batch_execute("PRAGMA synchronous = FULL") {
        log::error!("database writer: cannot restore synchronous = FULL: {e}");
    }
    Some((reports, commit_error))
}

/// After a failed write: whether SQLite rolled the whole transaction back. It does on
/// an I/O error, and on a full disk or out of memory when the statement kept no
/// statement journal (the `OR FAIL` many-row writes keep none). Writes run after that
/// would each commit on their own, outside the batch, and then be answered "not
/// recorded" when the batch's COMMIT fails — so the batch ends there. `BEGIN` succeeds
/// only outside a transaction; the one it opens is rolled back with the batch.
fn batch_was_rolled_back(conn: &mut DbConnection) -> bool {
    conn.batch_execute("BEGIN").is_ok()
}

/// Syncs the WAL for every batch committed so far, then answers their writes. A
/// commit that failed is answered at once.
fn syncer(wal: PathBuf, committed: mpsc::Receiver<Committed>) {
    while let Ok(first) = committed.recv() {
        let mut batches = vec![first];
        while let Ok(more) = committed.try_recv() {
            batches.push(more);
        }
        let sync_error = sync_file(&wal).err().map(|e| {
            log::error!("database writer: cannot sync {}: {e}", wal.display());
            format!("sync of {} failed: {e}", wal.display())
        });
        for (reports, commit_error) in batches {
            let outcome = commit_error.or_else(|| sync_error.clone());
            for report in reports {
                report(outcome.clone());
            }
        }
    }
}

/// fsync of the WAL file as it is now (opened each time: SQLite may delete and
/// re-create it). A WAL that is gone was checkpointed into the database file, which
/// SQLite synced before deleting it.
fn sync_file(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sqlite::SqliteConnection;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn labelled(label: &'static str, ran: &Arc<Mutex<Vec<&'static str>>>, urgent: bool) -> Queued {
        let ran = ran.clone();
        Queued {
            job: Box::new(move |_conn: &mut DbConnection| {
                ran.lock().expect("not poisoned").push(label);
                Ran {
                    report: Box::new(|_: Option<String>| {}),
                    failed: false,
                }
            }),
            urgent,
        }
    }

    #[test]
    fn urgent_writes_run_before_older_normal_ones_and_each_lane_keeps_its_order() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (send, queue) = mpsc::channel();
        let mut waiting = Waiting::default();
        waiting.push(labelled("claim-1", &ran, false));
        for (label, urgent) in [
            ("claim-2", false),
            ("fence-1", true),
            ("result", false),
            ("fence-2", true),
        ] {
            send.send(labelled(label, &ran, urgent))
                .expect("queue open");
        }
        waiting.take_sent(&queue);
        assert_eq!(waiting.len(), 5);
        let mut conn = DbConnection::Sqlite(
            SqliteConnection::establish(":memory:").expect("in-memory SQLite opens"),
        );
        while let Some(job) = waiting.next() {
            (job(&mut conn).report)(None);
        }
        assert!(waiting.is_empty());
        assert_eq!(
            *ran.lock().expect("not poisoned"),
            vec!["fence-1", "fence-2", "claim-1", "claim-2", "result"]
        );
    }

    /// Each write's SQL and the commit error it was answered with.
    type Answers = Arc<Mutex<Vec<(&'static str, Option<String>)>>>;

    /// A write whose statement made SQLite roll the whole transaction back (simulated
    /// with a ROLLBACK: a full disk does that to an `OR FAIL` statement).
    fn write(sql: &'static str, fails: bool, answers: &Answers) -> Queued {
        let answers = answers.clone();
        Queued {
            job: Box::new(move |conn: &mut DbConnection| {
                conn.batch_execute(sql).expect("the statement runs");
                Ran {
                    report: Box::new(move |commit_error: Option<String>| {
                        answers
                            .lock()
                            .expect("not poisoned")
                            .push((sql, commit_error))
                    }),
                    failed: fails,
                }
            }),
            urgent: false,
        }
    }

    /// A one-connection pool on a new SQLite file holding `CREATE TABLE t (x)`, and the
    /// directory to remove afterwards.
    fn pool_with_table(name: &str) -> (PathBuf, Pool) {
        let dir = std::env::temp_dir().join(format!("cronhook-{name}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pool = diesel::r2d2::Pool::builder()
            .max_size(1)
            .build(super::super::Manager {
                backend: super::super::Backend::Sqlite(dir.join("db.sqlite")),
            })
            .expect("pool");
        pool.get()
            .expect("connection")
            .batch_execute("CREATE TABLE t (x INTEGER NOT NULL)")
            .expect("table");
        (dir, pool)
    }

    #[test]
    fn writes_after_sqlite_rolled_the_batch_back_go_into_the_next_batch() {
        let (dir, pool) = pool_with_table("rollback");
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (_send, queue) = mpsc::channel();
        let mut waiting = Waiting::default();
        waiting.push(write("INSERT INTO t VALUES (1); ROLLBACK;", true, &answers));
        waiting.push(write("INSERT INTO t VALUES (2);", false, &answers));

        let (reports, commit_error) =
            commit_batch(&pool, &queue, &mut waiting, Duration::ZERO).expect("a batch ran");
        assert!(
            commit_error.is_some(),
            "the rolled-back batch is not reported as committed"
        );
        assert_eq!(reports.len(), 1, "the batch ends at the write that lost it");
        assert_eq!(waiting.len(), 1, "the next write waits for the next batch");
        for report in reports {
            report(commit_error.clone());
        }
        let (reports, commit_error) =
            commit_batch(&pool, &queue, &mut waiting, Duration::ZERO).expect("a batch ran");
        assert_eq!(commit_error, None);
        for report in reports {
            report(commit_error.clone());
        }

        let answers = answers.lock().expect("not poisoned").clone();
        assert!(
            answers[0].1.is_some(),
            "the first write is answered not recorded"
        );
        assert_eq!(answers[1], ("INSERT INTO t VALUES (2);", None));
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            x: i64,
        }
        let mut conn = pool.get().expect("connection");
        let rows: Vec<Row> =
            diesel::RunQueryDsl::load(diesel::sql_query("SELECT x FROM t ORDER BY x"), &mut *conn)
                .expect("rows");
        assert_eq!(rows.iter().map(|r| r.x).collect::<Vec<_>>(), vec![2]);
        drop(conn);
        drop(pool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_sent_within_the_commit_window_shares_the_commit() {
        let (dir, pool) = pool_with_table("window");
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (send, queue) = mpsc::channel();
        let mut waiting = Waiting::default();
        waiting.push(write("INSERT INTO t VALUES (1);", false, &answers));
        // Sent after the batch found the queue empty, inside its window; the sender
        // then goes away, which ends the wait without using the whole window.
        let later = write("INSERT INTO t VALUES (2);", false, &answers);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            send.send(later).expect("queue open");
        });
        let (reports, commit_error) =
            commit_batch(&pool, &queue, &mut waiting, Duration::from_secs(30))
                .expect("a batch ran");
        sender.join().expect("sender ends");
        assert_eq!(commit_error, None);
        assert_eq!(reports.len(), 2, "both writes share one commit");

        // Without a window the batch commits as soon as nothing is waiting.
        waiting.push(write("INSERT INTO t VALUES (3);", false, &answers));
        let (send, queue) = mpsc::channel();
        let (reports, _) =
            commit_batch(&pool, &queue, &mut waiting, Duration::ZERO).expect("a batch ran");
        assert_eq!(reports.len(), 1);
        drop(send);
        drop(pool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syncing_a_missing_wal_is_not_an_error_but_an_unreadable_path_is() {
        let dir = std::env::temp_dir().join(format!("cronhook-sync-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let wal = dir.join("db-wal");
        assert!(
            sync_file(&wal).is_ok(),
            "a WAL that is gone was checkpointed"
        );
        std::fs::write(&wal, b"frames").expect("write");
        assert!(sync_file(&wal).is_ok());
        assert!(sync_file(&dir.join("db-wal").join("not-a-dir")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
