//! The signed HTTP call to a fire's target, and recording what it answered.
//!
//! Runs on actix's own thread (awc is `!Send`); database work goes to the
//! blocking pool.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use cronhook_sdk::protocol::{self, DispatchRequest};

use crate::db::fires::Finish;
use crate::db::{self, Db};
use crate::domain::{Concurrency, FireState, Mode};
use crate::error::AppError;
use crate::scheduler::claim::DueFire;
use crate::scheduler::outcome::{end_fire, Ended};
use crate::time::{now_ms, to_datetime};

/// Body bytes read from a target's answer; the stored output is capped at 64 KiB anyway.
const MAX_RESPONSE_BYTES: usize = protocol::MAX_OUTPUT_BYTES + 1;

pub struct Dispatcher {
    client: awc::Client,
    db: Db,
    secret: Arc<Vec<u8>>,
    callback_base: String,
    dispatch_timeout: Duration,
    /// Called when a retry was scheduled, so the claim loop picks it up at its instant.
    on_retry: Box<dyn Fn()>,
}

/// What the target's answer means for the fire.
#[derive(Debug, PartialEq)]
enum Answer {
    /// Callback mode, acknowledged: the result comes by write-back.
    Accepted(u16),
    Succeeded(u16, String),
    Failed(Option<u16>, String),
}

impl Dispatcher {
    pub fn new(
        db: Db,
        secret: Arc<Vec<u8>>,
        callback_base: String,
        dispatch_timeout: Duration,
        max_connections: usize,
        on_retry: Box<dyn Fn()>,
    ) -> Rc<Dispatcher> {
        let connector = awc::Connector::new()
            .limit(max_connections)
            .timeout(Duration::from_secs(5));
        let client = awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .finish();
        Rc::new(Dispatcher {
            client,
            db,
            secret,
            callback_base,
            dispatch_timeout,
            on_retry,
        })
    }

    /// Sends one fire and records the outcome. Never panics; failures end the fire as `failed`.
    pub async fn dispatch(&self, due: DueFire) {
        let fire_id = due.fire.id.clone();
        let job_key = due.job.key.clone();
        if due.job.spec.concurrency == Concurrency::Forbid {
            match self.overlapping(&due).await {
                Ok(true) => {
                    self.end(
                        &due,
                        FireState::Skipped,
                        None,
                        None,
                        Some(
                            "skipped: a fire of this job is still running (concurrency: forbid)"
                                .into(),
                        ),
                    )
                    .await;
                    return;
                }
                Ok(false) => {}
                Err(e) => log::warn!("fire {fire_id} job {job_key}: overlap check failed: {e}"),
            }
        }
        let dispatched_at = now_ms();
        let deadline = dispatched_at + due.job.spec.timeout_ms as i64;
        let answer = self.send(&due, dispatched_at, deadline).await;
        let acked_at = now_ms();
        log::debug!("fire {fire_id} job {job_key}: {answer:?}");
        let recorded = match answer {
            Answer::Accepted(status) => {
                let id = fire_id.clone();
                let executor = self.target_label(&due);
                self.db
                    .run(true, move |conn| -> Result<(), AppError> {
                        let changed = db::fires::mark_running(
                            conn,
                            &id,
                            dispatched_at,
                            acked_at,
                            deadline,
                            status as i32,
                            &executor,
                        )?;
                        if changed == 0 {
                            // The write-back overtook the acknowledgement; keep the dispatch facts.
                            db::fires::fill_dispatch_facts(
                                conn,
                                &id,
                                dispatched_at,
                                acked_at,
                                status as i32,
                                &executor,
                            )?;
                        }
                        Ok(())
                    })
                    .await
            }
            Answer::Succeeded(status, output) => {
                self.end_dispatched(
                    &due,
                    FireState::Succeeded,
                    dispatched_at,
                    acked_at,
                    Some(status),
                    Some(output),
                    None,
                )
                .await
            }
            Answer::Failed(status, error) => {
                log::info!("fire {fire_id} job {job_key}: dispatch failed: {error}");
                self.end_dispatched(
                    &due,
                    FireState::Failed,
                    dispatched_at,
                    acked_at,
                    status,
                    None,
                    Some(error),
                )
                .await
            }
        };
        if let Err(e) = recorded {
            log::error!("fire {fire_id} job {job_key}: could not record the dispatch outcome: {e}");
        }
    }

    async fn overlapping(&self, due: &DueFire) -> Result<bool, AppError> {
        let job_id = due.job.id.clone();
        self.db
            .run(false, move |conn| {
                Ok::<_, AppError>(db::fires::count_running_for_job(conn, &job_id)? > 0)
            })
            .await
    }

    fn target_label(&self, due: &DueFire) -> String {
        due.job.spec.target.url.clone().unwrap_or_default()
    }

    async fn send(&self, due: &DueFire, dispatched_at: i64, deadline: i64) -> Answer {
        let Some(url) = due.job.spec.target.url.as_deref() else {
            return Answer::Failed(None, "job has no target url".into());
        };
        let payload = match due.fire.payload.as_deref() {
            Some(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            None => due.job.spec.payload.clone(),
        };
        let request = DispatchRequest {
            fire_id: due.fire.id.parse().unwrap_or_default(),
            job_id: due.job.id.parse().unwrap_or_default(),
            job: due.job.key.clone(),
            handler: due.job.spec.target.handler.clone(),
            attempt: due.fire.attempt as u32,
            scheduled_at: to_datetime(due.fire.scheduled_at),
            fired_at: to_datetime(dispatched_at),
            deadline: to_datetime(deadline),
            payload,
            callback_url: format!("{}/api/v1/fires/{}/result", self.callback_base, due.fire.id),
            shard: None,
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => return Answer::Failed(None, format!("could not encode the request: {e}")),
        };
        let timeout = match due.job.spec.mode {
            // A plain webhook does the work inside the request: it may take up to the job's timeout.
            Mode::Sync => Duration::from_millis(due.job.spec.timeout_ms),
            Mode::Callback => self
                .dispatch_timeout
                .min(Duration::from_millis(due.job.spec.timeout_ms)),
        };
        let sent = self
            .client
            .post(url)
            .timeout(timeout)
            .insert_header((awc::http::header::CONTENT_TYPE, "application/json"))
            .insert_header((protocol::FIRE_HEADER, due.fire.id.as_str()))
            .insert_header((
                protocol::SCHEDULED_HEADER,
                request.scheduled_at.to_rfc3339(),
            ))
            .insert_header((protocol::ATTEMPT_HEADER, request.attempt.to_string()))
            .insert_header((
                protocol::SIGNATURE_HEADER,
                protocol::sign_now(&self.secret, &body),
            ))
            .send_body(body)
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Answer::Failed(None, format!("request to {url} failed: {e}")),
        };
        let status = response.status();
        let text = read_answer(&mut response).await;
        interpret(due.job.spec.mode, status, text)
    }

    #[allow(clippy::too_many_arguments)]
    async fn end_dispatched(
        &self,
        due: &DueFire,
        state: FireState,
        dispatched_at: i64,
        acked_at: i64,
        status: Option<u16>,
        output: Option<String>,
        error: Option<String>,
    ) -> Result<(), AppError> {
        let mut finish = Finish {
            state: state.as_str(),
            finished_at: now_ms(),
            dispatched_at: Some(dispatched_at),
            acked_at: status.map(|_| acked_at),
            http_status: status.map(i32::from),
            executor: Some(self.target_label(due)),
            output,
            error,
            ..Default::default()
        };
        if let Some(out) = finish.output.as_mut() {
            finish.output_truncated = protocol::truncate_output(out);
        }
        self.record_end(due, finish).await
    }

    async fn end(
        &self,
        due: &DueFire,
        state: FireState,
        status: Option<u16>,
        output: Option<String>,
        error: Option<String>,
    ) {
        let finish = Finish {
            state: state.as_str(),
            finished_at: now_ms(),
            http_status: status.map(i32::from),
            output,
            error,
            ..Default::default()
        };
        if let Err(e) = self.record_end(due, finish).await {
            log::error!(
                "fire {} job {}: could not record {state}: {e}",
                due.fire.id,
                due.job.key
            );
        }
    }

    async fn record_end(&self, due: &DueFire, finish: Finish) -> Result<(), AppError> {
        let fire = due.fire.clone();
        let ended: Ended = self
            .db
            .run(true, move |conn| {
                end_fire(conn, &fire, &["fired", "running"], &finish)
            })
            .await?;
        if let Some(retry) = ended.retry {
            log::info!(
                "fire {} job {}: attempt {} scheduled at {}",
                due.fire.id,
                due.job.key,
                retry.attempt,
                crate::time::to_rfc3339(retry.due_at)
            );
            (self.on_retry)();
        }
        Ok(())
    }
}

/// Reads a target's answer up to [`MAX_RESPONSE_BYTES`]. A short answer is read to its
/// end so the connection can be reused; a longer one is cut there (the stored output is
/// marked truncated) and its connection dropped rather than drained.
async fn read_answer<S>(response: &mut awc::ClientResponse<S>) -> String
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = response.next().await {
        match chunk {
            Ok(chunk) => {
                let room = MAX_RESPONSE_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Err(e) => return format!("(answer body unreadable: {e})"),
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn interpret(mode: Mode, status: StatusCode, text: String) -> Answer {
    let code = status.as_u16();
    match mode {
        Mode::Callback if status.is_success() => Answer::Accepted(code),
        Mode::Sync if status.is_success() => Answer::Succeeded(code, text),
        _ => {
            let mut excerpt = text;
            excerpt.truncate(
                excerpt
                    .char_indices()
                    .nth(512)
                    .map(|(i, _)| i)
                    .unwrap_or(excerpt.len()),
            );
            let reason = match code {
                429 | 503 => "target busy",
                _ => "target refused",
            };
            Answer::Failed(
                Some(code),
                format!(
                    "{reason}: HTTP {code}{}{excerpt}",
                    if excerpt.is_empty() { "" } else { ": " }
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_mode() {
        assert_eq!(
            interpret(Mode::Callback, StatusCode::ACCEPTED, String::new()),
            Answer::Accepted(202)
        );
        assert_eq!(
            interpret(Mode::Sync, StatusCode::OK, "done".into()),
            Answer::Succeeded(200, "done".into())
        );
        assert_eq!(
            interpret(Mode::Sync, StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
            Answer::Failed(Some(500), "target refused: HTTP 500: boom".into())
        );
        assert_eq!(
            interpret(Mode::Callback, StatusCode::TOO_MANY_REQUESTS, String::new()),
            Answer::Failed(Some(429), "target busy: HTTP 429".into())
        );
    }
}
