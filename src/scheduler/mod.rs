//! The scheduler loop: claim due triggers a short time ahead, hold their fires in
//! memory until their instant, dispatch them; plus the sweepers (deadlines, node
//! heartbeat, takeover of dead nodes' fires).

pub mod claim;
pub mod current_jobs;
pub mod outcome;
pub mod sweeper;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::configuration::SchedulerSettings;
use crate::db::{self, Db};
use crate::dispatch::pools::RegistryVersion;
use crate::dispatch::Dispatcher;
use crate::error::AppError;
use crate::time::{now_ms, Millis};
use claim::{claim_due_triggers, claim_pending_fires, take_due_for_dispatch, ClaimWindow, DueFire};

/// Fires sent out in one dispatch wave at most: the fence is one transaction per
/// wave, and a bounded wave lets sending start while later fires are still fenced.
const MAX_WAVE: usize = 2_000;
/// Waves fenced or being sent at once.
const MAX_WAVES_IN_FLIGHT: usize = 2;
/// How a wave task ended: its fires sent (how many), or not asked for (the fence
/// failed) and handed back to the timer loop.
enum WaveDone {
    Sent(usize),
    NotSent(Vec<DueFire>),
}
/// How long before its instant a held fire passes the dispatch fence; the send itself
/// waits for the instant. The fence is a write, and on SQLite it queues behind the
/// writer's current batch and its fsync (several ms): fencing a little ahead keeps that
/// wait out of the firing lag.
const FENCE_LEAD_MS: i64 = 20;
/// Claim writes sent at once after a round that found more due than one write takes
/// (`scheduler.batch_size` each).
const CLAIM_WRITES_WHEN_BUSY: usize = 4;
/// Claimed fires held in memory at most. Beyond it the claim loop waits: under
/// overload the backlog stays in the database (where the misfire policy decides)
/// instead of growing in memory.
const MAX_HELD: usize = 30_000;
/// Answers being recorded at once, per send slot (`dispatch_concurrency`): a fire
/// gives its send slot back when its target answered, if one of these is free.
const RECORDING_PER_SEND_SLOT: usize = 4;

/// Shared, thread-safe view of a running scheduler: wake it, ask whether it is alive.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub node_id: Arc<str>,
    wake: Arc<Notify>,
    /// Last time the claim loop completed a round against the database.
    last_round_at: Arc<AtomicI64>,
    database_ok: Arc<AtomicBool>,
    poll_interval_ms: u64,
    /// Tells dispatch to reload its view of the executors.
    executors: RegistryVersion,
}

impl SchedulerHandle {
    /// An executor registered, came back or changed what it takes: dispatch sees the
    /// registry as it is now.
    pub fn executors_changed(&self) {
        self.executors.changed();
    }

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
    /// Answers being recorded after their send slot was given back.
    recording: Arc<Semaphore>,
    recording_slots: u32,
    db: Db,
    grace: Duration,
}

/// A held fire and the instant it is next looked at (its due instant, or a retry
/// of the dispatch fence after a database error). `seq` orders fires of the same
/// instant by arrival: every fire of a burst shares its instant, and comparing their
/// ids (UUIDs with a long common prefix) was 4.6 % of the dispatch thread.
struct Held {
    at: Millis,
    seq: u64,
    due: DueFire,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
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
            executors: RegistryVersion::default(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        let concurrency = settings.dispatch_concurrency.min(Semaphore::MAX_PERMITS) as u32;
        let in_flight = Arc::new(Semaphore::new(concurrency as usize));
        let recording_slots = (concurrency as usize)
            .saturating_mul(RECORDING_PER_SEND_SLOT)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize) as u32;
        let recording = Arc::new(Semaphore::new(recording_slots as usize));
        let wake_for_retry = handle.clone();
        let alert_secret = secret.clone();
        let dispatcher = Dispatcher::new(
            db.clone(),
            secret,
            callback_base,
            &settings,
            recording.clone(),
            handle.executors.clone(),
            Box::new(move || wake_for_retry.wake()),
        );
        let tasks = vec![
            actix_rt::spawn(claim_loop(
                db.clone(),
                settings.clone(),
                handle.clone(),
                queue_tx,
                held.clone(),
                stop_rx.clone(),
            )),
            actix_rt::spawn(timer_loop(
                db.clone(),
                node_id.clone(),
                settings.clone(),
                dispatcher,
                in_flight.clone(),
                queue_rx,
                held,
                stop_rx.clone(),
            )),
            actix_rt::spawn(sweeper::membership_loop(
                db.clone(),
                settings.clone(),
                node_id.clone(),
                handle.clone(),
                stop_rx.clone(),
            )),
            actix_rt::spawn(sweeper::sweep_loop(
                db.clone(),
                settings.clone(),
                handle.clone(),
                alert_secret,
                stop_rx,
            )),
        ];
        Ok(Scheduler {
            handle,
            stop: stop_tx,
            tasks,
            in_flight,
            concurrency,
            recording,
            recording_slots,
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
        // Sends first, then the answers still being recorded (a send that finishes
        // takes a recording slot), all within the grace period.
        let finished = async {
            let sends = self.in_flight.acquire_many(self.concurrency).await;
            let recordings = self.recording.acquire_many(self.recording_slots).await;
            (sends, recordings)
        };
        match tokio::time::timeout(self.grace, finished).await {
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
    held: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let node: String = handle.node_id.to_string();
    let mut backoff_ms = 100u64;
    // The last round found more due than one claim write takes.
    let mut busy = false;
    loop {
        if *stop.borrow() {
            break;
        }
        if held.load(Ordering::Relaxed) >= MAX_HELD {
            // Dispatching is behind; claim again once it has caught up a little.
            handle.last_round_at.store(now_ms(), Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(settings.poll_interval_ms.min(100))) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let now = now_ms();
        let window = ClaimWindow {
            now,
            horizon: now + settings.lookahead_ms as i64,
            batch: settings.batch_size,
            misfire_threshold_ms: settings.misfire_threshold_ms,
            catch_up_max: settings.catch_up_max,
        };
        let round_started = std::time::Instant::now();
        // After a full round, several claim writes at once: each is one short write
        // (on SQLite the dispatch fence runs between them, not behind one long claim),
        // and together they share a commit (SQLite) or run in parallel (PostgreSQL).
        let writes = if busy { CLAIM_WRITES_WHEN_BUSY } else { 1 };
        let rounds = (0..writes).map(|_| {
            let node_for_round = node.clone();
            db.run(
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
        });
        let mut more = false;
        let mut failure = None;
        for round in futures_util::future::join_all(rounds).await {
            match round {
                Ok((due, full)) => {
                    more |= full;
                    crate::metrics::claim_round(round_started, due.len());
                    held.fetch_add(due.len(), Ordering::Relaxed);
                    for fire in due {
                        if queue.send(fire).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        busy = more;
        if let Some(e) = failure {
            handle.database_ok.store(false, Ordering::Relaxed);
            log::warn!("claim round failed, retrying in {backoff_ms} ms: {e}");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                _ = stop.changed() => {}
            }
            backoff_ms = (backoff_ms * 2).min(5_000);
            continue;
        }
        handle.database_ok.store(true, Ordering::Relaxed);
        handle.last_round_at.store(now_ms(), Ordering::Relaxed);
        backoff_ms = 100;
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
    settings: SchedulerSettings,
    dispatcher: Rc<Dispatcher>,
    in_flight: Arc<Semaphore>,
    mut queue: mpsc::UnboundedReceiver<DueFire>,
    held: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut next_seq = 0u64;
    let mut held_at = |at: Millis, due: DueFire| {
        next_seq += 1;
        Reverse(Held {
            at,
            seq: next_seq,
            due,
        })
    };
    let mut fence_backoff_ms = 100i64;
    // Waves run as their own tasks, so one wave's fence and sends overlap the next
    // wave's fence (on PostgreSQL a fence of 2,000 fires took 80–500 ms, and the loop
    // waited for it and for the sends before looking at the next instant).
    let waves = Arc::new(Semaphore::new(MAX_WAVES_IN_FLIGHT));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WaveDone>();
    loop {
        let wait = heap
            .peek()
            .map(|Reverse(next)| {
                Duration::from_millis((next.at - FENCE_LEAD_MS - now_ms()).max(0) as u64)
            })
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            received = queue.recv() => match received {
                Some(due) => heap.push(held_at(due.fire.due_at, due)),
                None => break,
            },
            Some(done) = done_rx.recv() => match done {
                WaveDone::Sent(count) => {
                    fence_backoff_ms = 100;
                    held.fetch_sub(count, Ordering::Relaxed);
                }
                WaveDone::NotSent(wave) => {
                    // Not sent and still ours in the database: look again shortly.
                    let at = now_ms() + fence_backoff_ms;
                    heap.extend(wave.into_iter().map(|due| held_at(at, due)));
                    fence_backoff_ms = (fence_backoff_ms * 2).min(5_000);
                }
            },
            _ = tokio::time::sleep(wait), if !heap.is_empty() => {
                let Ok(slot) = waves.clone().acquire_owned().await else { break };
                let now = now_ms();
                let mut wave = Vec::new();
                while wave.len() < MAX_WAVE
                    && heap.peek().is_some_and(|Reverse(next)| next.at <= now + FENCE_LEAD_MS)
                {
                    if let Some(Reverse(next)) = heap.pop() {
                        wave.push(next.due);
                    }
                }
                let (db, node, settings) = (db.clone(), node.clone(), settings.clone());
                let (dispatcher, in_flight, done) = (dispatcher.clone(), in_flight.clone(), done_tx.clone());
                actix_rt::spawn(async move {
                    let count = wave.len();
                    let outcome = match dispatch_wave(&db, &node, &settings, &dispatcher, &in_flight, wave).await {
                        Ok(()) => WaveDone::Sent(count),
                        Err(wave) => WaveDone::NotSent(wave),
                    };
                    let _ = done.send(outcome);
                    drop(slot);
                });
            }
            _ = stop.changed() => break,
        }
    }
    // Waves already started finish their fence and take their send permits before
    // shutdown waits for the sends (a fire fenced must not be left unsent unnoticed).
    let _ = waves.acquire_many(MAX_WAVES_IN_FLIGHT as u32).await;
    // Whatever is still in `heap` stays recorded and owned by this node; shutdown hands it back.
}

/// Dispatches a set of due fires that pass the dispatch fence. When the fence cannot
/// be asked (database unreachable) nothing is sent — another node may have taken
/// the fires over — and the wave comes back to be tried again.
async fn dispatch_wave(
    db: &Db,
    node: &Arc<str>,
    settings: &SchedulerSettings,
    dispatcher: &Rc<Dispatcher>,
    in_flight: &Arc<Semaphore>,
    wave: Vec<DueFire>,
) -> Result<(), Vec<DueFire>> {
    if wave.is_empty() {
        return Ok(());
    }
    let node_id = node.to_string();
    let now = now_ms();
    let window = ClaimWindow {
        now,
        horizon: now,
        batch: settings.batch_size,
        misfire_threshold_ms: settings.misfire_threshold_ms,
        catch_up_max: settings.catch_up_max,
    };
    // The fence needs the fires themselves (job policy, trigger); hand them over and back.
    let wave = Arc::new(wave);
    let for_fence = wave.clone();
    // Sending need not wait for the fence's fsync: if the node dies before it is
    // durable, the fires are unsent on disk and go out again, as they would if it died
    // after (sent, unanswered fires are re-sent with the same fire id).
    let taken = db
        .run_answered_before_commit(move |conn| {
            take_due_for_dispatch(conn, &node_id, &for_fence, &window)
        })
        .await;
    let wave = Arc::try_unwrap(wave).unwrap_or_else(|shared| (*shared).clone());
    let send = match taken {
        Ok(send) => send,
        Err(e) => {
            log::warn!(
                "dispatch fence failed for {} fire(s), retrying: {e}",
                wave.len()
            );
            return Err(wave);
        }
    };
    for due in wave {
        if !send.contains(&due.fire.id) {
            log::debug!(
                "fire {} job {}: not sent (taken over, cancelled, dropped, misfired or waiting its turn)",
                due.fire.id,
                due.job.key
            );
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return Ok(());
        };
        let dispatcher = dispatcher.clone();
        actix_rt::spawn(async move {
            // Fenced up to FENCE_LEAD_MS early; sent at its instant.
            let early_by = due.fire.due_at - now_ms();
            if early_by > 0 {
                tokio::time::sleep(Duration::from_millis(early_by as u64)).await;
            }
            dispatcher.dispatch(due, permit).await;
        });
    }
    Ok(())
}

/// Earliest instant a paused-then-resumed or new trigger needs, for callers that want to wake the loop.
pub fn due_within_lookahead(next_fire_at: Option<Millis>, settings: &SchedulerSettings) -> bool {
    next_fire_at.is_some_and(|at| at <= now_ms() + settings.lookahead_ms as i64)
}
