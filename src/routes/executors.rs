//! `/api/v1/executors`: the signed heartbeat executors send, and the registry view.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use cronhook_sdk::protocol::{Heartbeat, HeartbeatReply};
use serde::{Deserialize, Serialize};

use super::{parse_json, RawBody, State};
use crate::auth::{Admin, AuthState};
use crate::db::executors::{ExecutorRow, HeartbeatUpdate};
use crate::db::{self, DbConnection};
use crate::error::{AppError, AppResult, Problem};
use crate::routes::views::Items;
use crate::time::{now_ms, to_rfc3339};

/// Cancels are repeated in heartbeat replies this long, so a beat lost in transit does
/// not lose the cancel (the SDK ignores a cancel for a fire it no longer runs).
const CANCEL_REPEAT_MS: i64 = 5 * 60_000;

/// The labels a fire's `executor` column may carry for this instance: the pool label
/// (`app/instance`) and, for URL-target jobs, its dispatch URL.
pub fn executor_labels(row: &ExecutorRow) -> Vec<String> {
    vec![
        crate::dispatch::routing::executor_label(&row.app, &row.instance_id),
        format!("{}{}", row.address, cronhook_sdk::protocol::FIRES_ROUTE),
    ]
}

fn clamp_u32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[utoipa::path(
    post,
    path = "/api/v1/executors/heartbeat",
    tag = "executors",
    operation_id = "executor_heartbeat",
    summary = "Executor heartbeat (signed); the reply lists fires to cancel",
    request_body(content = cronhook_sdk::protocol::Heartbeat, content_type = "application/json"),
    security(("signature" = [])),
    responses(
        (status = 200, description = "Recorded", body = cronhook_sdk::protocol::HeartbeatReply),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad or stale signature", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
/// `POST /api/v1/executors/heartbeat`, signed like a write-back.
pub async fn heartbeat(
    req: HttpRequest,
    state: State,
    auth: web::Data<AuthState>,
    RawBody(body): RawBody,
) -> AppResult<HttpResponse> {
    auth.verify_signature(&req, &body)?;
    let beat: Heartbeat = parse_json(&body)?;
    validate(&beat)?;
    let handlers =
        serde_json::to_string(&beat.handlers).map_err(|e| AppError::Internal(e.to_string()))?;
    let features =
        serde_json::to_string(&beat.features).map_err(|e| AppError::Internal(e.to_string()))?;
    let now = now_ms();
    let timeout_ms = state.settings.scheduler.executor_timeout_ms;
    let (routing_changed, cancel) = state
        .db
        .run(
            true,
            move |conn: &mut DbConnection| -> AppResult<(bool, Vec<String>)> {
                let update = HeartbeatUpdate {
                    address: beat.address.trim_end_matches('/'),
                    handlers: &handlers,
                    capacity: clamp_u32(beat.capacity),
                    running: clamp_u32(beat.running),
                    queued: clamp_u32(beat.queued),
                    cpu_percent: f64::from(beat.cpu_percent),
                    mem_used_bytes: i64::try_from(beat.mem_used_bytes).unwrap_or(i64::MAX),
                    mem_total_bytes: i64::try_from(beat.mem_total_bytes).unwrap_or(i64::MAX),
                    load1: beat.load1,
                    sdk_version: &beat.sdk_version,
                    last_heartbeat_at: now,
                    failures: 0,
                    valid: true,
                    features: &features,
                };
                let (before, row) =
                    db::executors::record_heartbeat(conn, &beat.app, &beat.instance_id, &update)?;
                // The console's load history.
                db::executor_load::record(conn, &row, now)?;
                let cancel =
                    db::fires::cancelled_on(conn, &executor_labels(&row), now - CANCEL_REPEAT_MS)?;
                Ok((
                    row.changes_routing(before.as_ref(), now, timeout_ms),
                    cancel,
                ))
            },
        )
        .await?;
    if routing_changed {
        state.scheduler.executors_changed();
    }
    let reply = HeartbeatReply {
        heartbeat_ms: state.settings.scheduler.executor_heartbeat_ms,
        cancel: cancel.iter().filter_map(|id| id.parse().ok()).collect(),
    };
    Ok(HttpResponse::Ok().json(reply))
}

fn validate(beat: &Heartbeat) -> AppResult<()> {
    if beat.app.trim().is_empty() {
        return Err(AppError::invalid("app", "must not be empty"));
    }
    if beat.instance_id.trim().is_empty() {
        return Err(AppError::invalid("instance_id", "must not be empty"));
    }
    let address = url::Url::parse(&beat.address).map_err(|e| {
        AppError::invalid("address", format!("{:?} is not a URL: {e}", beat.address))
    })?;
    if !matches!(address.scheme(), "http" | "https") {
        return Err(AppError::invalid("address", "must be an http or https URL"));
    }
    if beat.capacity == 0 {
        return Err(AppError::invalid("capacity", "must be at least 1"));
    }
    if beat.features.len() > MAX_FEATURES
        || beat
            .features
            .iter()
            .any(|f| f.is_empty() || f.len() > MAX_FEATURE_NAME)
    {
        return Err(AppError::invalid(
            "features",
            format!("at most {MAX_FEATURES} names of 1 to {MAX_FEATURE_NAME} characters each"),
        ));
    }
    Ok(())
}

/// Protocol features one heartbeat may advertise, and the length of a name.
const MAX_FEATURES: usize = 16;
const MAX_FEATURE_NAME: usize = 64;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    app: Option<String>,
}

/// One executor as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutorView {
    pub id: String,
    pub app: String,
    pub instance_id: String,
    pub address: String,
    pub handlers: Vec<String>,
    /// Optional protocol features it takes, e.g. `dispatch_batch`.
    pub features: Vec<String>,
    /// Heartbeat fresh and no run of dispatch failures.
    pub valid: bool,
    /// Fires in `fired` or `running` on this executor, as the scheduler counts them.
    pub task_list: i64,
    pub capacity: i32,
    pub running: i32,
    pub queued: i32,
    pub cpu_percent: f64,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub load1: f64,
    pub sdk_version: String,
    pub failures: i32,
    pub last_heartbeat_at: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/executors",
    tag = "executors",
    operation_id = "list_executors",
    summary = "List registered executors with their task lists and resources",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Executors", body = Items<ExecutorView>),
        (status = 400, description = "Malformed input; `detail` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
/// `GET /api/v1/executors?app=`.
pub async fn list(_: Admin, state: State, query: web::Query<ListQuery>) -> AppResult<HttpResponse> {
    let app = query.into_inner().app;
    let timeout = state.settings.scheduler.executor_timeout_ms;
    let items = state
        .db
        .run(false, move |conn| -> AppResult<Vec<ExecutorView>> {
            let rows = db::executors::list(conn, app.as_deref())?;
            let labels: Vec<String> = rows.iter().flat_map(executor_labels).collect();
            let counts: HashMap<String, i64> = db::fires::open_counts_by_executor(conn, &labels)?
                .into_iter()
                .collect();
            let now = now_ms();
            Ok(rows
                .into_iter()
                .map(|row| {
                    let task_list = executor_labels(&row)
                        .iter()
                        .map(|l| counts.get(l).copied().unwrap_or(0))
                        .sum();
                    ExecutorView {
                        valid: row.is_valid(now, timeout),
                        handlers: serde_json::from_str(&row.handlers).unwrap_or_default(),
                        features: serde_json::from_str(&row.features).unwrap_or_default(),
                        task_list,
                        last_heartbeat_at: to_rfc3339(row.last_heartbeat_at),
                        id: row.id,
                        app: row.app,
                        instance_id: row.instance_id,
                        address: row.address,
                        capacity: row.capacity,
                        running: row.running,
                        queued: row.queued,
                        cpu_percent: row.cpu_percent,
                        mem_used_bytes: row.mem_used_bytes,
                        mem_total_bytes: row.mem_total_bytes,
                        load1: row.load1,
                        sdk_version: row.sdk_version,
                        failures: row.failures,
                    }
                })
                .collect())
        })
        .await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}
