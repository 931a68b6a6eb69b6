//! Delivery of results to the scheduler: signed POSTs, retried with capped,
//! jittered exponential backoff until the scheduler gives a final answer.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};

use crate::executor::Inner;
use crate::outbox::OutboxEntry;
use crate::protocol::{self, WriteBack, FIRE_HEADER, SIGNATURE_HEADER};
use crate::stats::Counters;

/// Retry delay while shutdown flushes the outbox: try often, the time is short.
const FLUSH_RETRY: Duration = Duration::from_millis(200);
/// Every how many failed attempts a still-failing delivery is logged at warn level.
const WARN_EVERY: u32 = 10;
/// Response bytes kept for the log line of a refusal.
const DETAIL_BYTES: usize = 500;

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// A final answer: sending the same result again cannot succeed.
    Refused(u16, String),
    Retry(String),
}

/// Lives on the executor thread (awc is `!Send`).
pub(crate) struct Deliverer {
    inner: Arc<Inner>,
    client: awc::Client,
    /// Bounds concurrent write-backs after an outage, when many results are pending.
    permits: Semaphore,
    flushing: Cell<bool>,
    wake: Notify,
}

impl Deliverer {
    pub fn new(inner: Arc<Inner>) -> Rc<Deliverer> {
        let client = awc::Client::builder()
            .disable_redirects()
            .timeout(inner.config.writeback_timeout)
            .finish();
        Rc::new(Deliverer {
            permits: Semaphore::new(inner.config.delivery_concurrency),
            inner,
            client,
            flushing: Cell::new(false),
            wake: Notify::new(),
        })
    }

    /// Delivers `entry` in the background until it is accepted or finally refused.
    pub fn enqueue(self: &Rc<Self>, entry: OutboxEntry) {
        Counters::bump(&self.inner.counters.outbox_depth);
        actix_rt::spawn(self.clone().deliver(entry));
    }

    /// Shutdown: wakes every waiting retry and retries often from now on.
    pub fn flush(&self) {
        self.flushing.set(true);
        self.wake.notify_waiters();
    }

    async fn deliver(self: Rc<Self>, entry: OutboxEntry) {
        let id = entry.fire_id;
        let config = &self.inner.config;
        let mut delay = config.retry_initial;
        let mut attempts = 0u32;
        let ended = loop {
            attempts += 1;
            let outcome = match self.permits.acquire().await {
                Ok(_permit) => self.attempt(&entry).await,
                // The semaphore is never closed.
                Err(_) => Attempt::Retry("delivery slots closed".into()),
            };
            match outcome {
                Attempt::Delivered => {
                    log::debug!("fire {id}: result delivered after {attempts} attempt(s)");
                    break &self.inner.counters.delivered;
                }
                Attempt::Refused(status, detail) => {
                    log::error!(
                        "fire {id} (job {}): the scheduler refused its {} result with {status} ({detail}); giving up on this write-back",
                        entry.job,
                        entry.result.status.as_str()
                    );
                    break &self.inner.counters.delivery_failures;
                }
                Attempt::Retry(reason) => {
                    Counters::bump(&self.inner.counters.delivery_retries);
                    let wait = if self.flushing.get() {
                        FLUSH_RETRY
                    } else {
                        jitter(delay)
                    };
                    if attempts == 1 || attempts.is_multiple_of(WARN_EVERY) {
                        log::warn!(
                            "fire {id}: write-back attempt {attempts} to {} failed ({reason}); retrying in {wait:?}, the result is kept in the outbox",
                            entry.callback_url
                        );
                    } else {
                        log::debug!("fire {id}: write-back attempt {attempts} failed ({reason})");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.wake.notified() => {}
                    }
                    delay = (delay * 2).min(config.retry_max);
                }
            }
        };
        if let Err(e) = self.inner.outbox.remove(id) {
            log::error!(
                "fire {id}: delivery ended, but {e}; it may be sent again on the next start"
            );
        }
        self.inner.table().mark_delivered(id);
        // Counters last, so whoever sees them sees the bookkeeping done.
        Counters::bump(ended);
        Counters::drop_one(&self.inner.counters.outbox_depth);
        self.inner.changed.notify_waiters();
    }

    async fn attempt(&self, entry: &OutboxEntry) -> Attempt {
        let bound = WriteBack {
            fire_id: Some(entry.fire_id),
            ..entry.result.clone()
        };
        let body = match serde_json::to_vec(&bound) {
            Ok(body) => body,
            Err(e) => return Attempt::Refused(0, format!("could not encode the result: {e}")),
        };
        let signature = protocol::sign_now(&self.inner.config.secret, &body);
        let sent = self
            .client
            .post(&entry.callback_url)
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header((SIGNATURE_HEADER, signature))
            .insert_header((FIRE_HEADER, entry.fire_id.to_string()))
            .send_body(Bytes::from(body))
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let status = response.status().as_u16();
        // Reading the body to the end also lets the connection be reused.
        let detail = match response.body().limit(64 * 1024).await {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                text.chars().take(DETAIL_BYTES).collect()
            }
            Err(e) => format!("unreadable answer: {e}"),
        };
        classify(status, detail)
    }
}

/// The protocol's final answers end delivery; everything else may heal (a restarting
/// scheduler, a rotated secret, a proxy error) and is retried.
fn classify(status: u16, detail: String) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        400 | 404 | 409 | 410 | 413 | 422 => Attempt::Refused(status, detail),
        _ => Attempt::Retry(format!("answer {status}: {detail}")),
    }
}

/// Between half and all of `delay`, so executors that lost the scheduler together do
/// not come back in lockstep.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_and_retries() {
        assert_eq!(classify(200, String::new()), Attempt::Delivered);
        for status in [400, 404, 409] {
            assert!(
                matches!(classify(status, String::new()), Attempt::Refused(s, _) if s == status)
            );
        }
        for status in [401, 429, 500, 502, 503] {
            assert!(matches!(classify(status, String::new()), Attempt::Retry(_)));
        }
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
