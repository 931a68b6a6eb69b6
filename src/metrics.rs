//! Prometheus metrics. The hot paths (claim, dispatch, outcome, write-back) call the
//! small functions here, one line each; the counters behind them are process-wide
//! atomics in the prometheus crate's vecs, so recording never takes a lock of ours.
//! Gauges that describe stored state (executors, nodes, pool) are read from the
//! database and the pools when `/metrics` is scraped, into a per-scrape registry,
//! so several nodes in one process (the tests) never mix their gauges.
//!
//! Labels are bounded: job *group* (never job name or fire id), fire state, answer
//! and result kinds from fixed sets, executor app.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::domain::MisfirePolicy;
use crate::time::now_ms;

struct Metrics {
    registry: Registry,
    fires_finished: IntCounterVec,
    fire_lag: Histogram,
    claim_batch: Histogram,
    claim_duration: Histogram,
    dispatch_duration: HistogramVec,
    write_backs: IntCounterVec,
    write_back_requests: IntCounterVec,
    dispatch_batch: Histogram,
    retries: IntCounterVec,
    misfires: IntCounterVec,
    purged: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(vec.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    vec
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    registry
        .register(Box::new(histogram.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    histogram
}

// The metric definitions are constants of the program: a malformed one is a bug
// found by the first test that scrapes, hence the panics above.
static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| {
        let registry = Registry::new();
        let dispatch_duration = HistogramVec::new(
            HistogramOpts::new(
                "cronhook_dispatch_duration_seconds",
                "Time from sending a fire's request to its target's answer, by answer.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["answer"],
        )
        .unwrap_or_else(|e| panic!("cronhook_dispatch_duration_seconds is malformed: {e}"));
        registry
            .register(Box::new(dispatch_duration.clone()))
            .unwrap_or_else(|e| panic!("cronhook_dispatch_duration_seconds registered twice: {e}"));
        Metrics {
        fires_finished: counter(
            &registry,
            "cronhook_fires_finished_total",
            "Fires that reached a terminal state, by job group and state.",
            &["group", "state"],
        ),
        fire_lag: histogram(
            &registry,
            "cronhook_fire_lag_seconds",
            "How late a fire was sent, compared with the instant it was due.",
            vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        ),
        claim_batch: histogram(
            &registry,
            "cronhook_claim_batch_fires",
            "Fires claimed per claim round (due triggers and pending fires together).",
            vec![0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
        ),
        claim_duration: histogram(
            &registry,
            "cronhook_claim_duration_seconds",
            "Duration of one claim round's database work.",
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        ),
        dispatch_duration,
        write_backs: counter(
            &registry,
            "cronhook_write_backs_total",
            "Executor write-backs received, by how they were taken.",
            &["result"],
        ),
        write_back_requests: counter(
            &registry,
            "cronhook_write_back_requests_total",
            "Write-back requests received: `single` (one result) or `batch` (several).",
            &["kind"],
        ),
        dispatch_batch: histogram(
            &registry,
            "cronhook_dispatch_batch_fires",
            "Fires per batch dispatch request (executors that take batches).",
            vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 256.0],
        ),
        retries: counter(
            &registry,
            "cronhook_retries_total",
            "Retry attempts scheduled after a failed, timed-out or lost fire, by job group.",
            &["group"],
        ),
        misfires: counter(
            &registry,
            "cronhook_misfires_total",
            "Triggers found late beyond their misfire threshold, by job group and policy applied.",
            &["group", "policy"],
        ),
        purged: counter(
            &registry,
            "cronhook_retention_purged_fires_total",
            "Finished fires removed by retention, by rule (age or per-job count).",
            &["rule"],
        ),
        registry,
    }
    });

/// The group part of a `group/name` job key.
pub fn group_of_key(key: &str) -> &str {
    key.split_once('/').map(|(group, _)| group).unwrap_or(key)
}

/// A fire reached a terminal state (counted once, by whoever ended it).
pub fn fire_finished(group: &str, state: &str) {
    METRICS
        .fires_finished
        .with_label_values(&[group, state])
        .inc();
}

/// A fire is about to be sent; `due_at` is the instant it was due (epoch ms).
pub fn fire_sent(due_at: i64) {
    let lag_ms = (now_ms() - due_at).max(0);
    METRICS.fire_lag.observe(lag_ms as f64 / 1000.0);
}

/// One claim round finished its database work after `started`, claiming `fires`.
pub fn claim_round(started: Instant, fires: usize) {
    METRICS
        .claim_duration
        .observe(started.elapsed().as_secs_f64());
    METRICS.claim_batch.observe(fires as f64);
}

/// A target answered (or failed to) `started` ago; `answer` is one of
/// `accepted`, `succeeded`, `failed`.
pub fn dispatch_answered(started: Instant, answer: &str) {
    METRICS
        .dispatch_duration
        .with_label_values(&[answer])
        .observe(started.elapsed().as_secs_f64());
}

/// A batch dispatch of `fires` fires was sent.
pub fn dispatch_batch(fires: usize) {
    METRICS.dispatch_batch.observe(fires as f64);
}

/// A write-back was answered; `result` is one of a fixed set (see the route).
pub fn write_back(result: &str) {
    METRICS.write_backs.with_label_values(&[result]).inc();
}

/// A write-back request arrived; `kind` is `single` or `batch`.
pub fn write_back_request(kind: &str) {
    METRICS.write_back_requests.with_label_values(&[kind]).inc();
}

/// A fire ended by [`end_fire`](crate::scheduler::outcome::end_fire): counts the
/// state and the retry it scheduled, if its change took.
pub fn fire_ended(ended: &crate::scheduler::outcome::Ended, state: &str) {
    if !ended.changed {
        return;
    }
    fire_finished(&ended.group, state);
    if ended.retry.is_some() {
        METRICS.retries.with_label_values(&[&ended.group]).inc();
    }
}

/// A trigger misfired; `policy` is the misfire policy that was applied. Counted when
/// the claim decides it, inside its transaction: a round that is rolled back and run
/// again may count one misfire twice.
pub fn misfire(group: &str, policy: MisfirePolicy) {
    let policy = match policy {
        MisfirePolicy::FireNow => "fire_now",
        MisfirePolicy::Skip => "skip",
        MisfirePolicy::CatchUp => "catch_up",
    };
    METRICS.misfires.with_label_values(&[group, policy]).inc();
}

/// Retention removed `n` fires under `rule` (`age` or `count`).
pub fn fires_purged(rule: &str, n: usize) {
    METRICS.purged.with_label_values(&[rule]).inc_by(n as u64);
}

/// State read at scrape time, for the per-scrape gauges.
#[derive(Debug, Default)]
pub struct ScrapeState {
    /// `(app, valid, count)`.
    pub executors: Vec<(String, bool, i64)>,
    pub nodes_alive: i64,
    /// `(pool, max, open, idle)`.
    pub pools: Vec<(&'static str, u32, u32, u32)>,
}

/// The text exposition of every metric: the process-wide counters and histograms,
/// then the gauges from `state`.
pub fn render(state: &ScrapeState) -> Result<String, prometheus::Error> {
    let scrape = Registry::new();
    let executors = IntGaugeVec::new(
        Opts::new(
            "cronhook_executors",
            "Registered executors per app, by validity (heartbeating and reachable).",
        ),
        &["app", "valid"],
    )?;
    for (app, valid, count) in &state.executors {
        executors
            .with_label_values(&[app.as_str(), if *valid { "true" } else { "false" }])
            .set(*count);
    }
    scrape.register(Box::new(executors))?;
    let nodes = IntGauge::new(
        "cronhook_cluster_nodes_alive",
        "Scheduler nodes with a fresh heartbeat, this one included.",
    )?;
    nodes.set(state.nodes_alive);
    scrape.register(Box::new(nodes))?;
    let pool_max = IntGaugeVec::new(
        Opts::new(
            "cronhook_db_pool_max_connections",
            "Largest number of connections a database pool opens.",
        ),
        &["pool"],
    )?;
    let pool_connections = IntGaugeVec::new(
        Opts::new(
            "cronhook_db_pool_connections",
            "Open database connections per pool, by whether they are in use or idle.",
        ),
        &["pool", "state"],
    )?;
    for (pool, max, open, idle) in &state.pools {
        pool_max.with_label_values(&[pool]).set(i64::from(*max));
        pool_connections
            .with_label_values(&[pool, "idle"])
            .set(i64::from(*idle));
        pool_connections
            .with_label_values(&[pool, "in_use"])
            .set(i64::from(open.saturating_sub(*idle)));
    }
    scrape.register(Box::new(pool_max))?;
    scrape.register(Box::new(pool_connections))?;

    let mut families = METRICS.registry.gather();
    families.extend(scrape.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_is_the_part_before_the_slash() {
        assert_eq!(group_of_key("billing/nightly"), "billing");
        assert_eq!(group_of_key("orphan"), "orphan");
    }

    #[test]
    fn render_names_the_scrape_gauges_with_their_labels() {
        let text = render(&ScrapeState {
            executors: vec![("billing".into(), true, 2), ("billing".into(), false, 1)],
            nodes_alive: 1,
            pools: vec![("write", 1, 1, 1)],
        })
        .expect("renders");
        assert!(text.contains("cronhook_executors{app=\"billing\",valid=\"true\"} 2"));
        assert!(text.contains("cronhook_executors{app=\"billing\",valid=\"false\"} 1"));
        assert!(text.contains("cronhook_cluster_nodes_alive 1"));
        assert!(text.contains("cronhook_db_pool_connections{pool=\"write\",state=\"in_use\"} 0"));
    }
}
