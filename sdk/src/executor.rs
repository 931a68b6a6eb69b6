//! [`Executor`]: the handle a service keeps, and the state its parts share.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::{BuildError, Config, ExecutorBuilder, Handlers};
use crate::handler::ErasedHandler;
use crate::http::ExecutorService;
use crate::outbox::Outbox;
use crate::protocol::DispatchRequest;
use crate::runtime::{self, Command};
use crate::state::{Accepted, Admission, FireTable};
use crate::stats::{Counters, ExecutorStats};

/// Receives fires, runs their handlers, writes the results back.
///
/// Cheap to clone (all clones are the same executor). Built with
/// [`Executor::builder`]; either mounted on an actix-web app with
/// [`service`](Executor::service) or served alone with [`serve`](Executor::serve).
/// Handlers, write-backs and heartbeats run on a thread the executor owns, so it works
/// the same under `#[actix_web::main]`, `#[actix_web::test]` or any other runtime.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// What shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Every running handler finished within the grace period.
    pub finished_in_grace: bool,
    /// Handlers still running at the end of the grace period, cancelled and reported failed.
    pub cancelled: usize,
    /// Queued fires that never started, reported failed.
    pub not_started: usize,
    /// Results still in the outbox, delivered on the next start.
    pub undelivered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not listen: {0}")]
    Bind(#[source] std::io::Error),
    #[error("the executor is shutting down")]
    ShuttingDown,
}

/// An executor served on its own listener by [`Executor::serve`].
pub struct ServeHandle {
    local_addr: SocketAddr,
    address: String,
    executor: Executor,
}

impl ServeHandle {
    /// The bound socket address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<bound addr><prefix>`: the base URL of the routes on this listener.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Graceful stop: new dispatches get 503, running handlers get the grace period,
    /// pending results are flushed, then the listener closes.
    pub async fn stop(self) -> ShutdownReport {
        self.executor.shutdown().await
    }
}

/// State shared by the HTTP routes (any thread) and the executor's own thread.
pub(crate) struct Inner {
    pub config: Config,
    pub handlers: Handlers,
    table: Mutex<FireTable>,
    pub counters: Counters,
    pub outbox: Outbox,
    commands: mpsc::UnboundedSender<Command>,
    address: RwLock<Option<String>>,
    /// Signalled when an address becomes known (heartbeats start then).
    pub address_set: Notify,
    /// Signalled when a fire finishes or a delivery ends (shutdown waits on these).
    pub changed: Notify,
    done: watch::Receiver<Option<ShutdownReport>>,
    shutdown_started: AtomicBool,
}

impl Inner {
    /// The fire table. A panic while it was locked cannot leave it half-updated (its
    /// methods do not panic), so a poisoned lock is simply taken over.
    pub fn table(&self) -> MutexGuard<'_, FireTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn address(&self) -> Option<String> {
        self.address
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set_address_if_unset(&self, address: String) {
        let mut slot = self.address.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(address);
            self.address_set.notify_waiters();
        }
    }

    pub fn handler_names(&self) -> Vec<String> {
        self.handlers.named.keys().cloned().collect()
    }

    /// The handler a dispatch goes to, or why there is none.
    fn resolve(&self, name: Option<&str>) -> Result<(String, Arc<dyn ErasedHandler>), String> {
        let known = || {
            let names = self.handler_names();
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        match name.filter(|n| !n.is_empty()) {
            Some(name) => match self.handlers.named.get(name) {
                Some(h) => Ok((name.to_owned(), h.clone())),
                None => Err(format!(
                    "no handler named {name:?} in app {:?} (handlers: {})",
                    self.config.app,
                    known()
                )),
            },
            None => {
                if let Some(h) = &self.handlers.default {
                    return Ok((String::new(), h.clone()));
                }
                match self.handlers.named.iter().next() {
                    Some((name, h)) if self.handlers.named.len() == 1 => {
                        Ok((name.clone(), h.clone()))
                    }
                    _ => Err(format!(
                        "the dispatch names no handler and app {:?} has no default handler \
                         (handlers: {}); set the job's handler",
                        self.config.app,
                        known()
                    )),
                }
            }
        }
    }

    /// Takes a verified, parsed dispatch: duplicate check, capacity, queueing.
    /// `Err` carries the reason no handler matches (answered 404).
    pub fn admit(&self, request: DispatchRequest) -> Result<Admission, String> {
        let (handler_name, handler) = self.resolve(request.handler.as_deref())?;
        let id = request.fire_id;
        // A result still in the outbox may be from before a restart, which the table
        // no longer remembers.
        if !self.table().is_draining() && self.outbox.contains(id) {
            return Ok(Admission::Duplicate);
        }
        let admission = self.table().admit(Accepted {
            request,
            handler_name,
            handler,
            token: CancellationToken::new(),
        });
        match admission {
            Admission::Accepted => {
                Counters::bump(&self.counters.accepted);
                // Only fails once the executor thread is gone, i.e. after shutdown.
                let _ = self.commands.send(Command::Pump);
            }
            Admission::Busy => Counters::bump(&self.counters.rejected_busy),
            Admission::Duplicate | Admission::Draining => {}
        }
        Ok(admission)
    }

    pub fn stats(&self) -> ExecutorStats {
        let table = self.table();
        self.counters
            .snapshot(table.running(), table.queued(), table.capacity())
    }
}

impl Executor {
    /// Starts describing an executor: where the scheduler is (for heartbeats), which app
    /// this instance belongs to, and the app's signing secret.
    pub fn builder(
        scheduler_url: impl Into<String>,
        app: impl Into<String>,
        secret: impl AsRef<[u8]>,
    ) -> ExecutorBuilder {
        ExecutorBuilder::new(scheduler_url, app, secret)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Executor {
        Executor { inner }
    }

    pub(crate) fn start(config: Config, handlers: Handlers) -> Result<Executor, BuildError> {
        let outbox = Outbox::open(&config.outbox_dir)?;
        let pending = outbox.load()?;
        if !pending.is_empty() {
            log::info!(
                "{} undelivered result(s) found in {}; delivering",
                pending.len(),
                outbox.dir().display()
            );
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(None);
        let inner = Arc::new(Inner {
            table: Mutex::new(FireTable::new(
                config.capacity,
                config.queue_len,
                config.recent_fires,
            )),
            address: RwLock::new(config.advertise.clone()),
            config,
            handlers,
            counters: Counters::default(),
            outbox,
            commands,
            address_set: Notify::new(),
            changed: Notify::new(),
            done,
            shutdown_started: AtomicBool::new(false),
        });
        runtime::spawn(inner.clone(), receiver, done_tx, pending).map_err(BuildError::Thread)?;
        Ok(Executor { inner })
    }

    /// The routes, to mount on an actix-web app: `App::new().service(executor.service())`.
    /// Call it inside the `HttpServer::new` factory; every worker gets the same executor.
    pub fn service(&self) -> ExecutorService {
        ExecutorService::new(self.inner.clone())
    }

    /// Serves the routes on their own listener (for services without a web framework).
    /// Binds before returning, so the address is usable at once. Unless an address was
    /// advertised, heartbeats announce `http://<bound addr><prefix>`.
    pub fn serve(&self, addr: impl ToSocketAddrs) -> Result<ServeHandle, ServeError> {
        if self.inner.table().is_draining() {
            return Err(ServeError::ShuttingDown);
        }
        let listener = std::net::TcpListener::bind(addr).map_err(ServeError::Bind)?;
        let local_addr = listener.local_addr().map_err(ServeError::Bind)?;
        listener.set_nonblocking(true).map_err(ServeError::Bind)?;
        let address = format!("http://{local_addr}{}", self.inner.config.prefix);
        self.inner
            .commands
            .send(Command::Serve(listener))
            .map_err(|_| ServeError::ShuttingDown)?;
        self.inner.set_address_if_unset(address.clone());
        Ok(ServeHandle {
            local_addr,
            address,
            executor: self.clone(),
        })
    }

    /// Graceful shutdown. Starts at once (new dispatches get 503 from this call on, even
    /// before the future is polled); the future resolves when running handlers finished
    /// (or were cancelled after the grace period), pending results were flushed (what
    /// could not be delivered stays in the outbox) and any [`serve`](Executor::serve)
    /// listener closed. Calling it again waits for the same end.
    pub fn shutdown(&self) -> impl Future<Output = ShutdownReport> + Send + 'static {
        if !self.inner.shutdown_started.swap(true, Ordering::SeqCst) {
            let waiting = self.inner.table().begin_drain();
            log::info!(
                "executor {} ({}) shutting down",
                self.inner.config.instance_id,
                self.inner.config.app
            );
            // Fails only if the thread is already gone; then `done` is already set.
            let _ = self.inner.commands.send(Command::Shutdown { waiting });
        }
        let mut done = self.inner.done.clone();
        async move {
            loop {
                if let Some(report) = *done.borrow_and_update() {
                    return report;
                }
                if done.changed().await.is_err() {
                    // The executor thread ended without a report (it panicked).
                    return done.borrow().unwrap_or_default();
                }
            }
        }
    }

    /// Counters and gauges for the host's metrics.
    pub fn stats(&self) -> ExecutorStats {
        self.inner.stats()
    }

    pub fn app(&self) -> &str {
        &self.inner.config.app
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.config.instance_id
    }

    /// The advertised base URL, once known.
    pub fn address(&self) -> Option<String> {
        self.inner.address()
    }

    /// Route prefix, e.g. `/cronhook`.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    pub fn handler_names(&self) -> Vec<String> {
        self.inner.handler_names()
    }

    pub fn outbox_dir(&self) -> &Path {
        self.inner.outbox.dir()
    }
}
