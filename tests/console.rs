//! The web console against a real node: HTTP-level checks of login, sessions and CSRF,
//! and an end-to-end run in real headless Chromium (driven through chromedriver with
//! fantoccini) with a real SDK executor. The browser test saves a screenshot of each
//! page under `docs/screenshots/`.
//!
//! Chromium is not mocked: when `/usr/bin/chromedriver` (Debian `chromium-driver`) is
//! missing, the browser test says SKIPPED loudly; `.ci/run` installs it.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cronhook_sdk::{handler_fn, JobError, Output};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{json, Value};

const PASSWORD: &str = "console-password-123";

fn console_settings(dir: &Path) -> cronhook::configuration::Settings {
    let mut settings = test_settings(dir);
    settings.admin_password = Some(PASSWORD.into());
    settings
}

// ---------------------------------------------------------------------------
// A cookie-keeping HTTP client (no browser): what a form post or script sends.
// ---------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Visitor {
    cookies: HashMap<String, String>,
}

/// The value of `name="…"` in a hidden input or meta tag of a page.
fn hidden_value(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in page: {html}"));
    let rest = &html[start..];
    let value_at = rest
        .find(if marker.contains("meta") {
            "content=\""
        } else {
            "value=\""
        })
        .expect("value");
    let rest = &rest[value_at..];
    let open = rest.find('"').expect("quote") + 1;
    let close = rest[open..].find('"').expect("closing quote") + open;
    rest[open..close].to_string()
}

impl Visitor {
    async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Answer {
        let client = awc::Client::builder()
            .disable_redirects()
            .timeout(Duration::from_secs(30))
            .finish();
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client.request(method, url);
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.insert_header(("Cookie", cookie.join("; ")));
        }
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let sent = match body {
            Some((content_type, body)) => {
                request
                    .insert_header(("Content-Type", content_type))
                    .send_body(body)
                    .await
            }
            None => request.send().await,
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{url}: {e}"));
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    if v.is_empty() {
                        self.cookies.remove(k);
                    } else {
                        self.cookies.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
        let bytes = response.body().limit(8 << 20).await.unwrap_or_default();
        Answer {
            status: response.status().as_u16(),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Loads the login form and posts it; returns the answer to the post.
    async fn log_in(&mut self, app: &TestApp, username: &str, password: &str) -> Answer {
        let form = self.send("GET", &app.url("/login"), &[], None).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = hidden_value(&form.body, "name=\"csrf_token\"");
        let body = format!(
            "username={}&password={}&csrf_token={csrf}",
            urlencode(username),
            urlencode(password)
        );
        self.send(
            "POST",
            &app.url("/login"),
            &[],
            Some(("application/x-www-form-urlencoded", body)),
        )
        .await
    }

    /// The CSRF token of the logged-in session, as pages carry it.
    async fn csrf(&mut self, app: &TestApp) -> String {
        let page = self.send("GET", &app.url("/jobs"), &[], None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        hidden_value(&page.body, "<meta name=\"csrf-token\"")
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn url_job(name: &str) -> Value {
    json!({
        "name": name,
        "target": { "url": "http://127.0.0.1:9/hook" },
        "mode": "sync",
        "triggers": [{ "kind": "cron", "expression": "0 0 3 * * ?" }],
    })
}

// ---------------------------------------------------------------------------
// HTTP-level checks
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn login_sets_a_strict_http_only_session_cookie_and_a_wrong_password_is_refused() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let mut visitor = Visitor::default();

    // Pages need a session.
    let page = visitor.send("GET", &app.url("/jobs"), &[], None).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));

    let refused = visitor.log_in(&app, "admin", "not-the-password").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.body.contains("Wrong user name or password."));
    assert!(refused.set_cookie("cronhook_session").is_none());

    let unknown = visitor.log_in(&app, "nobody", PASSWORD).await;
    assert_eq!(unknown.status, 401);

    let accepted = visitor.log_in(&app, "admin", PASSWORD).await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(accepted.header("location"), Some("/"));
    let cookie = accepted
        .set_cookie("cronhook_session")
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    let dashboard = visitor.send("GET", &app.url("/"), &[], None).await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("<meta name=\"csrf-token\""));
    let csp = dashboard.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // Assets are embedded and served by the node itself.
    let script = visitor
        .send("GET", &app.url("/assets/ui/console.js"), &[], None)
        .await;
    assert_eq!(script.status, 200);
    assert!(script.body.contains("X-CSRF-Token"));
    app.stop().await;
}

#[actix_web::test]
async fn session_requests_that_change_state_need_the_csrf_token() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let mut visitor = Visitor::default();
    assert_eq!(visitor.log_in(&app, "admin", PASSWORD).await.status, 303);
    let csrf = visitor.csrf(&app).await;

    // Reads with the session alone.
    let list = visitor
        .send("GET", &app.url("/api/v1/jobs"), &[], None)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);

    // A post without the token (what a forged cross-site form would send) is refused.
    let body = url_job("forged").to_string();
    let forged = visitor
        .send(
            "POST",
            &app.url("/api/v1/jobs"),
            &[],
            Some(("application/json", body.clone())),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.json()["detail"]
        .as_str()
        .unwrap_or("")
        .contains("X-CSRF-Token"));
    let wrong = visitor
        .send(
            "POST",
            &app.url("/api/v1/jobs"),
            &[("X-CSRF-Token", "0000")],
            Some(("application/json", body.clone())),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let (_, jobs) = app.get("/api/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "no job was created: {jobs}");

    let created = visitor
        .send(
            "POST",
            &app.url("/api/v1/jobs"),
            &[("X-CSRF-Token", &csrf)],
            Some(("application/json", body)),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // The logout form needs it too.
    let logout_forged = visitor
        .send(
            "POST",
            &app.url("/logout"),
            &[],
            Some(("application/x-www-form-urlencoded", String::new())),
        )
        .await;
    assert_eq!(logout_forged.status, 403);

    // The login form's own token: a post without the cookie/field pair is refused.
    let mut stranger = Visitor::default();
    let blind = stranger
        .send(
            "POST",
            &app.url("/login"),
            &[],
            Some((
                "application/x-www-form-urlencoded",
                format!("username=admin&password={PASSWORD}"),
            )),
        )
        .await;
    assert_eq!(blind.status, 403);
    assert!(blind.set_cookie("cronhook_session").is_none());

    // Bearer tokens keep working without any CSRF token.
    let (status, _) = app.post("/api/v1/jobs", url_job("by-token")).await;
    assert_eq!(status, 201);
    app.stop().await;
}

#[actix_web::test]
async fn sessions_live_in_the_database_survive_a_restart_and_end_at_logout() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let mut visitor = Visitor::default();
    assert_eq!(visitor.log_in(&app, "admin", PASSWORD).await.status, 303);
    let settings = app.settings.clone();
    app.stop().await;

    let app = spawn_app_with(settings);
    let page = visitor.send("GET", &app.url("/executors"), &[], None).await;
    assert_eq!(page.status, 200, "the session outlived the restart");
    let csrf = hidden_value(&page.body, "<meta name=\"csrf-token\"");
    let out = visitor
        .send(
            "POST",
            &app.url("/logout"),
            &[],
            Some((
                "application/x-www-form-urlencoded",
                format!("csrf_token={csrf}"),
            )),
        )
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    let list = visitor
        .send("GET", &app.url("/api/v1/jobs"), &[], None)
        .await;
    assert_eq!(list.status, 401, "the session is gone after logout");
    app.stop().await;
}

#[actix_web::test]
async fn repeated_wrong_passwords_are_rate_limited_with_retry_after() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let mut visitor = Visitor::default();
    for attempt in 1..=cronhook::ui::MAX_FAILURES {
        let answer = visitor.log_in(&app, "admin", "guess").await;
        assert_eq!(answer.status, 401, "attempt {attempt}");
    }
    // Now even the right password waits: the limit is checked before the password.
    let limited = visitor.log_in(&app, "admin", PASSWORD).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry_after: i64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds");
    assert!(
        retry_after > 0 && retry_after <= cronhook::ui::FAILURE_WINDOW_MS / 1000,
        "{retry_after}"
    );
    assert!(limited.set_cookie("cronhook_session").is_none());
    app.stop().await;
}

#[actix_web::test]
async fn first_start_creates_admin_with_a_generated_password_and_the_setting_replaces_it() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.path().join("console.db").display());
    let db = cronhook::db::Db::open(&url).expect("db opens");
    db.run_migrations().expect("migrations");

    let generated = cronhook::auth::ensure_console_admin(&db, None)
        .expect("admin created")
        .expect("a generated password on first start");
    assert!(generated.len() >= 16, "{generated}");
    assert_eq!(
        cronhook::auth::ensure_console_admin(&db, None).expect("second start"),
        None,
        "the password is generated (and shown) only once"
    );
    let stored = |db: &cronhook::db::Db| {
        let mut conn = db.read().expect("conn");
        cronhook::db::console::find_user_by_name(&mut conn, "admin")
            .expect("query")
            .expect("admin exists")
            .password_hash
    };
    let hash = stored(&db);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(&generated));
    assert!(cronhook::auth::verify_password(&generated, &hash));

    // CRONHOOK_ADMIN_PASSWORD (settings.admin_password) sets it instead.
    cronhook::auth::ensure_console_admin(&db, Some("chosen-password-1")).expect("update");
    let hash = stored(&db);
    assert!(cronhook::auth::verify_password("chosen-password-1", &hash));
    assert!(!cronhook::auth::verify_password(&generated, &hash));
}

#[actix_web::test]
async fn dashboard_figures_count_the_last_hour_of_real_fires() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let hook = Webhook::start();
    let sync_job = |name: &str, url: String| {
        json!({
            "name": name,
            "target": { "url": url },
            "mode": "sync",
            "triggers": [{ "kind": "immediate" }],
        })
    };
    let ok = app.create_job(sync_job("answers", hook.url())).await;
    // Nothing listens on port 9 (discard): the dispatch fails.
    let broken = app
        .create_job(sync_job("broken", "http://127.0.0.1:9/hook".into()))
        .await;
    for job in [&ok, &broken] {
        let id = job["id"].as_str().expect("id");
        app.wait_fires(id, "a finished fire", |fires| {
            fires
                .iter()
                .any(|f| f["state"] == "succeeded" || f["state"] == "failed")
        })
        .await;
    }

    // The console reads it with its session; a bearer token reads it too.
    let mut visitor = Visitor::default();
    assert_eq!(visitor.log_in(&app, "admin", PASSWORD).await.status, 303);
    let answer = visitor
        .send("GET", &app.url("/ui/api/dashboard"), &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let d = answer.json();
    assert_eq!(d["fires_by_state"]["succeeded"], 1, "{d}");
    assert_eq!(d["fires_by_state"]["failed"], 1, "{d}");
    assert_eq!(d["success_rate"], 50.0, "{d}");
    assert_eq!(d["jobs_by_state"]["active"], 2, "{d}");
    assert_eq!(d["failing_jobs"][0]["job"], "default/broken", "{d}");
    assert_eq!(d["failing_jobs"][0]["failures"], 1, "{d}");
    assert!(
        !d["failing_jobs"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{d}"
    );
    assert_eq!(d["failing_jobs"].as_array().map(Vec::len), Some(1), "{d}");
    assert!(d["lag_p50_ms"].as_i64().is_some(), "{d}");
    assert!(d["lag_p99_ms"].as_i64() >= d["lag_p50_ms"].as_i64(), "{d}");
    let buckets = d["buckets"].as_array().cloned().unwrap_or_default();
    assert!(
        (12..=13).contains(&buckets.len()),
        "5-minute buckets over an hour: {d}"
    );
    let charted: i64 = buckets
        .iter()
        .flat_map(|b| b["outcomes"].as_object().cloned().unwrap_or_default())
        .map(|(_, n)| n.as_i64().unwrap_or(0))
        .sum();
    assert_eq!(charted, 2, "{d}");
    assert_eq!(d["nodes"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d["nodes"][0]["alive"], true, "{d}");
    assert_eq!(d["executors_valid"], 0);

    let (status, _) = app.get("/ui/api/dashboard").await;
    assert_eq!(status, 200);
    let anonymous = Visitor::default()
        .send("GET", &app.url("/ui/api/dashboard"), &[], None)
        .await;
    assert_eq!(anonymous.status, 401);
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn executor_load_history_is_sampled_from_heartbeats() {
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let executor = executor_builder(&app, "loadtest", dir.path())
        .instance_id("load-1")
        .heartbeat_interval(Duration::from_millis(100))
        .capacity(3)
        .handler(
            "noop",
            handler_fn(|_| async { Ok::<_, JobError>(Output::none()) }),
        )
        .build()
        .expect("executor builds");
    let _served = executor.serve("127.0.0.1:0").expect("serves");

    // Heartbeats come every 100 ms; samples at most every 5 s.
    let start = Instant::now();
    let samples = loop {
        let (status, history) = app.get("/ui/api/executor-load").await;
        assert_eq!(status, 200, "{history}");
        let samples: Vec<Value> = history
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if samples.len() >= 2 {
            break samples;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "fewer than 2 samples: {history}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for pair in samples.windows(2) {
        let gap = ms(&pair[1]["at"]) - ms(&pair[0]["at"]);
        assert!(
            gap >= cronhook::db::executor_load::SAMPLE_EVERY_MS,
            "samples {gap} ms apart: {samples:?}"
        );
    }
    let first = &samples[0];
    assert_eq!(first["capacity"], 3);
    assert!(
        first["mem_total_bytes"].as_i64().unwrap_or(0) > 0,
        "{first}"
    );
    assert!(first["cpu_percent"].as_f64().is_some(), "{first}");
    app.stop().await;
}

/// Two nodes on one PostgreSQL database: a login on one node is a session on the other,
/// and the login rate limit counts failures made on either.
#[actix_web::test]
async fn sessions_and_the_login_limit_hold_across_postgres_cluster_nodes() {
    let Some(pg) = TempPostgres::create("console::sessions_across_cluster_nodes") else {
        return;
    };
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let on_pg = |dir: &Path| {
        let mut settings = console_settings(dir);
        settings.database_url = pg.url.clone();
        settings
    };
    let node_a = spawn_app_with(on_pg(dir_a.path()));
    let node_b = spawn_app_with(on_pg(dir_b.path()));

    let mut visitor = Visitor::default();
    assert_eq!(visitor.log_in(&node_a, "admin", PASSWORD).await.status, 303);
    let csrf = visitor.csrf(&node_b).await;
    let created = visitor
        .send(
            "POST",
            &node_b.url("/api/v1/jobs"),
            &[("X-CSRF-Token", &csrf)],
            Some(("application/json", url_job("made-on-b").to_string())),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let forged = visitor
        .send(
            "POST",
            &node_b.url("/api/v1/jobs"),
            &[],
            Some(("application/json", url_job("forged").to_string())),
        )
        .await;
    assert_eq!(forged.status, 403);

    let mut guesser = Visitor::default();
    for i in 0..cronhook::ui::MAX_FAILURES {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        assert_eq!(guesser.log_in(node, "admin", "guess").await.status, 401);
    }
    assert_eq!(guesser.log_in(&node_a, "admin", PASSWORD).await.status, 429);
    assert_eq!(guesser.log_in(&node_b, "admin", PASSWORD).await.status, 429);
    node_a.stop().await;
    node_b.stop().await;
}

// ---------------------------------------------------------------------------
// Real Chromium
// ---------------------------------------------------------------------------

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    dir
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Option<Driver> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!(
            "\n!!! SKIPPED: {CHROMEDRIVER} or {CHROMIUM} is missing; install the Debian packages `chromium chromium-driver` (.ci/run does) to run the browser test !!!\n"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < PATIENCE, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800", "--force-device-scale-factor=1"],
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Sizes the window so the page itself (the viewport) is `width`×`height`.
async fn set_viewport(client: &Client, width: u32, height: u32) {
    client.set_window_size(width, height).await.expect("resize");
    let chrome = client
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .expect("window size");
    let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
    client
        .set_window_size(width + extra(0), height + extra(1))
        .await
        .expect("resize");
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write png");
}

/// Polls `probe` (a JS expression) until it is truthy; panics with `what` after PATIENCE.
async fn wait_js(client: &Client, what: &str, probe: &str) -> Value {
    let start = Instant::now();
    loop {
        let value = client
            .execute(&format!("return ({probe});"), vec![])
            .await
            .unwrap_or(Value::Null);
        let truthy = match &value {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return value;
        }
        if start.elapsed() > PATIENCE {
            let url = client.current_url().await.map(|u| u.to_string());
            panic!("timed out waiting for {what} (page {url:?}, probe {probe})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

/// Status of a fetch made by the page's own script context (same origin, same cookies).
async fn fetch_status(client: &Client, method: &str, path: &str, with_csrf: bool) -> i64 {
    let script = r#"
        const [method, path, withCsrf, done] = arguments;
        const headers = { 'Content-Type': 'application/json' };
        if (withCsrf) headers['X-CSRF-Token'] = document.querySelector('meta[name="csrf-token"]').content;
        fetch(path, { method, headers, credentials: 'same-origin' }).then((r) => done(r.status), () => done(-1));
    "#;
    client
        .execute_async(script, vec![json!(method), json!(path), json!(with_csrf)])
        .await
        .expect("fetch ran")
        .as_i64()
        .expect("status")
}

#[actix_web::test]
async fn console_in_headless_chromium_with_a_real_executor() {
    let Some(driver) = start_chromedriver() else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(console_settings(dir.path()));
    let executor = executor_builder(&app, "reports", dir.path())
        .instance_id("reports-1")
        .heartbeat_interval(Duration::from_millis(200))
        .capacity(4)
        .handler(
            "export",
            handler_fn(|ctx| async move {
                Ok::<_, JobError>(Output::text(format!(
                    "exported 42 rows (attempt {})",
                    ctx.attempt()
                )))
            }),
        )
        .handler(
            "hold",
            // Runs until an operator cancels it (or 60 s pass).
            handler_fn(|ctx| async move {
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                Ok::<_, JobError>(Output::text("stopped"))
            }),
        )
        .build()
        .expect("executor builds");
    let _served = executor.serve("127.0.0.1:0").expect("executor serves");

    let client = browser(&driver).await;
    // Close the browser session even when a step fails, then report the failure.
    let outcome = std::panic::AssertUnwindSafe(run_console(&client, &app))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    app.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn run_console(client: &Client, app: &TestApp) {
    // Log in: a wrong password is refused, the right one opens the dashboard.
    client.goto(&app.url("/jobs")).await.expect("goto");
    set_viewport(client, 1280, 800).await;
    wait_js(
        client,
        "the login form",
        "document.querySelector('#login-form')",
    )
    .await;
    assert!(client.current_url().await.expect("url").path() == "/login");
    screenshot(client, "login").await;
    fill(client, "#username", "admin").await;
    fill(client, "#password", "wrong-password").await;
    client
        .find(Locator::Css("#login-submit"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    wait_js(
        client,
        "the login error",
        "document.querySelector('#login-error')",
    )
    .await;
    assert_eq!(
        text_of(client, "#login-error").await,
        "Wrong user name or password."
    );
    assert_eq!(client.current_url().await.expect("url").path(), "/login");
    fill(client, "#username", "admin").await;
    fill(client, "#password", PASSWORD).await;
    client
        .find(Locator::Css("#login-submit"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    wait_js(
        client,
        "the dashboard",
        "document.body.dataset.page === 'dashboard'",
    )
    .await;

    // A calendar for the form's picker (it excludes a day long past: fires go on).
    let (status, calendar) = app
        .post(
            "/api/v1/calendars",
            json!({ "name": "old-holidays", "exclude": { "dates": ["2020-01-01"] } }),
        )
        .await;
    assert_eq!(status, 201, "{calendar}");

    // Create a cron job through the form; an invalid cron shows the error by the field.
    client.goto(&app.url("/jobs/new")).await.expect("goto");
    wait_js(
        client,
        "the default cron preview",
        "document.querySelectorAll('#cron-next li').length === 5",
    )
    .await;
    fill(client, "#f-name", "browser-export").await;
    fill(client, "#f-cron", "0 61 * * * ?").await;
    let live_error = wait_js(
        client,
        "the live cron error",
        "!document.querySelector('#cron-error').hidden && document.querySelector('#cron-error').textContent",
    )
    .await;
    assert!(
        live_error.as_str().unwrap_or("").contains("61"),
        "the error names the bad value: {live_error}"
    );
    assert_eq!(
        wait_js(
            client,
            "aria-invalid",
            "document.querySelector('#f-cron').getAttribute('aria-invalid')"
        )
        .await,
        json!("true")
    );
    client
        .find(Locator::Css("#f-target-kind"))
        .await
        .expect("target kind")
        .select_by_value("app")
        .await
        .expect("select app");
    fill(client, "#f-app", "reports").await;
    fill(client, "#f-handler", "export").await;
    fill(client, "#f-payload", r#"{"customer": "ACME"}"#).await;
    client
        .find(Locator::Css("#f-calendar"))
        .await
        .expect("calendar picker")
        .select_by_value("old-holidays")
        .await
        .expect("the calendar is offered");
    client
        .find(Locator::Css("#save-job"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    // The server refuses it too, and the form puts its answer next to the same field.
    wait_js(
        client,
        "the server's field error",
        "document.querySelector('#cron-error').textContent.includes('61') && document.body.dataset.page === 'job-form' && !document.querySelector('#save-job').disabled",
    )
    .await;
    let (_, jobs) = app.get("/api/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "nothing was created: {jobs}");
    screenshot(client, "job-form-error").await;

    fill(client, "#f-cron", "* * * * * ?").await;
    wait_js(
        client,
        "the live preview of the fixed cron",
        "document.querySelector('#cron-error').hidden && document.querySelectorAll('#cron-next li').length === 5 && document.querySelector('#cron-explanation').textContent.length > 0",
    )
    .await;
    let explanation = text_of(client, "#cron-explanation").await;
    assert!(!explanation.is_empty());
    screenshot(client, "job-form").await;
    client
        .find(Locator::Css("#save-job"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    wait_js(
        client,
        "the job detail page",
        "document.body.dataset.page === 'job-detail'",
    )
    .await;
    let (_, jobs) = app.get("/api/v1/jobs?q=browser-export").await;
    let job = jobs["items"][0].clone();
    assert_eq!(job["name"], "browser-export", "{jobs}");
    assert_eq!(job["target"]["app"], "reports");
    assert_eq!(job["triggers"][0]["expression"], "* * * * * ?");
    assert_eq!(job["triggers"][0]["calendar"], "old-holidays", "{job}");
    let job_id = job["id"].as_str().expect("id").to_string();

    // Its fires appear, with their outcomes, without reloading the page.
    wait_js(
        client,
        "succeeded fires in the job's recent fires",
        "document.querySelectorAll('#fires-table tr[data-state=succeeded]').length >= 2",
    )
    .await;
    // The execution plan, from the lifecycle's plan API (calendars applied).
    wait_js(
        client,
        "the execution plan",
        "document.querySelectorAll('#plan-table tbody tr[data-status]').length > 0 && document.querySelector('#plan-note').textContent.includes('planned')",
    )
    .await;
    let timeline = text_of(
        client,
        "#fires-table tr[data-state=succeeded] td.timeline-cell",
    )
    .await;
    assert_eq!(timeline.matches('→').count(), 3, "{timeline}");
    assert!(
        !timeline.contains('…'),
        "a finished fire has every step: {timeline}"
    );
    screenshot(client, "job-detail").await;

    // Pause it from the jobs list, through the confirmation step.
    client.goto(&app.url("/jobs")).await.expect("goto");
    let row = format!("#jobs-table tr[data-job-id='{job_id}']");
    wait_js(
        client,
        "the job row",
        &format!("document.querySelector(\"{row}\")"),
    )
    .await;
    let resume_disabled = wait_js(
        client,
        "the resume button",
        &format!("document.querySelector(\"{row} button[data-action=resume]\")"),
    )
    .await;
    assert!(!resume_disabled.is_null());
    assert_eq!(
        client
            .execute(
                &format!(
                    "return document.querySelector(\"{row} button[data-action=resume]\").disabled;"
                ),
                vec![]
            )
            .await
            .expect("js"),
        json!(true),
        "resume is disabled while the job is active"
    );
    screenshot(client, "jobs").await;
    // Search and the group filter narrow the list in place.
    fill(client, "#job-search", "no-such-job").await;
    wait_js(client, "the empty list", "!document.querySelector('#jobs-empty').hidden && document.querySelectorAll('#jobs-table tbody tr').length === 0").await;
    fill(client, "#job-search", "export").await;
    wait_js(
        client,
        "the job row again",
        &format!("document.querySelector(\"{row}\")"),
    )
    .await;
    client
        .find(Locator::Css("#job-group"))
        .await
        .expect("group filter")
        .select_by_value("default")
        .await
        .expect("the default group is offered");
    wait_js(client, "the filtered row", &format!("document.querySelector(\"{row}\") && document.querySelectorAll('#jobs-table tbody tr').length === 1")).await;
    click_and_confirm(
        client,
        &format!("{row} button[data-action=pause]"),
        "browser-export",
    )
    .await;
    let state = wait_js(
        client,
        "the paused badge",
        &format!("['paused','pausing'].includes(document.querySelector(\"{row}\")?.dataset.state) && document.querySelector(\"{row} .badge\").textContent"),
    )
    .await;
    assert!(
        state == json!("paused") || state == json!("pausing"),
        "{state}"
    );
    wait_js(
        client,
        "the badge to settle on paused",
        &format!("document.querySelector(\"{row} .badge\")?.textContent === 'paused'"),
    )
    .await;
    let (_, stored) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(stored["state"], "paused");

    // A state-changing request without the CSRF token is refused; with it, accepted.
    assert_eq!(
        fetch_status(
            client,
            "POST",
            &format!("/api/v1/jobs/{job_id}/resume"),
            false
        )
        .await,
        403
    );
    let (_, still) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(
        still["state"], "paused",
        "the forged resume changed nothing"
    );
    assert_eq!(
        fetch_status(client, "GET", "/api/v1/jobs", false).await,
        200,
        "reads need no token"
    );

    // Run now works on the paused job: one fire outside the schedule.
    client.goto(&app.url("/jobs")).await.expect("goto");
    wait_js(
        client,
        "the job row",
        &format!("document.querySelector(\"{row} button[data-action=run]\")"),
    )
    .await;
    click_and_confirm(
        client,
        &format!("{row} button[data-action=run]"),
        "browser-export",
    )
    .await;
    wait_js(
        client,
        "the run-now flash",
        "document.querySelector('#flash').textContent.includes('a fire was started')",
    )
    .await;
    let start = Instant::now();
    loop {
        let fires = app.fires_of(&job_id).await;
        if fires
            .iter()
            .any(|f| f["trigger_id"].is_null() && f["state"] == "succeeded")
        {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the run-now fire never succeeded: {fires:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Settings the form does not show, set through the API, must survive a form edit.
    let (_, current) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    let mut input = json!({
        "group": current["group"], "name": current["name"], "target": current["target"],
        "mode": current["mode"], "payload": current["payload"], "routing": current["routing"],
        "concurrency": current["concurrency"],
        "retry": { "max_attempts": 1, "jitter": 0.3, "max_backoff_ms": 90_000 },
        "alert_url": "http://127.0.0.1:9/alerts",
        "triggers": [{ "kind": "cron", "expression": "* * * * * ?", "calendar": "old-holidays", "misfire_threshold_ms": 4_000 }],
    });
    if input["target"]["when_unavailable"].is_null() {
        input["target"]
            .as_object_mut()
            .map(|t| t.remove("when_unavailable"));
    }
    let (status, body) = app
        .call("PUT", &format!("/api/v1/jobs/{job_id}"), Some(input))
        .await;
    assert_eq!(status, 200, "{body}");

    // Edit: the form loads the job, a change saves as a new version.
    client
        .goto(&app.url(&format!("/jobs/{job_id}/edit")))
        .await
        .expect("goto");
    wait_js(client, "the loaded job", "document.querySelector('#f-name').value === 'browser-export' && document.querySelector('#f-app').value === 'reports'").await;
    fill(client, "#f-description", "exports for ACME").await;
    client
        .find(Locator::Css("#save-job"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    wait_js(client, "the job detail page", "document.body.dataset.page === 'job-detail' && document.querySelector('#job-facts')?.textContent.includes('exports for ACME')").await;
    let (_, edited) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(edited["version"], 3, "{edited}");
    assert_eq!(edited["alert_url"], "http://127.0.0.1:9/alerts", "{edited}");
    assert_eq!(edited["retry"]["jitter"], 0.3, "{edited}");
    assert_eq!(edited["retry"]["max_backoff_ms"], 90_000, "{edited}");
    assert_eq!(
        edited["triggers"][0]["misfire_threshold_ms"], 4_000,
        "{edited}"
    );
    assert_eq!(
        edited["triggers"][0]["calendar"], "old-holidays",
        "{edited}"
    );
    assert_eq!(edited["description"], "exports for ACME");
    assert_eq!(edited["state"], "paused", "an edit keeps the job paused");
    assert_eq!(edited["payload"], json!({ "customer": "ACME" }));

    // Executions: the fires with their outcomes; one fire's detail with its output.
    client.goto(&app.url("/executions")).await.expect("goto");
    wait_js(
        client,
        "succeeded executions",
        "document.querySelectorAll('#fires-table tr[data-state=succeeded]').length >= 2",
    )
    .await;
    screenshot(client, "executions").await;
    let first = client
        .find(Locator::Css("#fires-table tr[data-state=succeeded] a"))
        .await
        .expect("a fire link");
    first.click().await.expect("open fire");
    wait_js(
        client,
        "the fire's output",
        "document.querySelector('#fire-output')?.textContent.includes('exported 42 rows')",
    )
    .await;
    assert!(text_of(client, "#fire-payload").await.contains("ACME"));
    screenshot(client, "execution-detail").await;

    // Executors: the SDK instance with its CPU and memory gauges.
    client.goto(&app.url("/executors")).await.expect("goto");
    let card = "article.instance[data-instance='reports-1']";
    wait_js(
        client,
        "the executor card",
        &format!("document.querySelector(\"{card}\")"),
    )
    .await;
    let gauges = client
        .execute(
            &format!("return Array.from(document.querySelectorAll(\"{card} [role=meter]\")).map((m) => [m.getAttribute('aria-label'), Number(m.getAttribute('aria-valuenow')), m.getAttribute('aria-valuetext')]);"),
            vec![],
        )
        .await
        .expect("gauges");
    let gauges = gauges.as_array().cloned().unwrap_or_default();
    assert_eq!(gauges.len(), 2, "{gauges:?}");
    assert_eq!(gauges[0][0], "CPU");
    assert!(
        gauges[0][1]
            .as_f64()
            .is_some_and(|v| (0.0..=100.0).contains(&v)),
        "{gauges:?}"
    );
    assert_eq!(gauges[1][0], "Memory");
    assert!(
        gauges[1][1].as_f64().is_some_and(|v| v > 0.0 && v <= 100.0),
        "{gauges:?}"
    );
    assert!(
        gauges[1][2].as_str().unwrap_or("").contains(" of "),
        "{gauges:?}"
    );
    assert_eq!(
        wait_js(
            client,
            "the validity badge",
            &format!("document.querySelector(\"{card} .badge\").textContent")
        )
        .await,
        json!("valid")
    );
    // Let the load history collect a few samples for the screenshot.
    wait_js(
        client,
        "load history samples",
        &format!("Number(document.querySelector(\"{card} .history\")?.dataset.samples) >= 2"),
    )
    .await;
    screenshot(client, "executors").await;

    // Dashboard: the last hour's fires, success rate and lag, drawn as charts.
    client.goto(&app.url("/")).await.expect("goto");
    wait_js(
        client,
        "the dashboard figures",
        "document.querySelector('#success-rate').textContent.endsWith('%') && document.querySelectorAll('#chart-outcomes rect').length > 0 && document.querySelector('#chart-lag .line-p50 circle')",
    )
    .await;
    assert_eq!(text_of(client, "#success-rate").await, "100 %");
    screenshot(client, "dashboard").await;
    client
        .execute("document.querySelector('#h-lag').scrollIntoView();", vec![])
        .await
        .expect("scroll");
    screenshot(client, "dashboard-charts").await;

    // Cancel a running fire from its detail page.
    let held = app
        .create_job(json!({
            "name": "held-export",
            "target": { "app": "reports", "handler": "hold" },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let held_id = held["id"].as_str().expect("id").to_string();
    let running = app
        .wait_fires(&held_id, "a running fire", |fires| {
            fires.iter().any(|f| f["state"] == "running")
        })
        .await;
    let fire_id = running
        .iter()
        .find(|f| f["state"] == "running")
        .and_then(|f| f["id"].as_str())
        .expect("fire id")
        .to_string();
    client
        .goto(&app.url(&format!("/executions/{fire_id}")))
        .await
        .expect("goto");
    wait_js(
        client,
        "an enabled cancel button",
        "document.querySelector('#fire-state')?.textContent === 'running' && !document.querySelector('#fire-cancel').disabled",
    )
    .await;
    click_and_confirm(client, "#fire-cancel", "Cancel this fire").await;
    wait_js(
        client,
        "the cancelled badge",
        "document.querySelector('#fire-state')?.textContent === 'cancelled' && document.querySelector('#fire-cancel').disabled",
    )
    .await;
    assert_eq!(app.fire(&fire_id).await["state"], "cancelled");

    // Retry the cancelled fire: a new attempt for the same instant, on its own page.
    wait_js(
        client,
        "an enabled retry button",
        "!document.querySelector('#fire-retry').disabled",
    )
    .await;
    click_and_confirm(client, "#fire-retry", "Retry this fire").await;
    let retried = wait_js(
        client,
        "the new attempt's page",
        &format!("location.pathname.startsWith('/executions/') && !location.pathname.endsWith('{fire_id}') && document.querySelector('#fire-state')?.textContent === 'running' && location.pathname"),
    )
    .await;
    let retry_id = retried
        .as_str()
        .unwrap_or("")
        .trim_start_matches("/executions/")
        .to_string();
    let again = app.fire(&retry_id).await;
    assert_eq!(again["attempt"], 2, "{again}");
    assert_eq!(
        again["scheduled_at"],
        app.fire(&fire_id).await["scheduled_at"]
    );
    assert_eq!(
        wait_js(
            client,
            "the retry button disabled while it runs",
            "document.querySelector('#fire-retry').disabled"
        )
        .await,
        json!(true)
    );
    click_and_confirm(client, "#fire-cancel", "Cancel this fire").await;
    wait_js(
        client,
        "the retried fire cancelled",
        "document.querySelector('#fire-state')?.textContent === 'cancelled'",
    )
    .await;

    // A phone-width screen: still readable (no horizontal scrolling of the page).
    set_viewport(client, 390, 844).await;
    client.goto(&app.url("/jobs")).await.expect("goto");
    wait_js(
        client,
        "the job row",
        &format!("document.querySelector(\"{row}\")"),
    )
    .await;
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .expect("js");
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "page wider than the phone screen by {overflow}"
    );
    screenshot(client, "jobs-phone").await;

    // Delete, from the job's page, through the confirmation step.
    set_viewport(client, 1280, 800).await;
    client
        .goto(&app.url(&format!("/jobs/{job_id}")))
        .await
        .expect("goto");
    wait_js(
        client,
        "the delete button",
        "document.querySelector('#job-actions button[data-action=delete]:not([disabled])')",
    )
    .await;
    click_and_confirm(
        client,
        "#job-actions button[data-action=delete]",
        "cannot be undone",
    )
    .await;
    wait_js(
        client,
        "the jobs list",
        "document.body.dataset.page === 'jobs'",
    )
    .await;
    let (status, _) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(status, 404, "the job is gone");
}

/// Clicks an action button, checks the confirmation dialog's text, confirms.
async fn click_and_confirm(client: &Client, button: &str, expected_text: &str) {
    client
        .find(Locator::Css(button))
        .await
        .unwrap_or_else(|e| panic!("{button}: {e}"))
        .click()
        .await
        .expect("click");
    wait_js(
        client,
        "the confirmation dialog",
        "document.querySelector('#confirm-dialog').open",
    )
    .await;
    let text = text_of(client, "#confirm-text").await;
    assert!(text.contains(expected_text), "{text}");
    client
        .find(Locator::Css("#confirm-ok"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click confirm");
}
