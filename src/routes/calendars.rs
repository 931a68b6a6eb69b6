//! `/api/v1/calendars` (exclusion sets for triggers), `/api/v1/plan` and
//! `/api/v1/jobs/{id}/plan` (upcoming fires), `/api/v1/groups/{group}/pause|resume`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{parse_id, JsonBody, State};
use crate::auth::Admin;
use crate::db;
use crate::domain::CalendarInput;
use crate::error::{AppError, AppResult, Problem};
use crate::lifecycle;
use crate::plan::{self, Plan, DEFAULT_PLAN_ROWS, MAX_PLAN_ROWS};
use crate::routes::views::JobView;
use crate::routes::Items;
use crate::time::now_ms;

#[utoipa::path(
    post,
    path = "/api/v1/calendars",
    tag = "calendars",
    operation_id = "create_calendar",
    summary = "Create a calendar (named exclusions for triggers)",
    request_body(content = CalendarInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the calendar", body = CalendarInput),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A calendar with this name exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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

#[utoipa::path(
    put,
    path = "/api/v1/calendars/{name}",
    tag = "calendars",
    operation_id = "replace_calendar",
    summary = "Replace a calendar; triggers using it are re-planned",
    params(("name" = String, Path, description = "Calendar name")),
    request_body(content = CalendarInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The calendar", body = CalendarInput),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/calendars",
    tag = "calendars",
    operation_id = "list_calendars",
    summary = "List calendars",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Calendars", body = Items<CalendarInput>),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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
    Ok(HttpResponse::Ok().json(crate::routes::Items { items }))
}

#[utoipa::path(
    get,
    path = "/api/v1/calendars/{name}",
    tag = "calendars",
    operation_id = "get_calendar",
    summary = "Get a calendar",
    params(("name" = String, Path, description = "Calendar name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The calendar", body = CalendarInput),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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

#[utoipa::path(
    delete,
    path = "/api/v1/calendars/{name}",
    tag = "calendars",
    operation_id = "delete_calendar",
    summary = "Delete a calendar no trigger uses",
    params(("name" = String, Path, description = "Calendar name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such calendar", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A trigger still uses the calendar", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn delete(_: Admin, state: State, name: web::Path<String>) -> AppResult<HttpResponse> {
    let name = name.into_inner();
    state
        .db
        .run(true, move |conn| lifecycle::delete_calendar(conn, &name))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

#[utoipa::path(
    get,
    path = "/api/v1/plan",
    tag = "jobs",
    operation_id = "plan_all",
    summary = "Upcoming fires of all jobs in a window (default: until the end of tomorrow)",
    params(PlanQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan", body = Plan),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/plan",
    tag = "jobs",
    operation_id = "plan_job",
    summary = "Upcoming fires of one job",
    params(("id" = String, Path, description = "Job id (UUID)"), PlanQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan, with the job's state", body = JobPlan),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
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
    Ok(HttpResponse::Ok().json(JobPlan {
        plan,
        job_state: JobView::from(&job).state,
    }))
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
    let refused = refused
        .into_iter()
        .map(|(job, reason)| Refused { job, reason })
        .collect();
    Ok(HttpResponse::Ok().json(GroupChange { jobs, refused }))
}

/// The answer to a group pause or resume.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct GroupChange {
    /// The jobs of the group that changed, as they are now.
    pub jobs: Vec<JobView>,
    /// Jobs of the group that could not change, and why.
    pub refused: Vec<Refused>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Refused {
    pub job: String,
    pub reason: String,
}

/// `/api/v1/jobs/{id}/plan`: the plan, with the job's state.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobPlan {
    #[serde(flatten)]
    pub plan: Plan,
    /// `active`, `paused` or `pausing`.
    pub job_state: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/groups/{group}/pause",
    tag = "jobs",
    operation_id = "pause_group",
    summary = "Pause every job of a group",
    params(("group" = String, Path, description = "Job group")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What changed and what was refused", body = GroupChange),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn pause_group(
    _: Admin,
    state: State,
    group: web::Path<String>,
) -> AppResult<HttpResponse> {
    set_group_paused(state, group.into_inner(), true).await
}

#[utoipa::path(
    post,
    path = "/api/v1/groups/{group}/resume",
    tag = "jobs",
    operation_id = "resume_group",
    summary = "Resume every job of a group",
    params(("group" = String, Path, description = "Job group")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What changed and what was refused", body = GroupChange),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn resume_group(
    _: Admin,
    state: State,
    group: web::Path<String>,
) -> AppResult<HttpResponse> {
    set_group_paused(state, group.into_inner(), false).await
}
