//! The executor's own thread: an actix system (so awc works there) that runs the
//! handlers, the write-backs, the heartbeats and the optional listener.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use actix_web::{App, HttpServer};
use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::executor::{Executor, Inner, ShutdownReport};
use crate::heartbeat;
use crate::outbox::OutboxEntry;
use crate::protocol::{DispatchRequest, ResultStatus, WriteBack};
use crate::runner;
use crate::state::{Accepted, Cancelled};
use crate::stats::Counters;
use crate::writeback::Deliverer;

/// Messages from the routes and the [`Executor`] handle to the executor thread.
pub(crate) enum Command {
    /// Fires were queued: start what fits.
    Pump,
    /// Serve the routes on this (bound) listener.
    Serve(std::net::TcpListener),
    /// Shut down; `waiting` are the fires taken off the queue.
    Shutdown { waiting: Vec<Accepted> },
}

/// How long the listener waits for in-flight requests when it closes; the routes only
/// queue work, so they finish in milliseconds.
const LISTENER_SHUTDOWN_SECS: u64 = 2;
/// How long shutdown waits for cancelled handlers' results to be stored.
const CANCEL_SETTLE: Duration = Duration::from_secs(5);

pub(crate) fn spawn(
    inner: Arc<Inner>,
    commands: mpsc::UnboundedReceiver<Command>,
    done: watch::Sender<Option<ShutdownReport>>,
    pending: Vec<OutboxEntry>,
) -> io::Result<()> {
    let name = format!("cronhook-{}", inner.config.app);
    thread::Builder::new().name(name).spawn(move || {
        let system = actix_rt::System::new();
        let report = system.block_on(main_loop(inner, commands, pending));
        // Dropping the system drops every task still on it (e.g. retries of results that
        // stay in the outbox) before the report says the executor is done.
        drop(system);
        let _ = done.send(Some(report));
    })?;
    Ok(())
}

async fn main_loop(
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    pending: Vec<OutboxEntry>,
) -> ShutdownReport {
    let rt = Rc::new(Runtime {
        delivery: Deliverer::new(inner.clone()),
        inner,
    });
    for entry in pending {
        rt.delivery.enqueue(entry);
    }
    if let Some(every) = rt.inner.config.heartbeat {
        actix_rt::spawn(heartbeat::run(rt.clone(), every));
    }
    let mut servers = Vec::new();
    let waiting = loop {
        match commands.recv().await {
            Some(Command::Pump) => rt.pump(),
            Some(Command::Serve(listener)) => match rt.listen(listener) {
                Ok(server) => servers.push(server),
                Err(e) => log::error!("could not serve the executor routes: {e}"),
            },
            Some(Command::Shutdown { waiting }) => break waiting,
            // Unreachable while `Inner` holds the sender; treat it as a shutdown.
            None => break Vec::new(),
        }
    };
    let report = rt.drain(waiting).await;
    for server in servers {
        server.stop(true).await;
    }
    log::info!(
        "executor {} stopped: {report:?}",
        rt.inner.config.instance_id
    );
    report
}

pub(crate) struct Runtime {
    pub inner: Arc<Inner>,
    delivery: Rc<Deliverer>,
}

impl Runtime {
    /// Starts queued fires while slots are free.
    fn pump(self: &Rc<Self>) {
        while let Some(fire) = self.inner.table().start_next() {
            actix_rt::spawn(self.clone().run_fire(fire));
        }
    }

    async fn run_fire(self: Rc<Self>, fire: Accepted) {
        let request = fire.request.clone();
        let result = runner::execute(&self.inner, fire).await;
        self.complete(&request, result).await;
        self.pump();
    }

    /// Stores the result durably, then marks the fire finished and hands the result
    /// to delivery. This order means a fire id is always visible to the duplicate check
    /// (running, in the outbox, or finished).
    async fn complete(&self, request: &DispatchRequest, result: WriteBack) {
        let id = request.fire_id;
        let entry = OutboxEntry {
            fire_id: id,
            job: request.job.clone(),
            callback_url: request.callback_url.clone(),
            result,
            created_at: Utc::now(),
        };
        // The outbox's own writer thread does the fsyncs, for many results at once.
        if let Err(e) = self.inner.outbox.store(entry.clone()).await {
            log::error!(
                "fire {id}: could not store its result in the outbox ({e}); delivering from memory only"
            );
        }
        match entry.result.status {
            ResultStatus::Succeeded => Counters::bump(&self.inner.counters.succeeded),
            ResultStatus::Failed => Counters::bump(&self.inner.counters.failed),
        }
        log::debug!(
            "fire {id} (job {}): {}{}",
            request.job,
            entry.result.status.as_str(),
            entry
                .result
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        self.inner.table().finish(id, &entry.result);
        self.inner.changed.notify_waiters();
        self.delivery.enqueue(entry);
    }

    /// Cancels fires: a running one through its token (its runner reports it), a queued
    /// one is taken off the queue and reported failed with `reason` at once.
    pub fn cancel(self: &Rc<Self>, ids: &[Uuid], reason: &str) {
        for &id in ids {
            let outcome = self.inner.table().cancel(id, reason);
            match outcome {
                Cancelled::Signalled => {
                    log::info!("fire {id}: cancelling the running handler ({reason})")
                }
                Cancelled::Dequeued(fire) => {
                    log::info!("fire {id}: cancelled before it started ({reason})");
                    let this = self.clone();
                    let reason = reason.to_owned();
                    actix_rt::spawn(async move {
                        this.complete(&fire.request, runner::failed(reason, None))
                            .await;
                    });
                }
                Cancelled::Unknown => {
                    log::debug!("fire {id}: cancel requested, but it does not run here")
                }
            }
        }
    }

    fn listen(&self, listener: std::net::TcpListener) -> io::Result<actix_web::dev::ServerHandle> {
        let executor = Executor::from_inner(self.inner.clone());
        let server = HttpServer::new(move || App::new().service(executor.service()))
            .workers(self.inner.config.serve_workers)
            .disable_signals()
            .shutdown_timeout(LISTENER_SHUTDOWN_SECS)
            .listen(listener)?
            .run();
        let handle = server.handle();
        actix_rt::spawn(async move {
            if let Err(e) = server.await {
                log::error!("executor listener failed: {e}");
            }
        });
        Ok(handle)
    }

    /// The shutdown sequence, after the table stopped admitting fires.
    async fn drain(self: &Rc<Self>, waiting: Vec<Accepted>) -> ShutdownReport {
        let config = &self.inner.config;
        let not_started = waiting.len();
        for fire in waiting {
            let reason = "not started: the executor shut down before a slot was free".to_owned();
            self.complete(&fire.request, runner::failed(reason, None))
                .await;
        }
        let table_idle = || self.inner.table().running() == 0;
        let finished_in_grace = self.wait_until(table_idle, config.shutdown_grace).await;
        let mut cancelled = 0;
        if !finished_in_grace {
            let ids = self.inner.table().running_ids();
            cancelled = ids.len();
            log::warn!(
                "{cancelled} handler(s) still running after the {:?} grace period; cancelling them",
                config.shutdown_grace
            );
            self.cancel(
                &ids,
                "cancelled: the executor shut down before the handler finished",
            );
            self.wait_until(table_idle, CANCEL_SETTLE).await;
        }
        self.delivery.flush();
        let depth = || self.inner.counters.snapshot(0, 0, 0).outbox_depth;
        self.wait_until(|| depth() == 0, config.flush_timeout).await;
        let undelivered = depth();
        if undelivered > 0 {
            log::warn!(
                "{undelivered} result(s) not delivered yet; they stay in {} and are delivered on the next start",
                self.inner.outbox.dir().display()
            );
        }
        ShutdownReport {
            finished_in_grace,
            cancelled,
            not_started,
            undelivered,
        }
    }

    /// Waits until `done()` holds or `timeout` passes; true if it held.
    async fn wait_until(&self, done: impl Fn() -> bool, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            // Woken by progress; the short cap covers a notification that slipped
            // between the check and the wait.
            let nap = (end - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(nap, self.inner.changed.notified()).await;
        }
    }
}
