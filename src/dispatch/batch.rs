//! Batch dispatch: callback-mode fires that go to the same executor at the same moment
//! share one signed `POST {prefix}/fires/batch` (only executors that advertise
//! `dispatch_batch` get it). Each fire still gets its own answer, so failover, retries
//! and recording treat it exactly as a fire sent alone.
//!
//! A batch collects the fires handed to one executor until the dispatch thread has run
//! every task that was ready with the first of them (one yield), or until it is full; at
//! a burst's instant that is hundreds of fires per request, on a steady stream a few.
//! No timer holds a fire back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cronhook_sdk::protocol::{self, DispatchBatchAnswer};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{read_answer, refused, send_once_more_if_closed, Answer};

/// Bytes read from a batch's answer (about 100 per fire).
const MAX_BATCH_ANSWER_BYTES: usize = 1024 * 1024;

/// One fire waiting in a batch.
struct Queued {
    fire_id: Uuid,
    /// Its encoded `DispatchRequest`.
    body: Vec<u8>,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Pending {
    fires: Vec<Queued>,
    bytes: usize,
}

/// The batches being collected, per executor batch URL. Lives on the dispatch thread.
pub struct BatchSender {
    client: awc::Client,
    secret: Arc<Vec<u8>>,
    timeout: Duration,
    pending: RefCell<HashMap<String, Pending>>,
}

impl BatchSender {
    pub fn new(client: awc::Client, secret: Arc<Vec<u8>>, timeout: Duration) -> Rc<BatchSender> {
        Rc::new(BatchSender {
            client,
            secret,
            timeout,
            pending: RefCell::new(HashMap::new()),
        })
    }

    /// Sends one fire (its encoded request, at most `MAX_BATCHED_FIRE_BYTES`) in the
    /// next batch to `url`; resolves to what the executor answered for it.
    pub async fn send(self: &Rc<Self>, url: &str, fire_id: Uuid, body: Vec<u8>) -> Answer {
        let (answer, answered) = oneshot::channel();
        let full = {
            let mut pending = self.pending.borrow_mut();
            let batch = pending.entry(url.to_string()).or_default();
            // A full batch goes now; this fire starts the next one.
            let full = (batch.fires.len() >= protocol::MAX_FIRES_PER_DISPATCH_BATCH
                || batch.bytes + body.len() + 1 > protocol::MAX_DISPATCH_BATCH_BYTES - 16)
                .then(|| std::mem::take(batch));
            if batch.fires.is_empty() {
                let sender = self.clone();
                let url = url.to_string();
                actix_rt::spawn(async move {
                    // Let every fire that is ready now join first.
                    tokio::task::yield_now().await;
                    let batch = sender.pending.borrow_mut().remove(&url);
                    if let Some(batch) = batch {
                        sender.post(&url, batch).await;
                    }
                });
            }
            batch.bytes += body.len() + 1;
            batch.fires.push(Queued {
                fire_id,
                body,
                answer,
            });
            full
        };
        if let Some(full) = full {
            let sender = self.clone();
            let url = url.to_string();
            actix_rt::spawn(async move { sender.post(&url, full).await });
        }
        answered.await.unwrap_or_else(|_| {
            Answer::Failed(None, "the batch dispatch ended without an answer".into())
        })
    }

    /// Sends one batch and hands each fire its answer.
    async fn post(&self, url: &str, batch: Pending) {
        crate::metrics::dispatch_batch(batch.fires.len());
        let mut body = Vec::with_capacity(batch.bytes + 16);
        body.extend_from_slice(b"{\"fires\":[");
        for (i, fire) in batch.fires.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&fire.body);
        }
        body.extend_from_slice(b"]}");
        let started = Instant::now();
        let mut outcome = self.outcome(url, body).await;
        for fire in batch.fires {
            let answer = match &mut outcome {
                Outcome::All(answer) => answer.clone(),
                Outcome::Each(status, answers) => {
                    answers.remove(&fire.fire_id).unwrap_or_else(|| {
                        Answer::Failed(
                            Some(*status),
                            format!("the batch answer of {url} did not mention the fire"),
                        )
                    })
                }
            };
            crate::metrics::dispatch_answered(started, answer.kind());
            // The fire's task may be gone (shutdown); nothing to hand over then.
            let _ = fire.answer.send(answer);
        }
    }

    /// What the executor answered for the batch `body`.
    async fn outcome(&self, url: &str, body: Vec<u8>) -> Outcome {
        let signature = protocol::sign_now(&self.secret, &body);
        let build = || {
            self.client
                .post(url)
                .timeout(self.timeout)
                .insert_header((awc::http::header::CONTENT_TYPE, "application/json"))
                .insert_header((protocol::SIGNATURE_HEADER, signature.as_str()))
        };
        let sent = send_once_more_if_closed(build, bytes::Bytes::from(body)).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                return Outcome::All(Answer::Failed(
                    None,
                    format!("request to {url} failed: {e}"),
                ))
            }
        };
        let status = response.status();
        if !status.is_success() {
            // The whole batch was refused (bad signature, shutting down, too large):
            // every fire has the answer it would have had alone.
            let text = read_answer(&mut response).await;
            return Outcome::All(refused(status.as_u16(), text));
        }
        // Any 2xx must carry one answer per fire: a bare acknowledgement of the request
        // says nothing about any fire, so none of them counts as accepted.
        let parsed = match response.body().limit(MAX_BATCH_ANSWER_BYTES).await {
            Ok(bytes) => serde_json::from_slice::<DispatchBatchAnswer>(&bytes)
                .map_err(|e| format!("unreadable batch answer from {url}: {e}")),
            Err(e) => Err(format!("unreadable batch answer from {url}: {e}")),
        };
        match parsed {
            Ok(parsed) => Outcome::Each(
                status.as_u16(),
                parsed
                    .answers
                    .into_iter()
                    .map(|a| {
                        let answer = if (200..300).contains(&a.status) {
                            Answer::Accepted(a.status)
                        } else {
                            refused(a.status, a.detail.unwrap_or_default())
                        };
                        (a.fire_id, answer)
                    })
                    .collect(),
            ),
            Err(reason) => Outcome::All(Answer::Failed(Some(status.as_u16()), reason)),
        }
    }
}

/// What a batch request came to.
enum Outcome {
    /// The batch's HTTP status and one answer per fire, as the executor gave them.
    Each(u16, HashMap<Uuid, Answer>),
    /// The same answer for every fire: the request failed or was refused as a whole.
    All(Answer),
}
