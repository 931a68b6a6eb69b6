//! `/`: the dashboard page, and `/ui/api/dashboard`, the figures it charts
//! (aggregated here so the browser does not page through every fire of the hour).

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::html::layout;
use super::logged_in;
use crate::auth::Admin;
use crate::db;
use crate::error::AppResult;
use crate::routes::State;
use crate::time::{now_ms, to_rfc3339};

pub async fn page(req: HttpRequest) -> AppResult<HttpResponse> {
    logged_in(&req, |s| {
        layout(
            s,
            "Dashboard",
            "dashboard",
            "dashboard",
            r#"
<div class="cards">
  <section class="card" aria-labelledby="h-jobs"><h2 id="h-jobs">Jobs by state</h2><dl id="jobs-by-state" class="stats"></dl></section>
  <section class="card" aria-labelledby="h-rate"><h2 id="h-rate">Success rate (last hour)</h2><p id="success-rate" class="big">–</p><p id="fire-totals" class="muted"></p></section>
  <section class="card" aria-labelledby="h-exec"><h2 id="h-exec">Executors</h2><dl id="executor-validity" class="stats"></dl></section>
  <section class="card" aria-labelledby="h-nodes"><h2 id="h-nodes">Cluster nodes</h2><ul id="nodes" class="plain"></ul></section>
</div>
<section class="card wide" aria-labelledby="h-outcomes"><h2 id="h-outcomes">Fires in the last hour by outcome</h2><div id="chart-outcomes" class="chart"></div><ul id="legend-outcomes" class="legend"></ul></section>
<section class="card wide" aria-labelledby="h-lag"><h2 id="h-lag">Firing lag p50 / p99 (due → dispatched)</h2><p id="lag-summary" class="muted"></p><div id="chart-lag" class="chart"></div></section>
<section class="card wide" aria-labelledby="h-failing"><h2 id="h-failing">Failing jobs (last hour)</h2>
<table id="failing-jobs"><thead><tr><th scope="col">Job</th><th scope="col">Failures</th><th scope="col">Last error</th></tr></thead><tbody></tbody></table></section>
"#,
        )
    })
    .await
}

/// Width of one chart bucket.
const BUCKET_MS: i64 = 5 * 60 * 1000;
const WINDOW_MS: i64 = 60 * 60 * 1000;
/// Most recent fires of the hour the charts are drawn from.
const CHART_SAMPLE: i64 = 20_000;
/// Failing jobs listed, most failures first.
const FAILING_SHOWN: usize = 10;

#[derive(Debug, Serialize)]
struct Bucket {
    start: String,
    /// Fires per state recorded in this bucket.
    outcomes: BTreeMap<String, i64>,
    lag_p50_ms: Option<i64>,
    lag_p99_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct FailingJob {
    job_id: String,
    job: String,
    failures: i64,
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Dashboard {
    jobs_by_state: BTreeMap<String, i64>,
    fires_by_state: BTreeMap<String, i64>,
    /// Succeeded among finished fires, in percent; none when nothing finished.
    success_rate: Option<f64>,
    lag_p50_ms: Option<i64>,
    lag_p99_ms: Option<i64>,
    buckets: Vec<Bucket>,
    /// True when the charts show only the most recent CHART_SAMPLE fires of the hour.
    sampled: bool,
    failing_jobs: Vec<FailingJob>,
    executors_valid: i64,
    executors_invalid: i64,
    nodes: Vec<serde_json::Value>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

const FINISHED: &[&str] = &["succeeded", "failed", "timed_out", "lost", "cancelled"];
const FAILED: &[&str] = &["failed", "timed_out", "lost"];

pub async fn data(_: Admin, state: State) -> AppResult<HttpResponse> {
    let executor_timeout = state.settings.scheduler.executor_timeout_ms;
    let node_timeout = state.settings.scheduler.node_timeout_ms as i64;
    let now = now_ms();
    let since = now - WINDOW_MS;
    let dashboard = state
        .db
        .run(false, move |conn| -> AppResult<Dashboard> {
            let mut jobs_by_state: BTreeMap<String, i64> = db::console::job_counts_by_state(conn)?
                .into_iter()
                .collect();
            let pausing = db::console::pausing_jobs(conn)?;
            if pausing > 0 {
                *jobs_by_state.entry("paused".into()).or_default() -= pausing;
                jobs_by_state.insert("pausing".into(), pausing);
            }
            // Exact totals from SQL; the charts use the most recent fires only, so a
            // busy hour does not load every row into memory.
            let fires_by_state: BTreeMap<String, i64> =
                db::console::fire_counts_since(conn, since)?
                    .into_iter()
                    .collect();
            let fires = db::console::fires_since(conn, since, CHART_SAMPLE)?;
            let sampled = fires.len() as i64 == CHART_SAMPLE;
            let first_bucket = since - since.rem_euclid(BUCKET_MS);
            let bucket_count = ((now - first_bucket) / BUCKET_MS + 1) as usize;
            let mut outcomes = vec![BTreeMap::<String, i64>::new(); bucket_count];
            let mut lags = vec![Vec::<i64>::new(); bucket_count];
            let mut all_lags = Vec::new();
            for fire in &fires {
                let index = ((fire.fired_at - first_bucket) / BUCKET_MS).max(0) as usize;
                let index = index.min(bucket_count - 1);
                *outcomes[index].entry(fire.state.clone()).or_default() += 1;
                if let Some(dispatched) = fire.dispatched_at {
                    let lag = (dispatched - fire.due_at).max(0);
                    lags[index].push(lag);
                    all_lags.push(lag);
                }
            }
            all_lags.sort_unstable();
            let buckets = outcomes
                .into_iter()
                .zip(lags)
                .enumerate()
                .map(|(i, (outcomes, mut lags))| {
                    lags.sort_unstable();
                    Bucket {
                        start: to_rfc3339(first_bucket + i as i64 * BUCKET_MS),
                        outcomes,
                        lag_p50_ms: percentile(&lags, 50.0),
                        lag_p99_ms: percentile(&lags, 99.0),
                    }
                })
                .collect();
            let finished: i64 = FINISHED.iter().filter_map(|s| fires_by_state.get(*s)).sum();
            let succeeded = fires_by_state.get("succeeded").copied().unwrap_or(0);
            let success_rate = (finished > 0)
                .then(|| (succeeded as f64 * 1000.0 / finished as f64).round() / 10.0);
            let mut failing = db::console::failures_by_job_since(conn, since, FAILED)?;
            failing.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            failing.truncate(FAILING_SHOWN);
            let ids: Vec<String> = failing.iter().map(|(id, _)| id.clone()).collect();
            let names: HashMap<String, String> = db::jobs::find_many(conn, &ids)?
                .into_iter()
                .map(|j| (j.id, format!("{}/{}", j.group_name, j.name)))
                .collect();
            let mut failing_jobs = Vec::with_capacity(failing.len());
            for (job_id, failures) in failing {
                failing_jobs.push(FailingJob {
                    job: names
                        .get(&job_id)
                        .cloned()
                        .unwrap_or_else(|| job_id.clone()),
                    last_error: db::console::last_error(conn, &job_id, since, FAILED)?,
                    job_id,
                    failures,
                });
            }
            let executors = db::executors::list(conn, None)?;
            let executors_valid = executors
                .iter()
                .filter(|e| e.is_valid(now, executor_timeout))
                .count() as i64;
            let nodes = db::nodes::list(conn)?
                .into_iter()
                .map(|n| {
                    serde_json::json!({
                        "id": n.id,
                        "hostname": n.hostname,
                        "started_at": to_rfc3339(n.started_at),
                        "last_heartbeat_at": to_rfc3339(n.last_heartbeat_at),
                        "alive": n.stopped_at.is_none() && now - n.last_heartbeat_at < node_timeout,
                    })
                })
                .collect();
            Ok(Dashboard {
                jobs_by_state,
                fires_by_state,
                success_rate,
                lag_p50_ms: percentile(&all_lags, 50.0),
                lag_p99_ms: percentile(&all_lags, 99.0),
                buckets,
                sampled,
                failing_jobs,
                executors_valid,
                executors_invalid: executors.len() as i64 - executors_valid,
                nodes,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(dashboard))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
