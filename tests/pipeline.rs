//! The fire pipeline end to end on a real SQLite file: jobs → triggers → fired →
//! running → result, with a real SDK executor and a plain webhook over 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use cronhook_sdk::{handler_fn, protocol, JobError, Output};
use serde_json::{json, Value};

fn states(fires: &[Value]) -> Vec<&str> {
    fires.iter().filter_map(|f| f["state"].as_str()).collect()
}

fn count_state(fires: &[Value], state: &str) -> usize {
    fires.iter().filter(|f| f["state"] == state).count()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[actix_web::test]
async fn every_second_cron_job_goes_fired_running_succeeded_each_time() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen_by_handler = seen.clone();
    let executor = executor_builder(&app, "billing", dir.path())
        .default_handler(handler_fn(move |ctx| {
            let seen = seen_by_handler.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((ctx.fire_id().to_string(), ctx.scheduled_at().to_rfc3339()));
                Ok::<_, JobError>(Output::text(format!("settled {}", ctx.job())))
            }
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
    let job_id = job["id"].as_str().unwrap();
    assert_eq!(job["state"], "active");
    assert!(job["next_fire_at"].is_string(), "{job}");

    let fires = app
        .wait_fires(job_id, "three succeeded fires", |f| {
            count_state(f, "succeeded") >= 3
        })
        .await;
    let succeeded: Vec<&Value> = fires.iter().filter(|f| f["state"] == "succeeded").collect();
    let mut instants = Vec::new();
    for fire in &succeeded {
        // Every stage of the timeline was recorded, in order.
        let scheduled = ms(&fire["scheduled_at"]);
        let fired = ms(&fire["fired_at"]);
        let dispatched = ms(&fire["dispatched_at"]);
        let acked = ms(&fire["acked_at"]);
        let finished = ms(&fire["finished_at"]);
        assert!(fired <= dispatched, "recorded before dispatch: {fire}");
        assert!(dispatched >= scheduled, "not dispatched early: {fire}");
        assert!(acked >= dispatched && finished >= dispatched, "{fire}");
        assert_eq!(fire["http_status"], 202, "acknowledged with 202: {fire}");
        assert_eq!(fire["output"], "settled payments/settle");
        assert_eq!(fire["attempt"], 1);
        assert_eq!(scheduled % 1000, 0, "whole seconds: {fire}");
        instants.push(scheduled);
    }
    instants.sort();
    instants.dedup();
    assert_eq!(instants.len(), succeeded.len(), "one fire per instant");
    // The trigger counts every instant it fired; the count and the fire rows are
    // written in the same claim transaction, so a claim between the reads only moves
    // the second count up.
    let fire_count = |job: Value| job["triggers"][0]["fire_count"].as_i64().unwrap();
    let before = fire_count(app.get(&format!("/api/v1/jobs/{job_id}")).await.1);
    let recorded = app.fires_of(job_id).await.len() as i64;
    let after = fire_count(app.get(&format!("/api/v1/jobs/{job_id}")).await.1);
    assert!(
        before <= recorded && recorded <= after && before >= 3,
        "fire_count {before}..{after}, fires recorded {recorded}"
    );
    // The executor saw each fire's dedup key (id + scheduled instant) once.
    let seen = seen.lock().unwrap().clone();
    let ids: HashSet<&String> = seen.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), seen.len(), "no fire ran twice: {seen:?}");
    for fire in &succeeded {
        let id = fire["id"].as_str().unwrap();
        let (_, scheduled) = seen
            .iter()
            .find(|(seen_id, _)| seen_id == id)
            .unwrap_or_else(|| panic!("executor never saw {id}"));
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(scheduled)
                .unwrap()
                .timestamp_millis(),
            ms(&fire["scheduled_at"])
        );
    }
    // Results went out through the batch write-back (several per request when they
    // wait together; used even for one).
    let stats = executor.stats();
    assert!(stats.delivery_batches >= 1, "{stats:?}");
    served.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn sync_mode_success_and_failure() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let job = app
        .create_job(json!({
            "name": "ping",
            "mode": "sync",
            "target": { "url": hook.url() },
            "payload": { "region": "eu" },
        }))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();

    let (status, fire) = app
        .post(&format!("/api/v1/jobs/{job_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202, "{fire}");
    let fires = app
        .wait_fires(&job_id, "a succeeded sync fire", |f| {
            count_state(f, "succeeded") == 1
        })
        .await;
    let ok = &fires[0];
    assert_eq!(ok["http_status"], 200);
    let output: Value = serde_json::from_str(ok["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["handled"], ok["id"], "the body is the output");

    // What the target received: the signed protocol with the dedup key in headers and body.
    let requests = hook.requests();
    let (body, headers) = &requests[0];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("header {name} missing: {headers:?}"))
    };
    assert_eq!(header("cronhook-fire"), ok["id"].as_str().unwrap());
    assert_eq!(body["fire_id"], ok["id"]);
    assert_eq!(body["job"], "default/ping");
    assert_eq!(body["payload"], json!({ "region": "eu" }));
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&header("cronhook-scheduled-at"))
            .unwrap()
            .timestamp_millis(),
        ms(&ok["scheduled_at"])
    );
    let raw = hook.raw_bodies()[0].clone();
    assert!(
        protocol::verify(
            SECRET.as_bytes(),
            Some(&header("cronhook-signature")),
            &raw,
            chrono::Utc::now().timestamp()
        )
        .is_ok(),
        "dispatch signature verifies"
    );

    // A large answer is stored cut at 64 KiB and marked truncated.
    hook.state.answer_bytes.store(200_000, Ordering::SeqCst);
    let (status, big) = app
        .post(&format!("/api/v1/jobs/{job_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202);
    let big_id = big["id"].as_str().unwrap().to_string();
    app.wait_fires(&job_id, "the large answer", |f| {
        f.iter()
            .any(|f| f["id"] == big_id.as_str() && f["state"] == "succeeded")
    })
    .await;
    let big = app.fire(&big_id).await;
    assert_eq!(
        big["output"].as_str().unwrap().len(),
        protocol::MAX_OUTPUT_BYTES
    );
    assert_eq!(big["output_truncated"], true);
    hook.state.answer_bytes.store(0, Ordering::SeqCst);

    // A non-2xx answer in sync mode fails the fire with the status and the body.
    hook.state.status.store(500, Ordering::SeqCst);
    let (status, _) = app
        .post(
            &format!("/api/v1/jobs/{job_id}/run"),
            json!({ "payload": { "region": "us" } }),
        )
        .await;
    assert_eq!(status, 202);
    let fires = app
        .wait_fires(&job_id, "a failed sync fire", |f| {
            count_state(f, "failed") == 1
        })
        .await;
    let failed = fires.iter().find(|f| f["state"] == "failed").unwrap();
    assert_eq!(failed["http_status"], 500);
    assert!(
        failed["error"].as_str().unwrap().contains("HTTP 500"),
        "{failed}"
    );
    assert_eq!(
        failed["payload"],
        json!({ "region": "us" }),
        "run-now payload override"
    );
    assert_eq!(hook.requests()[2].0["payload"], json!({ "region": "us" }));
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn target_down_fails_and_retries_at_backoff_instants() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let job = app
        .create_job(json!({
            "name": "unreachable",
            "target": { "url": format!("http://127.0.0.1:{}/hook", closed_port()) },
            "retry": { "max_attempts": 3, "backoff_ms": 400, "multiplier": 2.0, "jitter": 0.0 },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap();
    let mut fires = app
        .wait_fires(job_id, "three failed attempts", |f| {
            count_state(f, "failed") == 3
        })
        .await;
    // No fourth attempt appears.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.fires_of(job_id).await.len(), 3, "max_attempts is 3");
    fires.sort_by_key(|f| f["attempt"].as_i64());
    let attempts: Vec<i64> = fires
        .iter()
        .map(|f| f["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    for fire in &fires {
        assert_eq!(
            fire["scheduled_at"], fires[0]["scheduled_at"],
            "same instant"
        );
        assert!(
            fire["error"].as_str().unwrap().contains("failed"),
            "the reason is recorded: {fire}"
        );
    }
    // Each retry is due at its backoff instant after the previous failure, and not sent before it.
    for (previous, retry, wait) in [(&fires[0], &fires[1], 400), (&fires[1], &fires[2], 800)] {
        let due = ms(&retry["due_at"]);
        assert_eq!(
            due - ms(&previous["finished_at"]),
            wait,
            "{previous} → {retry}"
        );
        assert!(ms(&retry["dispatched_at"]) >= due, "{retry}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn acknowledged_fire_without_result_times_out() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    // Answers 202 like an executor, then never writes back.
    hook.state.status.store(202, Ordering::SeqCst);
    let job = app
        .create_job(json!({
            "name": "silent",
            "target": { "url": hook.url() },
            "timeout_ms": 600,
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap();
    app.wait_fires(job_id, "a running fire", |f| states(f) == ["running"])
        .await;
    let fires = app
        .wait_fires(job_id, "the fire to time out", |f| {
            states(f) == ["timed_out"]
        })
        .await;
    let fire = &fires[0];
    assert!(
        ms(&fire["finished_at"]) >= ms(&fire["deadline_at"]),
        "{fire}"
    );
    assert_eq!(ms(&fire["deadline_at"]) - ms(&fire["dispatched_at"]), 600);

    // A result arriving after the deadline is kept on record but does not reopen the fire.
    let id = fire["id"].as_str().unwrap();
    let (status, problem) = write_back(&app, id, json!({ "status": "succeeded" }), SECRET).await;
    assert_eq!(status, 409, "{problem}");
    let fire = app.fire(id).await;
    assert_eq!(fire["state"], "timed_out");
    assert_eq!(fire["late_result"]["status"], "succeeded");
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn write_back_is_idempotent_and_checked() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    hook.state.status.store(202, Ordering::SeqCst);
    let job = app
        .create_job(json!({
            "name": "manual",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap();
    let fires = app
        .wait_fires(job_id, "a running fire", |f| states(f) == ["running"])
        .await;
    let id = fires[0]["id"].as_str().unwrap();
    let result = json!({ "status": "succeeded", "output": "42 rows" });

    // Unsigned, wrongly signed and stale write-backs are refused, and change nothing.
    let path = app.url(&format!("/api/v1/fires/{id}/result"));
    let body = serde_json::to_vec(&result).unwrap();
    let (status, _) = call_raw(
        &path,
        &[("Content-Type", "application/json".into())],
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = write_back(&app, id, result.clone(), "not-the-secret-at-all").await;
    assert_eq!(status, 401);
    let stale = protocol::sign(
        SECRET.as_bytes(),
        chrono::Utc::now().timestamp() - 3_600,
        &body,
    );
    let (status, problem) =
        call_raw(&path, &[(protocol::SIGNATURE_HEADER, stale)], body.clone()).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("tolerance"),
        "{problem}"
    );
    assert_eq!(app.fire(id).await["state"], "running");

    // Malformed: 400 naming the problem.
    let (status, problem) = write_back(&app, id, json!({ "status": "maybe" }), SECRET).await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"].as_str().unwrap().contains("status")
            || problem["detail"].as_str().unwrap().contains("variant"),
        "{problem}"
    );
    // Unknown fire: 404.
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, _) = write_back(&app, &unknown, result.clone(), SECRET).await;
    assert_eq!(status, 404);

    // A result signed for another fire (replayed to this fire's URL) is refused.
    let (status, problem) = write_back(
        &app,
        id,
        json!({ "fire_id": unknown, "status": "succeeded" }),
        SECRET,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("fire_id"),
        "{problem}"
    );

    // First delivery recorded, identical repeat accepted, conflicting one refused.
    let (status, answer) = write_back(&app, id, result.clone(), SECRET).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["repeat"], false);
    let (status, answer) = write_back(&app, id, result.clone(), SECRET).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["repeat"], true);
    let (status, problem) = write_back(
        &app,
        id,
        json!({ "status": "failed", "error": "changed my mind" }),
        SECRET,
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let fire = app.fire(id).await;
    assert_eq!(fire["state"], "succeeded");
    assert_eq!(fire["output"], "42 rows");

    // Output beyond 64 KiB is stored cut and marked.
    let (status, _) = app
        .post(&format!("/api/v1/jobs/{job_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202);
    let fires = app
        .wait_fires(job_id, "a second running fire", |f| {
            count_state(f, "running") == 1
        })
        .await;
    let second = fires.iter().find(|f| f["state"] == "running").unwrap();
    let big = "x".repeat(protocol::MAX_OUTPUT_BYTES + 10);
    let (status, answer) = write_back(
        &app,
        second["id"].as_str().unwrap(),
        json!({ "status": "succeeded", "output": big }),
        SECRET,
    )
    .await;
    // The default API body limit is 256 KiB, so this fits.
    assert_eq!(status, 200, "{answer}");
    let fire = app.fire(second["id"].as_str().unwrap()).await;
    assert_eq!(
        fire["output"].as_str().unwrap().len(),
        protocol::MAX_OUTPUT_BYTES
    );
    assert_eq!(fire["output_truncated"], true);
    hook.stop().await;
    app.stop().await;
}

/// A signed batch write-back (`POST /api/v1/fires/results`), as the SDK sends it.
async fn write_back_batch(app: &TestApp, body: Value, secret: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&body).expect("json");
    let signature = protocol::sign_now(secret.as_bytes(), &body);
    call_raw(
        &app.url(protocol::RESULTS_PATH),
        &[
            ("Content-Type", "application/json".into()),
            (protocol::SIGNATURE_HEADER, signature),
        ],
        body,
    )
    .await
}

#[actix_web::test]
async fn batch_write_back_answers_each_result_as_if_sent_alone() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    hook.state.status.store(202, Ordering::SeqCst);
    let mut running = Vec::new();
    for name in ["batch-a", "batch-b", "batch-c"] {
        let job = app
            .create_job(json!({
                "name": name,
                "target": { "url": hook.url() },
                "triggers": [{ "kind": "immediate" }],
            }))
            .await;
        let job_id = job["id"].as_str().unwrap().to_string();
        let fires = app
            .wait_fires(&job_id, "a running fire", |f| states(f) == ["running"])
            .await;
        running.push(fires[0]["id"].as_str().unwrap().to_string());
    }
    let (a, b, c) = (&running[0], &running[1], &running[2]);
    let (status, _) = write_back(
        &app,
        a,
        json!({ "status": "succeeded", "output": "a" }),
        SECRET,
    )
    .await;
    assert_eq!(status, 200);

    // Refused as a whole: unsigned, empty, too many — nothing changes.
    let one = json!({ "results": [{ "fire_id": b, "status": "succeeded" }] });
    let (status, _) = call_raw(
        &app.url(protocol::RESULTS_PATH),
        &[("Content-Type", "application/json".into())],
        serde_json::to_vec(&one).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, problem) = write_back_batch(&app, json!({ "results": [] }), SECRET).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("results"),
        "{problem}"
    );
    let too_many: Vec<Value> = (0..=protocol::MAX_RESULTS_PER_BATCH)
        .map(|_| json!({ "fire_id": b, "status": "succeeded" }))
        .collect();
    let (status, _) = write_back_batch(&app, json!({ "results": too_many }), SECRET).await;
    assert_eq!(status, 400);
    assert_eq!(app.fire(b).await["state"], "running");

    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, answer) = write_back_batch(
        &app,
        json!({ "results": [
            { "fire_id": a, "status": "succeeded", "output": "a" },
            { "fire_id": b, "status": "succeeded", "output": "b rows" },
            { "fire_id": c, "status": "failed", "error": "c broke" },
            { "fire_id": unknown, "status": "succeeded" },
            { "status": "succeeded" },
            { "fire_id": a, "status": "failed", "error": "changed my mind" },
        ] }),
        SECRET,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 404, 400, 409], "{answer}");
    assert_eq!(results[0]["repeat"], true, "identical repeat: {answer}");
    assert_eq!(results[1]["repeat"], false, "{answer}");
    assert_eq!(results[1]["fire_id"], json!(b));
    assert!(
        results[4]["detail"]
            .as_str()
            .unwrap()
            .starts_with("fire_id"),
        "{answer}"
    );

    let fire_b = app.fire(b).await;
    assert_eq!(fire_b["state"], "succeeded");
    assert_eq!(fire_b["output"], "b rows");
    let fire_c = app.fire(c).await;
    assert_eq!(fire_c["state"], "failed");
    assert_eq!(fire_c["error"], "c broke");
    let fire_a = app.fire(a).await;
    assert_eq!(
        fire_a["state"], "succeeded",
        "a conflicting result never reopens a fire"
    );
    assert_eq!(fire_a["output"], "a");
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn graceful_stop_hands_back_claimed_fires_and_the_next_start_fires_them() {
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    // Claim far ahead, so the fire is recorded and owned long before it is due.
    settings.scheduler.lookahead_ms = 10_000;
    let app = spawn_app_with(settings.clone());
    let hook = Webhook::start();
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(4_000);
    let job = app
        .create_job(json!({
            "name": "later",
            "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "at", "at": at.to_rfc3339() }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let fires = app
        .wait_fires(&job_id, "the claimed fire row", |f| f.len() == 1)
        .await;
    assert_eq!(fires[0]["state"], "fired");
    assert!(
        fires[0]["node"].is_string(),
        "owned by the node: {}",
        fires[0]
    );
    app.stop().await;
    assert!(hook.requests().is_empty(), "not sent before its instant");

    // After the stop the row is still there, released for the next start.
    let app = spawn_app_with(settings);
    let fires = app.fires_of(&job_id).await;
    assert_eq!(fires.len(), 1);
    let fires = app
        .wait_fires(&job_id, "the handed-back fire to run", |f| {
            states(f) == ["succeeded"]
        })
        .await;
    assert!(ms(&fires[0]["dispatched_at"]) >= at.timestamp_millis());
    assert_eq!(hook.requests().len(), 1, "fired exactly once");
    hook.stop().await;
    app.stop().await;
}
