//! `GET /metrics`: the Prometheus text exposition. Counters come from the hot paths
//! (see [`crate::metrics`]); gauges about stored state are read here, per scrape.

use actix_web::HttpResponse;

use super::State;
use crate::db;
use crate::error::{AppError, AppResult, Problem};
use crate::metrics::{render, ScrapeState};

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn metrics(state: State) -> AppResult<HttpResponse> {
    let executor_timeout = state.settings.scheduler.executor_timeout_ms;
    let node_timeout = state.settings.scheduler.node_timeout_ms as i64;
    let mut scrape = state
        .db
        .run(false, move |conn| -> AppResult<ScrapeState> {
            let now = crate::time::now_ms();
            let mut counts: std::collections::BTreeMap<(String, bool), i64> = Default::default();
            for row in db::executors::list(conn, None)? {
                let valid = row.is_valid(now, executor_timeout);
                *counts.entry((row.app, valid)).or_default() += 1;
            }
            let nodes_alive = db::nodes::list(conn)?
                .iter()
                .filter(|n| n.stopped_at.is_none() && now - n.last_heartbeat_at < node_timeout)
                .count() as i64;
            Ok(ScrapeState {
                executors: counts
                    .into_iter()
                    .map(|((app, valid), n)| (app, valid, n))
                    .collect(),
                nodes_alive,
                pools: Vec::new(),
            })
        })
        .await?;
    scrape.pools = state.db.pool_states();
    let text = render(&scrape).map_err(|e| AppError::Internal(format!("metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
