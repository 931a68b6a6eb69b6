//! What an operator relies on: `/metrics` in the Prometheus text format, retention
//! purges, `cronhook backup`, JSON logs without secrets, and the example config.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use serde_json::{json, Value};

fn count_state(fires: &[Value], state: &str) -> usize {
    fires.iter().filter(|f| f["state"] == state).count()
}

fn ids(fires: &[Value]) -> BTreeSet<String> {
    fires
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

fn cronhook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cronhook"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CRONHOOK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = cronhook().args(args).output().expect("cronhook runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a sync job once now and waits for that fire to succeed; returns its id.
async fn run_once(app: &TestApp, job_id: &str) -> String {
    let (status, fire) = app
        .post(&format!("/api/v1/jobs/{job_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202, "{fire}");
    let id = fire["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let fire = app.fire(&id).await;
        if fire["state"] == "succeeded" {
            return id;
        }
        assert!(start.elapsed() < PATIENCE, "fire did not succeed: {fire}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(app: &TestApp) -> (String, prometheus_parse::Scrape) {
    let client = awc::Client::default();
    let mut response = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics answers");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = response.body().limit(4 << 20).await.expect("metrics body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    (text, parsed)
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|have| have == *v))
        })
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or(0.0)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[actix_web::test]
async fn metrics_after_fires_have_the_expected_series() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let ok = app
        .create_job(json!({
            "group": "metrics-ok", "name": "ping", "mode": "sync",
            "target": { "url": hook.url() },
        }))
        .await;
    let ok_id = ok["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        run_once(&app, &ok_id).await;
    }
    // A target that refuses, with one retry: a failed fire and a retry.
    let refused = Webhook::start();
    refused
        .state
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let bad = app
        .create_job(json!({
            "group": "metrics-bad", "name": "refused", "mode": "sync",
            "target": { "url": refused.url() },
            "retry": { "max_attempts": 2, "backoff_ms": 100, "jitter": 0.0 },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let bad_id = bad["id"].as_str().unwrap().to_string();
    app.wait_fires(&bad_id, "two failed attempts", |f| {
        count_state(f, "failed") == 2
    })
    .await;
    // A callback fire finished by a signed write-back, and one write-back with a bad signature.
    let cb = app
        .create_job(json!({
            "group": "metrics-cb", "name": "callback",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let cb_id = cb["id"].as_str().unwrap().to_string();
    let fires = app
        .wait_fires(&cb_id, "a running fire", |f| count_state(f, "running") == 1)
        .await;
    let fire_id = fires[0]["id"].as_str().unwrap().to_string();
    let (status, _) = write_back(
        &app,
        &fire_id,
        json!({"status": "succeeded", "output": "done"}),
        "not-the-signing-secret-at-all",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = write_back(
        &app,
        &fire_id,
        json!({"status": "succeeded", "output": "done"}),
        SECRET,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // An executor heartbeat, so the executor gauge has a row.
    let heartbeat = serde_json::to_vec(&json!({
        "app": "metrics-app", "instance_id": "i-1", "address": "http://127.0.0.1:9/cronhook",
        "capacity": 4,
    }))
    .unwrap();
    let (status, body) = call_raw(
        &app.url("/api/v1/executors/heartbeat"),
        &[
            ("Content-Type", "application/json".into()),
            (
                cronhook_sdk::protocol::SIGNATURE_HEADER,
                cronhook_sdk::protocol::sign_now(SECRET.as_bytes(), &heartbeat),
            ),
        ],
        heartbeat,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (text, metrics) = scrape(&app).await;
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        let value = sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{text}"));
        assert!(
            value >= min,
            "{name}{labels:?} = {value}, expected >= {min}"
        );
    };
    // Counters are process-wide, other tests in this binary may add to them: at least.
    at_least(
        "cronhook_fires_finished_total",
        &[("group", "metrics-ok"), ("state", "succeeded")],
        3.0,
    );
    at_least(
        "cronhook_fires_finished_total",
        &[("group", "metrics-bad"), ("state", "failed")],
        2.0,
    );
    at_least(
        "cronhook_fires_finished_total",
        &[("group", "metrics-cb"), ("state", "succeeded")],
        1.0,
    );
    at_least("cronhook_retries_total", &[("group", "metrics-bad")], 1.0);
    at_least("cronhook_write_backs_total", &[("result", "recorded")], 1.0);
    at_least(
        "cronhook_write_backs_total",
        &[("result", "bad_signature")],
        1.0,
    );
    at_least("cronhook_fire_lag_seconds_count", &[], 6.0);
    at_least("cronhook_claim_batch_fires_count", &[], 1.0);
    at_least("cronhook_claim_duration_seconds_count", &[], 1.0);
    at_least(
        "cronhook_dispatch_duration_seconds_count",
        &[("answer", "succeeded")],
        3.0,
    );
    at_least(
        "cronhook_dispatch_duration_seconds_count",
        &[("answer", "failed")],
        2.0,
    );
    at_least(
        "cronhook_dispatch_duration_seconds_count",
        &[("answer", "accepted")],
        1.0,
    );
    // Per-scrape gauges describe this node exactly.
    assert_eq!(
        sample(
            &metrics,
            "cronhook_executors",
            &[("app", "metrics-app"), ("valid", "true")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&metrics, "cronhook_cluster_nodes_alive", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &metrics,
            "cronhook_db_pool_max_connections",
            &[("pool", "write")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &metrics,
            "cronhook_db_pool_connections",
            &[("pool", "read"), ("state", "idle")]
        )
        .is_some(),
        "{text}"
    );
    // Bounded labels only: no fire or job ids anywhere in the exposition.
    assert!(
        !text.contains(&fire_id) && !text.contains(&ok_id),
        "ids leaked into labels:\n{text}"
    );
    for s in &metrics.samples {
        for key in s.labels.keys() {
            assert!(
                [
                    "group", "state", "answer", "result", "app", "valid", "pool", "rule", "policy",
                    "kind", "le", "quantile"
                ]
                .contains(&key.as_str()),
                "unexpected label {key} on {}",
                s.metric
            );
        }
    }
    refused.stop().await;
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn misfires_after_downtime_are_counted_by_group_and_policy() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let job = app
        .create_job(json!({
            "group": "metrics-misfire", "name": "every-second", "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?", "misfire": "skip", "misfire_threshold_ms": 500 }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    app.wait_fires(&job_id, "a fire", |f| count_state(f, "succeeded") >= 1)
        .await;
    app.stop().await;
    // Down for longer than the threshold: the next start finds missed instants.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let app = spawn_app(dir.path());
    app.wait_fires(&job_id, "a misfired fire", |f| {
        count_state(f, "misfired") >= 1
    })
    .await;
    let (text, metrics) = scrape(&app).await;
    let misfires = sample(
        &metrics,
        "cronhook_misfires_total",
        &[("group", "metrics-misfire"), ("policy", "skip")],
    );
    assert!(misfires.is_some_and(|n| n >= 1.0), "{text}");
    hook.stop().await;
    app.stop().await;
}

/// Runs one SQL statement on the node's database, beside the running node (used to
/// set fires' ages; everything else goes through the API).
fn execute_sql(database_url: &str, sql: &str) {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("open the test db");
        diesel::sql_query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .expect("busy timeout");
        diesel::sql_query(sql).execute(&mut conn).expect(sql);
    } else {
        let mut conn = diesel::PgConnection::establish(database_url).expect("open the test db");
        diesel::sql_query(sql).execute(&mut conn).expect(sql);
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[actix_web::test]
async fn retention_removes_old_and_excess_finished_fires_and_nothing_else() {
    let dir = temp_dir();
    retention_scenario(test_settings(dir.path())).await;
}

#[actix_web::test]
async fn retention_on_postgres() {
    let Some(pg) = TempPostgres::create("retention_on_postgres") else {
        return;
    };
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    settings.database_url = pg.url.clone();
    retention_scenario(settings).await;
}

async fn retention_scenario(mut settings: cronhook::configuration::Settings) {
    let database_url = settings.database_url.clone();
    settings.retention.schedule = "* * * * * ?".into();
    settings.retention.max_age_days = 1;
    settings.retention.max_fires_per_job = 3;
    settings.retention.batch_size = 2;
    let app = spawn_app_with(settings);
    let hook = Webhook::start();
    let make = |name: &str, mode: &str| json!({ "group": "retention", "name": name, "mode": mode, "target": { "url": hook.url() } });
    let busy = app.create_job(make("busy", "sync")).await;
    let busy_id = busy["id"].as_str().unwrap().to_string();
    let aged = app.create_job(make("aged", "sync")).await;
    let aged_id = aged["id"].as_str().unwrap().to_string();
    let running = app.create_job(make("running", "callback")).await;
    let running_id = running["id"].as_str().unwrap().to_string();
    // Per-job overrides of max_fires_per_job: one keeps a single fire, one keeps all.
    let mut capped = make("capped", "sync");
    capped["keep_fires"] = json!(1);
    let capped = app.create_job(capped).await;
    assert_eq!(capped["keep_fires"], 1, "{capped}");
    let capped_id = capped["id"].as_str().unwrap().to_string();
    let mut unlimited = make("unlimited", "sync");
    unlimited["keep_fires"] = json!(0);
    let unlimited_id = app.create_job(unlimited).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // busy: five fires, one after the other; only the newest three may stay.
    let mut busy_fires = Vec::new();
    for _ in 0..5 {
        busy_fires.push(run_once(&app, &busy_id).await);
    }
    // aged: two fires, one of them finished two days ago (ages set in the file; the
    // purge itself is the server's).
    let old = run_once(&app, &aged_id).await;
    let recent = run_once(&app, &aged_id).await;
    let mut capped_fires = Vec::new();
    for _ in 0..3 {
        capped_fires.push(run_once(&app, &capped_id).await);
    }
    let mut unlimited_fires = BTreeSet::new();
    for _ in 0..5 {
        unlimited_fires.insert(run_once(&app, &unlimited_id).await);
    }
    // running: a callback fire acknowledged but never written back, fired ten days ago.
    let (status, fire) = app
        .post(&format!("/api/v1/jobs/{running_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202, "{fire}");
    let open = fire["id"].as_str().unwrap().to_string();
    app.wait_fires(&running_id, "a running fire", |f| {
        count_state(f, "running") == 1
    })
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    execute_sql(
        &database_url,
        &format!(
            "UPDATE fires SET scheduled_at = {t}, due_at = {t}, fired_at = {t}, \
             finished_at = {t} WHERE id = '{old}'",
            t = now - 2 * DAY_MS
        ),
    );
    execute_sql(
        &database_url,
        &format!(
            "UPDATE fires SET scheduled_at = {t}, due_at = {t}, fired_at = {t} WHERE id = '{open}'",
            t = now - 10 * DAY_MS
        ),
    );

    let start = Instant::now();
    while app.fires_of(&aged_id).await.len() != 1
        || app.fires_of(&busy_id).await.len() != 3
        || app.fires_of(&capped_id).await.len() != 1
    {
        assert!(
            start.elapsed() < PATIENCE,
            "retention did not purge in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more housekeeping runs must not remove anything else.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let expect_busy: BTreeSet<String> = busy_fires[2..].iter().cloned().collect();
    assert_eq!(
        ids(&app.fires_of(&busy_id).await),
        expect_busy,
        "the newest three stay"
    );
    assert_eq!(
        ids(&app.fires_of(&aged_id).await),
        BTreeSet::from([recent]),
        "the old one goes"
    );
    assert_eq!(
        ids(&app.fires_of(&capped_id).await),
        BTreeSet::from([capped_fires[2].clone()]),
        "keep_fires 1 keeps the newest"
    );
    assert_eq!(
        ids(&app.fires_of(&unlimited_id).await),
        unlimited_fires,
        "keep_fires 0 keeps all, beyond the setting's 3"
    );
    let open_fires = app.fires_of(&running_id).await;
    assert_eq!(
        ids(&open_fires),
        BTreeSet::from([open]),
        "a running fire is never purged"
    );
    assert_eq!(open_fires[0]["state"], "running");

    let (_, metrics) = scrape(&app).await;
    assert!(
        sample(
            &metrics,
            "cronhook_retention_purged_fires_total",
            &[("rule", "age")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "cronhook_retention_purged_fires_total",
            &[("rule", "count")]
        )
        .unwrap_or(0.0)
            >= 2.0
    );
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn backup_of_a_running_server_restores_jobs_history_and_firing() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let job = app
        .create_job(json!({
            "group": "backup", "name": "every-second", "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    app.wait_fires(&job_id, "three succeeded fires", |f| {
        count_state(f, "succeeded") >= 3
    })
    .await;

    // Taken while the server is firing every second.
    let source = format!("sqlite://{}", dir.path().join("cronhook.db").display());
    let copy = dir.path().join("copy").join("backup.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let (code, out, err) = run(&["backup", copy.to_str().unwrap(), "--database", &source]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backed up"), "{out}");
    let (code, _, err) = run(&["backup", copy.to_str().unwrap(), "--database", &source]);
    assert_eq!(code, 2, "an existing file is never overwritten: {err}");
    assert!(err.contains("already exists"), "{err}");
    app.stop().await;

    let mut settings = test_settings(dir.path());
    settings.database_url = format!("sqlite://{}", copy.display());
    let restored = spawn_app_with(settings);
    let (status, again) = restored.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["name"], "every-second");
    let history = restored.fires_of(&job_id).await;
    assert!(
        count_state(&history, "succeeded") >= 3,
        "history kept: {history:?}"
    );
    let before = count_state(&history, "succeeded");
    restored
        .wait_fires(&job_id, "new fires from the restored copy", |f| {
            count_state(f, "succeeded") >= before + 2
        })
        .await;
    hook.stop().await;
    restored.stop().await;
}

#[test]
fn backup_refuses_postgresql_and_missing_files() {
    let dir = temp_dir();
    let out = dir.path().join("b.db");
    let (code, _, err) = run(&[
        "backup",
        out.to_str().unwrap(),
        "--database",
        "postgres://u@127.0.0.1/x",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("pg_dump"), "points to pg_dump: {err}");
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let (code, _, err) = run(&["backup", out.to_str().unwrap(), "--database", &missing]);
    assert_eq!(code, 2);
    assert!(err.contains("no SQLite database"), "{err}");
    assert!(
        !dir.path().join("none.db").exists(),
        "no empty database is created"
    );
}

/// A `cronhook serve` child whose stderr lines are collected.
struct Served {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn start(cmd: &mut Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_line(&mut self, needle: &str) -> String {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no line with {needle:?} in:\n{}", self.seen.join("\n"));
    }

    fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return std::mem::take(&mut self.seen);
            }
            assert!(
                Instant::now() < end,
                "serve did not stop:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[actix_web::test]
async fn json_logs_are_json_lines_naming_fires_and_never_secrets() {
    let dir = temp_dir();
    let token = "json-log-admin-token-5f1e0c";
    let secret = "json-log-signing-secret-9a7b3d";
    let db_url = format!("sqlite://{}", dir.path().join("logs.db").display());
    let mut served = Served::start(
        cronhook()
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &db_url])
            .env("CRONHOOK_LOG_FORMAT", "json")
            // Every secret given: nothing is generated, so no first-start announcement
            // (plain text on stderr) mixes into the JSON lines.
            .env("CRONHOOK_ADMIN_PASSWORD", "console-password-123")
            .env("CRONHOOK_ADMIN_TOKEN", token)
            .env("CRONHOOK_SIGNING_SECRET", secret)
            .env("RUST_LOG", "info"),
    );
    let line = served.wait_line("listening on port");
    let parsed: Value = serde_json::from_str(&line).expect("the start line is JSON");
    let port: u16 = parsed["message"]
        .as_str()
        .and_then(|m| m.rsplit(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Bearer {token}");
    // A refusing sync target: its dispatch failure is logged at info, about the fire.
    let refused = Webhook::start();
    refused
        .state
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let (status, job) = call(
        "POST",
        &format!("{base}/api/v1/jobs"),
        Some(&auth),
        Some(json!({
            "group": "logs", "name": "refused", "mode": "sync",
            "target": { "url": refused.url() },
            "triggers": [{ "kind": "immediate" }],
        })),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    // A rejected request with a wrong token is logged by the access log, without the token.
    let (status, _) = call(
        "GET",
        &format!("{base}/api/v1/jobs"),
        Some("Bearer wrong-token-value-123"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let fire_line = served.wait_line("dispatch failed");
    let lines = served.terminate();
    refused.stop().await;

    let fire_line: Value = serde_json::from_str(&fire_line).expect("JSON");
    assert!(
        fire_line["fire_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{fire_line}"
    );
    assert_eq!(fire_line["job"], "logs/refused", "{fire_line}");
    for line in &lines {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["ts", "level", "target", "message"] {
            assert!(value[key].is_string(), "{key} missing in {line}");
        }
        if value["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("fire "))
        {
            assert!(
                value["fire_id"].is_string(),
                "a fire line without fire_id: {line}"
            );
            assert!(
                value["job"].is_string() || value["job_id"].is_string(),
                "a fire line without its job: {line}"
            );
        }
        assert!(
            !line.contains(token) && !line.contains(secret),
            "a secret was logged: {line}"
        );
    }
    assert!(
        lines.len() >= 4,
        "expected several log lines, got {lines:?}"
    );
}

/// Every setting key, dotted (`scheduler.lookahead_ms`), from the defaults.
fn setting_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_object() {
                        walk(&key, v, out);
                    } else {
                        out.push(key);
                    }
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let defaults = serde_json::to_value(cronhook::configuration::Settings::default()).unwrap();
    let mut keys = Vec::new();
    walk("", &defaults, &mut keys);
    keys
}

#[test]
fn example_config_parses_and_every_setting_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("deploy/cronhook.example.toml");
    let settings = cronhook::configuration::Settings::load(
        Some(&example),
        figment::providers::Serialized::globals(json!({})),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    assert_eq!(settings.log_format, "text");
    let example_text = std::fs::read_to_string(&example).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    for key in setting_keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            example_text
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{leaf} ="))),
            "deploy/cronhook.example.toml does not show {key}"
        );
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/configuration.md does not describe {key}"
        );
        let env = format!("CRONHOOK_{}", key.to_uppercase().replace('.', "__"));
        assert!(
            docs.contains(&env),
            "docs/configuration.md does not name {env}"
        );
    }
}

/// GET a path of `app` without a token; status, content type and body bytes.
async fn fetch(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let client = awc::Client::default();
    let mut response = client.get(app.url(path)).send().await.expect("answers");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.body().limit(8 << 20).await.expect("body");
    (response.status().as_u16(), content_type, body.to_vec())
}

/// The property names of a component schema.
fn schema_fields(doc: &Value, name: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name} in the document"))
        .keys()
        .cloned()
        .collect()
}

fn fields(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[actix_web::test]
async fn openapi_document_describes_every_mounted_route() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let (status, content_type, body) = fetch(&app, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = serde_json::from_slice(&body).expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

    // The document's operations and the server's route table are the same set.
    let mounted: BTreeSet<(String, String)> = cronhook::routes::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(
        mounted.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "mounted but not documented"
    );
    assert_eq!(
        documented.difference(&mounted).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not mounted"
    );

    let operation_ids: Vec<&str> = mounted
        .iter()
        .map(|(m, p)| {
            doc["paths"][p][m]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p}: no operationId"))
        })
        .collect();
    assert_eq!(
        operation_ids.iter().collect::<BTreeSet<_>>().len(),
        operation_ids.len(),
        "operationIds are unique: {operation_ids:?}"
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(
        schemes["signature"]["name"],
        cronhook_sdk::protocol::SIGNATURE_HEADER
    );
    for (method, path) in &mounted {
        let op = &doc["paths"][path][method];
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: no responses"));
        if path.starts_with("/api/v1/") {
            let scheme = op["security"][0]
                .as_object()
                .and_then(|s| s.keys().next().cloned());
            let expected = if path.ends_with("/result")
                || path.ends_with("/results")
                || path.ends_with("/heartbeat")
            {
                "signature"
            } else {
                "bearer"
            };
            assert_eq!(
                scheme.as_deref(),
                Some(expected),
                "{method} {path}: security"
            );
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        // Every error answer is a problem document.
        for (code, response) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                if path == "/readyz" && code == "503" {
                    continue;
                }
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {code}"
                );
            }
        }
        let takes_body = matches!(
            path.as_str(),
            "/api/v1/jobs"
                | "/api/v1/jobs/{id}"
                | "/api/v1/jobs/{id}/run"
                | "/api/v1/fires/{id}/result"
                | "/api/v1/fires/results"
                | "/api/v1/executors/heartbeat"
                | "/api/v1/calendars"
                | "/api/v1/calendars/{name}"
        ) && (method == "post" || method == "put");
        assert_eq!(
            op.get("requestBody").is_some(),
            takes_body,
            "{method} {path}: request body"
        );
    }

    // Each route in the table is really served: none falls through to "no route".
    let id = "01a2075a-504a-7470-9968-e238aaa98e58";
    for (method, path) in &mounted {
        let url = app.url(
            &path
                .replace("{id}", id)
                .replace("{file}", "swagger-ui.css")
                .replace("{name}", "no-such-calendar")
                .replace("{group}", "no-such-group"),
        );
        let (status, body) = call(
            &method.to_uppercase(),
            &url,
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            None,
        )
        .await;
        let no_route = status == 404
            && body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no route"));
        assert!(!no_route, "{method} {path} is not mounted: {body}");
    }

    // The hand-described health shapes match what the handlers answer.
    let (_, readyz) = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(
        fields(&readyz),
        schema_fields(&doc, "Readiness"),
        "{readyz}"
    );
    let (_, nodes) = app.get("/api/v1/nodes").await;
    assert_eq!(
        fields(&nodes["items"][0]),
        schema_fields(&doc, "NodeView"),
        "{nodes}"
    );
    let (_, healthz) = call("GET", &app.url("/healthz"), None, None).await;
    assert_eq!(fields(&healthz), schema_fields(&doc, "Health"));

    // Swagger UI is served from the binary.
    let (status, content_type, page) = fetch(&app, "/api/docs").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("/api/docs/swagger-ui-bundle.js") && page.contains("/api/openapi.json"));
    let (status, content_type, bundle) = fetch(&app, "/api/docs/swagger-ui-bundle.js").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/javascript"));
    assert!(
        bundle.len() > 1_000_000 && bundle.starts_with(b"/*!"),
        "the vendored bundle"
    );
    let (status, _, _) = fetch(&app, "/api/docs/other.js").await;
    assert_eq!(status, 404);
    app.stop().await;
}
