//! `/api/v1/jobs`: create, list, get, update, delete, pause, resume, run now.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{page_bounds, parse_id, parse_json, JsonBody, Page, RawBody, State};
use crate::auth::Admin;
use crate::db;
use crate::domain::JobInput;
use crate::error::{AppError, AppResult};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    group: Option<String>,
    state: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

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

pub async fn get(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(false, move |conn| lifecycle::load(conn, &id))
        .await?;
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

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

pub async fn pause(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(true, move |conn| lifecycle::pause(conn, &id, now_ms()))
        .await?;
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

pub async fn resume(_: Admin, state: State, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let stored = state
        .db
        .run(true, move |conn| lifecycle::resume(conn, &id, now_ms()))
        .await?;
    state.scheduler.wake();
    Ok(HttpResponse::Ok().json(JobView::from(&stored)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunNow {
    /// Replaces the job's payload for this fire only.
    payload: Option<serde_json::Value>,
}

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
