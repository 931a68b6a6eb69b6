//! `cronhook-bench`: measures a real `cronhook serve` process (or 2–3 of them on
//! PostgreSQL) end to end — fires/s, firing lag, completion latency, duplicates,
//! missing instants, CPU seconds and peak RSS — and, in the `scale` scenario, start-up
//! time, memory, idle CPU and API latency with a million registered triggers.
//!
//! The scheduler runs as separate processes (the `cronhook` binary next to this one),
//! so the CPU and memory figures read from `/proc/<pid>` are the scheduler's alone.
//! The executor (an SDK executor in callback mode, or a plain sync-mode sink) runs in
//! this process. Every scenario ends with one `scenario=… key=value …` summary line;
//! the exit code is non-zero when an instant was delivered twice or never.
//! See `docs/performance.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::{Parser, ValueEnum};
use cronhook::domain::{JobInput, TriggerInput, TriggerSpec};
use cronhook_sdk::protocol::DispatchRequest;
use cronhook_sdk::{handler_fn, Executor, JobError, Output};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The bench hosts the SDK executor: it uses the allocator the SDK's README recommends
/// for an executor's binary, as the scheduler does (docs/performance.md, point 24).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const SECRET: &str = "bench-signing-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// N jobs on a schedule (every second by default): fires/s, lag, completion, dup/missing.
    Throughput,
    /// Many registered triggers that fire rarely plus a few due every second:
    /// start-up time, RSS, idle CPU, job list/search latency.
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sink {
    /// SDK executor; jobs in callback mode (202, then a signed write-back).
    Callback,
    /// Plain webhook answering 200; jobs in sync mode.
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// Jobs call the executor's URL directly (`target.url`).
    Url,
    /// Jobs name the executor's app (`target.app`): the executor heartbeats and every
    /// fire goes through executor selection (least_loaded), as in a real deployment.
    App,
}

/// The app name of the bench's SDK executor.
const BENCH_APP: &str = "bench";

/// Where the bench's jobs point.
#[derive(Debug, Clone)]
enum JobTarget {
    Url(String),
    App(String),
}

impl JobTarget {
    fn json(&self) -> Value {
        match self {
            JobTarget::Url(url) => json!({ "url": url }),
            JobTarget::App(app) => json!({ "app": app }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Create {
    /// Through `POST /api/v1/jobs`, several requests at once.
    Api,
    /// Straight into the database before the scheduler starts (fast for many jobs).
    Bulk,
}

#[derive(Debug, Parser)]
#[command(
    name = "cronhook-bench",
    about = "Benchmark a cronhook scheduler end to end (see docs/performance.md)"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = Scenario::Throughput)]
    scenario: Scenario,
    /// PostgreSQL server URL; a fresh database `cronhook_bench_<random>` is created on it
    /// and dropped afterwards. Without it: a fresh SQLite file.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Scheduler processes (2–3 need --postgres).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Throughput: number of jobs (with the every-second default schedule, N fires/s).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Measured window, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds between the last job created and the start of the measured window.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Longest wait, in seconds, after the window for late arrivals and write-backs.
    #[arg(long, default_value_t = 20)]
    drain: u64,
    #[arg(long, value_enum, default_value_t = Sink::Callback)]
    sink: Sink,
    /// How callback-mode jobs reach the SDK executor (`app` needs `--sink callback`).
    #[arg(long, value_enum, default_value_t = TargetKind::Url)]
    target: TargetKind,
    /// Quartz cron expression of every throughput job.
    #[arg(long, default_value = "* * * * * ?")]
    schedule: String,
    /// How throughput jobs are created.
    #[arg(long, value_enum, default_value_t = Create::Api)]
    create: Create,
    /// Throughput: spread the jobs' instants evenly over each second (job i fires at
    /// i*1000/N ms past every second, an interval trigger) instead of all at the whole
    /// second: a steady stream rather than one burst a second. Needs `--create bulk`
    /// and the default schedule.
    #[arg(long)]
    spread: bool,
    /// Concurrent `POST /api/v1/jobs` requests while creating jobs through the API.
    #[arg(long, default_value_t = 8)]
    create_concurrency: usize,
    /// Scale: registered triggers in all (rarely firing ones plus --due).
    #[arg(long, default_value_t = 1_000_000)]
    triggers: usize,
    /// Scale: jobs among them that fire every second.
    #[arg(long, default_value_t = 100)]
    due: usize,
    /// Scale: seconds between ready and the measurements.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// Scale: seconds over which idle CPU (and the due fires) are measured.
    #[arg(long, default_value_t = 20)]
    idle: u64,
    /// Extra setting for every scheduler process, as the part after `CRONHOOK_`
    /// (e.g. `SCHEDULER__BATCH_SIZE=1000`, `HTTP_WORKERS=2`). Repeatable.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// RUST_LOG of the scheduler processes (info logs every request).
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Directory for the SQLite file, logs and the executor's outbox (default: a new
    /// temporary directory, removed afterwards unless --keep).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the temporary directory (and the PostgreSQL database).
    #[arg(long)]
    keep: bool,
    /// The `cronhook` binary (default: the one next to this program).
    #[arg(long, value_name = "PATH")]
    cronhook: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(String),
    #[error("{0}")]
    Run(String),
}

type BenchResult<T> = Result<T, BenchError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

fn db_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Db(e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check_args(&args) {
        eprintln!("cronhook-bench: {e}");
        return ExitCode::from(2);
    }
    let system = actix_rt::System::new();
    match system.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("cronhook-bench: duplicates or missing instants (see the summary line)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cronhook-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_args(args: &Args) -> BenchResult<()> {
    if !(1..=3).contains(&args.nodes) {
        return Err(BenchError::Usage("--nodes must be 1, 2 or 3".into()));
    }
    if args.nodes > 1 && args.postgres.is_none() {
        return Err(BenchError::Usage(
            "--nodes 2 or 3 needs --postgres URL (SQLite is single-node)".into(),
        ));
    }
    if args.duration == 0 || args.idle == 0 {
        return Err(BenchError::Usage(
            "--duration and --idle must be at least 1 second".into(),
        ));
    }
    if args.scenario == Scenario::Throughput && args.jobs == 0 {
        return Err(BenchError::Usage("--jobs must be at least 1".into()));
    }
    if args.scenario == Scenario::Scale && args.due > args.triggers {
        return Err(BenchError::Usage(
            "--due must not be larger than --triggers".into(),
        ));
    }
    if args.create_concurrency == 0 {
        return Err(BenchError::Usage(
            "--create-concurrency must be at least 1".into(),
        ));
    }
    for kv in &args.server_env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(BenchError::Usage(format!(
                "--server-env {kv:?}: expected KEY=VALUE (e.g. SCHEDULER__BATCH_SIZE=1000)"
            )));
        }
    }
    if args.target == TargetKind::App && args.sink != Sink::Callback {
        return Err(BenchError::Usage(
            "--target app needs --sink callback (the sync sink is a plain webhook)".into(),
        ));
    }
    if args.spread && (args.create != Create::Bulk || args.schedule != "* * * * * ?") {
        return Err(BenchError::Usage(
            "--spread needs --create bulk and the default --schedule".into(),
        ));
    }
    every_second_spec(&args.schedule).map(|_| ())
}

/// Where job `index` of `jobs` fires within each second under `--spread` (ms).
fn spread_offset(index: usize, jobs: usize) -> i64 {
    (index as i64 * 1000) / jobs.max(1) as i64
}

/// Every second at `offset_ms` past it, as an interval trigger.
fn spread_spec(offset_ms: i64) -> TriggerSpec {
    TriggerSpec {
        kind: cronhook::domain::TriggerKind::Interval,
        expression: None,
        time_zone: None,
        at: None,
        interval_ms: Some(1000),
        start_at: Some(offset_ms),
        repeat_count: None,
        misfire: Default::default(),
        misfire_threshold_ms: None,
        calendar: None,
        calendar_rules: None,
    }
}

/// The validated trigger spec of a cron expression, exactly as the server would store it.
fn every_second_spec(expression: &str) -> BenchResult<TriggerSpec> {
    cron_spec(expression).map_err(|e| BenchError::Usage(format!("--schedule {expression:?}: {e}")))
}

fn cron_spec(expression: &str) -> Result<TriggerSpec, String> {
    let input: TriggerInput =
        serde_json::from_value(json!({ "kind": "cron", "expression": expression }))
            .map_err(|e| e.to_string())?;
    input
        .validate("schedule", now_ms())
        .map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn sleep_until(at: i64) {
    let left = at - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// `git rev-parse --short HEAD` of the source tree, `-dirty` when it has changes.
fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

// ---------------------------------------------------------------------------
// Where the data lives: a temp directory, a SQLite file or a fresh PG database.

struct Workspace {
    dir: PathBuf,
    /// Removed on drop when the bench created it and --keep was not given.
    remove: bool,
    database_url: String,
    postgres: Option<TempPostgres>,
}

impl Workspace {
    fn create(args: &Args) -> BenchResult<Workspace> {
        let run = format!("cronhook-bench-{}", uuid::Uuid::new_v4().simple());
        let (dir, remove) = match &args.data_dir {
            Some(dir) => (dir.join(run), false),
            None => (std::env::temp_dir().join(run), !args.keep),
        };
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let (database_url, postgres) = match &args.postgres {
            Some(admin) => {
                let pg = TempPostgres::create(admin, args.keep)?;
                (pg.url.clone(), Some(pg))
            }
            None => (
                format!("sqlite://{}", dir.join("cronhook.db").display()),
                None,
            ),
        };
        Ok(Workspace {
            dir,
            remove,
            database_url,
            postgres,
        })
    }

    fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// A PostgreSQL database created for one run and dropped afterwards.
struct TempPostgres {
    admin_url: String,
    name: String,
    url: String,
    keep: bool,
}

impl TempPostgres {
    fn create(admin_url: &str, keep: bool) -> BenchResult<TempPostgres> {
        let mut url = url::Url::parse(admin_url)
            .map_err(|e| BenchError::Usage(format!("--postgres {admin_url:?}: {e}")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(BenchError::Usage(format!(
                "--postgres {admin_url:?}: expected a postgres:// URL"
            )));
        }
        let name = format!("cronhook_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(admin_url)
            .map_err(|e| BenchError::Db(format!("cannot reach PostgreSQL: {e}")))?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .map_err(|e| BenchError::Db(format!("cannot create database {name}: {e}")))?;
        url.set_path(&format!("/{name}"));
        Ok(TempPostgres {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
            keep,
        })
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept PostgreSQL database {}", self.name);
            return;
        }
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

/// A direct connection of the bench itself (bulk inserts, reading fire rows).
enum Raw {
    Lite(SqliteConnection),
    Pg(PgConnection),
}

#[derive(diesel::QueryableByName)]
struct FireTimes {
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    finished_at: Option<i64>,
    #[diesel(sql_type = Text)]
    state: String,
}

impl Raw {
    fn open(url: &str) -> BenchResult<Raw> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let mut conn = SqliteConnection::establish(path).map_err(db_err)?;
            conn.batch_execute("PRAGMA busy_timeout = 30000;")
                .map_err(db_err)?;
            Ok(Raw::Lite(conn))
        } else {
            Ok(Raw::Pg(PgConnection::establish(url).map_err(db_err)?))
        }
    }

    fn exec(&mut self, sql: &str) -> BenchResult<()> {
        match self {
            Raw::Lite(c) => c.batch_execute(sql),
            Raw::Pg(c) => c.batch_execute(sql),
        }
        .map_err(db_err)
    }

    fn fires_between(&mut self, from: i64, until: i64) -> BenchResult<Vec<FireTimes>> {
        let sql = format!(
            "SELECT scheduled_at, finished_at, state FROM fires WHERE scheduled_at >= {from} AND scheduled_at < {until} AND attempt = 1"
        );
        match self {
            Raw::Lite(c) => diesel::sql_query(sql).load(c),
            Raw::Pg(c) => diesel::sql_query(sql).load(c),
        }
        .map_err(db_err)
    }
}

/// Creates the schema the way the server does (its own migrations).
fn migrate(url: &str) -> BenchResult<()> {
    let db = cronhook::db::Db::open(url).map_err(db_err)?;
    db.run_migrations().map_err(db_err)?;
    Ok(())
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One job with one trigger, as `lifecycle::create` writes them.
struct BulkJob {
    group: String,
    name: String,
    job_spec: Arc<str>,
    trigger_spec: Arc<str>,
    next_fire_at: Option<i64>,
}

/// Inserts jobs and their triggers with multi-row INSERTs, `per_tx` rows a transaction.
fn bulk_insert(
    raw: &mut Raw,
    jobs: impl Iterator<Item = BulkJob>,
    now: i64,
    mut progress: impl FnMut(usize),
) -> BenchResult<usize> {
    const PER_STATEMENT: usize = 500;
    const PER_TX: usize = 50_000;
    let mut job_values = Vec::with_capacity(PER_STATEMENT);
    let mut trigger_values = Vec::with_capacity(PER_STATEMENT);
    let mut in_tx = 0usize;
    let mut total = 0usize;
    raw.exec("BEGIN")?;
    let flush = |raw: &mut Raw, jobs: &mut Vec<String>, triggers: &mut Vec<String>| {
        if jobs.is_empty() {
            return Ok(());
        }
        raw.exec(&format!(
            "INSERT INTO jobs (id, group_name, name, description, state, version, spec, created_at, updated_at) VALUES {}",
            jobs.join(",")
        ))?;
        raw.exec(&format!(
            "INSERT INTO triggers (id, job_id, position, kind, spec, next_fire_at, fire_count, created_at) VALUES {}",
            triggers.join(",")
        ))?;
        jobs.clear();
        triggers.clear();
        Ok::<(), BenchError>(())
    };
    for job in jobs {
        let job_id = uuid::Uuid::now_v7().to_string();
        let trigger_id = uuid::Uuid::now_v7().to_string();
        job_values.push(format!(
            "('{job_id}', {}, {}, '', 'active', 1, {}, {now}, {now})",
            sql_text(&job.group),
            sql_text(&job.name),
            sql_text(&job.job_spec)
        ));
        trigger_values.push(format!(
            "('{trigger_id}', '{job_id}', 0, 'cron', {}, {}, 0, {now})",
            sql_text(&job.trigger_spec),
            job.next_fire_at
                .map_or_else(|| "NULL".to_string(), |t| t.to_string())
        ));
        total += 1;
        in_tx += 1;
        if job_values.len() == PER_STATEMENT {
            flush(raw, &mut job_values, &mut trigger_values)?;
        }
        if in_tx >= PER_TX {
            flush(raw, &mut job_values, &mut trigger_values)?;
            raw.exec("COMMIT; BEGIN")?;
            in_tx = 0;
            progress(total);
        }
    }
    flush(raw, &mut job_values, &mut trigger_values)?;
    raw.exec("COMMIT")?;
    progress(total);
    Ok(total)
}

/// The job spec JSON the server stores for a job aimed at `target`.
fn job_spec_json(target: &JobTarget, sink: Sink) -> BenchResult<Arc<str>> {
    let input: JobInput =
        serde_json::from_value(job_body("spec", "spec", target, sink, "* * * * * ?"))
            .map_err(|e| BenchError::Run(format!("job input: {e}")))?;
    let spec = input
        .validate(300_000)
        .map_err(|e| BenchError::Run(format!("job input: {e}")))?;
    let text = serde_json::to_string(&spec).map_err(|e| BenchError::Run(e.to_string()))?;
    Ok(text.into())
}

fn job_body(group: &str, name: &str, target: &JobTarget, sink: Sink, schedule: &str) -> Value {
    json!({
        "group": group,
        "name": name,
        "target": target.json(),
        "mode": match sink { Sink::Callback => "callback", Sink::Sync => "sync" },
        "timeout_ms": 60_000,
        "triggers": [{ "kind": "cron", "expression": schedule }],
    })
}

// ---------------------------------------------------------------------------
// Scheduler processes.

struct Node {
    name: String,
    port: u16,
    child: Child,
    log: PathBuf,
}

fn free_port() -> BenchResult<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(listener.local_addr().map_err(io("local address"))?.port())
}

fn cronhook_binary(args: &Args) -> BenchResult<PathBuf> {
    if let Some(path) = &args.cronhook {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().map_err(io("locate this program"))?;
    let sibling = me.with_file_name(format!("cronhook{}", std::env::consts::EXE_SUFFIX));
    if !sibling.exists() {
        return Err(BenchError::Usage(format!(
            "no cronhook binary at {} (build it: cargo build --release --bin cronhook, or pass --cronhook PATH)",
            sibling.display()
        )));
    }
    Ok(sibling)
}

impl Node {
    fn start(
        binary: &Path,
        name: &str,
        port: u16,
        database_url: &str,
        dir: &Path,
        public_url: &str,
        args: &Args,
    ) -> BenchResult<Node> {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("CRONHOOK_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("serve")
            .env("RUST_LOG", &args.server_log)
            .env("CRONHOOK_DATABASE_URL", database_url)
            .env("CRONHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("CRONHOOK_PUBLIC_URL", public_url)
            .env("CRONHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CRONHOOK_SIGNING_SECRET", SECRET);
        for kv in &args.server_env {
            if let Some((k, v)) = kv.split_once('=') {
                let key = k.trim_start_matches("CRONHOOK_");
                cmd.env(format!("CRONHOOK_{key}"), v);
            }
        }
        let out = std::fs::File::create(dir.join(format!("{name}.out")))
            .map_err(io("create the node's output file"))?;
        let err = std::fs::File::create(&log).map_err(io("create the node's log file"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(io(format!("start {}", binary.display())))?;
        Ok(Node {
            name: name.into(),
            port,
            child,
            log,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(20);
        format!(
            "--- {} log (last lines) ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }

    /// Waits for `/readyz` to answer 200; fails if the process exits first.
    async fn wait_ready(&mut self, patience: Duration) -> BenchResult<()> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Run(format!(
                    "{} exited ({status}) before it was ready\n{}",
                    self.name,
                    self.log_tail()
                )));
            }
            if let Ok(response) = client.get(self.url("/readyz")).send().await {
                if response.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if start.elapsed() > patience {
                return Err(BenchError::Run(format!(
                    "{} not ready after {patience:?}\n{}",
                    self.name,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not stopped within `grace`.
    fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command name start at field 3 (state); utime is 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A `/proc/<pid>/status` memory line (VmRSS, VmHWM) in MiB.
fn status_mb(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

// ---------------------------------------------------------------------------
// The executor side: what arrived, when.

/// Every arrival as (job, scheduled instant, arrival instant), plus a running count
/// of those scheduled inside the measured window (cheap to poll while draining).
#[derive(Clone)]
struct Arrivals(Arc<ArrivalLog>);

/// One fire as the executor saw it (ms since the epoch).
#[derive(Clone)]
struct Arrival {
    job: String,
    scheduled: i64,
    /// When the scheduler sent it (the dispatch body's `fired_at`).
    sent: i64,
    /// When the executor's handler saw it.
    arrived: i64,
}

struct ArrivalLog {
    all: Mutex<Vec<Arrival>>,
    window: Mutex<(i64, i64)>,
    in_window: std::sync::atomic::AtomicUsize,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals(Arc::new(ArrivalLog {
            all: Mutex::new(Vec::new()),
            window: Mutex::new((i64::MAX, i64::MAX)),
            in_window: std::sync::atomic::AtomicUsize::new(0),
        }))
    }
}

impl Arrivals {
    fn record(&self, job: String, scheduled: i64, sent: i64) {
        let arrived = now_ms();
        let (from, until) = self.0.window.lock().map(|w| *w).unwrap_or((0, 0));
        if (from..until).contains(&scheduled) {
            self.0
                .in_window
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut all) = self.0.all.lock() {
            all.push(Arrival {
                job,
                scheduled,
                sent,
                arrived,
            });
        }
    }

    /// Starts counting arrivals scheduled in [from, until); earlier ones are counted too.
    fn set_window(&self, from: i64, until: i64) {
        if let Ok(mut w) = self.0.window.lock() {
            *w = (from, until);
        }
        let already = self
            .snapshot()
            .iter()
            .filter(|a| (from..until).contains(&a.scheduled))
            .count();
        self.0
            .in_window
            .store(already, std::sync::atomic::Ordering::Relaxed);
    }

    fn in_window(&self) -> usize {
        self.0.in_window.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot(&self) -> Vec<Arrival> {
        self.0.all.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

enum SinkHandle {
    Callback(cronhook_sdk::ServeHandle),
    Sync(actix_web::dev::ServerHandle),
}

impl SinkHandle {
    async fn stop(self) {
        match self {
            SinkHandle::Callback(handle) => {
                let _ = handle.stop().await;
            }
            SinkHandle::Sync(handle) => handle.stop(false).await,
        }
    }
}

/// Starts the sink; returns its handle and what jobs target.
fn start_sink(
    sink: Sink,
    target: TargetKind,
    scheduler_url: &str,
    dir: &Path,
    arrivals: &Arrivals,
) -> BenchResult<(SinkHandle, JobTarget)> {
    match sink {
        Sink::Callback => {
            let seen = arrivals.clone();
            let builder = Executor::builder(scheduler_url.to_string(), BENCH_APP, SECRET)
                .outbox_dir(dir.join("outbox"))
                .capacity(20_000)
                .queue_len(500_000)
                .serve_workers(2)
                .request_timeout(Duration::from_secs(30))
                .retry_backoff(Duration::from_millis(200), Duration::from_secs(2))
                .shutdown_grace(Duration::from_secs(10));
            // Heartbeats register the executor in its app; a URL target needs none.
            let builder = match target {
                TargetKind::App => builder.heartbeat_interval(Duration::from_secs(1)),
                TargetKind::Url => builder.without_heartbeats(),
            };
            let executor = builder
                .default_handler(handler_fn(move |ctx| {
                    let seen = seen.clone();
                    async move {
                        seen.record(
                            ctx.job().to_string(),
                            ctx.scheduled_at().timestamp_millis(),
                            ctx.fired_at().timestamp_millis(),
                        );
                        Ok::<_, JobError>(Output::none())
                    }
                }))
                .build()
                .map_err(|e| BenchError::Run(format!("SDK executor: {e}")))?;
            let served = executor
                .serve("127.0.0.1:0")
                .map_err(|e| BenchError::Run(format!("SDK executor: {e}")))?;
            let target = match target {
                TargetKind::App => JobTarget::App(BENCH_APP.to_string()),
                TargetKind::Url => JobTarget::Url(format!("{}/fires", served.address())),
            };
            Ok((SinkHandle::Callback(served), target))
        }
        Sink::Sync => {
            let data = web::Data::new(arrivals.clone());
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(1024 * 1024))
                    .default_service(web::to(sync_sink))
            })
            .workers(2)
            .backlog(4096)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .map_err(io("bind the sync sink"))?;
            let port = server.addrs()[0].port();
            let server = server.run();
            let handle = server.handle();
            actix_rt::spawn(server);
            Ok((
                SinkHandle::Sync(handle),
                JobTarget::Url(format!("http://127.0.0.1:{port}/hook")),
            ))
        }
    }
}

async fn sync_sink(body: web::Bytes, arrivals: web::Data<Arrivals>) -> HttpResponse {
    match serde_json::from_slice::<DispatchRequest>(&body) {
        Ok(request) => {
            arrivals.record(
                request.job,
                request.scheduled_at.timestamp_millis(),
                request.fired_at.timestamp_millis(),
            );
            HttpResponse::Ok().body("ok")
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Figures.

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Expected instants of `spec` in [from, until).
fn instants(spec: &TriggerSpec, from: i64, until: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut at = spec.first_at_or_after(from);
    while let Some(t) = at.filter(|t| *t < until) {
        out.push(t);
        at = spec.next_after(t);
    }
    out
}

struct Delivery {
    expected: usize,
    arrived_in_window: usize,
    duplicates: usize,
    missing: usize,
    lag: Vec<i64>,
    /// Scheduler side of `lag`: sent − scheduled, same fires.
    send_lag: Vec<i64>,
    examples: Vec<String>,
}

/// Duplicates and missing (job, instant) pairs among `jobs` for instants in
/// [from, until), lateness of the first arrival of each, and arrivals (any job)
/// whose arrival time falls in the window.
/// `offsets[i]` (ms) is added to every expected instant of `jobs[i]` (`--spread`).
fn delivery(
    arrivals: &[Arrival],
    jobs: &[String],
    offsets: &[i64],
    expected: &[i64],
    from: i64,
    until: i64,
) -> Delivery {
    // (count, first arrival, its send time) per (job, instant)
    let mut seen: HashMap<(&str, i64), (usize, i64, i64)> = HashMap::new();
    let mut arrived_in_window = 0;
    for a in arrivals {
        if (from..until).contains(&a.arrived) {
            arrived_in_window += 1;
        }
        if (from..until).contains(&a.scheduled) {
            let entry = seen
                .entry((a.job.as_str(), a.scheduled))
                .or_insert((0, a.arrived, a.sent));
            entry.0 += 1;
            if a.arrived < entry.1 {
                (entry.1, entry.2) = (a.arrived, a.sent);
            }
        }
    }
    let mut d = Delivery {
        expected: jobs.len() * expected.len(),
        arrived_in_window,
        duplicates: 0,
        missing: 0,
        lag: Vec::with_capacity(seen.len()),
        send_lag: Vec::with_capacity(seen.len()),
        examples: Vec::new(),
    };
    for (job, offset) in jobs.iter().zip(offsets.iter().chain(std::iter::repeat(&0))) {
        for instant in expected.iter().map(|at| at + offset) {
            let instant = &instant;
            match seen.get(&(job.as_str(), *instant)) {
                None => {
                    d.missing += 1;
                    if d.examples.len() < 5 {
                        d.examples.push(format!("missing {job} @ {instant}"));
                    }
                }
                Some((count, first, sent)) => {
                    if *count > 1 {
                        d.duplicates += count - 1;
                        if d.examples.len() < 5 {
                            d.examples
                                .push(format!("duplicate {job} @ {instant}: {count} arrivals"));
                        }
                    }
                    d.lag.push(first - instant);
                    d.send_lag.push(sent - instant);
                }
            }
        }
    }
    d.send_lag.sort_unstable();
    d.lag.sort_unstable();
    d
}

/// Waits until `want` arrivals scheduled in the window came in, or `patience` passed.
async fn wait_arrivals(arrivals: &Arrivals, want: usize, patience: Duration) {
    let start = Instant::now();
    while start.elapsed() < patience && arrivals.in_window() < want {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Completion {
    p50: i64,
    p99: i64,
    max: i64,
    succeeded: usize,
    other: usize,
    open: usize,
}

/// Completion latency (scheduled → finished) of first-attempt fires scheduled in the
/// window, read from the database once none of them is still open (or patience ends).
async fn completion(
    url: &str,
    from: i64,
    until: i64,
    patience: Duration,
) -> BenchResult<Completion> {
    let url = url.to_string();
    let start = Instant::now();
    loop {
        let u = url.clone();
        let rows = tokio::task::spawn_blocking(move || Raw::open(&u)?.fires_between(from, until))
            .await
            .map_err(|e| BenchError::Run(e.to_string()))??;
        let open = rows
            .iter()
            .filter(|r| r.state == "fired" || r.state == "running")
            .count();
        if open == 0 || start.elapsed() > patience {
            let mut latency: Vec<i64> = rows
                .iter()
                .filter(|r| r.state == "succeeded")
                .filter_map(|r| r.finished_at.map(|f| f - r.scheduled_at))
                .collect();
            latency.sort_unstable();
            return Ok(Completion {
                p50: percentile(&latency, 0.5),
                p99: percentile(&latency, 0.99),
                max: latency.last().copied().unwrap_or(0),
                succeeded: latency.len(),
                other: rows.len() - latency.len() - open,
                open,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------
// Scenarios.

async fn run(args: Args) -> BenchResult<bool> {
    let binary = cronhook_binary(&args)?;
    let workspace = Workspace::create(&args)?;
    let ports = (0..args.nodes)
        .map(|_| free_port())
        .collect::<BenchResult<Vec<_>>>()?;
    let public_url = format!("http://127.0.0.1:{}", ports[0]);
    eprintln!(
        "cronhook-bench: {} on {} ({} node(s)), data in {}",
        match args.scenario {
            Scenario::Throughput => "throughput",
            Scenario::Scale => "scale",
        },
        workspace.backend(),
        args.nodes,
        workspace.dir.display()
    );
    eprintln!(
        "server settings: defaults{} RUST_LOG={}",
        args.server_env
            .iter()
            .map(|kv| format!(" CRONHOOK_{}", kv.trim_start_matches("CRONHOOK_")))
            .collect::<String>(),
        args.server_log
    );
    let ok = match args.scenario {
        Scenario::Throughput => throughput(&args, &binary, &workspace, &ports, &public_url).await?,
        Scenario::Scale => scale(&args, &binary, &workspace, &ports, &public_url).await?,
    };
    if args.keep {
        eprintln!("kept {}", workspace.dir.display());
    }
    Ok(ok)
}

async fn start_nodes(
    args: &Args,
    binary: &Path,
    workspace: &Workspace,
    ports: &[u16],
    public_url: &str,
    patience: Duration,
) -> BenchResult<Vec<Node>> {
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut node = Node::start(
            binary,
            names[i],
            *port,
            &workspace.database_url,
            &workspace.dir,
            public_url,
            args,
        )?;
        // One at a time: the first one migrates.
        node.wait_ready(patience).await?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Waits until the bench's executor has registered with its first heartbeat, so the
/// first fires of app-targeted jobs find it.
async fn wait_for_executor(node: &Node, limit: Duration) -> BenchResult<()> {
    let url = node.url(&format!("/api/v1/executors?app={BENCH_APP}"));
    let client = awc::Client::default();
    let started = Instant::now();
    while started.elapsed() < limit {
        let response = client
            .get(&url)
            .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
            .send()
            .await;
        if let Ok(mut response) = response {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let listed = body
                .get("items")
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|e| e["valid"] == true));
            if listed {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::Run(format!(
        "the bench executor did not register within {} s",
        limit.as_secs()
    )))
}

async fn create_jobs_api(
    node: &Node,
    names: &[String],
    target: &JobTarget,
    args: &Args,
) -> BenchResult<()> {
    let url = node.url("/api/v1/jobs");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut results = futures_util::stream::iter(names.iter().cloned())
        .map(|name| {
            let body = job_body("bench", &name, target, args.sink, &args.schedule);
            let request = client
                .post(&url)
                .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")));
            async move {
                let mut response = request
                    .send_json(&body)
                    .await
                    .map_err(|e| BenchError::Run(format!("create job {name}: {e}")))?;
                if response.status().as_u16() != 201 {
                    let text = response.body().await.unwrap_or_default();
                    return Err(BenchError::Run(format!(
                        "create job {name}: {} {}",
                        response.status(),
                        String::from_utf8_lossy(&text)
                    )));
                }
                Ok(())
            }
        })
        .buffer_unordered(args.create_concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

async fn throughput(
    args: &Args,
    binary: &Path,
    workspace: &Workspace,
    ports: &[u16],
    public_url: &str,
) -> BenchResult<bool> {
    let spec = every_second_spec(&args.schedule)?;
    let arrivals = Arrivals::default();
    let (sink, target) = start_sink(
        args.sink,
        args.target,
        public_url,
        &workspace.dir,
        &arrivals,
    )?;
    let names: Vec<String> = (0..args.jobs).map(|i| format!("job-{i:07}")).collect();
    let keys: Vec<String> = names.iter().map(|n| format!("bench/{n}")).collect();

    let create_started = Instant::now();
    if args.create == Create::Bulk {
        migrate(&workspace.database_url)?;
        let job_spec = job_spec_json(&target, args.sink)?;
        let trigger_spec: Arc<str> = serde_json::to_string(&spec)
            .map_err(|e| BenchError::Run(e.to_string()))?
            .into();
        let url = workspace.database_url.clone();
        let names = names.clone();
        let spec = spec.clone();
        let spread = args.spread;
        tokio::task::spawn_blocking(move || -> BenchResult<usize> {
            let mut raw = Raw::open(&url)?;
            // The bench's own bulk load, not a measured write: no fsync per statement.
            if matches!(raw, Raw::Lite(_)) {
                raw.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")?;
            }
            let now = now_ms();
            let next = spec.first_at_or_after(now + 2_000);
            let jobs = names.len();
            bulk_insert(
                &mut raw,
                names.into_iter().enumerate().map(|(i, name)| {
                    let (trigger_spec, next_fire_at) = if spread {
                        let spec = spread_spec(spread_offset(i, jobs));
                        let text: Arc<str> =
                            serde_json::to_string(&spec).unwrap_or_default().into();
                        (text, spec.first_at_or_after(now + 2_000))
                    } else {
                        (trigger_spec.clone(), next)
                    };
                    BulkJob {
                        group: "bench".into(),
                        name,
                        job_spec: job_spec.clone(),
                        trigger_spec,
                        next_fire_at,
                    }
                }),
                now,
                |_| {},
            )
        })
        .await
        .map_err(|e| BenchError::Run(e.to_string()))??;
    }
    let mut nodes = start_nodes(
        args,
        binary,
        workspace,
        ports,
        public_url,
        Duration::from_secs(120),
    )
    .await?;
    if matches!(target, JobTarget::App(_)) {
        wait_for_executor(&nodes[0], Duration::from_secs(30)).await?;
    }
    if args.create == Create::Api {
        create_jobs_api(&nodes[0], &names, &target, args).await?;
    }
    let create_s = create_started.elapsed().as_secs_f64();
    eprintln!(
        "{} jobs created ({:?}) in {create_s:.1} s; warming up {} s",
        args.jobs, args.create, args.warmup
    );

    let from = (now_ms() + args.warmup as i64 * 1000 + 999) / 1000 * 1000;
    let until = from + args.duration as i64 * 1000;
    arrivals.set_window(from, until);
    sleep_until(from).await;
    let cpu_before: Vec<f64> = nodes
        .iter()
        .map(|n| cpu_seconds(n.pid()).unwrap_or(0.0))
        .collect();
    sleep_until(until).await;
    let cpu_after: Vec<f64> = nodes
        .iter()
        .map(|n| cpu_seconds(n.pid()).unwrap_or(0.0))
        .collect();
    let window_cpu: f64 = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).sum();

    let expected = instants(&spec, from, until);
    eprintln!("window over; draining (up to {} s)", args.drain);
    wait_arrivals(
        &arrivals,
        keys.len() * expected.len(),
        Duration::from_secs(args.drain),
    )
    .await;
    let done = completion(
        &workspace.database_url,
        from,
        until,
        Duration::from_secs(args.drain),
    )
    .await?;
    let offsets: Vec<i64> = (0..keys.len())
        .map(|i| match args.spread {
            true => spread_offset(i, keys.len()),
            false => 0,
        })
        .collect();
    let d = delivery(
        &arrivals.snapshot(),
        &keys,
        &offsets,
        &expected,
        from,
        until,
    );
    let rss_peak = nodes
        .iter()
        .filter_map(|n| status_mb(n.pid(), "VmHWM:"))
        .fold(0.0, f64::max);
    for (node, (a, b)) in nodes.iter().zip(cpu_after.iter().zip(&cpu_before)) {
        eprintln!(
            "  {}: cpu {:.1} s in the window, VmHWM {:.0} MiB",
            node.name,
            a - b,
            status_mb(node.pid(), "VmHWM:").unwrap_or(0.0)
        );
    }
    for example in &d.examples {
        eprintln!("  {example}");
    }
    for node in &mut nodes {
        node.stop(Duration::from_secs(15));
    }
    sink.stop().await;

    let secs = args.duration as f64;
    let expected_fps = d.expected as f64 / secs;
    let achieved_fps = d.arrived_in_window as f64 / secs;
    println!(
        "scenario=throughput backend={} nodes={} sink={} target={} create={} spread={} jobs={} schedule={:?} duration_s={} expected_fps={:.0} achieved_fps={:.0} lag_p50_ms={} lag_p90_ms={} lag_p99_ms={} lag_max_ms={} send_lag_p50_ms={} send_lag_p99_ms={} completion_p50_ms={} completion_p99_ms={} completion_max_ms={} succeeded={} not_succeeded={} still_open={} dup={} missing={} cpu_s={:.1} cpu_pct={:.0} rss_peak_mb={:.0} commit={}",
        workspace.backend(),
        args.nodes,
        match args.sink { Sink::Callback => "callback", Sink::Sync => "sync" },
        match args.target { TargetKind::Url => "url", TargetKind::App => "app" },
        match args.create { Create::Api => "api", Create::Bulk => "bulk" },
        args.spread,
        args.jobs,
        args.schedule,
        args.duration,
        expected_fps,
        achieved_fps,
        percentile(&d.lag, 0.5),
        percentile(&d.lag, 0.9),
        percentile(&d.lag, 0.99),
        d.lag.last().copied().unwrap_or(0),
        percentile(&d.send_lag, 0.5),
        percentile(&d.send_lag, 0.99),
        done.p50,
        done.p99,
        done.max,
        done.succeeded,
        done.other,
        done.open,
        d.duplicates,
        d.missing,
        window_cpu,
        window_cpu / secs * 100.0,
        rss_peak,
        commit(),
    );
    Ok(d.duplicates == 0 && d.missing == 0)
}

/// A rarely firing schedule for registered trigger `i`: once a year, spread over the
/// year's minutes so their next instants do not coincide.
fn rare_expression(i: usize) -> String {
    format!("0 {} {} {} {} ?", i % 60, i % 24, i % 28 + 1, i % 12 + 1)
}

async fn timed_get(client: &awc::Client, url: &str) -> BenchResult<f64> {
    let start = Instant::now();
    let mut response = client
        .get(url)
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
        .map_err(|e| BenchError::Run(format!("GET {url}: {e}")))?;
    let body = response
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|e| BenchError::Run(format!("GET {url}: {e}")))?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if response.status().as_u16() != 200 {
        return Err(BenchError::Run(format!(
            "GET {url}: {} {}",
            response.status(),
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(elapsed)
}

async fn median_get(client: &awc::Client, url: &str, times: usize) -> BenchResult<f64> {
    let mut all = Vec::with_capacity(times);
    for _ in 0..times {
        all.push(timed_get(client, url).await?);
    }
    all.sort_by(f64::total_cmp);
    Ok(all[all.len() / 2])
}

async fn scale(
    args: &Args,
    binary: &Path,
    workspace: &Workspace,
    ports: &[u16],
    public_url: &str,
) -> BenchResult<bool> {
    let every_second = every_second_spec("* * * * * ?")?;
    let arrivals = Arrivals::default();
    let (sink, target) = start_sink(
        Sink::Callback,
        TargetKind::Url,
        public_url,
        &workspace.dir,
        &arrivals,
    )?;
    migrate(&workspace.database_url)?;
    let rare = args.triggers - args.due;
    let due_keys: Vec<String> = (0..args.due).map(|i| format!("due/tick-{i:05}")).collect();

    // Bulk load: the rare ones first, the due ones last.
    let insert_started = Instant::now();
    {
        let url = workspace.database_url.clone();
        let target = target.clone();
        let due = args.due;
        let every_second = every_second.clone();
        tokio::task::spawn_blocking(move || -> BenchResult<usize> {
            let job_spec = job_spec_json(&target, Sink::Callback)?;
            let due_trigger: Arc<str> = serde_json::to_string(&every_second)
                .map_err(|e| BenchError::Run(e.to_string()))?
                .into();
            let mut raw = Raw::open(&url)?;
            if matches!(raw, Raw::Lite(_)) {
                raw.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")?;
            }
            let now = now_ms();
            let mut cache: HashMap<String, (Arc<str>, Option<i64>)> = HashMap::new();
            let mut failed: Option<String> = None;
            let rare_jobs = (0..rare).map(|i| {
                let expression = rare_expression(i);
                let (spec, next) = cache
                    .entry(expression.clone())
                    .or_insert_with(|| match cron_spec(&expression) {
                        Ok(spec) => (
                            serde_json::to_string(&spec).unwrap_or_default().into(),
                            spec.first_at_or_after(now),
                        ),
                        Err(e) => {
                            failed.get_or_insert(format!("{expression}: {e}"));
                            (Arc::from(""), None)
                        }
                    })
                    .clone();
                BulkJob {
                    group: format!("g{:04}", i % 1000),
                    name: format!("job-{i:08}"),
                    job_spec: job_spec.clone(),
                    trigger_spec: spec,
                    next_fire_at: next,
                }
            });
            let due_next = every_second.first_at_or_after(now);
            let due_jobs = (0..due).map(|i| BulkJob {
                group: "due".into(),
                name: format!("tick-{i:05}"),
                job_spec: job_spec.clone(),
                trigger_spec: due_trigger.clone(),
                next_fire_at: due_next,
            });
            let total = bulk_insert(&mut raw, rare_jobs.chain(due_jobs), now, |n| {
                if n % 500_000 == 0 {
                    eprintln!("  {n} jobs inserted");
                }
            })?;
            if let Some(e) = failed {
                return Err(BenchError::Run(format!("rare schedule {e}")));
            }
            match raw {
                Raw::Lite(_) => raw.exec("PRAGMA wal_checkpoint(TRUNCATE);")?,
                Raw::Pg(_) => raw.exec("ANALYZE jobs; ANALYZE triggers;")?,
            }
            Ok(total)
        })
        .await
        .map_err(|e| BenchError::Run(e.to_string()))??;
    }
    let insert_s = insert_started.elapsed().as_secs_f64();
    eprintln!(
        "{} jobs with one trigger each inserted in {insert_s:.1} s",
        args.triggers
    );
    let db_mb = if workspace.postgres.is_none() {
        std::fs::metadata(workspace.dir.join("cronhook.db"))
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(0.0)
    } else {
        0.0
    };

    let spawned = Instant::now();
    let mut nodes = start_nodes(
        args,
        binary,
        workspace,
        ports,
        public_url,
        Duration::from_secs(600),
    )
    .await?;
    let startup_ms = spawned.elapsed().as_secs_f64() * 1000.0;
    eprintln!("ready after {startup_ms:.0} ms; settling {} s", args.settle);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let pid = nodes[0].pid();
    let rss_settled = status_mb(pid, "VmRSS:").unwrap_or(0.0);

    let from = (now_ms() + 999) / 1000 * 1000;
    let until = from + args.idle as i64 * 1000;
    arrivals.set_window(from, until);
    sleep_until(from).await;
    let cpu0: f64 = nodes
        .iter()
        .map(|n| cpu_seconds(n.pid()).unwrap_or(0.0))
        .sum();
    sleep_until(until).await;
    let cpu1: f64 = nodes
        .iter()
        .map(|n| cpu_seconds(n.pid()).unwrap_or(0.0))
        .sum();
    let cpu_pct = (cpu1 - cpu0) / args.idle as f64 * 100.0;
    let rss_after_idle = status_mb(pid, "VmRSS:").unwrap_or(0.0);

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(300))
        .finish();
    let probe = format!("job-{:08}", rare / 2);
    let search_ms = median_get(
        &client,
        &nodes[0].url(&format!("/api/v1/jobs?q={probe}&limit=50")),
        5,
    )
    .await?;
    let group_ms = median_get(
        &client,
        &nodes[0].url("/api/v1/jobs?group=g0042&limit=50"),
        5,
    )
    .await?;
    let page_ms = median_get(&client, &nodes[0].url("/api/v1/jobs?limit=50"), 5).await?;

    let expected = instants(&every_second, from, until);
    wait_arrivals(
        &arrivals,
        due_keys.len() * expected.len(),
        Duration::from_secs(args.drain),
    )
    .await;
    let d = delivery(&arrivals.snapshot(), &due_keys, &[], &expected, from, until);
    for example in &d.examples {
        eprintln!("  {example}");
    }
    let rss_peak = nodes
        .iter()
        .filter_map(|n| status_mb(n.pid(), "VmHWM:"))
        .fold(0.0, f64::max);
    let rss_end = status_mb(pid, "VmRSS:").unwrap_or(0.0);
    for node in &mut nodes {
        node.stop(Duration::from_secs(15));
    }
    sink.stop().await;
    let secs = args.idle as f64;
    println!(
        "scenario=scale backend={} nodes={} triggers={} due={} insert_s={:.0} db_mb={:.0} startup_ms={:.0} rss_settled_mb={:.0} rss_after_idle_mb={:.0} rss_end_mb={:.0} rss_peak_mb={:.0} idle_cpu_pct={:.1} window_s={} due_expected_fps={:.0} due_achieved_fps={:.0} lag_p50_ms={} lag_p99_ms={} lag_max_ms={} search_q_ms={:.0} list_group_ms={:.0} list_page_ms={:.0} dup={} missing={} commit={}",
        workspace.backend(),
        args.nodes,
        args.triggers,
        args.due,
        insert_s,
        db_mb,
        startup_ms,
        rss_settled,
        rss_after_idle,
        rss_end,
        rss_peak,
        cpu_pct,
        args.idle,
        d.expected as f64 / secs,
        d.arrived_in_window as f64 / secs,
        percentile(&d.lag, 0.5),
        percentile(&d.lag, 0.99),
        d.lag.last().copied().unwrap_or(0),
        search_ms,
        group_ms,
        page_ms,
        d.duplicates,
        d.missing,
        commit(),
    );
    Ok(d.duplicates == 0 && d.missing == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn delivery_counts_duplicates_and_missing() {
        let jobs = vec!["bench/a".to_string(), "bench/b".to_string()];
        let expected = vec![1000, 2000];
        let arrival = |job: &str, scheduled, sent, arrived| Arrival {
            job: job.to_string(),
            scheduled,
            sent,
            arrived,
        };
        let arrivals = vec![
            arrival("bench/a", 1000, 1001, 1003),
            arrival("bench/a", 2000, 2000, 2001),
            arrival("bench/a", 2000, 2040, 2050),
            arrival("bench/b", 1000, 1008, 1010),
        ];
        let d = delivery(&arrivals, &jobs, &[], &expected, 1000, 3000);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.missing, 1);
        assert_eq!(d.lag, vec![1, 3, 10]);
        assert_eq!(d.send_lag, vec![0, 1, 8]);
        assert_eq!(d.arrived_in_window, 4);
    }

    #[test]
    fn every_second_instants_in_a_window() {
        let spec = every_second_spec("* * * * * ?").expect("valid");
        assert_eq!(
            instants(&spec, 10_000, 13_000),
            vec![10_000, 11_000, 12_000]
        );
        assert!(every_second_spec("not cron").is_err());
    }
}
