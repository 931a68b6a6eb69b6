//! The executor SDK against the real scheduler: a real cronhook node on a real SQLite
//! file, real SDK executors (and the Python executor) over 127.0.0.1. Nothing of the
//! protocol or of the storage is mocked; each test ends in what the scheduler recorded.
//!
//! Where a handler must still be running at a certain point of a test, it waits on a
//! [`Gate`] the test opens, instead of sleeping, so no test depends on how fast a loaded
//! machine is.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use cronhook::configuration::Settings;
use cronhook_sdk::protocol::{self, DispatchRequest};
use cronhook_sdk::{handler_fn, JobError, Output};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Holds handlers until the test opens it.
#[derive(Clone)]
struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new(tokio::sync::watch::channel(false).0))
    }

    fn open(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

/// What the handlers of one executor saw.
#[derive(Clone, Default)]
struct Probe {
    /// Handler calls started.
    runs: Arc<AtomicUsize>,
    /// The dispatches as the handlers received them, in order.
    seen: Arc<Mutex<Vec<DispatchRequest>>>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl Probe {
    fn enter(&self, request: &DispatchRequest) {
        self.seen.lock().unwrap().push(request.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<DispatchRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A port that was free a moment ago, for a node that must keep its address across a
/// restart (dispatches carry a callback URL with the node's port).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn settings_on_fixed_port(dir: &Path) -> Settings {
    let mut settings = test_settings(dir);
    settings.listen = format!("127.0.0.1:{}", free_port());
    settings
}

/// Polls `done` until it holds, or panics after PATIENCE.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PATIENCE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls one fire until `done` holds for it, or panics after PATIENCE.
async fn wait_fire(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let fire = app.fire(id).await;
        if done(&fire) {
            return fire;
        }
        if start.elapsed() > PATIENCE {
            panic!("timed out waiting for {what}; fire: {fire:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_terminal(fire: &Value) -> bool {
    matches!(
        fire["state"].as_str(),
        Some("succeeded" | "failed" | "timed_out" | "lost" | "cancelled" | "skipped" | "misfired")
    )
}

/// Creates a callback-mode job calling `url`; `extra` adds or overrides fields.
async fn callback_job(app: &TestApp, name: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({ "name": name, "target": { "url": url } });
    let fields = body.as_object_mut().unwrap();
    for (key, value) in extra.as_object().expect("extra is an object") {
        fields.insert(key.clone(), value.clone());
    }
    let job = app.create_job(body).await;
    assert_eq!(job["mode"], "callback", "{job}");
    job
}

/// Run now (with an optional payload override); returns the new fire's id.
async fn run_now(app: &TestApp, job_id: &str, payload: Option<Value>) -> String {
    let body = match payload {
        Some(payload) => json!({ "payload": payload }),
        None => json!({}),
    };
    let (status, fire) = app.post(&format!("/api/v1/jobs/{job_id}/run"), body).await;
    assert_eq!(status, 202, "{fire}");
    fire["id"].as_str().expect("fire id").to_string()
}

/// The only fire of a job with an immediate trigger, once it exists.
async fn only_fire(app: &TestApp, job_id: &str) -> String {
    let fires = app
        .wait_fires(job_id, "the job's fire", |f| !f.is_empty())
        .await;
    assert_eq!(fires.len(), 1, "{fires:?}");
    fires[0]["id"].as_str().unwrap().to_string()
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not an instant: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// POSTs a dispatch to an executor exactly as the scheduler does: raw JSON body,
/// fire id header, signature over the raw body.
async fn send_dispatch(address: &str, request: &DispatchRequest, secret: &str) -> (u16, Value) {
    let body = serde_json::to_vec(request).expect("json");
    call_raw(
        &format!("{address}/fires"),
        &[
            ("Content-Type", "application/json".into()),
            (protocol::FIRE_HEADER, request.fire_id.to_string()),
            (
                protocol::SIGNATURE_HEADER,
                protocol::sign_now(secret.as_bytes(), &body),
            ),
        ],
        body,
    )
    .await
}

fn outbox_file(dir: &Path, fire_id: &str) -> PathBuf {
    dir.join(format!("{fire_id}.json"))
}

fn outbox_json_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// 1. Result delivered and recorded
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn result_is_delivered_and_recorded_and_the_context_matches_the_fire() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let time_left: Arc<Mutex<Option<Duration>>> = Arc::default();
    let (p, left) = (probe.clone(), time_left.clone());
    let executor = executor_builder(&app, "reports", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let (p, left) = (p.clone(), left.clone());
            async move {
                p.enter(ctx.request());
                *left.lock().unwrap() = Some(ctx.time_left());
                let customer = ctx.payload_value()["customer"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                p.leave();
                Ok::<_, JobError>(Output::text(format!(
                    "exported 42 rows for {customer} ({}, attempt {})",
                    ctx.job(),
                    ctx.attempt()
                )))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let url = format!("{}/fires", served.address());

    let job = callback_job(
        &app,
        "daily",
        &url,
        json!({
            "group": "reports",
            "payload": { "customer": "acme", "rows": [1, 2, 3] },
            "timeout_ms": 60_000,
            "triggers": [{ "kind": "immediate" }],
        }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap();
    let id = only_fire(&app, job_id).await;
    let fire = wait_fire(&app, &id, "the fire to finish", is_terminal).await;

    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(
        fire["output"], "exported 42 rows for acme (reports/daily, attempt 1)",
        "{fire:#}"
    );
    assert_eq!(fire["http_status"], 202, "acknowledged with 202: {fire:#}");
    assert_eq!(fire["error"], Value::Null);
    assert_eq!(fire["output_truncated"], false);
    assert_eq!(fire["attempt"], 1);
    assert_eq!(fire["executor"], url.as_str());

    // What the handler saw is this fire.
    let seen = probe.seen();
    assert_eq!(seen.len(), 1, "the handler ran once: {seen:?}");
    let ctx = &seen[0];
    assert_eq!(ctx.fire_id.to_string(), id);
    assert_eq!(ctx.job_id.to_string(), job_id);
    assert_eq!(ctx.job, "reports/daily");
    assert_eq!(ctx.handler, None, "a URL target names no handler");
    assert_eq!(ctx.attempt, 1);
    assert_eq!(ctx.scheduled_at, instant(&fire["scheduled_at"]));
    assert_eq!(ctx.deadline, instant(&fire["deadline_at"]));
    assert_eq!(
        ms(&fire["deadline_at"]) - ms(&fire["dispatched_at"]),
        60_000,
        "deadline = dispatch + timeout_ms"
    );
    // The dispatch's fired_at is stamped when it is sent.
    assert!(
        ctx.fired_at >= instant(&fire["fired_at"]) && ctx.fired_at <= instant(&fire["acked_at"]),
        "fired_at {} outside the fire's recorded..acknowledged window: {fire:#}",
        ctx.fired_at
    );
    assert_eq!(
        ctx.payload,
        json!({ "customer": "acme", "rows": [1, 2, 3] })
    );
    if !fire["payload"].is_null() {
        assert_eq!(ctx.payload, fire["payload"]);
    }
    assert_eq!(
        ctx.callback_url,
        app.url(&format!("/api/v1/fires/{id}/result"))
    );
    assert_eq!(ctx.shard, None);
    let left = time_left.lock().unwrap().expect("time_left recorded");
    assert!(
        left > Duration::from_secs(40) && left <= Duration::from_secs(60),
        "time_left at start: {left:?}"
    );

    // The executor's own report of when it ran is on record, inside the fire's life.
    let started = ms(&fire["reported_started_at"]);
    let finished = ms(&fire["reported_finished_at"]);
    assert!(ms(&fire["dispatched_at"]) <= started, "{fire:#}");
    assert!(started <= finished, "{fire:#}");
    assert!(finished <= ms(&fire["finished_at"]), "{fire:#}");

    // The SDK's bookkeeping: one accepted, one delivered, nothing left on disk.
    wait_for("the delivery to be counted", || {
        executor.stats().delivered == 1
    })
    .await;
    let stats = executor.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.succeeded,
            stats.failed,
            stats.delivery_failures
        ),
        (1, 1, 0, 0),
        "{stats:?}"
    );
    wait_for("the outbox to empty", || {
        outbox_json_files(executor.outbox_dir()) == 0
    })
    .await;

    let report = served.stop().await;
    assert!(report.finished_in_grace, "{report:?}");
    assert_eq!(report.undelivered, 0);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Scheduler stopped while a job runs
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn result_finished_while_the_scheduler_is_down_is_delivered_after_its_restart() {
    let dir = temp_dir();
    let settings = settings_on_fixed_port(dir.path());
    let app = spawn_app_with(settings.clone());
    let probe = Probe::default();
    let gate = Gate::new();
    let (p, g) = (probe.clone(), gate.clone());
    let executor = executor_builder(&app, "etl", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                p.enter(ctx.request());
                g.wait().await;
                p.leave();
                Ok::<_, JobError>(Output::text("loaded while the scheduler was away"))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");

    let job = callback_job(
        &app,
        "load",
        &format!("{}/fires", served.address()),
        json!({ "timeout_ms": 120_000, "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let id = only_fire(&app, &job_id).await;
    wait_fire(&app, &id, "the fire to run", |f| f["state"] == "running").await;
    wait_for("the handler to start", || probe.runs() == 1).await;

    // Graceful stop while the handler runs; then the handler finishes.
    app.stop().await;
    gate.open();
    wait_for("failed write-backs while the scheduler is down", || {
        let s = executor.stats();
        s.outbox_depth == 1 && s.delivery_retries >= 2 && s.delivered == 0
    })
    .await;
    assert!(
        outbox_file(executor.outbox_dir(), &id).exists(),
        "the result waits on disk"
    );

    let restarted_at = Utc::now();
    let app = spawn_app_with(settings);
    let fire = wait_fire(
        &app,
        &id,
        "the fire to finish after the restart",
        is_terminal,
    )
    .await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(fire["output"], "loaded while the scheduler was away");
    assert_eq!(fire["http_status"], 202);
    // Produced during the outage, recorded after the restart.
    assert!(
        instant(&fire["reported_finished_at"]) < restarted_at,
        "the handler finished while the node was down: {fire:#}"
    );
    assert!(instant(&fire["finished_at"]) >= restarted_at, "{fire:#}");
    assert_eq!(
        app.fires_of(&job_id).await.len(),
        1,
        "no retry, no second fire"
    );

    wait_for("the delivery to be counted", || {
        executor.stats().delivered == 1
    })
    .await;
    wait_for("the outbox to empty", || {
        !outbox_file(executor.outbox_dir(), &id).exists()
    })
    .await;
    assert_eq!(probe.runs(), 1, "the handler ran once");
    let report = served.stop().await;
    assert_eq!(report.undelivered, 0, "{report:?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Executor restarted with results in its outbox
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_new_executor_delivers_the_results_a_stopped_one_left_in_the_outbox() {
    let dir = temp_dir();
    let settings = settings_on_fixed_port(dir.path());
    let app = spawn_app_with(settings.clone());
    let first_runs = Probe::default();
    let gate = Gate::new();
    let (p, g) = (first_runs.clone(), gate.clone());
    let first = executor_builder(&app, "ledger", dir.path())
        .flush_timeout(Duration::from_millis(300))
        .default_handler(handler_fn(move |ctx| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                p.enter(ctx.request());
                g.wait().await;
                p.leave();
                Ok::<_, JobError>(Output::text("balanced by the first instance"))
            }
        }))
        .build()
        .expect("executor builds");
    let outbox = first.outbox_dir().to_path_buf();
    let served = first.serve("127.0.0.1:0").expect("executor serves");

    let job = callback_job(
        &app,
        "balance",
        &format!("{}/fires", served.address()),
        json!({ "timeout_ms": 120_000, "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let id = only_fire(&app, &job_id).await;
    wait_fire(&app, &id, "the fire to run", |f| f["state"] == "running").await;
    wait_for("the handler to start", || first_runs.runs() == 1).await;

    // The scheduler goes away, the handler finishes, the executor stops: the result
    // can only be on disk.
    app.stop().await;
    gate.open();
    wait_for("a failed write-back", || {
        let s = first.stats();
        s.outbox_depth == 1 && s.delivery_retries >= 1
    })
    .await;
    let report = served.stop().await;
    assert!(report.finished_in_grace, "{report:?}");
    assert_eq!(report.undelivered, 1, "{report:?}");
    let file = outbox_file(&outbox, &id);
    assert!(file.exists(), "the result stays in {}", outbox.display());
    assert_eq!(outbox_json_files(&outbox), 1);
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["fire_id"], id.as_str(), "{stored:#}");
    assert_eq!(stored["result"]["status"], "succeeded", "{stored:#}");
    assert_eq!(stored["result"]["output"], "balanced by the first instance");
    drop(first);

    // Node back on its address; a new instance of the app on the same outbox.
    let app = spawn_app_with(settings);
    assert_eq!(
        app.fire(&id).await["state"],
        "running",
        "nothing was delivered yet"
    );
    let second_runs = Probe::default();
    let p = second_runs.clone();
    let second = executor_builder(&app, "ledger", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let p = p.clone();
            async move {
                p.enter(ctx.request());
                p.leave();
                Ok::<_, JobError>(Output::text("ran again on the second instance"))
            }
        }))
        .build()
        .expect("the second executor builds");
    assert_eq!(second.outbox_dir(), outbox.as_path());

    let fire = wait_fire(&app, &id, "the stored result to arrive", is_terminal).await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(fire["output"], "balanced by the first instance");
    wait_for("the delivery to be counted", || {
        second.stats().delivered == 1
    })
    .await;
    wait_for("the outbox to empty", || !file.exists()).await;
    assert_eq!(
        second_runs.runs(),
        0,
        "the new executor did not re-run the handler"
    );
    assert_eq!(first_runs.runs(), 1);
    assert_eq!(second.stats().accepted, 0);
    let report = second.shutdown().await;
    assert_eq!(report.undelivered, 0, "{report:?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Capacity and queue limits: 429, and the scheduler retries
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_full_executor_answers_429_and_the_scheduler_retries_later() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let gate = Gate::new();
    let (p, g) = (probe.clone(), gate.clone());
    // One slot, no queue. The handler holds its slot until the gate opens, so the run
    // that gets the slot keeps it until the other run's first attempt was refused.
    let executor = executor_builder(&app, "narrow", dir.path())
        .capacity(1)
        .queue_len(0)
        .default_handler(handler_fn(move |ctx| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                p.enter(ctx.request());
                g.wait().await;
                p.leave();
                Ok::<_, JobError>(Output::text(format!(
                    "run {} attempt {}",
                    ctx.payload_value()["n"],
                    ctx.attempt()
                )))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = callback_job(
        &app,
        "narrow",
        &format!("{}/fires", served.address()),
        json!({
            "timeout_ms": 60_000,
            "retry": { "max_attempts": 3, "backoff_ms": 500, "jitter": 0.0 },
        }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    run_now(&app, &job_id, Some(json!({ "n": 1 }))).await;
    run_now(&app, &job_id, Some(json!({ "n": 2 }))).await;

    // Retries carry the run's payload, so the payload tells the two runs apart.
    let group = |fires: &[Value]| -> BTreeMap<i64, Vec<Value>> {
        let mut by_run: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for fire in fires {
            let n = fire["payload"]["n"].as_i64().expect("payload n");
            by_run.entry(n).or_default().push(fire.clone());
        }
        for attempts in by_run.values_mut() {
            attempts.sort_by_key(|f| f["attempt"].as_i64());
        }
        by_run
    };
    let fires = app
        .wait_fires(&job_id, "one run running, the other refused", |f| {
            let by_run = group(f);
            by_run.len() == 2
                && by_run.values().any(|a| a[0]["state"] == "running")
                && by_run.values().any(|a| a[0]["state"] == "failed")
        })
        .await;
    assert_eq!(probe.runs(), 1, "only the run holding the slot started");
    let by_run = group(&fires);
    let (&winner, _) = by_run
        .iter()
        .find(|(_, a)| a[0]["state"] == "running")
        .unwrap();
    let (&loser, _) = by_run
        .iter()
        .find(|(_, a)| a[0]["state"] == "failed")
        .unwrap();
    gate.open();

    // Both runs end; the refused one ends with its last allowed attempt at the latest.
    let settled = |attempts: &[Value]| {
        attempts
            .last()
            .is_some_and(|f| f["state"] == "succeeded" || (is_terminal(f) && f["attempt"] == 3))
    };
    let fires = app
        .wait_fires(&job_id, "both runs to end", |f| {
            let by_run = group(f);
            by_run.len() == 2 && by_run.values().all(|a| settled(a))
        })
        .await;
    let by_run = group(&fires);

    let won = &by_run[&winner];
    assert_eq!(
        won.len(),
        1,
        "the slot holder ran at its first attempt: {won:#?}"
    );
    assert_eq!(won[0]["state"], "succeeded", "{won:#?}");
    assert_eq!(won[0]["http_status"], 202);
    assert_eq!(won[0]["output"], format!("run {winner} attempt 1"));

    let attempts = &by_run[&loser];
    assert!(attempts.len() <= 3, "max_attempts is 3: {attempts:#?}");
    let (last, refused) = attempts.split_last().unwrap();
    assert!(!refused.is_empty(), "{attempts:#?}");
    for (i, fire) in refused.iter().enumerate() {
        assert_eq!(fire["attempt"], i as i64 + 1);
        assert_eq!(fire["state"], "failed", "{fire:#}");
        assert_eq!(fire["http_status"], 429, "{fire:#}");
        let error = text(&fire["error"]);
        assert!(error.contains("busy") && error.contains("429"), "{error}");
    }
    assert_eq!(
        last["state"], "succeeded",
        "a later attempt got the freed slot: {attempts:#?}"
    );
    assert_eq!(last["http_status"], 202);
    assert_eq!(
        last["output"],
        format!("run {loser} attempt {}", last["attempt"])
    );
    assert_eq!(
        last["scheduled_at"], refused[0]["scheduled_at"],
        "a retry keeps the scheduled instant"
    );
    assert_eq!(
        ms(&attempts[1]["due_at"]) - ms(&attempts[0]["finished_at"]),
        500,
        "retried at the backoff instant"
    );

    // The executor ran each run once and never two at a time.
    assert_eq!(probe.runs(), 2);
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
    let stats = executor.stats();
    assert_eq!(stats.rejected_busy as usize, refused.len(), "{stats:?}");
    assert_eq!(stats.accepted, 2, "{stats:?}");
    served.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Bad signature
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_dispatch_signed_with_another_secret_gets_401_and_runs_nothing() {
    let good_dir = temp_dir();
    let good = spawn_app(good_dir.path());
    let bad_dir = temp_dir();
    let mut bad_settings = test_settings(bad_dir.path());
    bad_settings.signing_secret = Some("a-different-signing-secret-9876543210".into());
    let bad = spawn_app_with(bad_settings);

    let probe = Probe::default();
    let p = probe.clone();
    let executor = executor_builder(&good, "guarded", good_dir.path())
        .default_handler(handler_fn(move |ctx| {
            let p = p.clone();
            async move {
                p.enter(ctx.request());
                p.leave();
                Ok::<_, JobError>(Output::text("ran"))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let url = format!("{}/fires", served.address());

    let job = callback_job(
        &bad,
        "forged",
        &url,
        json!({ "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let id = only_fire(&bad, job["id"].as_str().unwrap()).await;
    let fire = wait_fire(&bad, &id, "the fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "failed", "{fire:#}");
    assert_eq!(fire["http_status"], 401, "{fire:#}");
    let error = text(&fire["error"]);
    assert!(
        error.contains("401") && error.contains("signature"),
        "{error}"
    );
    assert_eq!(probe.runs(), 0, "the handler did not run");
    assert_eq!(executor.stats().accepted, 0);

    // The same executor does run what the right secret signs.
    let job = callback_job(
        &good,
        "genuine",
        &url,
        json!({ "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let id = only_fire(&good, job["id"].as_str().unwrap()).await;
    let fire = wait_fire(&good, &id, "the genuine fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(probe.runs(), 1);

    served.stop().await;
    bad.stop().await;
    good.stop().await;
}

// ---------------------------------------------------------------------------
// 6. Duplicate dispatch
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_repeated_dispatch_is_acknowledged_but_runs_once() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let gate = Gate::new();
    let (p, g) = (probe.clone(), gate.clone());
    let executor = executor_builder(&app, "once", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                p.enter(ctx.request());
                g.wait().await;
                p.leave();
                Ok::<_, JobError>(Output::text("charged once"))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = callback_job(
        &app,
        "charge",
        &format!("{}/fires", served.address()),
        json!({
            "group": "billing",
            "payload": { "invoice": 7 },
            "timeout_ms": 60_000,
            "triggers": [{ "kind": "immediate" }],
        }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let id = only_fire(&app, &job_id).await;
    let fire = wait_fire(&app, &id, "the fire to run", |f| f["state"] == "running").await;
    wait_for("the handler to start", || probe.runs() == 1).await;

    // The dispatch, rebuilt from what the scheduler recorded (its fired_at is the
    // dispatch instant), is exactly what the handler received.
    let request = DispatchRequest {
        fire_id: id.parse().unwrap(),
        job_id: job_id.parse().unwrap(),
        job: "billing/charge".into(),
        handler: None,
        attempt: 1,
        scheduled_at: instant(&fire["scheduled_at"]),
        fired_at: instant(&fire["dispatched_at"]),
        deadline: instant(&fire["deadline_at"]),
        payload: json!({ "invoice": 7 }),
        callback_url: app.url(&format!("/api/v1/fires/{id}/result")),
        shard: None,
    };
    assert_eq!(probe.seen(), vec![request.clone()]);

    // Again while it runs: acknowledged, not run.
    let (status, answer) = send_dispatch(served.address(), &request, SECRET).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["fire_id"], id.as_str());
    assert_eq!(answer["status"], "duplicate", "{answer}");
    // The same body under a wrong secret is refused outright.
    let (status, answer) =
        send_dispatch(served.address(), &request, "not-the-app-secret-at-all").await;
    assert_eq!(status, 401, "{answer}");

    gate.open();
    let fire = wait_fire(&app, &id, "the fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(fire["output"], "charged once");
    wait_for("the delivery to be counted", || {
        executor.stats().delivered == 1
    })
    .await;

    // Again after it finished and was delivered: still acknowledged, still not run.
    let (status, answer) = send_dispatch(served.address(), &request, SECRET).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "duplicate", "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(probe.runs(), 1, "the handler ran once");
    let stats = executor.stats();
    assert_eq!((stats.accepted, stats.succeeded), (1, 1), "{stats:?}");
    let again = app.fire(&id).await;
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["finished_at"], fire["finished_at"], "nothing changed");
    assert_eq!(app.fires_of(&job_id).await.len(), 1);
    served.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 7. Deadline
// ---------------------------------------------------------------------------

/// A handler that would run for 10 s, noting whether its cancellation token fired.
fn overrunning_handler(
    probe: &Probe,
    token_cancelled: &Arc<AtomicBool>,
) -> impl cronhook_sdk::Handler {
    let (p, flag) = (probe.clone(), token_cancelled.clone());
    handler_fn(move |ctx| {
        let (p, flag) = (p.clone(), flag.clone());
        async move {
            p.enter(ctx.request());
            // Work the handler started elsewhere learns of the cancel through the token.
            let token = ctx.cancellation().clone();
            tokio::spawn(async move {
                token.cancelled().await;
                flag.store(true, Ordering::SeqCst);
            });
            tokio::time::sleep(Duration::from_secs(10)).await;
            p.leave();
            Ok::<_, JobError>(Output::text("overslept"))
        }
    })
}

#[actix_web::test]
async fn the_sdk_cancels_a_handler_at_the_deadline_and_reports_a_timeout() {
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    // The node's deadline sweeper runs at start and then not for a minute, so the
    // only thing that can end the fire is the SDK's own timeout report.
    settings.scheduler.sweep_interval_ms = 60_000;
    let app = spawn_app_with(settings);
    let probe = Probe::default();
    let token_cancelled = Arc::new(AtomicBool::new(false));
    let executor = executor_builder(&app, "slow", dir.path())
        .default_handler(overrunning_handler(&probe, &token_cancelled))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = callback_job(
        &app,
        "overrun",
        &format!("{}/fires", served.address()),
        json!({ "timeout_ms": 800, "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let id = only_fire(&app, &job_id).await;
    let fire = wait_fire(&app, &id, "the fire to finish", is_terminal).await;

    assert_eq!(
        fire["state"], "failed",
        "the SDK's report ends it: {fire:#}"
    );
    let error = text(&fire["error"]);
    assert!(
        error.starts_with("timeout:") && error.contains("deadline"),
        "{error}"
    );
    assert_eq!(fire["http_status"], 202);
    assert_eq!(fire["output"], Value::Null);
    assert_eq!(ms(&fire["deadline_at"]) - ms(&fire["dispatched_at"]), 800);
    assert!(
        ms(&fire["reported_finished_at"]) >= ms(&fire["deadline_at"]),
        "not reported before the deadline: {fire:#}"
    );
    wait_for("the handler's token to be cancelled", || {
        token_cancelled.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(probe.runs(), 1);
    assert_eq!(
        probe.running.load(Ordering::SeqCst),
        1,
        "the handler was stopped mid-sleep, never reaching its end"
    );
    assert_eq!(app.fires_of(&job_id).await.len(), 1, "no retry by default");
    wait_for("the delivery to be counted", || {
        executor.stats().delivered == 1
    })
    .await;
    assert_eq!(executor.stats().failed, 1);
    served.stop().await;
    app.stop().await;
}

/// With the node's sweeper at its usual pace, the SDK's report and the sweeper meet at
/// the same deadline. Either may win; neither loses the SDK's account of it.
#[actix_web::test]
async fn at_the_deadline_either_outcome_keeps_the_sdk_timeout_report() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let token_cancelled = Arc::new(AtomicBool::new(false));
    let executor = executor_builder(&app, "racy", dir.path())
        .default_handler(overrunning_handler(&probe, &token_cancelled))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = callback_job(
        &app,
        "overrun",
        &format!("{}/fires", served.address()),
        json!({ "timeout_ms": 800, "triggers": [{ "kind": "immediate" }] }),
    )
    .await;
    let id = only_fire(&app, job["id"].as_str().unwrap()).await;
    let fire = wait_fire(&app, &id, "the fire to finish", is_terminal).await;
    wait_for("the SDK's write-back to end", || {
        let s = executor.stats();
        s.delivered + s.delivery_failures == 1
    })
    .await;
    eprintln!(
        "deadline race: the fire ended {} (failed = the SDK's report came first)",
        fire["state"]
    );
    let fire = match fire["state"].as_str() {
        Some("failed") => {
            // The SDK reported first.
            assert!(text(&fire["error"]).starts_with("timeout:"), "{fire:#}");
            assert_eq!(executor.stats().delivered, 1);
            fire
        }
        Some("timed_out") => {
            // The sweeper was first; the SDK's report was refused (409) but kept.
            assert!(text(&fire["error"]).contains("deadline"), "{fire:#}");
            assert_eq!(executor.stats().delivery_failures, 1);
            let fire = app.fire(&id).await;
            let late = &fire["late_result"];
            assert_eq!(late["status"], "failed", "{fire:#}");
            assert!(text(&late["error"]).starts_with("timeout:"), "{fire:#}");
            fire
        }
        other => panic!("expected failed or timed_out, got {other:?}: {fire:#}"),
    };
    assert!(
        ms(&fire["finished_at"]) >= ms(&fire["deadline_at"]),
        "{fire:#}"
    );
    assert!(token_cancelled.load(Ordering::SeqCst));
    served.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 8. Panic
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_panicking_handler_fails_its_fire_and_the_executor_keeps_working() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let p = probe.clone();
    let executor = executor_builder(&app, "fragile", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let p = p.clone();
            async move {
                p.enter(ctx.request());
                if let Some(n) = ctx.payload_value()["panic"].as_i64() {
                    panic!("boom {n}");
                }
                p.leave();
                Ok::<_, JobError>(Output::text("steady"))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = callback_job(
        &app,
        "fragile",
        &format!("{}/fires", served.address()),
        json!({ "timeout_ms": 60_000 }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();

    let id = run_now(&app, &job_id, Some(json!({ "panic": 42 }))).await;
    let fire = wait_fire(&app, &id, "the panicking fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "failed", "{fire:#}");
    assert_eq!(fire["http_status"], 202);
    let error = text(&fire["error"]);
    assert!(
        error.contains("boom 42") && error.contains("panic"),
        "{error}"
    );

    let id = run_now(&app, &job_id, Some(json!({ "panic": null }))).await;
    let fire = wait_fire(&app, &id, "the next fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(fire["output"], "steady");
    assert_eq!(probe.runs(), 2);
    wait_for("both deliveries", || executor.stats().delivered == 2).await;
    let stats = executor.stats();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.running),
        (1, 1, 0),
        "{stats:?}"
    );
    served.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 9. Graceful shutdown
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn shutdown_refuses_new_fires_with_503_and_lets_the_running_one_finish() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let probe = Probe::default();
    let gate = Gate::new();
    let (p, g) = (probe.clone(), gate.clone());
    let executor = executor_builder(&app, "draining", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                p.enter(ctx.request());
                g.wait().await;
                p.leave();
                Ok::<_, JobError>(Output::text(format!(
                    "finished {}",
                    ctx.payload_value()["n"]
                )))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let address = served.address().to_string();
    let job = callback_job(
        &app,
        "drain",
        &format!("{address}/fires"),
        json!({ "timeout_ms": 60_000 }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let running = run_now(&app, &job_id, Some(json!({ "n": 1 }))).await;
    wait_fire(&app, &running, "the first fire to run", |f| {
        f["state"] == "running"
    })
    .await;
    wait_for("the handler to start", || probe.runs() == 1).await;

    // Shutdown starts with this call; the future resolves when it is over.
    let stopping = executor.shutdown();
    let (status, health) = call("GET", &format!("{address}/healthz"), None, None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "draining");
    assert_eq!(health["running"], 1);

    let refused = run_now(&app, &job_id, Some(json!({ "n": 2 }))).await;
    let fire = wait_fire(&app, &refused, "the late fire to be refused", is_terminal).await;
    assert_eq!(fire["state"], "failed", "{fire:#}");
    assert_eq!(fire["http_status"], 503, "{fire:#}");
    let error = text(&fire["error"]);
    assert!(
        error.contains("busy") && error.contains("shutting down"),
        "{error}"
    );
    assert_eq!(app.fire(&running).await["state"], "running");

    gate.open();
    let report = stopping.await;
    assert!(report.finished_in_grace, "{report:?}");
    assert_eq!(
        (report.cancelled, report.not_started, report.undelivered),
        (0, 0, 0),
        "{report:?}"
    );
    let fire = app.fire(&running).await;
    assert_eq!(
        fire["state"], "succeeded",
        "flushed before shutdown ended: {fire:#}"
    );
    assert_eq!(fire["output"], "finished 1");
    assert_eq!(probe.runs(), 1, "the refused fire never ran");
    // Stopping the served handle again waits for the same end.
    assert_eq!(served.stop().await, report);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// The Python executor against the real scheduler
// ---------------------------------------------------------------------------

/// Kills the child process when the test ends, panicking or not.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_python_executor_works_against_the_real_scheduler() {
    let python_ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        eprintln!(
            "\n*** SKIPPED the_python_executor_works_against_the_real_scheduler: python3 is not installed ***\n"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/python/example_executor.py");
    let mut child = ChildGuard(
        Command::new("python3")
            .arg(&script)
            .args(["--listen", "127.0.0.1:0", "--secret", SECRET])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display())),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep reading, so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("the Python executor printed no LISTENING line: {e}"));
    let base = line
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .trim()
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let job = callback_job(
        &app,
        "python-echo",
        &format!("{base}/fires"),
        json!({
            "payload": { "x": 1 },
            "timeout_ms": 60_000,
            "triggers": [{ "kind": "immediate" }],
        }),
    )
    .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let id = only_fire(&app, &job_id).await;
    let fire = wait_fire(&app, &id, "the Python fire to finish", is_terminal).await;
    assert_eq!(fire["state"], "succeeded", "{fire:#}");
    assert_eq!(fire["http_status"], 202);
    let output: Value = serde_json::from_str(text(&fire["output"]))
        .unwrap_or_else(|e| panic!("output is not JSON ({e}): {fire:#}"));
    assert_eq!(output, json!({ "echo": { "x": 1 }, "lang": "python" }));

    let id = run_now(&app, &job_id, Some(json!({ "fail": "nope" }))).await;
    let fire = wait_fire(&app, &id, "the failing Python fire", is_terminal).await;
    assert_eq!(fire["state"], "failed", "{fire:#}");
    assert_eq!(fire["http_status"], 202);
    assert!(text(&fire["error"]).contains("nope"), "{fire:#}");
    assert_eq!(fire["output"], Value::Null);

    app.stop().await;
    drop(child);
}
