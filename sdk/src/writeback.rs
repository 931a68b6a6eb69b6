//! Delivery of results to the scheduler: signed POSTs, retried with capped,
//! jittered exponential backoff until the scheduler gives a final answer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use rand::Rng;
use tokio::sync::{oneshot, Notify, Semaphore};

use crate::executor::Inner;
use crate::outbox::OutboxEntry;
use crate::protocol::{
    self, WriteBack, WriteBackBatch, WriteBackBatchAnswer, FIRE_HEADER, SIGNATURE_HEADER,
};
use crate::stats::Counters;

/// Retry delay while shutdown flushes the outbox: try often, the time is short.
const FLUSH_RETRY: Duration = Duration::from_millis(200);
/// Every how many failed attempts a still-failing delivery is logged at warn level.
const WARN_EVERY: u32 = 10;
/// Response bytes kept for the log line of a refusal.
const DETAIL_BYTES: usize = 500;

/// Results sent in one batch write-back at most.
const MAX_BATCH_RESULTS: usize = 200;
/// Body bytes of one batch write-back at most (estimated), under the scheduler's
/// default request limit (256 KiB); a larger result goes alone.
const MAX_BATCH_BYTES: usize = 192 * 1024;
/// Batch requests in flight to one scheduler at once.
const MAX_BATCH_SENDERS: usize = 4;

/// Results waiting to go out together to one batch URL, and the senders taking them.
#[derive(Default)]
struct PendingBatch {
    items: Vec<(WriteBack, usize, oneshot::Sender<Option<Attempt>>)>,
    senders: usize,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Results waiting for a batch write-back, by batch URL.
    batches: RefCell<HashMap<String, PendingBatch>>,
    /// The scheduler has no batch endpoint (an older version): results go alone.
    batch_unsupported: Cell<bool>,
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
            batches: RefCell::new(HashMap::new()),
            batch_unsupported: Cell::new(false),
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
            let outcome = self.attempt(&entry).await;
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

    /// One delivery attempt: with the other results waiting (one batch request for
    /// many), or alone where the scheduler or the result does not allow a batch.
    async fn attempt(self: &Rc<Self>, entry: &OutboxEntry) -> Attempt {
        if let Some(url) = self.batch_url(entry) {
            if let Some(attempt) = self.attempt_in_batch(url, entry).await {
                return attempt;
            }
        }
        match self.permits.acquire().await {
            Ok(_permit) => self.attempt_alone(entry).await,
            // The semaphore is never closed.
            Err(_) => Attempt::Retry("delivery slots closed".into()),
        }
    }

    /// `…/fires/results` beside the fire's result URL (`…/fires/{id}/result`), unless
    /// the scheduler lacks it or the URL has another shape.
    fn batch_url(&self, entry: &OutboxEntry) -> Option<String> {
        if self.batch_unsupported.get() {
            return None;
        }
        let suffix = format!("/{}/result", entry.fire_id);
        let base = entry.callback_url.strip_suffix(&suffix)?;
        Some(format!("{base}/results"))
    }

    /// Queues the result for a batch request to `url`; `None`: send it alone.
    async fn attempt_in_batch(
        self: &Rc<Self>,
        url: String,
        entry: &OutboxEntry,
    ) -> Option<Attempt> {
        let bound = bound_result(entry);
        let size = estimated_size(&bound);
        if size > MAX_BATCH_BYTES {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        let start_sender = {
            let mut batches = self.batches.borrow_mut();
            let pending = batches.entry(url.clone()).or_default();
            pending.items.push((bound, size, reply));
            let start = pending.senders < MAX_BATCH_SENDERS;
            if start {
                pending.senders += 1;
            }
            start
        };
        if start_sender {
            actix_rt::spawn(self.clone().send_batches(url));
        }
        answer.await.ok().flatten()
    }

    /// Sends what is waiting for `url` in batch requests, one delivery slot each, until
    /// nothing waits.
    async fn send_batches(self: Rc<Self>, url: String) {
        loop {
            let Ok(_permit) = self.permits.acquire().await else {
                return;
            };
            let items = {
                let mut batches = self.batches.borrow_mut();
                let Some(pending) = batches.get_mut(&url) else {
                    return;
                };
                let (mut count, mut bytes) = (0, 0);
                while count < pending.items.len().min(MAX_BATCH_RESULTS)
                    && bytes + pending.items[count].1 <= MAX_BATCH_BYTES
                {
                    bytes += pending.items[count].1;
                    count += 1;
                }
                if count == 0 {
                    pending.senders -= 1;
                    if pending.senders == 0 && pending.items.is_empty() {
                        batches.remove(&url);
                    }
                    return;
                }
                pending.items.drain(..count).collect::<Vec<_>>()
            };
            let (results, replies): (Vec<WriteBack>, Vec<_>) =
                items.into_iter().map(|(wb, _, reply)| (wb, reply)).unzip();
            let attempts = self.post_batch(&url, results).await;
            for (reply, attempt) in replies.into_iter().zip(attempts) {
                let _ = reply.send(attempt);
            }
        }
    }

    /// One batch request; per result its attempt, or `None` to send it alone.
    async fn post_batch(&self, url: &str, results: Vec<WriteBack>) -> Vec<Option<Attempt>> {
        let count = results.len();
        let all = |attempt: Option<Attempt>| -> Vec<Option<Attempt>> {
            (0..count).map(|_| attempt.clone()).collect()
        };
        let body = match serde_json::to_vec(&WriteBackBatch { results }) {
            Ok(body) => body,
            Err(_) => return all(None),
        };
        let signature = protocol::sign_now(&self.inner.config.secret, &body);
        let sent = self
            .client
            .post(url)
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header((SIGNATURE_HEADER, signature))
            .send_body(Bytes::from(body))
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return all(Some(Attempt::Retry(e.to_string()))),
        };
        let status = response.status().as_u16();
        let body = response.body().limit(4 * 1024 * 1024).await;
        match status {
            200 => {
                Counters::bump(&self.inner.counters.delivery_batches);
                let answer = body
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<WriteBackBatchAnswer>(&bytes).ok())
                    .filter(|answer| answer.results.len() == count);
                match answer {
                    Some(answer) => answer
                        .results
                        .into_iter()
                        .map(|a| Some(classify(a.status, a.detail.unwrap_or_default())))
                        .collect(),
                    None => all(Some(Attempt::Retry(
                        "unreadable answer to a batch write-back".into(),
                    ))),
                }
            }
            // No batch endpoint: an older scheduler. From now on every result goes alone.
            404 | 405 => {
                log::info!(
                    "the scheduler at {url} takes no batch write-backs; sending results one by one"
                );
                self.batch_unsupported.set(true);
                all(None)
            }
            // The batch as a whole was refused (too large, malformed): each result alone
            // gets its own answer.
            400 | 409 | 410 | 413 | 422 => all(None),
            _ => {
                let detail: String = body
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .chars()
                            .take(DETAIL_BYTES)
                            .collect()
                    })
                    .unwrap_or_default();
                all(Some(Attempt::Retry(format!("answer {status}: {detail}"))))
            }
        }
    }

    async fn attempt_alone(&self, entry: &OutboxEntry) -> Attempt {
        let body = match serde_json::to_vec(&bound_result(entry)) {
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

/// The result as sent: bound to its fire by the `fire_id` inside the signed body.
fn bound_result(entry: &OutboxEntry) -> WriteBack {
    WriteBack {
        fire_id: Some(entry.fire_id),
        ..entry.result.clone()
    }
}

/// Body bytes a result takes in a batch, roughly (its texts plus the fixed fields).
fn estimated_size(result: &WriteBack) -> usize {
    let text = |t: &Option<String>| t.as_ref().map(|t| t.len() * 2).unwrap_or(0);
    300 + text(&result.output) + text(&result.error)
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
