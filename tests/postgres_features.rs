//! The core, SDK and routing features on PostgreSQL: a real node on a fresh database
//! per test, real SDK executors over 127.0.0.1. (The same features run on SQLite in
//! pipeline.rs, sdk_end_to_end.rs, routing.rs and overlap.rs; the cluster itself is in
//! cluster.rs.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use cronhook::configuration::Settings;
use cronhook_sdk::{handler_fn, JobError, Output};
use serde_json::{json, Value};

fn settings_on(pg: &TempPostgres, dir: &std::path::Path) -> Settings {
    let mut settings = test_settings(dir);
    settings.database_url = pg.url.clone();
    settings
}

fn count_state(fires: &[Value], state: &str) -> usize {
    fires.iter().filter(|f| f["state"] == state).count()
}

/// Every-second cron to an SDK executor: fired → running → succeeded with the whole
/// timeline, one fire per instant; then a restart keeps jobs and history.
#[actix_web::test]
async fn cron_fires_run_through_an_sdk_executor_and_survive_a_restart() {
    let Some(pg) = TempPostgres::create("postgres_features::cron_sdk_restart") else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(settings_on(&pg, dir.path()));
    let executor = executor_builder(&app, "billing", dir.path())
        .default_handler(handler_fn(|ctx| async move {
            Ok::<_, JobError>(Output::text(format!("settled {}", ctx.job())))
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("executor serves");
    let job = app
        .create_job(json!({
            "group": "payments",
            "name": "settle",
            "target": { "url": format!("{}/fires", served.address()) },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let fires = app
        .wait_fires(&job_id, "three succeeded fires", |f| {
            count_state(f, "succeeded") >= 3
        })
        .await;
    let mut instants = Vec::new();
    for fire in fires.iter().filter(|f| f["state"] == "succeeded") {
        assert!(
            ms(&fire["dispatched_at"]) >= ms(&fire["scheduled_at"]),
            "{fire}"
        );
        assert!(ms(&fire["finished_at"]) >= ms(&fire["acked_at"]), "{fire}");
        assert_eq!(fire["http_status"], 202, "{fire}");
        assert_eq!(fire["output"], "settled payments/settle", "{fire}");
        instants.push(ms(&fire["scheduled_at"]));
    }
    let count = instants.len();
    instants.sort_unstable();
    instants.dedup();
    assert_eq!(instants.len(), count, "one fire per instant");

    // Restart on the same database: the job and its history are there and it fires on.
    let settings = app.settings.clone();
    app.stop().await;
    let app = spawn_app_with(settings);
    let (status, again) = app.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(status, 200, "{again}");
    let before = count;
    app.wait_fires(&job_id, "fires after the restart", |f| {
        count_state(f, "succeeded") >= before + 2
    })
    .await;
    served.stop().await;
    app.stop().await;
}

/// A sync webhook that fails: the fire fails and the retry policy records new attempts.
#[actix_web::test]
async fn failed_sync_fires_are_retried_by_policy() {
    let Some(pg) = TempPostgres::create("postgres_features::retries") else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(settings_on(&pg, dir.path()));
    let hook = Webhook::start();
    hook.state.status.store(500, Ordering::SeqCst);
    let job = app
        .create_job(json!({
            "name": "flaky",
            "mode": "sync",
            "target": { "url": hook.url() },
            "retry": { "max_attempts": 3, "backoff_ms": 200, "multiplier": 1.0 },
        }))
        .await;
    let job_id = job["id"].as_str().unwrap();
    let (status, fire) = app
        .post(&format!("/api/v1/jobs/{job_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202, "{fire}");
    let fires = app
        .wait_fires(job_id, "three failed attempts", |f| {
            count_state(f, "failed") == 3
        })
        .await;
    let mut attempts: Vec<i64> = fires.iter().filter_map(|f| f["attempt"].as_i64()).collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 3], "{fires:#?}");
    assert_eq!(hook.requests().len(), 3);
    hook.stop().await;
    app.stop().await;
}

/// Target = app: executors register by heartbeat, fires spread over them, each fire
/// records its executor; `concurrency: queue` runs one at a time.
#[actix_web::test]
async fn executor_pool_routing_and_queue_policy() {
    let Some(pg) = TempPostgres::create("postgres_features::pool") else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(settings_on(&pg, dir.path()));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut members = Vec::new();
    for instance in ["one", "two"] {
        let (running, most) = (running.clone(), most.clone());
        let executor = executor_builder(&app, "pool", &dir.path().join(instance))
            .instance_id(instance)
            .heartbeat_interval(Duration::from_millis(100))
            .handler(
                "work",
                handler_fn(move |ctx| {
                    let (running, most) = (running.clone(), most.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let ms = ctx.payload_value()["sleep_ms"].as_u64().unwrap_or(10);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, JobError>(Output::text("done"))
                    }
                }),
            )
            .build()
            .expect("executor builds");
        members.push(executor.serve("127.0.0.1:0").expect("serves"));
    }
    let start = Instant::now();
    loop {
        let (_, page) = app.get("/api/v1/executors?app=pool").await;
        let valid = page["items"]
            .as_array()
            .map(|items| items.iter().filter(|e| e["valid"] == true).count())
            .unwrap_or(0);
        if valid == 2 {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "executors never registered: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let spread = app
        .create_job(json!({
            "name": "spread",
            "target": { "app": "pool", "handler": "work" },
            "routing": "round_robin",
        }))
        .await;
    let spread_id = spread["id"].as_str().unwrap();
    for _ in 0..6 {
        let (status, fire) = app
            .post(&format!("/api/v1/jobs/{spread_id}/run"), json!({}))
            .await;
        assert_eq!(status, 202, "{fire}");
    }
    let fires = app
        .wait_fires(spread_id, "six succeeded fires", |f| {
            count_state(f, "succeeded") == 6
        })
        .await;
    for instance in ["pool/one", "pool/two"] {
        let on = fires.iter().filter(|f| f["executor"] == instance).count();
        assert!(on >= 2, "{instance} ran {on} of 6: {fires:#?}");
    }

    most.store(0, Ordering::SeqCst);
    let queued = app
        .create_job(json!({
            "name": "one-at-a-time",
            "target": { "app": "pool", "handler": "work" },
            "concurrency": "queue",
            "payload": { "sleep_ms": 300 },
        }))
        .await;
    let queued_id = queued["id"].as_str().unwrap();
    for _ in 0..3 {
        let (status, fire) = app
            .post(&format!("/api/v1/jobs/{queued_id}/run"), json!({}))
            .await;
        assert_eq!(status, 202, "{fire}");
    }
    app.wait_fires(queued_id, "three queued fires done", |f| {
        count_state(f, "succeeded") == 3
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "queued fires overlapped");
    for member in members {
        member.stop().await;
    }
    app.stop().await;
}

/// `?q=` on PostgreSQL: substrings of group, name or description, answered with the
/// pg_trgm indexes of migration 6 (which the migration created here).
#[actix_web::test]
async fn job_search_and_the_plan_use_indexes() {
    let Some(pg) = TempPostgres::create("postgres_features::search") else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(settings_on(&pg, dir.path()));
    for (group, name, description) in [
        ("billing", "settle-payments", "closes the day's ledger"),
        ("ops", "scan-servers", "nightly scan"),
    ] {
        app.create_job(json!({
            "group": group,
            "name": name,
            "description": description,
            "mode": "sync",
            "target": { "url": "http://127.0.0.1:9/hook" },
            "triggers": [{ "kind": "cron", "expression": "0 0 3 * * ?" }],
        }))
        .await;
    }
    for (q, expected) in [
        ("payments", Some("settle-payments")),
        ("PAYMENT", Some("settle-payments")), // any case, as on SQLite
        ("illin", Some("settle-payments")),
        ("Nightly", Some("scan-servers")),
        ("50%", None),
        ("_", None), // LIKE wildcards are plain text
    ] {
        let (status, page) = app.get(&format!("/api/v1/jobs?q={q}")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], expected.map_or(0, |_| 1), "q={q}: {page}");
        if let Some(name) = expected {
            assert_eq!(page["items"][0]["name"], name, "q={q}: {page}");
        }
    }
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish(&pg.url).expect("connects");
    let indexes: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'jobs' AND indexname LIKE '%_trgm'",
    )
    .get_result(&mut conn)
    .expect("pg_indexes answers");
    assert_eq!(indexes.n, 3, "the three trigram indexes exist");

    // The plan of all jobs reads the soonest triggers and waiting fires on PostgreSQL
    // too: both jobs fire at 03:00, ordered by job key.
    let until = (chrono::Utc::now() + chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, plan) = app
        .get(&format!("/api/v1/plan?limit=3&until={until}"))
        .await;
    assert_eq!(status, 200, "{plan}");
    let jobs: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        [
            "billing/settle-payments",
            "ops/scan-servers",
            "billing/settle-payments"
        ],
        "{plan:#}"
    );
    assert_eq!(plan["truncated"], true, "{plan:#}");
    app.stop().await;
}

/// Claims answer jobs from a per-node cache checked against the jobs generation
/// (migration 10): on PostgreSQL too, a changed target is used from the next fires on
/// and a paused job stops firing.
#[actix_web::test]
async fn an_edited_or_paused_job_is_seen_by_the_next_claims() {
    let Some(pg) = TempPostgres::create("postgres_features::edited_job") else {
        return;
    };
    let dir = temp_dir();
    let app = spawn_app_with(settings_on(&pg, dir.path()));
    let serve = |label: &'static str| {
        executor_builder(&app, label, dir.path())
            .default_handler(handler_fn(move |_ctx| async move {
                Ok::<_, JobError>(Output::text(label))
            }))
            .build()
            .expect("executor builds")
            .serve("127.0.0.1:0")
            .expect("executor serves")
    };
    let (one, two) = (serve("one"), serve("two"));
    let body = |url: String| {
        json!({
            "group": "edits",
            "name": "moving",
            "target": { "url": url },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?" }],
        })
    };
    let job = app
        .create_job(body(format!("{}/fires", one.address())))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let output_count = |fires: &[Value], label: &str| {
        fires
            .iter()
            .filter(|f| f["state"] == "succeeded" && f["output"] == label)
            .count()
    };
    app.wait_fires(&job_id, "two fires on executor one", |f| {
        output_count(f, "one") >= 2
    })
    .await;

    let (status, updated) = app
        .call(
            "PUT",
            &format!("/api/v1/jobs/{job_id}"),
            Some(body(format!("{}/fires", two.address()))),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let fires = app
        .wait_fires(&job_id, "three fires on executor two after the edit", |f| {
            output_count(f, "two") >= 3
        })
        .await;
    // Once the edit was seen, no later instant goes to the old target.
    let first_two = fires
        .iter()
        .filter(|f| f["output"] == "two")
        .map(|f| ms(&f["scheduled_at"]))
        .min()
        .expect("a fire on executor two");
    let stale: Vec<&Value> = fires
        .iter()
        .filter(|f| f["output"] == "one" && ms(&f["scheduled_at"]) > first_two)
        .collect();
    assert!(
        stale.is_empty(),
        "fires sent to the old target after the edit: {stale:?}"
    );

    let (status, paused) = app
        .post(&format!("/api/v1/jobs/{job_id}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    // Fires already claimed may still end; after that, nothing new is recorded.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, settled) = app
        .get(&format!("/api/v1/fires?job_id={job_id}&limit=500"))
        .await;
    let before = settled["total"].as_u64().expect("a total");
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let (_, later) = app
        .get(&format!("/api/v1/fires?job_id={job_id}&limit=500"))
        .await;
    assert_eq!(
        later["total"].as_u64(),
        Some(before),
        "no fires while paused: {later}"
    );
    one.stop().await;
    two.stop().await;
    app.stop().await;
}

/// A fresh database with cronhook's schema (`None`: PostgreSQL tests are skipped). The
/// database lives as long as the returned `TempPostgres`.
fn migrated(name: &str) -> Option<(TempPostgres, cronhook::db::Db)> {
    let pg = TempPostgres::create(name)?;
    let db = cronhook::db::Db::open(&pg.url).expect("the database opens");
    db.run_migrations().expect("migrations run");
    Some((pg, db))
}

/// Acknowledgements of `ids` as an executor's 202 records them.
fn acknowledged(ids: &[String], now: i64) -> Vec<cronhook::db::fires::Acknowledged> {
    ids.iter()
        .map(|id| cronhook::db::fires::Acknowledged {
            id: id.clone(),
            dispatched_at: now + 1,
            acked_at: now + 2,
            deadline_at: now + 60_000,
            http_status: 202,
            executor: "e".into(),
        })
        .collect()
}

/// Rows a session read from a table and has not reported yet: the current
/// transaction's, plus earlier ones' until the session reports them (at most once a
/// second, and never inside a transaction), so only differences taken within one
/// transaction are exact.
#[derive(diesel::QueryableByName, Debug, Clone, Copy)]
struct Reads {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq_read: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    by_index: i64,
}

impl Reads {
    fn since(self, before: Reads) -> Reads {
        Reads {
            seq_read: self.seq_read - before.seq_read,
            by_index: self.by_index - before.by_index,
        }
    }
}

fn reads(conn: &mut cronhook::db::DbConnection, table: &str) -> Reads {
    use diesel::RunQueryDsl;
    let cronhook::db::DbConnection::Postgresql(pg) = conn else {
        panic!("a PostgreSQL connection")
    };
    diesel::sql_query(
        "SELECT COALESCE(seq_tup_read, 0) AS seq_read, COALESCE(idx_tup_fetch, 0) AS by_index \
         FROM pg_stat_xact_user_tables WHERE relname = $1",
    )
    .bind::<diesel::sql_types::Text, _>(table)
    .get_result(pg)
    .expect("pg_stat_xact_user_tables answers")
}

/// The trigger advances of a claim round look each listed trigger up by its key. With
/// hash joins allowed, PostgreSQL joined them against a sequential scan of all of
/// `triggers` (docs/performance.md, point 27): 128 advances among 20,000 triggers must
/// read 128 rows.
#[test]
fn trigger_advances_look_up_each_listed_trigger_by_key() {
    use cronhook::db::{triggers, DbConnection};
    use diesel::connection::{Connection, SimpleConnection};
    let Some((_pg, db)) = migrated("postgres_features::advances_by_key") else {
        return;
    };
    let mut conn = db.write().expect("a connection");
    let conn: &mut DbConnection = &mut conn;
    conn.batch_execute(
        "INSERT INTO jobs (id, group_name, name, description, state, version, spec, \
         created_at, updated_at) \
         SELECT 'job-' || i, 'g', 'n-' || i, '', 'active', 1, '{}', 0, 0 \
         FROM generate_series(1, 20000) AS i; \
         INSERT INTO triggers (id, job_id, position, kind, spec, next_fire_at, fire_count, \
         created_at) \
         SELECT 'trigger-' || i, 'job-' || i, 0, 'cron', '{}', 1000, 0, 0 \
         FROM generate_series(1, 20000) AS i; \
         ANALYZE triggers",
    )
    .expect("20,000 jobs and triggers");
    let advances: Vec<triggers::Advance> = (5_000..5_128)
        .map(|i| (format!("trigger-{i}"), Some(2_000), 1))
        .collect();
    conn.transaction(|conn| -> diesel::QueryResult<()> {
        let before = reads(conn, "triggers");
        triggers::advance_many(conn, &advances)?;
        let advancing = reads(conn, "triggers").since(before);
        assert_eq!(advancing.seq_read, 0, "{advancing:?}");
        assert!(
            advancing.by_index <= 128,
            "one key lookup per advanced trigger: {advancing:?}"
        );
        Ok(())
    })
    .expect("the transaction runs");
}

/// `n` fire rows as a claim round records them: owned by node `node-a`, waiting, one
/// instant apart from `now` on.
fn claimed_fires(n: i64, now: i64) -> Vec<cronhook::db::fires::FireRow> {
    let input: cronhook::domain::JobInput = serde_json::from_value(json!({
        "group": "g",
        "name": "n",
        "mode": "sync",
        "target": { "url": "http://127.0.0.1:9/hook" },
        "triggers": [{ "kind": "cron", "expression": "* * * * * ?" }],
    }))
    .expect("a job input");
    let job = cronhook::scheduler::claim::JobForDispatch {
        id: "job".into(),
        key: "g/n".into(),
        version: 1,
        spec: input.validate(30_000).expect("a valid job"),
    };
    (0..n)
        .map(|i| {
            cronhook::scheduler::claim::new_fire_row(
                &job,
                Some("trigger"),
                1,
                now + i,
                now + i,
                now,
                Some("node-a"),
            )
        })
        .collect()
}

/// The many-row updates of acknowledgements and write-backs look each listed fire up
/// by its primary key, whatever the statistics say. Planned from statistics taken when
/// `fires` was small, PostgreSQL hash-joined them against a scan of every open fire or
/// of the whole table (docs/performance.md, point 27). Here the statistics are taken
/// while the table holds 2,000 finished fires, then 30,000 open ones arrive (a burst
/// the next autoanalyze has not seen yet), and the updates of 64 of them must read 64
/// rows, not every open one.
#[test]
fn many_row_updates_look_up_each_listed_fire_by_key() {
    use cronhook::db::{fires, DbConnection};
    use diesel::connection::{Connection, SimpleConnection};
    let Some((_pg, db)) = migrated("postgres_features::updates_by_key") else {
        return;
    };
    let mut conn = db.write().expect("a connection");
    let conn: &mut DbConnection = &mut conn;
    let now = chrono::Utc::now().timestamp_millis();
    let rows = claimed_fires(32_000, now);
    let done = fires::insert_new(conn, &rows[..2_000]).expect("fires inserted");
    let finish = fires::Finish {
        state: "succeeded",
        finished_at: now + 3,
        ..Default::default()
    };
    let finished: Vec<(&str, &fires::Finish)> =
        done.iter().map(|id| (id.as_str(), &finish)).collect();
    let finished = fires::finish_many(conn, &["fired"], &finished).expect("fires finished");
    assert_eq!(finished.len(), 2_000);
    conn.batch_execute("ANALYZE fires")
        .expect("statistics taken");
    let ids = fires::insert_new(conn, &rows[2_000..]).expect("fires inserted");
    assert_eq!(ids.len(), 30_000);

    let listed = &ids[10_000..10_064];
    conn.transaction(|conn| -> diesel::QueryResult<()> {
        let before = reads(conn, "fires");
        let acks = acknowledged(listed, now);
        assert_eq!(fires::mark_running_many(conn, &acks)?.len(), 64);
        let after_acks = reads(conn, "fires");
        let acking = after_acks.since(before);
        assert_eq!(acking.seq_read, 0, "{acking:?}");
        assert!(
            acking.by_index <= 64,
            "one key lookup per acknowledged fire, not a scan of the open ones: {acking:?}"
        );
        let items: Vec<(&str, &fires::Finish)> =
            listed.iter().map(|id| (id.as_str(), &finish)).collect();
        assert_eq!(
            fires::finish_many(conn, &["fired", "running"], &items)?.len(),
            64
        );
        let finishing = reads(conn, "fires").since(after_acks);
        assert_eq!(finishing.seq_read, 0, "{finishing:?}");
        assert!(
            finishing.by_index <= 64,
            "one key lookup per written-back fire: {finishing:?}"
        );
        Ok(())
    })
    .expect("the transaction runs");
}

/// An executor's task list and a job's running fires are counted in
/// `fires_running_deadline` (migration 15): 30,000 claimed fires waiting to go out cost
/// the counts nothing. Through the old state index (`state IN ('fired', 'running')`)
/// each count read every open fire's row, a cost that grew with the backlog itself.
#[test]
fn open_fire_counts_read_only_running_fires() {
    use cronhook::db::{fires, DbConnection};
    use diesel::connection::{Connection, SimpleConnection};
    let Some((_pg, db)) = migrated("postgres_features::open_counts") else {
        return;
    };
    let mut conn = db.write().expect("a connection");
    let conn: &mut DbConnection = &mut conn;
    let now = chrono::Utc::now().timestamp_millis();
    let ids = fires::insert_new(conn, &claimed_fires(30_000, now)).expect("fires inserted");
    assert_eq!(ids.len(), 30_000);
    let acks = acknowledged(&ids[..64], now);
    assert_eq!(
        fires::mark_running_many(conn, &acks)
            .expect("acknowledged")
            .len(),
        64
    );
    conn.batch_execute("ANALYZE fires")
        .expect("statistics taken");
    conn.transaction(|conn| -> diesel::QueryResult<()> {
        let before = reads(conn, "fires");
        let counts = fires::open_counts_by_executor(conn, &["e".to_string()])?;
        assert_eq!(counts, [("e".to_string(), 64)]);
        assert_eq!(fires::count_running_for_job(conn, "job")?, 64);
        let counting = reads(conn, "fires").since(before);
        assert_eq!(counting.seq_read, 0, "{counting:?}");
        assert!(
            counting.by_index <= 128,
            "at most one row per running fire and count, none of the waiting ones: {counting:?}"
        );
        Ok(())
    })
    .expect("the transaction runs");
}

/// The dispatch fence runs on every fire sent. On PostgreSQL it must stay a heap-only
/// (HOT) update — no index names `dispatched_at`, and `fires` leaves room on its pages
/// (migration 11) — or each fence writes a new entry into every index of `fires`.
/// The acknowledgement that follows changes the state (indexed) and cannot be HOT;
/// it shows the counter tells the two apart.
#[test]
fn the_dispatch_fence_is_a_heap_only_update() {
    use cronhook::db::{fires, DbConnection};
    use diesel::connection::Connection;
    use diesel::RunQueryDsl;
    let Some((_pg, db)) = migrated("postgres_features::fence_heap_only") else {
        return;
    };
    let mut conn = db.write().expect("a connection");
    let conn: &mut DbConnection = &mut conn;
    let now = chrono::Utc::now().timestamp_millis();
    let rows = claimed_fires(20, now);
    let ids = fires::insert_new(conn, &rows).expect("fires inserted");
    assert_eq!(ids.len(), 20);

    #[derive(diesel::QueryableByName)]
    struct Updates {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        updated: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        heap_only: i64,
    }
    // This transaction's own counts: exact, not waiting for the statistics to flush.
    let counts = |conn: &mut DbConnection| -> Updates {
        let DbConnection::Postgresql(pg) = conn else {
            panic!("a PostgreSQL connection")
        };
        diesel::sql_query(
            "SELECT n_tup_upd AS updated, n_tup_hot_upd AS heap_only \
             FROM pg_stat_xact_user_tables WHERE relname = 'fires'",
        )
        .get_result(pg)
        .expect("pg_stat_xact_user_tables answers")
    };
    conn.transaction(|conn| -> diesel::QueryResult<()> {
        let fenced = fires::fence_for_dispatch(conn, "node-a", &ids, now + 1)?;
        assert_eq!(
            fenced.len(),
            20,
            "every waiting fire owned by the node passes"
        );
        let after_fence = counts(conn);
        assert_eq!(after_fence.updated, 20);
        assert_eq!(
            after_fence.heap_only, 20,
            "each fence is a heap-only update (no index entry written)"
        );
        let acks = acknowledged(&ids, now);
        assert_eq!(fires::mark_running_many(conn, &acks)?.len(), 20);
        let after_ack = counts(conn);
        assert_eq!(after_ack.updated, 40);
        assert_eq!(after_ack.heap_only, 20, "a state change writes the indexes");
        Ok(())
    })
    .expect("the transaction runs");
}
