//! A node stopped and started again on the same SQLite file keeps its jobs and
//! history, and applies each trigger's misfire policy to what it missed.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn every_second(app: &TestApp, hook: &Webhook, name: &str, misfire: &str) -> String {
    let job = app
        .create_job(json!({
            "name": name,
            "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{
                "kind": "interval",
                "interval_ms": 1000,
                "misfire": misfire,
                "misfire_threshold_ms": 1000,
            }],
        }))
        .await;
    job["id"].as_str().unwrap().to_string()
}

fn note(fire: &Value) -> &str {
    fire["error"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn restart_keeps_jobs_and_history_and_applies_the_misfire_policy() {
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    settings.scheduler.catch_up_max = 3;
    let hook = Webhook::start();
    let app = spawn_app_with(settings.clone());
    let fire_now = every_second(&app, &hook, "fire-now", "fire_now").await;
    let skip = every_second(&app, &hook, "skip", "skip").await;
    let catch_up = every_second(&app, &hook, "catch-up", "catch_up").await;
    for id in [&fire_now, &skip, &catch_up] {
        app.wait_fires(id, "two fires before the stop", |f| {
            f.iter().filter(|f| f["state"] == "succeeded").count() >= 2
        })
        .await;
    }
    let stopped_at = chrono::Utc::now().timestamp_millis();
    app.stop().await;
    // Down long enough to miss several instants beyond the 1 s threshold.
    tokio::time::sleep(Duration::from_millis(6_000)).await;

    let restarted_at = chrono::Utc::now().timestamp_millis();
    let app = spawn_app_with(settings);
    let (_, page) = app.get("/api/v1/jobs").await;
    assert_eq!(page["total"], 3, "jobs kept: {page}");
    for id in [&fire_now, &skip, &catch_up] {
        let fires = app.fires_of(id).await;
        let old = fires
            .iter()
            .filter(|f| ms(&f["scheduled_at"]) < stopped_at && f["state"] == "succeeded")
            .count();
        assert!(old >= 2, "history kept for {id}: {fires:?}");
    }
    // Instants that fell due while the node was down, beyond the threshold at restart.
    let missed = |f: &&Value| {
        let at = ms(&f["scheduled_at"]);
        at > stopped_at && at < restarted_at - 1_000
    };
    let ran =
        |f: &&Value| f["state"] == "succeeded" || f["state"] == "fired" || f["state"] == "running";

    // fire_now: one fire for the latest missed instant, noted; the other missed instants never run.
    let fires = app
        .wait_fires(&fire_now, "the fire_now misfire", |f| {
            f.iter()
                .any(|f| note(f).contains("fired once now") && f["state"] == "succeeded")
        })
        .await;
    let once: Vec<&Value> = fires
        .iter()
        .filter(|f| note(f).contains("fired once now"))
        .collect();
    assert_eq!(once.len(), 1, "{once:?}");
    let ran_missed: Vec<&Value> = fires.iter().filter(missed).filter(ran).collect();
    assert!(
        ran_missed.len() <= 1,
        "fire_now runs the missed instants once: {ran_missed:?}"
    );
    assert!(ms(&once[0]["scheduled_at"]) > stopped_at);

    // skip: the missed instant is recorded as misfired, nothing ran for it.
    let fires = app
        .wait_fires(&skip, "the skip misfire", |f| {
            f.iter().any(|f| f["state"] == "misfired")
        })
        .await;
    let misfired: Vec<&Value> = fires.iter().filter(|f| f["state"] == "misfired").collect();
    assert!(!misfired.is_empty());
    assert!(
        misfired
            .iter()
            .any(|f| note(f).contains("skipped per policy")),
        "{misfired:?}"
    );
    assert!(misfired.iter().all(|f| f["dispatched_at"].is_null()));
    let ran_missed: Vec<&Value> = fires.iter().filter(missed).filter(ran).collect();
    assert!(
        ran_missed.is_empty(),
        "skip runs none of the missed instants: {ran_missed:?}"
    );

    // catch_up: the most recent catch_up_max (3) missed instants all run.
    let fires = app
        .wait_fires(&catch_up, "the caught-up fires", |f| {
            f.iter()
                .filter(|f| {
                    f["state"] == "succeeded" && note(f).contains("misfire")
                        || f["state"] == "succeeded"
                            && ms(&f["scheduled_at"]) > stopped_at
                            && ms(&f["scheduled_at"]) < restarted_at
                })
                .count()
                >= 3
        })
        .await;
    assert!(
        fires
            .iter()
            .any(|f| note(f).contains("beyond catch_up_max")),
        "older instants beyond the cap are noted: {fires:?}"
    );

    // Every (job, instant) reached the target at most once.
    let mut keys: Vec<(String, String)> = hook
        .requests()
        .iter()
        .map(|(body, _)| {
            (
                body["job_id"].as_str().unwrap_or("").to_string(),
                body["scheduled_at"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "no instant was sent twice");
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn a_second_node_on_the_same_sqlite_file_refuses_to_start() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let error = tokio::task::spawn_blocking({
        let settings = test_settings(dir.path());
        move || start_error(settings)
    })
    .await
    .unwrap();
    assert!(error.contains("already running"), "{error}");
    assert!(
        error.contains("PostgreSQL"),
        "says what to do instead: {error}"
    );
    app.stop().await;
}
