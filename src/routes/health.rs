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

/// How long readiness waits for a database connection before saying "not ready".
const READINESS_DB_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(state: State) -> HttpResponse {
    let db = state.db.clone();
    let migrations = actix_web::web::block(move || db.migrations_applied(READINESS_DB_WAIT)).await;
    let (database, migrations_ok) = match migrations {
        Ok(Ok(applied)) => (true, applied),
        Ok(Err(e)) => {
            log::warn!("readiness: database check failed: {e}");
            (false, false)
        }
        Err(e) => {
            log::warn!("readiness: database check did not run: {e}");
            (false, false)
        }
    };
    let scheduler = state.scheduler.is_alive();
    let ready = database && migrations_ok && scheduler;
    let body = json!({
        "ready": ready,
        "node": &*state.scheduler.node_id,
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
