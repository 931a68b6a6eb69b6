//! `/api/v1/fires`: list and get for operators; the signed write-back for executors.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cronhook_sdk::protocol::WriteBack;
use serde::Deserialize;

use super::{page_bounds, parse_id, parse_json, Page, RawBody, State};
use crate::auth::{Admin, AuthState};
use crate::db;
use crate::db::batcher::Batcher;
use crate::db::Db;
use crate::domain::FireState;
use crate::error::{AppError, AppResult, Problem};
use crate::routes::views::FireView;
use crate::scheduler::outcome::{apply_write_backs, cancel_fire, WriteBackItem, WriteBackResult};
use crate::time::now_ms;
use std::rc::Rc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    job_id: Option<String>,
    state: Option<String>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/fires",
    tag = "fires",
    operation_id = "list_fires",
    summary = "List fires, newest first",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of fires", body = Page<FireView>),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(_: Admin, state: State, query: web::Query<ListQuery>) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    if let Some(s) = &query.state {
        if FireState::parse(s).is_none() {
            let known: Vec<&str> = FireState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(AppError::invalid(
                "state",
                format!("{s:?} is not a fire state ({})", known.join(", ")),
            ));
        }
    }
    let job_id = query
        .job_id
        .as_deref()
        .map(|id| parse_id("job", id))
        .transpose()?;
    let filter = db::fires::FireFilter {
        job_id,
        state: query.state,
        from: query.from.map(|t| t.timestamp_millis()),
        until: query.until.map(|t| t.timestamp_millis()),
        limit,
        offset,
    };
    let (rows, total) = state
        .db
        .run(false, move |conn| {
            db::fires::list(conn, &filter).map_err(AppError::from)
        })
        .await?;
    let items = rows.iter().map(FireView::from).collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/fires/{id}",
    tag = "fires",
    operation_id = "get_fire",
    summary = "Get a fire",
    params(("id" = String, Path, description = "Fire id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The fire", body = FireView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such fire", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("fire", &id)?;
    let fire = state
        .db
        .run(false, move |conn| {
            db::fires::find(conn, &id)?
                .ok_or_else(|| AppError::NotFound(format!("no fire with id {id}")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(FireView::from(&fire)))
}

#[utoipa::path(
    post,
    path = "/api/v1/fires/{id}/result",
    tag = "executors",
    operation_id = "write_back_result",
    summary = "Write back a fire's result (executor, signed)",
    params(("id" = String, Path, description = "Fire id (UUID)")),
    request_body(content = cronhook_sdk::protocol::WriteBack, content_type = "application/json"),
    security(("signature" = [])),
    responses(
        (status = 200, description = "Accepted, or an identical repeat", body = WriteBackAccepted),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad or stale signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such fire", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicts with the fire's stored terminal state (kept as a late result)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
/// `POST /api/v1/fires/{id}/result`, signed by the executor over the raw body.
pub async fn write_back(
    req: HttpRequest,
    state: State,
    auth: web::Data<AuthState>,
    id: web::Path<String>,
    RawBody(body): RawBody,
) -> AppResult<HttpResponse> {
    crate::metrics::write_back_request("single");
    let answer = take_write_back(req, state, auth, id, body).await;
    let label = write_back_label(answer.as_ref().map(|(outcome, _)| outcome));
    crate::metrics::write_back(label);
    answer.map(|(_, response)| response)
}

/// The write-backs a worker thread received, recorded in batches (`db::batcher`).
pub struct WriteBacks(Rc<Batcher<WriteBackItem, WriteBackResult>>);

impl WriteBacks {
    pub fn start(db: Db) -> WriteBacks {
        // Not retried while the database is away: the executor keeps the result and sends it again.
        WriteBacks(Batcher::new(db, apply_write_backs, false))
    }
}

/// The answer to an accepted write-back.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WriteBackAccepted {
    pub fire_id: String,
    pub accepted: bool,
    /// The same result was already stored (a retried delivery).
    pub repeat: bool,
    /// The fire had been cancelled; the result is kept as its late result.
    pub after_cancel: bool,
}

/// The metrics label of a write-back's answer (a fixed set).
fn write_back_label(answer: Result<&WriteBackResult, &AppError>) -> &'static str {
    match answer {
        Ok(WriteBackResult::Recorded { .. }) => "recorded",
        Ok(WriteBackResult::Repeat) => "repeat",
        Ok(WriteBackResult::AfterCancel) => "after_cancel",
        Err(AppError::Conflict(_)) => "conflict",
        Err(AppError::NotFound(_)) => "unknown_fire",
        Err(AppError::Unauthorized(_)) => "bad_signature",
        Err(AppError::Invalid(_)) => "invalid",
        Err(AppError::PayloadTooLarge(_)) => "too_large",
        Err(_) => "error",
    }
}

async fn take_write_back(
    req: HttpRequest,
    state: State,
    auth: web::Data<AuthState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> AppResult<(WriteBackResult, HttpResponse)> {
    auth.verify_signature(&req, &body)?;
    let result: WriteBack = parse_json(&body)?;
    let id = parse_id("fire", &id)?;
    let item = WriteBackItem {
        fire_id: id.clone(),
        result,
        received_at: now_ms(),
    };
    let outcome = record_write_back(&req, &state, item).await?;
    let response = HttpResponse::Ok().json(WriteBackAccepted {
        fire_id: id,
        accepted: true,
        repeat: outcome == WriteBackResult::Repeat,
        after_cancel: outcome == WriteBackResult::AfterCancel,
    });
    Ok((outcome, response))
}

/// Records one result (with whatever else this worker is recording) and says so.
async fn record_write_back(
    req: &HttpRequest,
    state: &State,
    item: WriteBackItem,
) -> AppResult<WriteBackResult> {
    let id = item.fire_id.clone();
    // Registered for every worker in `startup`.
    let write_backs = req
        .app_data::<WriteBacks>()
        .ok_or_else(|| AppError::Internal("the write-back batcher is not configured".into()))?;
    let outcome = write_backs.0.submit(item).await?;
    let recorded = matches!(outcome, WriteBackResult::Recorded { .. });
    if recorded && log::log_enabled!(log::Level::Info) {
        // Only for the log line (a read per result, so skipped when info is off), on a
        // reader so the (SQLite) writer is not held for it.
        let fire_id = id.clone();
        let job = state
            .db
            .run(false, move |conn| {
                db::jobs::key_of_fire(conn, &fire_id).map_err(AppError::from)
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "(unknown)".into());
        log::info!("fire {id} job {job}: result recorded");
    }
    if outcome == (WriteBackResult::Recorded { new_work: true }) {
        // A retry or child fires are due: look now rather than at the next poll.
        state.scheduler.wake();
    }
    Ok(outcome)
}

#[utoipa::path(
    post,
    path = "/api/v1/fires/results",
    tag = "executors",
    operation_id = "write_back_results",
    summary = "Write back several fires' results in one request (executor, signed)",
    request_body(content = cronhook_sdk::protocol::WriteBackBatch, content_type = "application/json"),
    security(("signature" = [])),
    responses(
        (status = 200, description = "Each result's own answer, in order: the status it would have had alone", body = cronhook_sdk::protocol::WriteBackBatchAnswer),
        (status = 400, description = "Malformed batch (not JSON, no results, more than 500); `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad or stale signature", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json")
    )
)]
/// `POST /api/v1/fires/results`: the SDK sends the results it has waiting together, so
/// a busy executor makes one request (and the scheduler one batch of writes) for many.
pub async fn write_back_many(
    req: HttpRequest,
    state: State,
    auth: web::Data<AuthState>,
    RawBody(body): RawBody,
) -> AppResult<HttpResponse> {
    use actix_web::ResponseError;
    use cronhook_sdk::protocol::{WriteBackAnswer, WriteBackBatch, WriteBackBatchAnswer};
    crate::metrics::write_back_request("batch");
    auth.verify_signature(&req, &body)?;
    let batch: WriteBackBatch = parse_json(&body)?;
    let max = cronhook_sdk::protocol::MAX_RESULTS_PER_BATCH;
    if batch.results.is_empty() || batch.results.len() > max {
        return Err(AppError::invalid(
            "results",
            format!("must hold 1 to {max} results, not {}", batch.results.len()),
        ));
    }
    let received_at = now_ms();
    let answers = batch.results.into_iter().map(|result| {
        let (req, state) = (&req, &state);
        async move {
            let fire_id = result.fire_id;
            let Some(id) = fire_id else {
                crate::metrics::write_back("invalid");
                return WriteBackAnswer {
                    fire_id,
                    status: 400,
                    repeat: false,
                    after_cancel: false,
                    detail: Some("fire_id: must be present in each result of a batch".into()),
                };
            };
            let item = WriteBackItem {
                fire_id: id.to_string(),
                result,
                received_at,
            };
            let outcome = record_write_back(req, state, item).await;
            crate::metrics::write_back(write_back_label(outcome.as_ref()));
            match outcome {
                Ok(outcome) => WriteBackAnswer {
                    fire_id,
                    status: 200,
                    repeat: outcome == WriteBackResult::Repeat,
                    after_cancel: outcome == WriteBackResult::AfterCancel,
                    detail: None,
                },
                Err(e) => {
                    let status = e.status_code().as_u16();
                    if status >= 500 {
                        log::error!("fire {id}: write-back in a batch failed: {e}");
                    }
                    WriteBackAnswer {
                        fire_id,
                        status,
                        repeat: false,
                        after_cancel: false,
                        detail: Some(e.public_detail()),
                    }
                }
            }
        }
    });
    let results = futures_util::future::join_all(answers).await;
    Ok(HttpResponse::Ok().json(WriteBackBatchAnswer { results }))
}

#[utoipa::path(
    post,
    path = "/api/v1/fires/{id}/cancel",
    tag = "fires",
    operation_id = "cancel_fire",
    summary = "Cancel a fire that has not ended",
    params(("id" = String, Path, description = "Fire id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cancelled fire", body = FireView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such fire", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The fire already ended", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
/// `POST /api/v1/fires/{id}/cancel`.
pub async fn cancel(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("fire", &id)?;
    let (fire, job) = state
        .db
        .run(true, move |conn| -> AppResult<_> {
            let fire = cancel_fire(conn, &id, now_ms(), "cancelled by an operator")?;
            let job = db::jobs::key_of_fire(conn, &fire.id)?;
            Ok((fire, job))
        })
        .await?;
    let job = job.unwrap_or_else(|| "(deleted)".into());
    log::info!("fire {} job {job}: cancelled by an operator", fire.id);
    Ok(HttpResponse::Ok().json(FireView::from(&fire)))
}

#[utoipa::path(
    post,
    path = "/api/v1/fires/{id}/retry",
    tag = "fires",
    operation_id = "retry_fire",
    summary = "Record a new attempt of a finished fire, due now",
    params(("id" = String, Path, description = "Fire id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The new attempt", body = FireView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such fire", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The fire has not finished", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
/// A new attempt of a finished fire, due now.
pub async fn retry(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("fire", &id)?;
    let fire = state
        .db
        .run(true, move |conn| {
            crate::lifecycle::retry_fire(conn, &id, now_ms())
        })
        .await?;
    log::info!(
        "fire {} job_id {}: attempt {} recorded on an operator's request",
        fire.id,
        fire.job_id,
        fire.attempt
    );
    state.scheduler.wake();
    Ok(HttpResponse::Accepted().json(FireView::from(&fire)))
}
