//! The scheduler loop: claim due triggers a short time ahead, hold their fires in
//! memory until their instant, dispatch them; plus the sweepers (deadlines, node
//! heartbeat, takeover of dead nodes' fires).

pub mod claim;
pub mod outcome;
pub mod sweeper;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::configuration::SchedulerSettings;
use crate::db::{self, Db};
use crate::dispatch::Dispatcher;
use crate::error::AppError;
use crate::time::{now_ms, Millis};
use claim::{claim_due_triggers, claim_pending_fires, ClaimWindow, DueFire};

/// Shared, thread-safe view of a running scheduler: wake it, ask whether it is alive.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub node_id: Arc<str>,
    wake: Arc<Notify>,
    /// Last time the claim loop completed a round against the database.
    last_round_at: Arc<AtomicI64>,
    database_ok: Arc<AtomicBool>,
    poll_interval_ms: u64,
}

impl SchedulerHandle {
    /// Asks the claim loop to look now (a job was created, a retry is due soon).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The loop ran recently and its last database round succeeded.
    pub fn is_alive(&self) -> bool {
        let stale_after = (self.poll_interval_ms as i64 * 4).max(5_000);
        self.database_ok.load(Ordering::Relaxed)
            && now_ms() - self.last_round_at.load(Ordering::Relaxed) < stale_after
    }
}

/// The running loops of one node; `shutdown` stops them in order.
pub struct Scheduler {
    handle: SchedulerHandle,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    in_flight: Arc<Semaphore>,
    concurrency: u32,
    db: Db,
    grace: Duration,
}

struct Ordered(DueFire);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.0.fire.due_at == other.0.fire.due_at && self.0.fire.id == other.0.fire.id
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.fire.due_at, &self.0.fire.id).cmp(&(other.0.fire.due_at, &other.0.fire.id))
    }
}

impl Scheduler {
    /// Registers the node and starts the loops on the current actix system
    /// (they use awc, which lives on actix's threads).
    pub fn start(
        db: Db,
        settings: SchedulerSettings,
        secret: Arc<Vec<u8>>,
        callback_base: String,
    ) -> Result<Scheduler, AppError> {
        let node_id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        sweeper::register_node(&db, &node_id)?;
        let handle = SchedulerHandle {
            node_id: node_id.clone(),
            wake: Arc::new(Notify::new()),
            last_round_at: Arc::new(AtomicI64::new(now_ms())),
            database_ok: Arc::new(AtomicBool::new(true)),
            poll_interval_ms: settings.poll_interval_ms,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let concurrency = settings.dispatch_concurrency.min(Semaphore::MAX_PERMITS) as u32;
        let in_flight = Arc::new(Semaphore::new(concurrency as usize));
        let wake_for_retry = handle.clone();
        let dispatcher = Dispatcher::new(
            db.clone(),
            secret,
            callback_base,
            Duration::from_millis(settings.dispatch_timeout_ms),
            settings.dispatch_concurrency,
            settings.executor_timeout_ms,
            Box::new(move || wake_for_retry.wake()),
        );
        let tasks = vec![
            actix_rt::spawn(claim_loop(
                db.clone(),
                settings.clone(),
                handle.clone(),
                queue_tx,
                stop_rx.clone(),
            )),
            actix_rt::spawn(timer_loop(
                db.clone(),
                node_id.clone(),
                dispatcher,
                in_flight.clone(),
                queue_rx,
                stop_rx.clone(),
            )),
            actix_rt::spawn(sweeper::sweep_loop(
                db.clone(),
                settings.clone(),
                node_id.clone(),
                handle.clone(),
                stop_rx,
            )),
        ];
        Ok(Scheduler {
            handle,
            stop: stop_tx,
            tasks,
            in_flight,
            concurrency,
            db,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    /// Stop claiming, let in-flight dispatches finish (up to the grace period), hand
    /// back what was claimed but not dispatched, and mark the node stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        match tokio::time::timeout(self.grace, self.in_flight.acquire_many(self.concurrency)).await {
            Ok(_) => log::info!("in-flight dispatches finished"),
            Err(_) => log::warn!("shutdown grace period over with dispatches still in flight; their fires will be re-dispatched"),
        }
        let node = self.handle.node_id.to_string();
        let released = self
            .db
            .run(true, move |conn| -> Result<usize, AppError> {
                let released = db::fires::release_owned(conn, &node)?;
                db::nodes::mark_stopped(conn, &node, now_ms())?;
                Ok(released)
            })
            .await;
        match released {
            Ok(n) => {
                log::info!("scheduler stopped; {n} claimed fire(s) handed back for the next start")
            }
            Err(e) => log::error!("could not hand back claimed fires: {e}"),
        }
    }
}

async fn claim_loop(
    db: Db,
    settings: SchedulerSettings,
    handle: SchedulerHandle,
    queue: mpsc::UnboundedSender<DueFire>,
    mut stop: watch::Receiver<bool>,
) {
    let node: String = handle.node_id.to_string();
    let mut backoff_ms = 100u64;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = now_ms();
        let window = ClaimWindow {
            now,
            horizon: now + settings.lookahead_ms as i64,
            batch: settings.batch_size,
            misfire_threshold_ms: settings.misfire_threshold_ms,
            catch_up_max: settings.catch_up_max,
        };
        let node_for_round = node.clone();
        let round = db
            .run(
                true,
                move |conn| -> Result<(Vec<DueFire>, bool), AppError> {
                    let (mut due, full_triggers) =
                        claim_due_triggers(conn, &node_for_round, &window)?;
                    let (pending, full_pending) =
                        claim_pending_fires(conn, &node_for_round, &window)?;
                    due.extend(pending);
                    Ok((due, full_triggers || full_pending))
                },
            )
            .await;
        let more = match round {
            Ok((due, more)) => {
                handle.database_ok.store(true, Ordering::Relaxed);
                handle.last_round_at.store(now_ms(), Ordering::Relaxed);
                backoff_ms = 100;
                for fire in due {
                    if queue.send(fire).is_err() {
                        return;
                    }
                }
                more
            }
            Err(e) => {
                handle.database_ok.store(false, Ordering::Relaxed);
                log::warn!("claim round failed, retrying in {backoff_ms} ms: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    _ = stop.changed() => {}
                }
                backoff_ms = (backoff_ms * 2).min(5_000);
                continue;
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(settings.poll_interval_ms)) => {}
            _ = handle.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Holds claimed fires until their instant, then dispatches them.
async fn timer_loop(
    db: Db,
    node: Arc<str>,
    dispatcher: Rc<Dispatcher>,
    in_flight: Arc<Semaphore>,
    mut queue: mpsc::UnboundedReceiver<DueFire>,
    mut stop: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<Ordered>> = BinaryHeap::new();
    loop {
        let wait = heap
            .peek()
            .map(|Reverse(Ordered(next))| {
                Duration::from_millis((next.fire.due_at - now_ms()).max(0) as u64)
            })
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            received = queue.recv() => match received {
                Some(fire) => heap.push(Reverse(Ordered(fire))),
                None => break,
            },
            _ = tokio::time::sleep(wait), if !heap.is_empty() => {
                let now = now_ms();
                let mut wave = Vec::new();
                while heap.peek().is_some_and(|Reverse(Ordered(f))| f.fire.due_at <= now) {
                    if let Some(Reverse(Ordered(f))) = heap.pop() {
                        wave.push(f);
                    }
                }
                dispatch_wave(&db, &node, &dispatcher, &in_flight, wave).await;
            }
            _ = stop.changed() => break,
        }
    }
    // Whatever is still in `heap` stays recorded and owned by this node; shutdown hands it back.
}

/// Dispatches a set of due fires, skipping those cancelled or dropped since they were claimed.
async fn dispatch_wave(
    db: &Db,
    node: &Arc<str>,
    dispatcher: &Rc<Dispatcher>,
    in_flight: &Arc<Semaphore>,
    wave: Vec<DueFire>,
) {
    if wave.is_empty() {
        return;
    }
    let ids: Vec<String> = wave.iter().map(|f| f.fire.id.clone()).collect();
    let node_id = node.to_string();
    let still = db
        .run(false, move |conn| {
            db::fires::still_owned_pending(conn, &node_id, &ids).map_err(AppError::from)
        })
        .await;
    let still: std::collections::HashSet<String> = match still {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            // Without the check the fires are still recorded; dispatching them is safe
            // because targets de-duplicate by fire id.
            log::warn!("pre-dispatch check failed ({e}); dispatching anyway");
            wave.iter().map(|f| f.fire.id.clone()).collect()
        }
    };
    for due in wave {
        if !still.contains(&due.fire.id) {
            log::debug!(
                "fire {} job {}: no longer pending, not dispatched",
                due.fire.id,
                due.job.key
            );
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let dispatcher = dispatcher.clone();
        actix_rt::spawn(async move {
            dispatcher.dispatch(due).await;
            drop(permit);
        });
    }
}

/// Earliest instant a paused-then-resumed or new trigger needs, for callers that want to wake the loop.
pub fn due_within_lookahead(next_fire_at: Option<Millis>, settings: &SchedulerSettings) -> bool {
    next_fire_at.is_some_and(|at| at <= now_ms() + settings.lookahead_ms as i64)
}
