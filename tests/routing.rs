//! Executor pools (origin document 000): several real SDK executors of one app on
//! 127.0.0.1, routing strategies, busy executors skipped, and a killed executor's
//! running fires re-dispatched elsewhere.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use cronhook_sdk::{handler_fn, Executor, JobError, Output, ServeHandle};
use serde_json::{json, Value};

/// Handler that sleeps `sleep_ms` from the payload (default 20 ms) and counts its runs.
fn sleeper(runs: Arc<AtomicUsize>) -> impl cronhook_sdk::Handler {
    handler_fn(move |ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let ms = ctx.payload_value()["sleep_ms"].as_u64().unwrap_or(20);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, JobError>(Output::text(ctx.handler().to_string()))
        }
    })
}

struct Member {
    served: ServeHandle,
    runs: Arc<AtomicUsize>,
    instance: String,
}

impl Member {
    fn label(&self) -> String {
        format!("pool/{}", self.instance)
    }
}

fn member(
    app: &TestApp,
    dir: &std::path::Path,
    instance: &str,
    capacity: usize,
    queue: usize,
) -> Member {
    member_taking_batches(app, dir, instance, capacity, queue, true)
}

fn member_taking_batches(
    app: &TestApp,
    dir: &std::path::Path,
    instance: &str,
    capacity: usize,
    queue: usize,
    batches: bool,
) -> Member {
    let runs = Arc::new(AtomicUsize::new(0));
    let executor: Executor = executor_builder(app, "pool", &dir.join(instance))
        .instance_id(instance)
        .heartbeat_interval(Duration::from_millis(100))
        .capacity(capacity)
        .queue_len(queue)
        .dispatch_batches(batches)
        .handler("work", sleeper(runs.clone()))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("serves");
    Member {
        served,
        runs,
        instance: instance.to_string(),
    }
}

async fn wait_registered(app: &TestApp, count: usize) {
    let start = Instant::now();
    loop {
        let (_, page) = app.get("/api/v1/executors?app=pool").await;
        let valid = page["items"]
            .as_array()
            .map(|items| items.iter().filter(|e| e["valid"] == true).count())
            .unwrap_or(0);
        if valid >= count {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "executors never registered: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pool_job(app: &TestApp, name: &str, routing: Value, extra: Value) -> String {
    let mut body = json!({
        "name": name,
        "target": { "app": "pool", "handler": "work" },
        "routing": routing,
    });
    if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            if k == "target" {
                for (tk, tv) in v.as_object().unwrap() {
                    map["target"][tk] = tv.clone();
                }
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    app.create_job(body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run_now(app: &TestApp, job: &str, payload: Value) -> String {
    let (status, fire) = app
        .post(
            &format!("/api/v1/jobs/{job}/run"),
            json!({ "payload": payload }),
        )
        .await;
    assert_eq!(status, 202, "{fire}");
    fire["id"].as_str().unwrap().to_string()
}

/// Waits until the fire has an executor recorded (acknowledged or finished).
async fn placed(app: &TestApp, fire: &str) -> Value {
    let start = Instant::now();
    loop {
        let f = app.fire(fire).await;
        if f["executor"].is_string() && f["state"] != "fired" {
            return f;
        }
        assert!(start.elapsed() < PATIENCE, "fire never placed: {f}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[actix_web::test]
async fn pinned_fires_always_run_on_the_named_instance() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let a = member(&app, dir.path(), "a", 4, 16);
    let b = member(&app, dir.path(), "b", 4, 16);
    wait_registered(&app, 2).await;
    let job = pool_job(
        &app,
        "pinned",
        json!("pinned"),
        json!({ "target": { "instance": "b" } }),
    )
    .await;
    for _ in 0..6 {
        let fire = run_now(&app, &job, json!({})).await;
        assert_eq!(placed(&app, &fire).await["executor"], b.label());
    }
    assert_eq!(a.runs.load(Ordering::SeqCst), 0);

    // An unknown instance fails the fire, naming it, and never runs elsewhere.
    let lonely = pool_job(
        &app,
        "pinned-gone",
        json!("pinned"),
        json!({ "target": { "instance": "zz" } }),
    )
    .await;
    let fire = run_now(&app, &lonely, json!({})).await;
    let fires = app
        .wait_fires(&lonely, "the pinned failure", |f| f[0]["state"] == "failed")
        .await;
    assert!(
        fires[0]["error"]
            .as_str()
            .unwrap()
            .contains("pinned instance zz"),
        "{}",
        fires[0]
    );
    assert_eq!(fires[0]["id"], fire.as_str());

    // With when_unavailable = wait, the fire waits until the instance appears.
    let waiting = pool_job(
        &app,
        "pinned-wait",
        json!("pinned"),
        json!({ "target": { "instance": "late", "when_unavailable": "wait" }, "timeout_ms": 60000 }),
    )
    .await;
    let fire = run_now(&app, &waiting, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.fire(&fire).await["state"], "fired", "still waiting");
    let late = member(&app, dir.path(), "late", 1, 1);
    let f = app
        .wait_fires(&waiting, "the waiting fire to run", |f| {
            f[0]["state"] == "succeeded"
        })
        .await;
    assert_eq!(f[0]["executor"], late.label());
    for m in [a, b, late] {
        m.served.stop().await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_busy_executor_answering_429_is_skipped_for_the_next() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    // Failover tries `first` before `second` (registration order).
    let first = member(&app, dir.path(), "first", 1, 0);
    wait_registered(&app, 1).await;
    let second = member(&app, dir.path(), "second", 4, 4);
    wait_registered(&app, 2).await;
    let job = pool_job(&app, "failover", json!("failover"), json!({})).await;
    let busy = run_now(&app, &job, json!({ "sleep_ms": 3000 })).await;
    assert_eq!(placed(&app, &busy).await["executor"], first.label());
    let next = run_now(&app, &job, json!({})).await;
    let f = app
        .wait_fires(&job, "the second fire", |f| {
            f.iter()
                .any(|f| f["id"] == next.as_str() && f["state"] == "succeeded")
        })
        .await;
    let next = f.iter().find(|f| f["id"] == next.as_str()).unwrap();
    assert_eq!(
        next["executor"],
        second.label(),
        "429 from the busy one moved it on"
    );
    assert_eq!(next["attempt"], 1, "no failed attempt in between");
    first.served.stop().await;
    second.served.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn least_loaded_spreads_the_work() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let members: Vec<Member> = ["x", "y", "z"]
        .iter()
        .map(|i| member(&app, dir.path(), i, 8, 64))
        .collect();
    wait_registered(&app, 3).await;
    let job = pool_job(&app, "spread", json!("least_loaded"), json!({})).await;
    let mut fires = Vec::new();
    for _ in 0..30 {
        fires.push(run_now(&app, &job, json!({ "sleep_ms": 400 })).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = app
        .wait_fires(&job, "all 30 fires", |f| {
            f.iter().filter(|f| f["state"] == "succeeded").count() == 30
        })
        .await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for f in &all {
        *per.entry(f["executor"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|m| per.get(&m.label()).copied().unwrap_or(0))
        .collect();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 4, "task lists stayed close: {counts:?}");
    for m in members {
        m.served.stop().await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn shortest_eta_prefers_the_executor_that_finishes_sooner() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let a = member(&app, dir.path(), "ea", 1, 16);
    let b = member(&app, dir.path(), "eb", 1, 16);
    wait_registered(&app, 2).await;
    let slow = pool_job(
        &app,
        "slow",
        json!("shortest_eta"),
        json!({ "payload": { "sleep_ms": 2500 } }),
    )
    .await;
    let quick = pool_job(
        &app,
        "quick",
        json!("shortest_eta"),
        json!({ "payload": { "sleep_ms": 30 } }),
    )
    .await;
    // Teach the averages: slow ≈ 2.5 s, quick ≈ 30 ms.
    run_now(&app, &slow, json!({ "sleep_ms": 2500 })).await;
    for _ in 0..3 {
        run_now(&app, &quick, json!({ "sleep_ms": 30 })).await;
    }
    app.wait_fires(&slow, "the slow warm-up", |f| f[0]["state"] == "succeeded")
        .await;
    app.wait_fires(&quick, "the quick warm-up", |f| {
        f.iter().filter(|f| f["state"] == "succeeded").count() == 3
    })
    .await;

    // One slow fire on one executor, then quick ones (held open for a while): by ETA they
    // all go to the other executor, even when its task list is longer.
    let s = run_now(&app, &slow, json!({ "sleep_ms": 2500 })).await;
    let slow_on = placed(&app, &s).await["executor"]
        .as_str()
        .unwrap()
        .to_string();
    let mut quick_on = Vec::new();
    for _ in 0..3 {
        let q = run_now(&app, &quick, json!({ "sleep_ms": 1500 })).await;
        quick_on.push(
            placed(&app, &q).await["executor"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        quick_on.iter().all(|e| *e != slow_on),
        "slow on {slow_on}, quick on {quick_on:?}"
    );
    a.served.stop().await;
    b.served.stop().await;
    app.stop().await;
}

/// The Python example executor as a separate process that can be killed with SIGKILL.
struct PythonExecutor(Child);

impl Drop for PythonExecutor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_member(app: &TestApp) -> Option<PythonExecutor> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sdk/python/example_executor.py"
    );
    let child = Command::new("python3")
        .args([
            "-u",
            script,
            "--listen",
            "127.0.0.1:0",
            "--secret",
            SECRET,
            "--app",
            "pool",
            "--scheduler-url",
            &app.address,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED: python3 not available ({e}) ***\n"
            );
            return None;
        }
    };
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("LISTENING line");
    assert!(line.starts_with("LISTENING "), "{line:?}");
    Some(PythonExecutor(child))
}

#[actix_web::test]
async fn a_killed_executors_running_fires_are_lost_and_redone_elsewhere() {
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    settings.scheduler.executor_timeout_ms = 1_000;
    let app = spawn_app_with(settings);
    let Some(python) = python_member(&app) else {
        app.stop().await;
        return;
    };
    wait_registered(&app, 1).await;
    let rust = member(&app, dir.path(), "survivor", 4, 4);
    wait_registered(&app, 2).await;
    // Failover: the Python executor registered first, so it gets the first attempt.
    let job = app
        .create_job(json!({
            "name": "long-run",
            "target": { "app": "pool" },
            "routing": "failover",
            "timeout_ms": 60000,
            "retry": { "max_attempts": 2, "backoff_ms": 100, "jitter": 0.0 },
        }))
        .await;
    let job = job["id"].as_str().unwrap().to_string();
    let fire = run_now(&app, &job, json!({ "sleep_ms": 30000 })).await;
    let first = placed(&app, &fire).await;
    assert!(
        first["executor"].as_str().unwrap().starts_with("pool/"),
        "{first}"
    );
    assert_ne!(
        first["executor"],
        rust.label(),
        "the Python executor took it"
    );

    let mut python = python;
    let _ = python.0.kill(); // SIGKILL: no goodbye, no result.
    let killed_at = Instant::now();
    let fires = app
        .wait_fires(&job, "the lost fire redone on the survivor", |f| {
            // The retry carries the same payload, so it runs (long) on the survivor.
            f.iter().any(|f| f["state"] == "lost") && f.iter().any(|f| f["state"] == "running")
        })
        .await;
    let took = killed_at.elapsed();
    let lost = fires.iter().find(|f| f["state"] == "lost").unwrap();
    let redone = fires.iter().find(|f| f["state"] == "running").unwrap();
    assert_eq!(lost["attempt"], 1);
    assert_eq!(redone["attempt"], 2);
    assert_eq!(redone["scheduled_at"], lost["scheduled_at"]);
    assert_eq!(redone["executor"], rust.label());
    assert!(
        lost["error"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{lost}"
    );
    assert_eq!(fires.len(), 2, "no other attempt: {fires:?}");
    assert!(
        took < Duration::from_secs(10),
        "re-dispatched within the validity timeout plus sweeps: {took:?}"
    );
    let (_, page) = app.get("/api/v1/executors?app=pool").await;
    let dead = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance_id"] != "survivor")
        .unwrap()
        .clone();
    assert_eq!(dead["valid"], false, "{dead}");
    rust.served.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn broadcast_reaches_every_valid_executor_with_distinct_shards() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let members: Vec<Member> = ["s0", "s1", "s2"]
        .iter()
        .map(|i| member(&app, dir.path(), i, 2, 4))
        .collect();
    wait_registered(&app, 3).await;
    let job = pool_job(&app, "everyone", json!("broadcast"), json!({})).await;
    run_now(&app, &job, json!({})).await;
    let fires = app
        .wait_fires(&job, "three succeeded shares", |f| {
            f.len() == 3 && f.iter().all(|f| f["state"] == "succeeded")
        })
        .await;
    let mut shards: Vec<i64> = fires
        .iter()
        .map(|f| f["shard"]["index"].as_i64().unwrap())
        .collect();
    shards.sort();
    assert_eq!(shards, vec![0, 1, 2]);
    assert!(fires.iter().all(|f| f["shard"]["total"] == 3));
    assert!(fires
        .iter()
        .all(|f| f["scheduled_at"] == fires[0]["scheduled_at"]));
    let mut executors: Vec<&str> = fires
        .iter()
        .map(|f| f["executor"].as_str().unwrap())
        .collect();
    executors.sort();
    executors.dedup();
    assert_eq!(executors.len(), 3, "one share per executor: {fires:?}");
    for m in &members {
        assert_eq!(
            m.runs.load(Ordering::SeqCst),
            1,
            "{} ran its share once",
            m.instance
        );
    }
    for m in members {
        m.served.stop().await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn round_robin_rotates_and_consistent_hash_sticks() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let members: Vec<Member> = ["r0", "r1", "r2"]
        .iter()
        .map(|i| member(&app, dir.path(), i, 4, 16))
        .collect();
    wait_registered(&app, 3).await;
    let rr = pool_job(&app, "rotating", json!("round_robin"), json!({})).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let fire = run_now(&app, &rr, json!({})).await;
        seen.push(
            placed(&app, &fire).await["executor"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen[0..3], seen[3..6], "the same rotation twice: {seen:?}");
    let mut first_round = seen[0..3].to_vec();
    first_round.sort();
    first_round.dedup();
    assert_eq!(
        first_round.len(),
        3,
        "each executor once per round: {seen:?}"
    );

    let sticky = pool_job(&app, "sticky", json!("consistent_hash"), json!({})).await;
    let mut homes = Vec::new();
    for _ in 0..5 {
        let fire = run_now(&app, &sticky, json!({})).await;
        homes.push(
            placed(&app, &fire).await["executor"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    homes.dedup();
    assert_eq!(homes.len(), 1, "a job keeps its executor: {homes:?}");
    for m in members {
        m.served.stop().await;
    }
    app.stop().await;
}

/// Jobs whose fires are all due at `at`.
async fn jobs_due_together(
    app: &TestApp,
    prefix: &str,
    count: usize,
    sleep_ms: u64,
) -> Vec<String> {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(2_500);
    let mut jobs = Vec::new();
    for i in 0..count {
        let extra = json!({
            "triggers": [{ "kind": "at", "at": at.to_rfc3339() }],
            "payload": { "sleep_ms": sleep_ms },
        });
        jobs.push(pool_job(app, &format!("{prefix}-{i}"), json!("failover"), extra).await);
    }
    jobs
}

/// Waits until each job's one fire succeeded on its first attempt; returns the executors.
async fn succeeded_first_time(app: &TestApp, jobs: &[String]) -> Vec<String> {
    let mut executors = Vec::new();
    for job in jobs {
        let fires = app
            .wait_fires(job, "its fire to succeed", |f| {
                f.len() == 1 && f[0]["state"] == "succeeded"
            })
            .await;
        assert_eq!(fires[0]["attempt"], 1, "{}", fires[0]);
        executors.push(fires[0]["executor"].as_str().unwrap().to_string());
    }
    executors
}

#[actix_web::test]
async fn fires_due_together_share_batch_requests_and_each_is_answered_on_its_own() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    // Failover tries `small` first: it takes one fire and refuses the rest with 429
    // inside the batch answer; those move on to `big`.
    let small = member(&app, dir.path(), "small", 1, 0);
    wait_registered(&app, 1).await;
    let big = member(&app, dir.path(), "big", 32, 64);
    wait_registered(&app, 2).await;
    let (_, page) = app.get("/api/v1/executors?app=pool").await;
    for executor in page["items"].as_array().unwrap() {
        assert_eq!(
            executor["features"],
            json!(["dispatch_batch"]),
            "{executor}"
        );
    }

    let jobs = jobs_due_together(&app, "batched", 20, 300).await;
    let executors = succeeded_first_time(&app, &jobs).await;
    let on_small = executors.iter().filter(|e| **e == small.label()).count();
    let on_big = executors.iter().filter(|e| **e == big.label()).count();
    assert_eq!((on_small, on_big), (1, 19), "{executors:?}");

    let (small_stats, big_stats) = (
        small.served.executor().stats(),
        big.served.executor().stats(),
    );
    assert_eq!(small_stats.accepted + big_stats.accepted, 20);
    assert_eq!(
        small_stats.rejected_busy, 19,
        "refused one by one inside its batches"
    );
    // 39 dispatches in all (20 taken, 19 refused); alone they would be 39 requests.
    let requests = small_stats.dispatch_batches + big_stats.dispatch_batches;
    assert!(
        (2..=10).contains(&requests),
        "39 dispatches went out in {requests} batch requests"
    );
    small.served.stop().await;
    big.served.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn an_executor_that_does_not_offer_batches_gets_one_request_per_fire() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let plain = member_taking_batches(&app, dir.path(), "plain", 8, 16, false);
    wait_registered(&app, 1).await;
    let (_, page) = app.get("/api/v1/executors?app=pool").await;
    assert_eq!(page["items"][0]["features"], json!([]), "{page}");

    let jobs = jobs_due_together(&app, "alone", 5, 20).await;
    let executors = succeeded_first_time(&app, &jobs).await;
    assert!(
        executors.iter().all(|e| *e == plain.label()),
        "{executors:?}"
    );
    let stats = plain.served.executor().stats();
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.dispatch_batches, 0);
    plain.served.stop().await;
    app.stop().await;
}

/// `shortest_eta` weighs each job by the average of its newest 50 succeeded runs:
/// reported start to end where reported, dispatch to finish otherwise; failed runs do
/// not count. SQLite asks per job; PostgreSQL reads many jobs in one statement (a
/// `LATERAL` subquery per job), and must answer the same.
fn assert_average_durations(db: &cronhook::db::Db) {
    use cronhook::db::fires::average_durations;
    use diesel::connection::SimpleConnection;
    let mut conn = db.write().expect("a connection");
    let conn: &mut cronhook::db::DbConnection = &mut conn;
    // Job a: reported spans 100, 200, 300 and one unreported (dispatch to finish
    // 1,000): 400. Job b: unreported 50 and 150, and a failed 10,000: 100. Job busy:
    // its 50 newest runs took 10, ten older ones 1,000: 10. Job none: no runs.
    let mut rows = vec![
        "('a1', 'a', 'succeeded', 1, 0, 1000, 0, 100)".to_string(),
        "('a2', 'a', 'succeeded', 2, 0, 1000, 0, 200)".into(),
        "('a3', 'a', 'succeeded', 3, 0, 1000, 0, 300)".into(),
        "('a4', 'a', 'succeeded', 4, 0, 1000, NULL, NULL)".into(),
        "('b1', 'b', 'succeeded', 1, 0, 50, NULL, NULL)".into(),
        "('b2', 'b', 'succeeded', 2, 0, 150, NULL, NULL)".into(),
        "('b3', 'b', 'failed', 3, 0, 10000, NULL, NULL)".into(),
    ];
    for i in 0..60 {
        let span = if i < 10 { 1_000 } else { 10 };
        rows.push(format!(
            "('busy{i}', 'busy', 'succeeded', {}, 0, {span}, NULL, NULL)",
            100 + i
        ));
    }
    conn.batch_execute(&format!(
        "INSERT INTO fires (id, job_id, state, scheduled_at, dispatched_at, finished_at, \
         reported_started_at, reported_finished_at, job_version, attempt, due_at, fired_at) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, \
         1, 1, column4, column4 FROM (VALUES {}) AS v",
        rows.join(", ")
    ))
    .expect("fires inserted");
    let jobs: Vec<String> = ["a", "b", "busy", "none"].map(String::from).into();
    let mut averages = average_durations(conn, &jobs).expect("averages");
    averages.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        averages,
        [
            ("a".to_string(), 400.0),
            ("b".to_string(), 100.0),
            ("busy".to_string(), 10.0)
        ]
    );
}

#[test]
fn average_durations_take_each_jobs_newest_succeeded_runs_on_sqlite() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.path().join("durations.db").display());
    let db = cronhook::db::Db::open(&url).expect("the database opens");
    db.run_migrations().expect("migrations run");
    assert_average_durations(&db);
}

#[test]
fn average_durations_take_each_jobs_newest_succeeded_runs_on_postgres() {
    let Some(pg) = TempPostgres::create("routing::durations") else {
        return;
    };
    let db = cronhook::db::Db::open(&pg.url).expect("the database opens");
    db.run_migrations().expect("migrations run");
    assert_average_durations(&db);
}
