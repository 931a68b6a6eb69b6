//! [`ExecutorBuilder`]: how a service describes its executor.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::executor::Executor;
use crate::handler::{ErasedHandler, Handler};
use crate::outbox::OutboxError;
use crate::protocol::DEFAULT_PREFIX;

/// Why an executor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no handler registered: add one with .handler(name, h) or .default_handler(h)")]
    NoHandlers,
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    #[error("app name must not be empty")]
    EmptyApp,
    #[error("secret must not be empty")]
    EmptySecret,
    #[error("scheduler url {0:?} must start with http:// or https://")]
    InvalidSchedulerUrl(String),
    #[error("advertised address {0:?} must start with http:// or https://")]
    InvalidAddress(String),
    #[error("prefix {0:?} must be empty or start with '/' and not end with '/'")]
    InvalidPrefix(String),
    #[error("handler name must not be empty")]
    EmptyHandlerName,
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("could not start the executor thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub scheduler_url: String,
    pub app: String,
    pub secret: Arc<[u8]>,
    pub capacity: usize,
    pub queue_len: usize,
    pub prefix: String,
    pub instance_id: String,
    pub advertise: Option<String>,
    pub outbox_dir: PathBuf,
    pub heartbeat: Option<Duration>,
    pub shutdown_grace: Duration,
    pub flush_timeout: Duration,
    pub max_body_bytes: usize,
    /// Advertise batch dispatches (`POST {prefix}/fires/batch`) in heartbeats.
    pub dispatch_batches: bool,
    pub recent_fires: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub writeback_timeout: Duration,
    pub delivery_concurrency: usize,
    pub serve_workers: usize,
}

pub(crate) struct Handlers {
    pub named: BTreeMap<String, Arc<dyn ErasedHandler>>,
    pub default: Option<Arc<dyn ErasedHandler>>,
}

/// Builds an [`Executor`]; start with [`Executor::builder`].
pub struct ExecutorBuilder {
    config: Config,
    handlers: Handlers,
    empty_handler_name: bool,
}

impl ExecutorBuilder {
    pub(crate) fn new(
        scheduler_url: impl Into<String>,
        app: impl Into<String>,
        secret: impl AsRef<[u8]>,
    ) -> Self {
        let app = app.into();
        ExecutorBuilder {
            config: Config {
                scheduler_url: scheduler_url.into().trim_end_matches('/').to_owned(),
                outbox_dir: PathBuf::from("cronhook-outbox").join(&app),
                app,
                secret: Arc::from(secret.as_ref()),
                capacity: 4,
                queue_len: 16,
                prefix: DEFAULT_PREFIX.to_owned(),
                instance_id: uuid::Uuid::new_v4().to_string(),
                advertise: None,
                heartbeat: Some(Duration::from_millis(3000)),
                shutdown_grace: Duration::from_secs(30),
                flush_timeout: Duration::from_secs(5),
                max_body_bytes: 1024 * 1024,
                dispatch_batches: true,
                recent_fires: 10_000,
                retry_initial: Duration::from_millis(500),
                retry_max: Duration::from_secs(30),
                writeback_timeout: Duration::from_secs(10),
                delivery_concurrency: 16,
                serve_workers: 1,
            },
            handlers: Handlers {
                named: BTreeMap::new(),
                default: None,
            },
            empty_handler_name: false,
        }
    }

    /// Registers `handler` for dispatches naming `name`.
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        let name = name.into();
        self.empty_handler_name |= name.is_empty();
        self.handlers.named.insert(name, Arc::new(handler));
        self
    }

    /// The handler for dispatches that name none (plain URL-target jobs). Without it,
    /// such a dispatch goes to the only named handler if there is exactly one.
    pub fn default_handler(mut self, handler: impl Handler) -> Self {
        self.handlers.default = Some(Arc::new(handler));
        self
    }

    /// Handlers running at once (default 4).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity;
        self
    }

    /// Accepted fires waiting for a free slot (default 16); beyond it dispatches get 429.
    pub fn queue_len(mut self, queue_len: usize) -> Self {
        self.config.queue_len = queue_len;
        self
    }

    /// Path prefix of the SDK's routes (default `/cronhook`; `""` mounts at the root).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Identity of this instance in heartbeats (default: a random uuid).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = id.into();
        self
    }

    /// Base URL the scheduler dispatches to, prefix included, e.g.
    /// `http://10.0.0.5:8080/cronhook`. [`Executor::serve`] defaults it to
    /// `http://<bound addr><prefix>`; a mounted executor sends no heartbeats without it.
    pub fn advertise_address(mut self, url: impl Into<String>) -> Self {
        self.config.advertise = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Directory of the durable result outbox (default `./cronhook-outbox/<app>`).
    /// Keep it stable across restarts: a new instance delivers what it finds there.
    pub fn outbox_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.outbox_dir = dir.into();
        self
    }

    /// Heartbeat period until the scheduler's reply says otherwise (default 3 s).
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.config.heartbeat = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// Sends no heartbeats (for URL-target jobs only, where no executor pool is used).
    pub fn without_heartbeats(mut self) -> Self {
        self.config.heartbeat = None;
        self
    }

    /// How long shutdown waits for running handlers before cancelling them (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How long shutdown keeps trying to deliver pending results (default 5 s); what is
    /// left stays in the outbox for the next start.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.config.flush_timeout = timeout;
        self
    }

    /// Largest dispatch body accepted (default 1 MiB); larger gets 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// Whether heartbeats offer the scheduler batch dispatches (default on): several
    /// callback-mode fires in one signed `POST {prefix}/fires/batch`, each answered
    /// as if it had come alone. Off, every fire comes in its own request. A batch body
    /// may reach 256 KiB whatever [`max_body_bytes`](Self::max_body_bytes) says (fires
    /// larger than 64 KiB still come alone).
    pub fn dispatch_batches(mut self, enabled: bool) -> Self {
        self.config.dispatch_batches = enabled;
        self
    }

    /// Finished fire ids remembered to refuse re-runs and answer status (default 10 000).
    pub fn recent_fires(mut self, count: usize) -> Self {
        self.config.recent_fires = count.max(1);
        self
    }

    /// Write-back retry backoff: first delay and cap (default 500 ms and 30 s);
    /// each delay is doubled and jittered.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry_initial = initial.max(Duration::from_millis(1));
        self.config.retry_max = max.max(self.config.retry_initial);
        self
    }

    /// Time limit of one write-back or heartbeat request (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.writeback_timeout = timeout;
        self
    }

    /// HTTP worker threads of [`Executor::serve`] (default 1: the routes only queue work).
    pub fn serve_workers(mut self, workers: usize) -> Self {
        self.config.serve_workers = workers.max(1);
        self
    }

    /// Validates the settings, loads the outbox and starts the executor's thread
    /// (handlers, write-backs, heartbeats). Results found in the outbox are delivered.
    pub fn build(self) -> Result<Executor, BuildError> {
        let c = &self.config;
        if self.handlers.named.is_empty() && self.handlers.default.is_none() {
            return Err(BuildError::NoHandlers);
        }
        if self.empty_handler_name {
            return Err(BuildError::EmptyHandlerName);
        }
        if c.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if c.app.is_empty() {
            return Err(BuildError::EmptyApp);
        }
        if c.secret.is_empty() {
            return Err(BuildError::EmptySecret);
        }
        if !is_http_url(&c.scheduler_url) {
            return Err(BuildError::InvalidSchedulerUrl(c.scheduler_url.clone()));
        }
        if let Some(address) = &c.advertise {
            if !is_http_url(address) {
                return Err(BuildError::InvalidAddress(address.clone()));
            }
        }
        if !(c.prefix.is_empty() || (c.prefix.starts_with('/') && !c.prefix.ends_with('/'))) {
            return Err(BuildError::InvalidPrefix(c.prefix.clone()));
        }
        Executor::start(self.config, self.handlers)
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    matches!(rest, Some(host) if !host.is_empty())
}
