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
    /// Batch dispatch requests received (each carrying one or more fires).
    pub dispatch_batches: u64,
    /// Results waiting for delivery (in the outbox).
    pub outbox_depth: u64,
    /// Results the scheduler accepted.
    pub delivered: u64,
    /// Write-back attempts that failed and will be tried again.
    pub delivery_retries: u64,
    /// Results the scheduler refused for good (400/404/409…), logged and dropped.
    pub delivery_failures: u64,
    /// Batch write-back requests the scheduler answered (each carrying several results).
    pub delivery_batches: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl ExecutorStats {
    /// These numbers in the Prometheus text format, labelled with the executor's app,
    /// for the host to append to its own `/metrics` answer. Names start with
    /// `cronhook_executor_`; counters end in `_total`.
    pub fn prometheus_text(&self, app: &str) -> String {
        let app = app
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let rows: [(&str, &str, &str, u64); 13] = [
            ("running", "gauge", "Handlers running now.", self.running),
            (
                "queued",
                "gauge",
                "Accepted fires waiting for a free slot.",
                self.queued,
            ),
            (
                "capacity",
                "gauge",
                "Handlers that may run at once.",
                self.capacity,
            ),
            (
                "outbox_depth",
                "gauge",
                "Results stored in the outbox, waiting for delivery to the scheduler.",
                self.outbox_depth,
            ),
            (
                "accepted_total",
                "counter",
                "Dispatches accepted.",
                self.accepted,
            ),
            (
                "rejected_busy_total",
                "counter",
                "Dispatches refused with 429 because the queue was full.",
                self.rejected_busy,
            ),
            (
                "dispatch_batches_total",
                "counter",
                "Batch dispatch requests received.",
                self.dispatch_batches,
            ),
            (
                "delivered_total",
                "counter",
                "Results the scheduler accepted.",
                self.delivered,
            ),
            (
                "delivery_retries_total",
                "counter",
                "Write-back attempts that failed and will be retried.",
                self.delivery_retries,
            ),
            (
                "delivery_failures_total",
                "counter",
                "Results the scheduler refused for good.",
                self.delivery_failures,
            ),
            (
                "delivery_batches_total",
                "counter",
                "Batch write-back requests the scheduler answered.",
                self.delivery_batches,
            ),
            (
                "succeeded_total",
                "counter",
                "Handler runs that succeeded.",
                self.succeeded,
            ),
            (
                "failed_total",
                "counter",
                "Handler runs that failed.",
                self.failed,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP cronhook_executor_{name} {help}\n# TYPE cronhook_executor_{name} {kind}\ncronhook_executor_{name}{{app=\"{app}\"}} {value}\n"
            ));
        }
        out
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub dispatch_batches: AtomicU64,
    pub outbox_depth: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_retries: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub delivery_batches: AtomicU64,
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
            dispatch_batches: get(&self.dispatch_batches),
            outbox_depth: get(&self.outbox_depth),
            delivered: get(&self.delivered),
            delivery_retries: get(&self.delivery_retries),
            delivery_failures: get(&self.delivery_failures),
            delivery_batches: get(&self.delivery_batches),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_typed_sample_per_number() {
        let stats = ExecutorStats {
            outbox_depth: 3,
            delivered: 7,
            ..Default::default()
        };
        let text = stats.prometheus_text("bill\"ing");
        assert!(text.contains("# TYPE cronhook_executor_outbox_depth gauge\n"));
        assert!(text.contains("cronhook_executor_outbox_depth{app=\"bill\\\"ing\"} 3\n"));
        assert!(text.contains("cronhook_executor_delivered_total{app=\"bill\\\"ing\"} 7\n"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 13);
    }
}
