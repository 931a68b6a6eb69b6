//! Test harness: a real cronhook node on an ephemeral 127.0.0.1 port over a real
//! SQLite file (or PostgreSQL), real SDK executors, a plain webhook target, and an
//! HTTP client speaking to them.
#![allow(dead_code)] // each test binary uses a different part of it

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use cronhook::configuration::Settings;
use cronhook::startup::{Application, StopHandle};
use cronhook_sdk::protocol;
use cronhook_sdk::{Executor, ExecutorBuilder};
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SECRET: &str = "test-signing-secret-0123456789";
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Settings for a test node: fast loops, fixed secrets, SQLite file in `dir`.
pub fn test_settings(dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.listen = "127.0.0.1:0".into();
    s.database_url = format!("sqlite://{}", dir.join("cronhook.db").display());
    s.admin_token = Some(ADMIN_TOKEN.into());
    s.signing_secret = Some(SECRET.into());
    s.http_workers = 2;
    s.scheduler.poll_interval_ms = 100;
    s.scheduler.sweep_interval_ms = 200;
    s.scheduler.shutdown_grace_ms = 3_000;
    s.scheduler.executor_heartbeat_ms = 200;
    s
}

/// A running node on its own thread and actix system, so tests can stop and restart
/// it like a process.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub settings: Settings,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn spawn_app(dir: &Path) -> TestApp {
    spawn_app_with(test_settings(dir))
}

pub fn spawn_app_with(settings: Settings) -> TestApp {
    init_logs();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_settings = settings.clone();
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let app = match Application::build(thread_settings).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok((app.port(), app.stop_handle())));
            let _ = app.run_until_stopped().await;
        });
    });
    let (port, stop) = match rx.recv_timeout(PATIENCE) {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => panic!("the test node did not start: {e}"),
        Err(e) => panic!("the test node did not report its start: {e}"),
    };
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        settings,
        stop,
        thread: Some(thread),
    }
}

/// Builds a node's `Application` on the current thread and returns the start error.
pub fn start_error(settings: Settings) -> String {
    let system = actix_rt::System::new();
    system.block_on(async move {
        match Application::build(settings).await {
            Ok(_) => "started".to_string(),
            Err(e) => e.to_string(),
        }
    })
}

impl TestApp {
    /// Graceful stop, as on SIGTERM; returns when the node has stopped.
    pub async fn stop(mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// An admin request; returns status and parsed JSON body (Null when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &self.url(path),
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Creates a job; panics with the answer unless it is 201.
    pub async fn create_job(&self, body: Value) -> Value {
        let (status, job) = self.post("/api/v1/jobs", body).await;
        assert_eq!(status, 201, "job creation failed: {job}");
        job
    }

    pub async fn fires_of(&self, job_id: &str) -> Vec<Value> {
        let (status, page) = self
            .get(&format!("/api/v1/fires?job_id={job_id}&limit=500"))
            .await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the fires of a job until `done` holds for them, or panics after PATIENCE.
    pub async fn wait_fires(
        &self,
        job_id: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let fires = self.fires_of(job_id).await;
            if done(&fires) {
                return fires;
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "timed out waiting for {what}; fires: {}",
                    serde_json::to_string_pretty(&fires).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn fire(&self, fire_id: &str) -> Value {
        let (status, fire) = self.get(&format!("/api/v1/fires/{fire_id}")).await;
        assert_eq!(status, 200, "{fire}");
        fire
    }
}

/// A plain HTTP call; returns the status and the body parsed as JSON (a string when
/// it is not JSON, Null when empty).
pub async fn call(
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut request = client.request(method, url);
    if let Some(auth) = authorization {
        request = request.insert_header(("Authorization", auth));
    }
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut response = sent.unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
    let status = response.status().as_u16();
    let bytes = response
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .unwrap_or_else(|e| panic!("body of {url} unreadable: {e}"));
    (status, parse_body(&bytes))
}

/// Sends `body` raw with the given headers (for signature and malformed-input tests).
pub async fn call_raw(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
    let client = awc::Client::default();
    let mut request = client.post(url);
    for (name, value) in headers {
        request = request.insert_header((*name, value.as_str()));
    }
    let mut response = request
        .send_body(body)
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
    let status = response.status().as_u16();
    let bytes = response.body().await.unwrap_or_default();
    (status, parse_body(&bytes))
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A signed write-back, as an executor sends it.
/// The body gets the `fire_id` binding unless the test set one itself.
pub async fn write_back(app: &TestApp, fire_id: &str, result: Value, secret: &str) -> (u16, Value) {
    let mut result = result;
    if let Some(map) = result.as_object_mut() {
        map.entry("fire_id").or_insert_with(|| json!(fire_id));
    }
    let body = serde_json::to_vec(&result).expect("json");
    let signature = protocol::sign_now(secret.as_bytes(), &body);
    call_raw(
        &app.url(&format!("/api/v1/fires/{fire_id}/result")),
        &[
            ("Content-Type", "application/json".into()),
            (protocol::SIGNATURE_HEADER, signature),
        ],
        body,
    )
    .await
}

/// An SDK executor builder wired to `app`, with its outbox in `dir`, fast retries and
/// no heartbeats unless a test enables them.
pub fn executor_builder(app: &TestApp, name: &str, dir: &Path) -> ExecutorBuilder {
    Executor::builder(app.address.clone(), name, SECRET)
        .outbox_dir(dir.join(format!("outbox-{name}")))
        .retry_backoff(Duration::from_millis(100), Duration::from_millis(500))
        .request_timeout(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(5))
        .without_heartbeats()
}

/// What a plain webhook target answers and what it saw.
#[derive(Default)]
pub struct WebhookState {
    /// Status code answered (200 unless set).
    pub status: AtomicU16,
    /// Delay before answering, in ms.
    pub delay_ms: AtomicU64,
    /// When set, the answer body is this many bytes of `y` instead of JSON.
    pub answer_bytes: AtomicU64,
    pub requests: Mutex<Vec<(Value, Vec<(String, String)>)>>,
    /// The raw bodies, in the same order (signatures cover the exact bytes).
    pub raw: Mutex<Vec<Vec<u8>>>,
}

/// A sync-mode webhook target: answers `status` with a body echoing the fire id.
pub struct Webhook {
    pub port: u16,
    pub state: Arc<WebhookState>,
    handle: actix_web::dev::ServerHandle,
}

impl Webhook {
    /// Starts on an ephemeral port; must run inside an actix system.
    pub fn start() -> Webhook {
        let state = Arc::new(WebhookState::default());
        state.status.store(200, Ordering::SeqCst);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(webhook))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("webhook binds");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Webhook {
            port,
            state,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn requests(&self) -> Vec<(Value, Vec<(String, String)>)> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn raw_bodies(&self) -> Vec<Vec<u8>> {
        self.state.raw.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn webhook(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<WebhookState>,
) -> HttpResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    state
        .requests
        .lock()
        .unwrap()
        .push((parsed.clone(), headers));
    state.raw.lock().unwrap().push(body.to_vec());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = state.status.load(Ordering::SeqCst);
    let size = state.answer_bytes.load(Ordering::SeqCst) as usize;
    if size > 0 {
        return HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status).unwrap_or_default(),
        )
        .body("y".repeat(size));
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .json(json!({ "handled": parsed["fire_id"] }))
}

/// The `cronhook` binary, with none of the test environment's `CRONHOOK_*` settings.
pub fn cronhook_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cronhook"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CRONHOOK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A fresh temporary directory for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path_of(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// Milliseconds since the epoch of an RFC 3339 instant in an API answer.
pub fn ms(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not an instant: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

/// PostgreSQL URL for tests, from CRONHOOK_TEST_POSTGRES_URL; None (and a loud note) without it.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("CRONHOOK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to the process's stderr: libtest hides eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED {test}: CRONHOOK_TEST_POSTGRES_URL is not set (PostgreSQL tests need it; .ci/run sets it) ***\n"
            );
            None
        }
    }
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct TempPostgres {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TempPostgres {
    /// Creates `cronhook_test_<random>` on the server named by CRONHOOK_TEST_POSTGRES_URL.
    pub fn create(test: &str) -> Option<TempPostgres> {
        use diesel::{Connection, RunQueryDsl};
        let admin_url = postgres_url(test)?;
        let name = format!("cronhook_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let mut url = url::Url::parse(&admin_url).expect("valid PostgreSQL URL");
        url.set_path(&format!("/{name}"));
        Some(TempPostgres {
            admin_url,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        use diesel::{Connection, RunQueryDsl};
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}
