//! Counters and gauges the host can export.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of an executor's counters ([`Executor::stats`](crate::Executor::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExecutorStats {
    /// Handlers running now.
    pub running: u64,
    /// Accepted fires waiting for a free slot.
    pub queued: u64,
    pub capacity: u64,
    /// Dispatches accepted (each fire id counted once).
    pub accepted: u64,
    /// Dispatches refused with 429 because the queue was full.
    pub rejected_busy: u64,
    /// Results waiting for delivery (in the outbox).
    pub outbox_depth: u64,
    /// Results the scheduler accepted.
    pub delivered: u64,
    /// Write-back attempts that failed and will be tried again.
    pub delivery_retries: u64,
    /// Results the scheduler refused for good (400/404/409…), logged and dropped.
    pub delivery_failures: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub outbox_depth: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_retries: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn drop_one(counter: &AtomicU64) {
        // Saturating: a gauge never wraps below zero.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    pub fn snapshot(&self, running: usize, queued: usize, capacity: usize) -> ExecutorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExecutorStats {
            running: running as u64,
            queued: queued as u64,
            capacity: capacity as u64,
            accepted: get(&self.accepted),
            rejected_busy: get(&self.rejected_busy),
            outbox_depth: get(&self.outbox_depth),
            delivered: get(&self.delivered),
            delivery_retries: get(&self.delivery_retries),
            delivery_failures: get(&self.delivery_failures),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
        }
    }
}
