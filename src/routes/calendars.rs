//! `/api/v1/calendars` (exclusion sets for triggers), `/api/v1/plan` and
//! `/api/v1/jobs/{id}/plan` (upcoming fires), `/api/v1/groups/{group}/pause|resume`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{parse_id, JsonBody, State};
use crate::auth::Admin;
use crate::db;
use crate::domain::CalendarInput;
use crate::error::{AppError, AppResult};
use crate::lifecycle;
use crate::plan::{self, DEFAULT_PLAN_ROWS, MAX_PLAN_ROWS};
use crate::routes::views::JobView;
use crate::time::now_ms;

pub async fn create(
    _: Admin,
    state: State,
    JsonBody(input): JsonBody<CalendarInput>,
) -> AppResult<HttpResponse> {
    let calendar = input.validate()?;
    let (saved, _) = state
        .db
        .run(true, move |conn| {
            lifecycle::save_calendar(conn, calendar, false, now_ms())
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/calendars/{}", saved.input.name),
        ))
        .json(&saved.input))
}

pub async fn replace(
    _: Admin,
    state: State,
    name: web::Path<String>,
    JsonBody(input): JsonBody<CalendarInput>,
) -> AppResult<HttpResponse> {
    if input.name != *name {
        return Err(AppError::invalid(
            "name",
            format!(
                "{:?} does not match the calendar in the URL ({name:?})",
                input.name
            ),
        ));
    }
    let calendar = input.validate()?;
    let (saved, _) = state
        .db
        .run(true, move |conn| {
            lifecycle::save_calendar(conn, calendar, true, now_ms())
        })
        .await?;
    state.scheduler.wake();
    Ok(HttpResponse::Ok().json(&saved.input))
}

pub async fn list(_: Admin, state: State) -> AppResult<HttpResponse> {
    let rows = state
        .db
        .run(false, |conn| {
            db::calendars::list(conn).map_err(AppError::from)
        })
        .await?;
    let items = rows
        .iter()
        .map(|row| row.calendar().map(|c| c.input))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

pub async fn get(_: Admin, state: State, name: web::Path<String>) -> AppResult<HttpResponse> {
    let name = name.into_inner();
    let row = state
        .db
        .run(false, {
            let name = name.clone();
            move |conn| db::calendars::find(conn, &name).map_err(AppError::from)
        })
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no calendar named {name:?}")))?;
    Ok(HttpResponse::Ok().json(row.calendar()?.input))
}

pub async fn delete(_: Admin, state: State, name: web::Path<String>) -> AppResult<HttpResponse> {
    let name = name.into_inner();
    state
        .db
        .run(true, move |conn| lifecycle::delete_calendar(conn, &name))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    from: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    limit: Option<usize>,
}

fn plan_bounds(query: &PlanQuery) -> AppResult<(i64, Option<i64>, usize)> {
    let now = now_ms();
    let from = query.from.map_or(now, |t| t.timestamp_millis());
    let until = query.until.map(|t| t.timestamp_millis());
    if until.is_some_and(|until| until < from) {
        return Err(AppError::invalid("until", "is before from"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PLAN_ROWS);
    if !(1..=MAX_PLAN_ROWS).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PLAN_ROWS}"),
        ));
    }
    Ok((from, until, limit))
}

pub async fn plan_all(
    _: Admin,
    state: State,
    query: web::Query<PlanQuery>,
) -> AppResult<HttpResponse> {
    let (from, until, limit) = plan_bounds(&query)?;
    let plan = state
        .db
        .run(false, move |conn| {
            plan::plan(conn, None, from, until, limit, now_ms())
        })
        .await?;
    Ok(HttpResponse::Ok().json(plan))
}

pub async fn plan_job(
    _: Admin,
    state: State,
    id: web::Path<String>,
    query: web::Query<PlanQuery>,
) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    let (from, until, limit) = plan_bounds(&query)?;
    let plan = state
        .db
        .run(false, move |conn| {
            let job = lifecycle::load(conn, &id)?;
            let plan = plan::plan(conn, Some(vec![id]), from, until, limit, now_ms())?;
            Ok::<_, AppError>((job, plan))
        })
        .await?;
    let (job, plan) = plan;
    let mut body = serde_json::to_value(&plan).map_err(|e| AppError::Internal(e.to_string()))?;
    body["job_state"] = JobView::from(&job).state.into();
    Ok(HttpResponse::Ok().json(body))
}

async fn set_group_paused(state: State, group: String, paused: bool) -> AppResult<HttpResponse> {
    let (changed, refused) = state
        .db
        .run(true, move |conn| {
            lifecycle::set_group_paused(conn, &group, paused, now_ms())
        })
        .await?;
    if !paused {
        state.scheduler.wake();
    }
    let jobs: Vec<JobView> = changed.iter().map(JobView::from).collect();
    let refused: Vec<_> = refused
        .into_iter()
        .map(|(job, reason)| json!({ "job": job, "reason": reason }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs, "refused": refused })))
}

pub async fn pause_group(
    _: Admin,
    state: State,
    group: web::Path<String>,
) -> AppResult<HttpResponse> {
    set_group_paused(state, group.into_inner(), true).await
}

pub async fn resume_group(
    _: Admin,
    state: State,
    group: web::Path<String>,
) -> AppResult<HttpResponse> {
    set_group_paused(state, group.into_inner(), false).await
}
