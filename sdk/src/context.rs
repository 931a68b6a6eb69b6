//! [`FireContext`]: everything a handler knows about the fire it runs.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

use crate::handler::JobError;
use crate::protocol::{DispatchRequest, Shard};

/// One fire as the handler sees it.
pub struct FireContext {
    request: DispatchRequest,
    handler: String,
    token: CancellationToken,
    log: FireLogger,
}

impl FireContext {
    pub(crate) fn new(request: DispatchRequest, handler: String, token: CancellationToken) -> Self {
        let log = FireLogger {
            prefix: format!(
                "fire {} (job {}, attempt {})",
                request.fire_id, request.job, request.attempt
            ),
        };
        FireContext {
            request,
            handler,
            token,
            log,
        }
    }

    pub fn fire_id(&self) -> Uuid {
        self.request.fire_id
    }

    pub fn job_id(&self) -> Uuid {
        self.request.job_id
    }

    /// The job key, `<group>/<name>`.
    pub fn job(&self) -> &str {
        &self.request.job
    }

    /// Name of the handler running this fire (empty for the default handler of an
    /// unnamed dispatch).
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// 1 for the first attempt; a retry of the same scheduled instant counts up.
    pub fn attempt(&self) -> u32 {
        self.request.attempt
    }

    /// The instant this fire was scheduled for (not when it was sent).
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.request.scheduled_at
    }

    pub fn fired_at(&self) -> DateTime<Utc> {
        self.request.fired_at
    }

    /// When the SDK stops waiting for the handler and reports a timeout.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.request.deadline
    }

    /// Time left until the deadline (zero once it passed).
    pub fn time_left(&self) -> Duration {
        (self.request.deadline - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// The payload deserialised into `T`; a mismatch is a [`JobError`] naming the problem.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        T::deserialize(&self.request.payload)
            .map_err(|e| JobError::msg(format!("payload does not match the expected shape: {e}")))
    }

    /// The payload as raw JSON (`null` when the job has none).
    pub fn payload_value(&self) -> &serde_json::Value {
        &self.request.payload
    }

    /// Shard of a broadcast fire, if any.
    pub fn shard(&self) -> Option<Shard> {
        self.request.shard
    }

    /// This executor's shard index (0 when the fire is not broadcast).
    pub fn shard_index(&self) -> u32 {
        self.request.shard.map(|s| s.index).unwrap_or(0)
    }

    /// Number of shards (1 when the fire is not broadcast).
    pub fn shard_total(&self) -> u32 {
        self.request.shard.map(|s| s.total).unwrap_or(1)
    }

    /// Cancelled when the fire is cancelled, hits its deadline, or the executor shuts
    /// down past its grace period. The SDK stops polling the handler at that point;
    /// the token lets work the handler started elsewhere (threads, spawned tasks) stop too.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when [`cancellation`](Self::cancellation) fires.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A logger that tags each line with the fire id, job and attempt.
    pub fn log(&self) -> &FireLogger {
        &self.log
    }

    /// The dispatch as received.
    pub fn request(&self) -> &DispatchRequest {
        &self.request
    }
}

impl fmt::Debug for FireContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FireContext")
            .field("fire_id", &self.request.fire_id)
            .field("job", &self.request.job)
            .field("handler", &self.handler)
            .field("attempt", &self.request.attempt)
            .field("deadline", &self.request.deadline)
            .finish_non_exhaustive()
    }
}

/// Logs through the `log` crate (target `cronhook_sdk::fire`), each line prefixed
/// with `fire <id> (job <key>, attempt <n>): `.
#[derive(Debug, Clone)]
pub struct FireLogger {
    prefix: String,
}

impl FireLogger {
    pub fn error(&self, message: impl fmt::Display) {
        self.log(log::Level::Error, message)
    }

    pub fn warn(&self, message: impl fmt::Display) {
        self.log(log::Level::Warn, message)
    }

    pub fn info(&self, message: impl fmt::Display) {
        self.log(log::Level::Info, message)
    }

    pub fn debug(&self, message: impl fmt::Display) {
        self.log(log::Level::Debug, message)
    }

    pub fn log(&self, level: log::Level, message: impl fmt::Display) {
        log::log!(target: "cronhook_sdk::fire", level, "{}: {}", self.prefix, message);
    }
}
