//! `/executors`: every executor instance per app, with validity, task list, load,
//! CPU and memory gauges; and `/ui/api/executor-load`, the last hour of their load as
//! sampled from heartbeats.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse};

use super::html::layout;
use super::logged_in;
use crate::auth::Admin;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::routes::State;
use crate::time::now_ms;

pub async fn page(req: HttpRequest) -> AppResult<HttpResponse> {
    logged_in(&req, |s| {
        layout(
            s,
            "Executors",
            "executors",
            "executors",
            r#"
<p class="note" id="history-note">Load history: the last hour, one sample every 5 s at most, taken from the executors' heartbeats.</p>
<div id="executor-apps"></div>
<p id="executors-empty" class="muted" hidden>No executor has sent a heartbeat yet.</p>
"#,
        )
    })
    .await
}

/// How far back the executors page draws load history.
const HISTORY_MS: i64 = 3600 * 1000;

/// `GET /ui/api/executor-load`: `{ "<executor id>": [samples, oldest first] }`.
pub async fn load_history(_: Admin, state: State) -> AppResult<HttpResponse> {
    let samples = state
        .db
        .run(false, |conn| {
            db::executor_load::since(conn, now_ms() - HISTORY_MS).map_err(AppError::from)
        })
        .await?;
    let mut by_executor: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for s in samples {
        by_executor
            .entry(s.executor_id.clone())
            .or_default()
            .push(serde_json::json!({
                "at": crate::time::to_rfc3339(s.sampled_at),
                "running": s.running,
                "queued": s.queued,
                "capacity": s.capacity,
                "cpu_percent": s.cpu_percent,
                "mem_used_bytes": s.mem_used_bytes,
                "mem_total_bytes": s.mem_total_bytes,
            }));
    }
    Ok(HttpResponse::Ok().json(by_executor))
}
