//! Batches like writes made on one (actix) thread. Under load hundreds of answers and
//! results arrive within milliseconds of each other; recording each with its own
//! statements — and on PostgreSQL its own transaction — was most of the database work
//! per fire. Items queue here and one flush at a time records all that are queued with
//! one call of the batch's write function (which turns them into a few many-row
//! statements). Nothing waits for a batch to fill: under light load a flush holds the
//! one item that woke it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use diesel::Connection;
use tokio::sync::{oneshot, Notify};

use super::{Db, DbConnection};
use crate::error::AppError;

/// Items recorded in one flush at most (one transaction on PostgreSQL).
const MAX_FLUSH: usize = 1_000;

/// Records a batch: one result per item, in the order given. An `Err` of the whole
/// call makes each item be tried alone.
pub type WriteMany<I, O> =
    fn(&mut DbConnection, &[I]) -> Result<Vec<Result<O, AppError>>, AppError>;

type Reply<O> = oneshot::Sender<Result<O, AppError>>;

pub struct Batcher<I, O> {
    db: Db,
    write: WriteMany<I, O>,
    /// Keep trying while the database is unreachable (for what already happened
    /// elsewhere and must not be lost), or answer the error at once.
    until_recorded: bool,
    queue: RefCell<Vec<(I, Reply<O>)>>,
    queued: Rc<Notify>,
    started: Cell<bool>,
}

impl<I, O> Batcher<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    pub fn new(db: Db, write: WriteMany<I, O>, until_recorded: bool) -> Rc<Batcher<I, O>> {
        Rc::new(Batcher {
            db,
            write,
            until_recorded,
            queue: RefCell::new(Vec::new()),
            queued: Rc::new(Notify::new()),
            started: Cell::new(false),
        })
    }

    /// Records `item` with whatever else is queued; resolves once its batch is recorded
    /// (durably: committed).
    pub async fn submit(self: &Rc<Self>, item: I) -> Result<O, AppError> {
        if !self.started.replace(true) {
            self.start_flushing();
        }
        let (reply, recorded) = oneshot::channel();
        self.queue.borrow_mut().push((item, reply));
        self.queued.notify_one();
        recorded
            .await
            .map_err(|_| AppError::Internal("the write batcher stopped".into()))?
    }

    /// The flush loop, on the current thread; it ends when the batcher is dropped.
    fn start_flushing(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let queued = self.queued.clone();
        actix_rt::spawn(async move {
            loop {
                let Some(batcher) = weak.upgrade() else {
                    return;
                };
                let batch: Vec<(I, Reply<O>)> = {
                    let mut queue = batcher.queue.borrow_mut();
                    let take = queue.len().min(MAX_FLUSH);
                    queue.drain(..take).collect()
                };
                if batch.is_empty() {
                    // Not holding the batcher while idle, so dropping it ends the loop
                    // (its `Drop` wakes this wait).
                    drop(batcher);
                    queued.notified().await;
                    continue;
                }
                batcher.flush(batch).await;
            }
        });
    }

    async fn flush(&self, batch: Vec<(I, Reply<O>)>) {
        let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
        let items = Arc::new(items);
        match self.write_together(items.clone()).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // The batch as a whole failed: each item alone, so one that cannot be
                // recorded does not keep the others from it.
                if items.len() > 1 {
                    log::warn!(
                        "recording {} writes together failed ({e}); recording them one by one",
                        items.len()
                    );
                }
                for (reply, item) in replies.into_iter().zip(items.iter().cloned()) {
                    let result =
                        self.write_together(Arc::new(vec![item]))
                            .await
                            .and_then(|mut results| {
                                results.pop().unwrap_or_else(|| {
                                    Err(AppError::Internal("a write was not recorded".into()))
                                })
                            });
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// One transaction (one commit on PostgreSQL; a savepoint of the writer's batch on SQLite).
    async fn write_together(
        &self,
        items: Arc<Vec<I>>,
    ) -> Result<Vec<Result<O, AppError>>, AppError> {
        let write = self.write;
        let run = move |conn: &mut DbConnection| {
            conn.transaction(|conn| {
                let results = write(conn, &items)?;
                if results.len() != items.len() {
                    return Err(AppError::Internal(format!(
                        "a batch of {} writes gave {} results",
                        items.len(),
                        results.len()
                    )));
                }
                Ok(results)
            })
        };
        if self.until_recorded {
            self.db.run_until_recorded(run).await
        } else {
            self.db.run(true, run).await
        }
    }
}

impl<I, O> Drop for Batcher<I, O> {
    fn drop(&mut self) {
        // Wakes the flush loop so it sees the batcher gone and ends.
        self.queued.notify_one();
    }
}
