//! A cluster on PostgreSQL: real `cronhook serve` processes sharing one fresh
//! database, a real SDK executor in this process, a node killed with SIGKILL and
//! PostgreSQL itself stopped and started mid-run. Every (job, scheduled instant) the
//! executor sees is counted: none twice, none missing.
//!
//! The tests stop PostgreSQL and load the machine, so they run one at a time.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cronhook_sdk::{handler_fn, Executor, JobError, Output};
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Node timeout of the test cluster: a node silent this long is dead.
const NODE_TIMEOUT_MS: i64 = 3_000;

/// One `cronhook serve` process.
struct Node {
    name: String,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Starts a node on `database_url`; executors reach the cluster at `public_url`
    /// (what a load balancer in front of the nodes would be).
    fn start(name: &str, database_url: &str, dir: &Path, public_url: Option<&str>) -> Node {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = cronhook_command();
        let listen = format!("127.0.0.1:{port}");
        cmd.arg("serve")
            .env("RUST_LOG", "info,cronhook=debug")
            .env("CRONHOOK_DATABASE_URL", database_url)
            .env("CRONHOOK_LISTEN", &listen)
            .env(
                "CRONHOOK_PUBLIC_URL",
                public_url.map_or_else(|| format!("http://{listen}"), str::to_string),
            )
            .env("CRONHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CRONHOOK_SIGNING_SECRET", SECRET)
            .env("CRONHOOK_HTTP_WORKERS", "2")
            // node-a takes the executor's traffic and polls slower, so the nodes that
            // get killed or frozen win most claims and hold fires to take over.
            .env(
                "CRONHOOK_SCHEDULER__POLL_INTERVAL_MS",
                if name == "node-a" { "400" } else { "100" },
            )
            .env("CRONHOOK_SCHEDULER__LOOKAHEAD_MS", "500")
            .env("CRONHOOK_SCHEDULER__SWEEP_INTERVAL_MS", "500")
            .env(
                "CRONHOOK_SCHEDULER__NODE_TIMEOUT_MS",
                NODE_TIMEOUT_MS.to_string(),
            )
            .env("CRONHOOK_SCHEDULER__SHUTDOWN_GRACE_MS", "3000")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("cronhook serve starts");
        Node {
            name: name.into(),
            port,
            child,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`) to the process.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.name);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- {} (last lines) ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }

    async fn readyz(&self) -> Option<u16> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        let response = client.get(self.url("/readyz")).send().await.ok()?;
        Some(response.status().as_u16())
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        while self.readyz().await != Some(200) {
            if start.elapsed() > PATIENCE {
                panic!("node {} never became ready\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node's id, as `/readyz` names it.
    async fn id(&self) -> String {
        let (status, body) = call("GET", &self.url("/readyz"), None, None).await;
        assert_eq!(status, 200, "{body}");
        body["node"]
            .as_str()
            .expect("readyz names the node")
            .to_string()
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &self.url(path),
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body,
        )
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fires `node` has claimed and not yet sent, read straight from the database.
fn unsent_fires_of(db: &mut diesel::PgConnection, node: &str) -> Vec<String> {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    diesel::sql_query(
        "SELECT id FROM fires WHERE owner_node = $1 AND state = 'fired' AND dispatched_at IS NULL",
    )
    .bind::<Text, _>(node)
    .load::<Id>(db)
    .expect("fires query")
    .into_iter()
    .map(|row| row.id)
    .collect()
}

/// The nodes' logs stay in a fixed place after the test, for reading after a failure.
struct KeptDir(PathBuf);

impl KeptDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn kept_dir(test: &str) -> KeptDir {
    let dir = std::env::temp_dir().join(format!("cronhook-cluster-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("log dir");
    report(format!("cluster: node logs in {}", dir.display()));
    KeptDir(dir)
}

/// A fire once it has ended (its result may still be on its way when the run stops).
async fn settled_fire(node: &Node, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (status, fire) = node
            .admin("GET", &format!("/api/v1/fires/{id}"), None)
            .await;
        assert_eq!(status, 200, "{fire}");
        let open = matches!(fire["state"].as_str(), Some("fired" | "running"));
        if !open || start.elapsed() > PATIENCE {
            return fire;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// What the executor saw: per job, each scheduled instant with its arrival times.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<BTreeMap<String, BTreeMap<i64, Vec<i64>>>>>);

impl Arrivals {
    fn snapshot(&self) -> BTreeMap<String, BTreeMap<i64, Vec<i64>>> {
        self.0.lock().unwrap().clone()
    }
}

/// An SDK executor recording every run of its handler. (The SDK drops a repeated send
/// of the same fire id — the documented hand-over of a dead node's unanswered sends;
/// a second fire for the same instant would carry its own id and be counted twice here.)
fn start_executor(scheduler: &str, dir: &Path) -> (cronhook_sdk::ServeHandle, Arrivals) {
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let executor = Executor::builder(scheduler.to_string(), "cluster-test", SECRET)
        .outbox_dir(dir.join("outbox"))
        .retry_backoff(Duration::from_millis(100), Duration::from_millis(1_000))
        .request_timeout(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(5))
        .capacity(1_000)
        .queue_len(5_000)
        .without_heartbeats()
        .default_handler(handler_fn(move |ctx| {
            let seen = seen.clone();
            async move {
                let arrived = chrono::Utc::now().timestamp_millis();
                let scheduled = ctx.scheduled_at().timestamp_millis();
                seen.0
                    .lock()
                    .unwrap()
                    .entry(ctx.job().to_string())
                    .or_default()
                    .entry(scheduled)
                    .or_default()
                    .push(arrived);
                Ok::<_, JobError>(Output::text("ok"))
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    (served, arrivals)
}

/// Creates `count` jobs firing every second (catch_up, so an outage delays instants
/// rather than dropping them) through `node`.
async fn create_every_second_jobs(
    node: &Node,
    target: &str,
    count: usize,
) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for i in 0..count {
        let name = format!("tick-{i:03}");
        let (status, job) = node
            .admin(
                "POST",
                "/api/v1/jobs",
                Some(json!({
                    "name": name,
                    "group": "cluster",
                    "target": { "url": target },
                    "timeout_ms": 30_000,
                    "triggers": [{
                        "kind": "cron",
                        "expression": "* * * * * ?",
                        "misfire": "catch_up",
                        "misfire_threshold_ms": 30_000,
                    }],
                })),
            )
            .await;
        assert_eq!(status, 201, "{job}");
        keys.insert(
            format!("cluster/{name}"),
            job["id"].as_str().unwrap().to_string(),
        );
    }
    keys
}

/// What the executor's record shows for a window: duplicate and missing (job, instant)
/// pairs, the largest lateness (arrival − scheduled instant) and the largest gap
/// between consecutive arrivals of a job, in ms.
struct Delivery {
    duplicates: Vec<String>,
    missing: Vec<(String, i64)>,
    largest_lateness: i64,
    /// Median and 99th percentile of the lateness, in ms.
    lateness_p50_p99: (i64, i64),
    largest_gap: i64,
}

fn delivery_in(
    arrivals: &BTreeMap<String, BTreeMap<i64, Vec<i64>>>,
    jobs: &BTreeMap<String, String>,
    from: i64,
    until: i64,
) -> Delivery {
    let mut delivery = Delivery {
        duplicates: Vec::new(),
        missing: Vec::new(),
        largest_lateness: 0,
        lateness_p50_p99: (0, 0),
        largest_gap: 0,
    };
    let mut lateness = Vec::new();
    let first = (from + 999) / 1000 * 1000;
    for job in jobs.keys() {
        let seen = arrivals.get(job).cloned().unwrap_or_default();
        for (instant, times) in &seen {
            if times.len() > 1 {
                delivery
                    .duplicates
                    .push(format!("{job} @ {instant}: {} arrivals", times.len()));
            }
        }
        for instant in (first..=until).step_by(1000) {
            if !seen.contains_key(&instant) {
                delivery.missing.push((job.clone(), instant));
            }
        }
        let mut in_window: Vec<i64> = seen
            .range(first..=until)
            .map(|(instant, times)| {
                lateness.push(times[0] - instant);
                times[0]
            })
            .collect();
        in_window.sort_unstable();
        for pair in in_window.windows(2) {
            delivery.largest_gap = delivery.largest_gap.max(pair[1] - pair[0]);
        }
    }
    lateness.sort_unstable();
    if let Some(largest) = lateness.last() {
        delivery.largest_lateness = *largest;
        let at = |q: f64| lateness[((lateness.len() - 1) as f64 * q) as usize];
        delivery.lateness_p50_p99 = (at(0.5), at(0.99));
    }
    delivery
}

/// Asserts no duplicate and no missing instant; for a missing one, shows what the
/// scheduler recorded for it.
async fn assert_exactly_once(delivery: &Delivery, jobs: &BTreeMap<String, String>, node: &Node) {
    assert!(
        delivery.duplicates.is_empty(),
        "{} duplicate arrivals, e.g. {:?}",
        delivery.duplicates.len(),
        &delivery.duplicates[..delivery.duplicates.len().min(10)]
    );
    if delivery.missing.is_empty() {
        return;
    }
    let mut shown = Vec::new();
    for (job, instant) in delivery.missing.iter().take(5) {
        let rfc3339 = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let (at, after) = (rfc3339(*instant), rfc3339(instant + 1));
        let (_, fires) = node
            .admin(
                "GET",
                &format!("/api/v1/fires?job_id={}&from={at}&until={after}", jobs[job]),
                None,
            )
            .await;
        shown.push(format!("{job} @ {at}: {fires}"));
    }
    panic!(
        "{} instants never arrived; the scheduler's record of some:\n{}",
        delivery.missing.len(),
        shown.join("\n")
    );
}

/// Waits until every job has seen every instant up to `until` (or PATIENCE passes;
/// the check that follows then names what is missing).
async fn wait_delivered(arrivals: &Arrivals, jobs: &BTreeMap<String, String>, until: i64) {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        let snapshot = arrivals.snapshot();
        let complete = jobs.keys().all(|job| {
            snapshot
                .get(job)
                .and_then(|seen| seen.keys().next_back())
                .is_some_and(|last| *last >= until)
        });
        if complete {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A measured figure, printed even when the test passes (libtest hides `eprintln!`).
fn report(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
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

fn dump_logs(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(Node::log_tail)
        .collect::<Vec<_>>()
        .join("\n")
}

#[actix_web::test]
async fn three_nodes_fire_every_instant_exactly_once_and_take_over_a_killed_node() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = TempPostgres::create("cluster::three_nodes") else {
        return;
    };
    let dir = kept_dir("three_nodes");
    let first = Node::start("node-a", &pg.url, dir.path(), None);
    first.wait_ready().await;
    let public = first.url("");
    let mut nodes = vec![
        first,
        Node::start("node-b", &pg.url, dir.path(), Some(&public)),
        Node::start("node-c", &pg.url, dir.path(), Some(&public)),
    ];
    for node in &nodes {
        node.wait_ready().await;
    }
    let (executor, arrivals) = start_executor(&public, dir.path());
    let target = format!("{}/fires", executor.address());
    let jobs = create_every_second_jobs(&nodes[0], &target, 200).await;

    let (status, listed) = nodes[1].admin("GET", "/api/v1/nodes", None).await;
    assert_eq!(status, 200, "{listed}");
    let alive = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true)
        .count();
    assert_eq!(alive, 3, "{listed:#}");

    // 60 s of every-second fires; node C dies by SIGKILL a third of the way in, at a
    // moment it holds claimed fires that it has not sent yet.
    let victim = nodes[2].id().await;
    let mut db = diesel::PgConnection::establish(&pg.url).expect("test connects to its database");
    let from = now_ms() + 1_000;
    let until = from + 60_000;
    sleep_until(from + 20_000).await;
    let mut held = Vec::new();
    while held.is_empty() && now_ms() < from + 35_000 {
        held = unsent_fires_of(&mut db, &victim);
        if held.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    nodes[2].kill9();
    let killed_at = now_ms();
    assert!(
        !held.is_empty(),
        "node-c never held a claimed fire to take over"
    );

    // Later node-b freezes (SIGSTOP) past the node timeout while holding claimed fires:
    // node-a takes them over; when node-b wakes, the dispatch fence stops it sending them.
    let frozen = nodes[1].id().await;
    sleep_until(from + 38_000).await;
    let mut held_by_frozen = Vec::new();
    while held_by_frozen.is_empty() && now_ms() < from + 48_000 {
        held_by_frozen = unsent_fires_of(&mut db, &frozen);
        if held_by_frozen.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    nodes[1].signal("STOP");
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS as u64 + 1_500)).await;
    nodes[1].signal("CONT");
    assert!(
        !held_by_frozen.is_empty(),
        "node-b never held a claimed fire"
    );
    sleep_until(until).await;
    wait_delivered(&arrivals, &jobs, until / 1000 * 1000).await;

    let delivery = delivery_in(&arrivals.snapshot(), &jobs, from, until);
    assert_exactly_once(&delivery, &jobs, &nodes[0]).await;
    let (late, gap) = (delivery.largest_lateness, delivery.largest_gap);
    let (p50, p99) = delivery.lateness_p50_p99;
    report(format!(
        "cluster: 200 jobs × 60 s on 3 nodes, node-c killed at +{} ms holding {} unsent fire(s), node-b frozen {} ms holding {}; arrival after the instant p50 {p50} ms, p99 {p99} ms, max {late} ms; largest gap between a job's arrivals {gap} ms",
        killed_at - from,
        held.len(),
        NODE_TIMEOUT_MS + 1_500,
        held_by_frozen.len(),
    ));
    for node in &nodes {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        for line in log.lines().filter(|l| {
            l.contains("took over") || l.contains("declared dead") || l.contains("was declared")
        }) {
            report(format!("  {}: {line}", node.name));
        }
    }
    // The bound: a job firing every second never goes longer than the node
    // timeout plus one second between two fires, even across a takeover.
    assert!(
        gap <= NODE_TIMEOUT_MS + 1_000,
        "a job went {gap} ms without a fire (node timeout {NODE_TIMEOUT_MS} ms)\n{}",
        dump_logs(&nodes)
    );

    // The survivors did the dead node's work and are still up and ready.
    for node in &mut nodes[..2] {
        assert!(node.running(), "{}", node.log_tail());
        assert_eq!(node.readyz().await, Some(200), "{}", node.log_tail());
    }
    // What node-c held when it died was sent by the others, once.
    for id in &held {
        let fire = settled_fire(&nodes[0], id).await;
        assert_eq!(fire["state"], "succeeded", "{fire:#}");
        assert_ne!(fire["node"], victim.as_str(), "{fire:#}");
    }
    for id in &held_by_frozen {
        let fire = settled_fire(&nodes[0], id).await;
        assert_eq!(fire["state"], "succeeded", "{fire:#}");
    }
    let frozen_log = std::fs::read_to_string(&nodes[1].log).unwrap_or_default();
    assert!(
        frozen_log.contains("was declared dead"),
        "node-b did not notice it had been declared dead\n{}",
        nodes[1].log_tail()
    );
    let survivors_log = std::fs::read_to_string(&nodes[0].log).unwrap_or_default()
        + &std::fs::read_to_string(&nodes[1].log).unwrap_or_default();
    assert!(
        survivors_log.contains("took over"),
        "no survivor logged taking over node-c's fires\n{}",
        dump_logs(&nodes)
    );

    // The scheduler's own record agrees: one first-attempt fire per instant, all succeeded.
    let (status, page) = nodes[0]
        .admin("GET", "/api/v1/fires?state=failed&limit=5", None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 0, "failed fires: {page:#}");
    executor.stop().await;
}

#[actix_web::test]
async fn nodes_survive_postgresql_going_away_and_resume() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = TempPostgres::create("cluster::postgres_restart") else {
        return;
    };
    let Some(version) = postgres_cluster_version() else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** SKIPPED cluster::nodes_survive_postgresql_going_away_and_resume: pg_ctlcluster/pg_lsclusters not available to stop the local server ***\n"
        );
        return;
    };
    let _restart_on_exit = StartPostgresOnDrop(version.clone());
    let dir = temp_dir();
    let first = Node::start("node-a", &pg.url, dir.path(), None);
    first.wait_ready().await;
    let public = first.url("");
    let mut nodes = vec![
        first,
        Node::start("node-b", &pg.url, dir.path(), Some(&public)),
    ];
    nodes[1].wait_ready().await;
    let (executor, arrivals) = start_executor(&public, dir.path());
    let target = format!("{}/fires", executor.address());
    let jobs = create_every_second_jobs(&nodes[0], &target, 50).await;

    let from = now_ms() + 1_000;
    sleep_until(from + 5_000).await;
    let stopped_at = now_ms();
    pg_ctl(&version, "stop");
    // While the database is away every node stays up and says it is not ready.
    let outage = async {
        let start = Instant::now();
        let mut not_ready = vec![false; nodes.len()];
        while start.elapsed() < Duration::from_secs(4) {
            for (i, node) in nodes.iter().enumerate() {
                not_ready[i] |= node.readyz().await == Some(503);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        not_ready
    }
    .await;
    pg_ctl(&version, "start");
    let started_at = now_ms();
    assert!(
        outage.iter().all(|seen| *seen),
        "/readyz did not report 503 on every node during the outage: {outage:?}\n{}",
        dump_logs(&nodes)
    );
    for node in &mut nodes {
        assert!(
            node.running(),
            "a node died with the database\n{}",
            node.log_tail()
        );
    }
    for node in &nodes {
        node.wait_ready().await;
    }
    let until = started_at + 8_000;
    sleep_until(until).await;
    wait_delivered(&arrivals, &jobs, until / 1000 * 1000).await;

    // Instants due during the outage came late (catch_up) but exactly once, and the
    // ones after it as usual.
    let delivery = delivery_in(&arrivals.snapshot(), &jobs, from, until);
    assert_exactly_once(&delivery, &jobs, &nodes[0]).await;
    report(format!(
        "cluster: PostgreSQL down for {} ms; every instant of 50 jobs delivered exactly once",
        started_at - stopped_at
    ));
    executor.stop().await;
}

/// The local PostgreSQL cluster's version, when this machine can stop and start it.
fn postgres_cluster_version() -> Option<String> {
    let out = Command::new("pg_lsclusters").arg("-h").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|line| line.contains(" 5432 ") && line.contains("online"))
        .and_then(|line| line.split_whitespace().next())
        .map(str::to_string)
}

fn pg_ctl(version: &str, action: &str) {
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(
        status.success(),
        "pg_ctlcluster {version} main {action} failed"
    );
}

/// Whatever happens in the test, PostgreSQL is running again afterwards.
struct StartPostgresOnDrop(String);

impl Drop for StartPostgresOnDrop {
    fn drop(&mut self) {
        if postgres_cluster_version().is_none() {
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &self.0, "main", "start"])
                .status();
        }
    }
}

#[test]
fn an_unreachable_database_is_reported_with_its_host_and_reason() {
    let mut cmd = cronhook_command();
    let closed_port = free_port();
    let out = cmd
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &format!("postgres://cronhook:hunter2secret@127.0.0.1:{closed_port}/cronhook"),
        ])
        .output()
        .expect("cronhook runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{closed_port}")) && stderr.contains("refused"),
        "the error names neither the host nor the reason: {stderr}"
    );
    assert!(
        !stderr.contains("hunter2secret"),
        "password in the output: {stderr}"
    );
}
