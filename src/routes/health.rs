//! `/healthz` (the process answers), `/readyz` (database reachable, migrations
//! applied, scheduler loop alive) and the node list.

use actix_web::HttpResponse;
use serde_json::json;

use super::State;
use crate::auth::Admin;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::time::to_rfc3339;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: State) -> HttpResponse {
    let db = state.db.clone();
    let migrations = state
        .db
        .run(false, move |_| {
            db.migrations_applied().map_err(AppError::from)
        })
        .await;
    let (database, migrations_ok) = match migrations {
        Ok(applied) => (true, applied),
        Err(e) => {
            log::warn!("readiness: database check failed: {e}");
            (false, false)
        }
    };
    let scheduler = state.scheduler.is_alive();
    let ready = database && migrations_ok && scheduler;
    let body = json!({
        "ready": ready,
        "database": database,
        "migrations_applied": migrations_ok,
        "scheduler_loop": scheduler,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn nodes(_: Admin, state: State) -> AppResult<HttpResponse> {
    let timeout = state.settings.scheduler.node_timeout_ms as i64;
    let rows = state
        .db
        .run(false, |conn| db::nodes::list(conn).map_err(AppError::from))
        .await?;
    let now = crate::time::now_ms();
    let items: Vec<_> = rows
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "hostname": n.hostname,
                "started_at": to_rfc3339(n.started_at),
                "last_heartbeat_at": to_rfc3339(n.last_heartbeat_at),
                "stopped_at": n.stopped_at.map(to_rfc3339),
                "alive": n.stopped_at.is_none() && now - n.last_heartbeat_at < timeout,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
