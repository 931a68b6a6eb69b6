//! Group commit for SQLite: every write of the node goes through one writer thread,
//! which runs whatever writes are waiting inside a single transaction (each in its own
//! savepoint) and commits once. SQLite allows one writer anyway, and with
//! `synchronous = FULL` each commit is an fsync; sharing it between many small writes
//! (a fire acknowledged, a result recorded, …) is what lets one node sustain thousands
//! of fires per second. Writes run one after another on the one connection, exactly as
//! they would alone; only the commit is shared. A write's result is handed back only after its batch is
//! committed, so "recorded" still means durable.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use diesel::connection::TransactionManager;
use diesel::Connection;

type Transactions = <DbConnection as Connection>::TransactionManager;

use super::{DbConnection, DbError, Pool};

/// Writes committed together at most.
const MAX_BATCH: usize = 256;

/// Runs one write inside the batch's transaction and returns how to report its result
/// once the batch's fate is known (`None` = committed, `Some(e)` = the commit failed).
type Job = Box<dyn FnOnce(&mut DbConnection) -> Box<dyn FnOnce(Option<String>) + Send> + Send>;

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer thread; it takes a connection from `pool` for each batch, so
    /// code holding the write connection directly (migrations, start-up) still works.
    pub fn start(pool: Pool) -> GroupCommit {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(pool, queue))
            .expect("the writer thread starts");
        GroupCommit { jobs }
    }

    /// Runs `f` in the next batch; resolves after the batch is committed.
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
            Box::new(move |commit_error: Option<String>| {
                let result = match commit_error {
                    None => result,
                    Some(e) => Err(E::from(DbError::Task(format!("commit failed: {e}")))),
                };
                let _ = tx.send(result);
            })
        });
        self.submit(job, rx).await
    }

    /// Runs `f` in the next batch and answers as soon as it ran, before the batch is
    /// committed (see `Db::run_answered_before_commit`).
    pub async fn run_answered_before_commit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &mut DbConnection| {
            let _ = tx.send(f(conn));
            Box::new(|_commit_error: Option<String>| {})
        });
        self.submit(job, rx).await
    }

    /// Queues `job` for the writer and waits for the answer it sends on `answer`.
    async fn submit<T, E: From<DbError>>(
        &self,
        job: Job,
        answer: tokio::sync::oneshot::Receiver<Result<T, E>>,
    ) -> Result<T, E> {
        self.jobs
            .send(job)
            .map_err(|_| E::from(DbError::Task("the database writer has stopped".into())))?;
        answer
            .await
            .map_err(|_| E::from(DbError::Task("the database writer dropped a write".into())))?
    }
}

fn writer(pool: Pool, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A panicking write (a bug) must not take the writer down: its batch is lost
        // — its callers get an error, nothing of it is committed — and the connection,
        // left inside a transaction, is discarded by the pool (`Manager::has_broken`).
        let count = batch.len();
        if std::panic::catch_unwind(AssertUnwindSafe(|| commit_batch(&pool, batch))).is_err() {
            log::error!("database writer: a write panicked; {count} write(s) of its batch were not recorded");
        }
    }
}

fn commit_batch(pool: &Pool, batch: Vec<Job>) {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            // Dropping the jobs tells their callers the writes were not done.
            log::error!(
                "database writer: no connection for {} write(s): {e}",
                batch.len()
            );
            return;
        }
    };
    let conn: &mut DbConnection = &mut conn;
    if let Err(e) = Transactions::begin_transaction(conn) {
        log::error!("database writer: cannot begin a transaction: {e}");
        return;
    }
    let reports: Vec<_> = batch.into_iter().map(|job| job(conn)).collect();
    let commit_error = Transactions::commit_transaction(conn)
        .err()
        .map(|e| e.to_string());
    if let Some(e) = &commit_error {
        log::error!(
            "database writer: commit of {} write(s) failed: {e}",
            reports.len()
        );
        let _ = Transactions::rollback_transaction(conn);
    }
    for report in reports {
        report(commit_error.clone());
    }
}
