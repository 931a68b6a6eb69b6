//! Executors join through signed heartbeats; the registry shows their load and
//! resources, and heartbeat replies carry cancels to the fires they run.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use cronhook_sdk::{handler_fn, protocol, JobError, Output};
use serde_json::{json, Value};

async fn wait_executors(app: &TestApp, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let (status, page) = app.get(&format!("/api/v1/executors{query}")).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "executors never matched: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn heartbeats_register_executors_with_their_load_and_resources() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let executor = executor_builder(&app, "billing", dir.path())
        .heartbeat_interval(Duration::from_millis(100))
        .capacity(3)
        .handler(
            "invoice",
            handler_fn(|_| async { Ok::<_, JobError>(Output::none()) }),
        )
        .handler(
            "refund",
            handler_fn(|_| async { Ok::<_, JobError>(Output::none()) }),
        )
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("serves");
    let items = wait_executors(&app, "?app=billing", |items| items.len() == 1).await;
    let e = &items[0];
    assert_eq!(e["app"], "billing");
    assert_eq!(e["instance_id"], executor.instance_id());
    assert_eq!(e["address"], served.address());
    assert_eq!(e["handlers"], json!(["invoice", "refund"]));
    assert_eq!(e["capacity"], 3);
    assert_eq!(e["valid"], true);
    assert_eq!(e["task_list"], 0);
    assert!(e["mem_total_bytes"].as_i64().unwrap() > 0, "{e}");
    assert!(e["mem_used_bytes"].as_i64().unwrap() > 0, "{e}");
    let (_, other) = app.get("/api/v1/executors?app=nobody").await;
    assert_eq!(other["items"], json!([]));

    // Unsigned or malformed heartbeats are refused.
    let url = app.url("/api/v1/executors/heartbeat");
    let body = serde_json::to_vec(
        &json!({ "app": "x", "instance_id": "i", "address": "http://127.0.0.1:1", "capacity": 1 }),
    )
    .unwrap();
    let (status, _) = call_raw(&url, &[], body.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = call_raw(
        &url,
        &[(
            protocol::SIGNATURE_HEADER,
            protocol::sign_now(b"wrong-secret-wrong", &body),
        )],
        body,
    )
    .await;
    assert_eq!(status, 401);
    let bad = serde_json::to_vec(
        &json!({ "app": "x", "instance_id": "i", "address": "not a url", "capacity": 1 }),
    )
    .unwrap();
    let (status, problem) = call_raw(
        &url,
        &[(
            protocol::SIGNATURE_HEADER,
            protocol::sign_now(SECRET.as_bytes(), &bad),
        )],
        bad,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("address"),
        "{problem}"
    );

    // A stopped executor goes stale and shows invalid.
    served.stop().await;
    let mut settings = app.settings.clone();
    settings.scheduler.executor_timeout_ms = 500;
    app.stop().await;
    let app = spawn_app_with(settings);
    wait_executors(&app, "?app=billing", |items| {
        items.len() == 1 && items[0]["valid"] == false
    })
    .await;
    app.stop().await;
}

#[actix_web::test]
async fn cancelling_a_running_fire_stops_its_handler_through_the_heartbeat() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let stopped = Arc::new(AtomicUsize::new(0));
    let seen_stop = stopped.clone();
    let executor = executor_builder(&app, "scanner", dir.path())
        .heartbeat_interval(Duration::from_millis(100))
        .default_handler(handler_fn(move |ctx| {
            let stopped = seen_stop.clone();
            async move {
                tokio::select! {
                    _ = ctx.cancelled() => {
                        stopped.fetch_add(1, Ordering::SeqCst);
                        Err(JobError::msg("stopped on request"))
                    }
                    _ = tokio::time::sleep(Duration::from_secs(30)) => Ok(Output::text("finished")),
                }
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("serves");
    let job = app
        .create_job(json!({
            "name": "long-scan",
            "target": { "url": format!("{}/fires", served.address()) },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let job_id = job["id"].as_str().unwrap();
    let fires = app
        .wait_fires(job_id, "a running fire", |f| {
            f.len() == 1 && f[0]["state"] == "running"
        })
        .await;
    let id = fires[0]["id"].as_str().unwrap();

    let (status, fire) = app
        .post(&format!("/api/v1/fires/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{fire}");
    assert_eq!(fire["state"], "cancelled");

    // The handler is told through the heartbeat and stops; its report is kept as a late result.
    let fires = app
        .wait_fires(job_id, "the executor's report after the cancel", |f| {
            f[0]["late_result"].is_object()
        })
        .await;
    assert_eq!(stopped.load(Ordering::SeqCst), 1);
    assert_eq!(fires[0]["state"], "cancelled", "the cancel stands");
    assert_eq!(fires[0]["late_result"]["status"], "failed");
    assert_eq!(fires.len(), 1, "a cancel is not retried");

    let (status, problem) = app
        .post(&format!("/api/v1/fires/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{problem}");
    let (status, _) = app
        .post(
            &format!("/api/v1/fires/{}/cancel", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    served.stop().await;
    app.stop().await;
}
