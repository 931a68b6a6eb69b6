//! `/api/v1/jobs`: create, list, get, update, delete, pause, resume, run now.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{page_bounds, parse_id, parse_json, JsonBody, Page, RawBody, State};
use crate::auth::Admin;
use crate::db;
use crate::domain::JobInput;
use crate::error::{AppError, AppResult, Problem};
use crate::lifecycle::{self, StoredJob};
use crate::routes::views::{FireView, JobView};
use crate::time::now_ms;

fn created(stored: &StoredJob) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/jobs/{}", stored.job.id),
        ))
        .json(JobView::from(stored))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "create_job",
    summary = "Create a job with its triggers",
    request_body(content = JobInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the job", body = JobView),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A job with this group and name exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    _: Admin,
    state: State,
    JsonBody(input): JsonBody<JobInput>,
) -> AppResult<HttpResponse> {
    let now = now_ms();
    let spec = input.validate(state.settings.scheduler.default_job_timeout_ms)?;
    let triggers = lifecycle::validate_triggers(&input, now)?;
    let stored = state
        .db
        .run(true, move |conn| {
            lifecycle::create(conn, &input, spec, triggers, now)
        })
        .await?;
    log::info!(
        "job {}/{} created (id {})",
        stored.job.group_name,
        stored.job.name,
        stored.job.id
    );
    state.scheduler.wake();
    Ok(created(&stored))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    group: Option<String>,
    state: Option<String>,
    /// Text found anywhere in the group, name or description (any case). Answered
    /// from a trigram index (3 characters or more; shorter text scans the jobs).
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "List jobs",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of jobs", body = Page<JobView>),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(_: Admin, state: State, query: web::Query<ListQuery>) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let (limit, offset) = page_bounds(query.limit, query.offset)?;
    if let Some(s) = &query.state {
        if crate::domain::JobState::parse(s).is_none() {
            return Err(AppError::invalid(
                "state",
                format!("{s:?} is not a job state (active, paused)"),
            ));
        }
    }
    let filter = db::jobs::JobFilter {
        group: query.group,
        state: query.state,
        text: query.q,
        limit,
        offset,
    };
    let page = state
        .db
        .run(false, move |conn| -> AppResult<Page<JobView>> {
            let (rows, total) = db::jobs::list(conn, &filter)?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(JobView::from(&lifecycle::assemble(conn, row)?));
            }
            Ok(Page {
                items,
                total,
                limit,
                offset,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "Get a job",
    params(("id" = String, Path, description = "Job id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(false, move |conn| lifecycle::load(conn, &id))
        .await?;
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "update_job",
    summary = "Replace a job; pending fires of the old schedule are dropped",
    params(("id" = String, Path, description = "Job id (UUID)")),
    request_body(content = JobInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job at its new version", body = JobView),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another job has this group and name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn update(
    _: Admin,
    state: State,
    id: web::Path<String>,
    JsonBody(input): JsonBody<JobInput>,
) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let now = now_ms();
    let spec = input.validate(state.settings.scheduler.default_job_timeout_ms)?;
    let triggers = lifecycle::validate_triggers(&input, now)?;
    let stored = state
        .db
        .run(true, move |conn| {
            lifecycle::update(conn, &id, &input, spec, triggers, now)
        })
        .await?;
    log::info!(
        "job {}/{} updated to version {}",
        stored.job.group_name,
        stored.job.name,
        stored.job.version
    );
    state.scheduler.wake();
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "delete_job",
    summary = "Delete a job and its history",
    params(("id" = String, Path, description = "Job id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A fire of the job is running", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn delete(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let job_id = id.clone();
    state
        .db
        .run(true, move |conn| lifecycle::delete(conn, &job_id))
        .await?;
    log::info!("job {id} deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/pause",
    tag = "jobs",
    operation_id = "pause_job",
    summary = "Pause a job (`pausing` while a fire still runs)",
    params(("id" = String, Path, description = "Job id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The paused job", body = JobView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Immediate jobs cannot be paused", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn pause(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(true, move |conn| lifecycle::pause(conn, &id, now_ms()))
        .await?;
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/resume",
    tag = "jobs",
    operation_id = "resume_job",
    summary = "Resume a job from now",
    params(("id" = String, Path, description = "Job id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The active job", body = JobView),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Immediate jobs cannot be resumed", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn resume(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(true, move |conn| lifecycle::resume(conn, &id, now_ms()))
        .await?;
    state.scheduler.wake();
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunNow {
    /// Replaces the job's payload for this fire only.
    payload: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/run",
    tag = "jobs",
    operation_id = "run_job_now",
    summary = "Fire a job once now, optionally with another payload",
    params(("id" = String, Path, description = "Job id (UUID)")),
    request_body(content = Option<RunNow>, description = "Optional; an empty body uses the job's payload", content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The recorded fire", body = FireView),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn run_now(
    _: Admin,
    state: State,
    id: web::Path<String>,
    RawBody(body): RawBody,
) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    // The body is optional: empty means "use the job's payload".
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<RunNow>(&body)?.payload
    };
    let fire = state
        .db
        .run(true, move |conn| {
            lifecycle::run_now(conn, &id, payload, now_ms())
        })
        .await?;
    state.scheduler.wake();
    Ok(HttpResponse::Accepted().json(FireView::from(&fire)))
}
