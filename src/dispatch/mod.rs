//! The signed HTTP call to a fire's target, and recording what it answered.
//!
//! Runs on actix's own thread (awc is `!Send`); database work goes to the
//! blocking pool.

mod batch;
pub mod pools;
pub mod recorder;
pub mod routing;
mod slots;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use cronhook_sdk::protocol::{self, DispatchRequest, Shard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::configuration::SchedulerSettings;
use crate::db::fires::Finish;
use crate::db::{self, Db};
use crate::domain::job::WhenUnavailable;
use crate::domain::{Concurrency, FireState, Mode, Routing};
use crate::error::AppError;
use crate::scheduler::claim::DueFire;
use crate::scheduler::outcome::{Ended, Ending};
use crate::time::{now_ms, to_datetime};
use batch::BatchSender;
use pools::{ExecutorPools, RegistryVersion};
use recorder::{Answered, Recorder};
use slots::DispatchSlots;

/// Body bytes read from a target's answer; the stored output is capped at 64 KiB anyway.
const MAX_RESPONSE_BYTES: usize = protocol::MAX_OUTPUT_BYTES + 1;

pub struct Dispatcher {
    client: awc::Client,
    db: Db,
    secret: Arc<Vec<u8>>,
    callback_base: String,
    dispatch_timeout: Duration,
    /// Called when a retry or child fires were recorded, so the claim loop picks them up
    /// at their instant.
    on_retry: Box<dyn Fn()>,
    /// The executors of each app target, loaded now and then rather than per fire.
    pools: ExecutorPools,
    /// Callback-mode fires for executors that take batches.
    batches: Rc<BatchSender>,
    /// Round-robin positions per job.
    turns: RefCell<HashMap<String, usize>>,
    /// Records the targets' answers in batches.
    recorder: Rc<Recorder>,
    /// The slot each fire being dispatched holds (send, then recording).
    slots: DispatchSlots,
}

/// Consecutive unreachable dispatches after which an executor is invalid until it beats again.
const MAX_EXECUTOR_FAILURES: i32 = 3;
/// How often a pinned fire waiting for its instance looks again.
const PINNED_RECHECK_MS: i64 = 1_000;

/// What the target's answer means for the fire.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// Callback mode, acknowledged: the result comes by write-back.
    Accepted(u16),
    Succeeded(u16, String),
    Failed(Option<u16>, String),
}

impl Answer {
    /// The metrics label of this answer.
    fn kind(&self) -> &'static str {
        match self {
            Answer::Accepted(_) => "accepted",
            Answer::Succeeded(..) => "succeeded",
            Answer::Failed(..) => "failed",
        }
    }
}

impl Dispatcher {
    /// `recording`: the recording slots a fire takes once its target has answered;
    /// `executors`: bumped when the executor registry changed on this node.
    pub fn new(
        db: Db,
        secret: Arc<Vec<u8>>,
        callback_base: String,
        settings: &SchedulerSettings,
        recording: Arc<Semaphore>,
        executors: RegistryVersion,
        on_retry: Box<dyn Fn()>,
    ) -> Rc<Dispatcher> {
        let connector = awc::Connector::new()
            .limit(settings.dispatch_concurrency)
            // Shorter than common servers' idle time-outs (actix-web and Node: 5 s), so an
            // idle connection is dropped here before the target closes it under a request.
            .conn_keep_alive(Duration::from_secs(4))
            .timeout(Duration::from_secs(5));
        let client = awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .finish();
        let dispatch_timeout = Duration::from_millis(settings.dispatch_timeout_ms);
        Rc::new(Dispatcher {
            batches: BatchSender::new(client.clone(), secret.clone(), dispatch_timeout),
            client,
            recorder: recorder::start(db.clone()),
            pools: ExecutorPools::new(db.clone(), settings.executor_timeout_ms, executors),
            db,
            secret,
            callback_base,
            dispatch_timeout,
            on_retry,
            turns: RefCell::new(HashMap::new()),
            slots: DispatchSlots::new(recording),
        })
    }

    /// Sends one fire (it passed the dispatch fence) and records the outcome. Never
    /// panics; failures end the fire as `failed`. `send_slot` goes back once the
    /// target has answered (see `DispatchSlots::answered`); whatever slot the fire
    /// holds then is released when its outcome is recorded.
    pub async fn dispatch(&self, due: DueFire, send_slot: OwnedSemaphorePermit) {
        let fire_id = due.fire.id.clone();
        self.slots.hold(&fire_id, send_slot);
        if self.overlap_allows(&due).await {
            crate::metrics::fire_sent(due.fire.due_at);
            self.send_to_target(&due).await;
        }
        self.slots.release(&fire_id);
    }

    /// Applies the job's concurrency policy when another fire of it is running; false
    /// when this fire must not go out now (skipped or postponed).
    async fn overlap_allows(&self, due: &DueFire) -> bool {
        let policy = due.job.spec.concurrency;
        // A queued fire's turn was decided under the job's lock when it was fenced.
        if matches!(policy, Concurrency::Allow | Concurrency::Queue) {
            return true;
        }
        let running = match self.running_fires(due).await {
            Ok(running) => running,
            Err(e) => {
                log::warn!(
                    "fire {} job {}: overlap check failed: {e}",
                    due.fire.id,
                    due.job.key
                );
                return true;
            }
        };
        if running.is_empty() {
            return true;
        }
        match policy {
            Concurrency::Allow | Concurrency::Queue => true,
            Concurrency::Forbid => {
                self.end(
                    due,
                    FireState::Skipped,
                    None,
                    None,
                    Some(
                        "skipped: a fire of this job is still running (concurrency: forbid)".into(),
                    ),
                )
                .await;
                false
            }
            Concurrency::Replace => {
                for id in running {
                    let cancelled = self
                        .db
                        .run(true, move |conn| {
                            crate::scheduler::outcome::cancel_fire(
                                conn,
                                &id,
                                now_ms(),
                                "cancelled: replaced by a newer fire of the job (concurrency: replace)",
                            )
                        })
                        .await;
                    if let Err(e) = cancelled {
                        log::debug!("fire {} job {}: replacing: {e}", due.fire.id, due.job.key);
                    }
                }
                true
            }
        }
    }

    async fn send_to_target(&self, due: &DueFire) {
        if let Some(app) = due.job.spec.target.app.clone() {
            self.dispatch_to_pool(due, &app).await;
            return;
        }
        let Some(url) = due.job.spec.target.url.clone() else {
            self.end(
                due,
                FireState::Failed,
                None,
                None,
                Some("job has no target".into()),
            )
            .await;
            return;
        };
        let dispatched_at = now_ms();
        let deadline = dispatched_at + due.job.spec.timeout_ms as i64;
        let answer = self.send(due, &url, None, dispatched_at, deadline).await;
        self.record_answer(due, answer, url, dispatched_at, deadline)
            .await;
    }

    /// Target = app: tries the valid executors in the job's routing order until one
    /// accepts; each refusal or failure moves on to the next candidate.
    async fn dispatch_to_pool(&self, due: &DueFire, app: &str) {
        let spec = &due.job.spec;
        let loaded = self
            .pools
            .candidates(
                app,
                spec.target.handler.as_deref(),
                &due.job.id,
                spec.routing == Routing::ShortestEta,
            )
            .await;
        let candidates = match loaded {
            Ok(candidates) => candidates,
            Err(e) => {
                log::warn!(
                    "fire {} job {}: could not load executors: {e}",
                    due.fire.id,
                    due.job.key
                );
                Vec::new()
            }
        };
        let turn = self.next_turn(&due.job.id);
        let ordered = routing::order(
            spec.routing,
            candidates,
            &due.job.id,
            turn,
            spec.target.instance.as_deref(),
        );
        if ordered.is_empty() {
            let now = now_ms();
            let waiting = spec.routing == Routing::Pinned
                && spec.target.when_unavailable == WhenUnavailable::Wait
                && now < due.fire.scheduled_at + spec.timeout_ms as i64;
            if waiting {
                self.postpone(due, now + PINNED_RECHECK_MS).await;
                return;
            }
            let what = match (&spec.target.instance, &spec.target.handler) {
                (Some(instance), _) if spec.routing == Routing::Pinned => {
                    format!("pinned instance {instance} of app {app} is not valid")
                }
                (_, Some(handler)) => {
                    format!("no valid executor of app {app} serves handler {handler}")
                }
                _ => format!("no valid executor in app {app}"),
            };
            self.end(due, FireState::Failed, None, None, Some(what))
                .await;
            return;
        }
        // A broadcast fire splits into one share per valid executor; a retried share
        // (shard_total > 1 already) goes to whichever executor takes it.
        if spec.routing == Routing::Broadcast && due.fire.shard_total == 1 && ordered.len() > 1 {
            self.broadcast(due, ordered).await;
            return;
        }
        self.try_candidates(due, app, ordered).await;
    }

    /// Records one share per executor (the original fire is share 0) and sends each
    /// share to its executor, with its index and the total.
    async fn broadcast(&self, due: &DueFire, executors: Vec<routing::Candidate>) {
        let total = executors.len() as i32;
        let mut shares: Vec<DueFire> = Vec::with_capacity(executors.len());
        let mut first = due.clone();
        first.fire.shard_total = total;
        shares.push(first);
        for index in 1..total {
            let mut fire = due.fire.clone();
            fire.id = uuid::Uuid::now_v7().to_string();
            fire.shard_index = index;
            fire.shard_total = total;
            // Recorded as already out, like the fenced original: only a dead node's
            // orphan sweep may send it again.
            fire.dispatched_at = Some(now_ms());
            shares.push(DueFire {
                fire,
                job: due.job.clone(),
            });
        }
        let original = due.fire.id.clone();
        let siblings: Vec<db::fires::FireRow> =
            shares[1..].iter().map(|s| s.fire.clone()).collect();
        let recorded = self
            .db
            .run(true, move |conn| -> Result<Vec<String>, AppError> {
                use diesel::Connection;
                conn.transaction(|conn| {
                    db::fires::set_shard_total(conn, &original, total)?;
                    Ok(db::fires::insert_new(conn, &siblings)?)
                })
            })
            .await;
        let inserted: std::collections::HashSet<String> = match recorded {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                log::error!(
                    "fire {} job {}: could not record broadcast shares: {e}",
                    due.fire.id,
                    due.job.key
                );
                self.end(
                    due,
                    FireState::Failed,
                    None,
                    None,
                    Some(format!("broadcast shares could not be recorded: {e}")),
                )
                .await;
                return;
            }
        };
        let sends = shares
            .iter()
            .zip(executors)
            .filter(|(share, _)| share.fire.shard_index == 0 || inserted.contains(&share.fire.id))
            .map(|(share, executor)| async move {
                self.pools
                    .handed_out(&executor.row.app, &executor.label(), &share.job.id);
                let dispatched_at = now_ms();
                let deadline = dispatched_at + share.job.spec.timeout_ms as i64;
                let batch_url = executor.batches.then(|| executor.batch_url());
                let answer = self
                    .send(
                        share,
                        &executor.dispatch_url(),
                        batch_url.as_deref(),
                        dispatched_at,
                        deadline,
                    )
                    .await;
                self.record_answer(share, answer, executor.label(), dispatched_at, deadline)
                    .await;
            });
        futures_util::future::join_all(sends).await;
    }

    /// Tries the candidates in order until one takes the fire.
    async fn try_candidates(&self, due: &DueFire, app: &str, ordered: Vec<routing::Candidate>) {
        let spec = &due.job.spec;
        let mut refusals = Vec::new();
        let total = ordered.len();
        for candidate in ordered {
            // Counted before the answer, so fires sent meanwhile spread over the pool.
            self.pools.handed_out(app, &candidate.label(), &due.job.id);
            let dispatched_at = now_ms();
            let deadline = dispatched_at + spec.timeout_ms as i64;
            let url = candidate.dispatch_url();
            let batch_url = candidate.batches.then(|| candidate.batch_url());
            let answer = self
                .send(due, &url, batch_url.as_deref(), dispatched_at, deadline)
                .await;
            match answer {
                Answer::Failed(status, reason) => {
                    if status.is_none() {
                        // Not reachable: counts against its validity.
                        self.record_executor_failure(&candidate.row.id).await;
                    }
                    log::info!(
                        "fire {} job {}: executor {} did not take it ({reason}); trying the next one",
                        due.fire.id,
                        due.job.key,
                        candidate.label()
                    );
                    refusals.push((status, candidate.label(), reason, dispatched_at, deadline));
                }
                answer => {
                    self.record_answer(due, answer, candidate.label(), dispatched_at, deadline)
                        .await;
                    return;
                }
            }
        }
        if let Some((status, label, reason, dispatched_at, deadline)) = refusals.pop() {
            let reason = if total > 1 {
                format!("all {total} executors of app {app} refused or failed; last: {reason}")
            } else {
                reason
            };
            self.record_answer(
                due,
                Answer::Failed(status, reason),
                label,
                dispatched_at,
                deadline,
            )
            .await;
        }
    }

    /// Round-robin position of a job on this node.
    fn next_turn(&self, job_id: &str) -> usize {
        let mut turns = self.turns.borrow_mut();
        let turn = turns.entry(job_id.to_string()).or_insert(0);
        *turn = turn.wrapping_add(1);
        *turn
    }

    async fn record_executor_failure(&self, executor_id: &str) {
        let id = executor_id.to_string();
        let result = self
            .db
            .run(true, move |conn| {
                db::executors::record_failure(conn, &id, MAX_EXECUTOR_FAILURES)
                    .map_err(AppError::from)
            })
            .await;
        if let Err(e) = result {
            log::warn!("could not record a dispatch failure of executor {executor_id}: {e}");
        }
        // It may have become invalid.
        self.pools.registry_changed();
    }

    /// Puts the fire back to wait: released, due again at `due_at`.
    async fn postpone(&self, due: &DueFire, due_at: i64) {
        let id = due.fire.id.clone();
        let result = self
            .db
            .run(true, move |conn| {
                db::fires::postpone(conn, &id, due_at).map_err(AppError::from)
            })
            .await;
        if let Err(e) = result {
            log::error!(
                "fire {} job {}: could not postpone: {e}",
                due.fire.id,
                due.job.key
            );
        }
    }

    /// Records what the target answered: `running` on an acknowledgement, a terminal
    /// state (and maybe a retry) otherwise.
    async fn record_answer(
        &self,
        due: &DueFire,
        answer: Answer,
        executor: String,
        dispatched_at: i64,
        deadline: i64,
    ) {
        let fire_id = due.fire.id.clone();
        let job_key = due.job.key.clone();
        let acked_at = now_ms();
        log::debug!("fire {fire_id} job {job_key}: {answer:?}");
        let recorded = match answer {
            Answer::Accepted(status) => self
                .record(
                    &fire_id,
                    Answered::Acknowledged(db::fires::Acknowledged {
                        id: fire_id.clone(),
                        dispatched_at,
                        acked_at,
                        deadline_at: deadline,
                        http_status: status as i32,
                        executor,
                    }),
                )
                .await
                .map(|_| ()),
            Answer::Succeeded(status, output) => {
                self.end_dispatched(
                    due,
                    FireState::Succeeded,
                    (dispatched_at, acked_at),
                    executor,
                    Some(status),
                    Some(output),
                    None,
                )
                .await
            }
            Answer::Failed(status, error) => {
                log::info!("fire {fire_id} job {job_key}: dispatch failed: {error}");
                self.end_dispatched(
                    due,
                    FireState::Failed,
                    (dispatched_at, acked_at),
                    executor,
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

    /// Records what became of a fire; its send slot goes to the next fire meanwhile.
    async fn record(&self, fire_id: &str, answer: Answered) -> Result<Option<Ended>, AppError> {
        self.slots.answered(fire_id);
        self.recorder.submit(answer).await
    }

    /// Ids of this job's running fires.
    async fn running_fires(&self, due: &DueFire) -> Result<Vec<String>, AppError> {
        let job_id = due.job.id.clone();
        self.db
            .run(false, move |conn| {
                Ok::<_, AppError>(db::fires::running_ids_for_job(conn, &job_id)?)
            })
            .await
    }

    /// Sends the fire to `url`, or, in callback mode, in a batch to `batch_url` when the
    /// executor takes batches and the fire is small enough to share a request.
    async fn send(
        &self,
        due: &DueFire,
        url: &str,
        batch_url: Option<&str>,
        dispatched_at: i64,
        deadline: i64,
    ) -> Answer {
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
            shard: (due.fire.shard_total > 1).then(|| Shard {
                index: due.fire.shard_index as u32,
                total: due.fire.shard_total as u32,
            }),
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => return Answer::Failed(None, format!("could not encode the request: {e}")),
        };
        if let Some(batch_url) = batch_url {
            if due.job.spec.mode == Mode::Callback && body.len() <= protocol::MAX_BATCHED_FIRE_BYTES
            {
                return self.batches.send(batch_url, request.fire_id, body).await;
            }
        }
        let body = bytes::Bytes::from(body);
        let timeout = match due.job.spec.mode {
            // A plain webhook does the work inside the request: it may take up to the job's timeout.
            Mode::Sync => Duration::from_millis(due.job.spec.timeout_ms),
            Mode::Callback => self
                .dispatch_timeout
                .min(Duration::from_millis(due.job.spec.timeout_ms)),
        };
        let started = std::time::Instant::now();
        let signature = protocol::sign_now(&self.secret, &body);
        let build = || {
            self.client
                .post(url)
                .timeout(timeout)
                .insert_header((awc::http::header::CONTENT_TYPE, "application/json"))
                .insert_header((protocol::FIRE_HEADER, due.fire.id.as_str()))
                .insert_header((
                    protocol::SCHEDULED_HEADER,
                    request.scheduled_at.to_rfc3339(),
                ))
                .insert_header((protocol::ATTEMPT_HEADER, request.attempt.to_string()))
                .insert_header((protocol::SIGNATURE_HEADER, signature.as_str()))
        };
        let sent = send_once_more_if_closed(build, body).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                crate::metrics::dispatch_answered(started, "failed");
                return Answer::Failed(None, format!("request to {url} failed: {e}"));
            }
        };
        let status = response.status();
        let text = read_answer(&mut response).await;
        let answer = interpret(due.job.spec.mode, status, text);
        crate::metrics::dispatch_answered(started, answer.kind());
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn end_dispatched(
        &self,
        due: &DueFire,
        state: FireState,
        (dispatched_at, acked_at): (i64, i64),
        executor: String,
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
            executor: Some(executor),
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
        let ending = Ending {
            fire: due.fire.clone(),
            job: due.job.clone(),
            finish,
        };
        let ended = self
            .record(&due.fire.id, Answered::Ended(ending))
            .await?
            .unwrap_or_default();
        if let Some(retry) = &ended.retry {
            log::info!(
                "fire {} job {}: attempt {} scheduled at {}",
                due.fire.id,
                due.job.key,
                retry.attempt,
                crate::time::to_rfc3339(retry.due_at)
            );
        }
        if ended.made_new_work() {
            (self.on_retry)();
        }
        Ok(())
    }
}

/// Sends `body` with the request `build` makes. A pooled keep-alive connection the
/// target closed just as it was reused is sent on once more, on a fresh one (executors
/// de-duplicate by fire id).
async fn send_once_more_if_closed(
    build: impl Fn() -> awc::ClientRequest,
    body: bytes::Bytes,
) -> <awc::SendClientRequest as std::future::Future>::Output {
    let sent = build().send_body(body.clone()).await;
    match sent {
        Err(awc::error::SendRequestError::Connect(awc::error::ConnectError::Disconnected)) => {
            build().send_body(body).await
        }
        sent => sent,
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
        _ => refused(code, text),
    }
}

/// A target's refusal with HTTP `code`, and the start of what it said.
fn refused(code: u16, text: String) -> Answer {
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
