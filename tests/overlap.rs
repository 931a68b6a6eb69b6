//! Per-job concurrency when a fire is due while another still runs: allow, forbid,
//! replace (the running one is cancelled through its executor), queue (one at a time,
//! in order).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use cronhook_sdk::{handler_fn, JobError, Output};
use serde_json::{json, Value};

#[actix_web::test]
async fn forbid_replace_and_queue_behave_as_stated() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let active = Arc::new(AtomicUsize::new(0));
    let max_active = Arc::new(AtomicUsize::new(0));
    let order: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (a, m, o) = (active.clone(), max_active.clone(), order.clone());
    let executor = executor_builder(&app, "overlap", dir.path())
        .heartbeat_interval(Duration::from_millis(100))
        .capacity(8)
        .default_handler(handler_fn(move |ctx| {
            let (active, max_active, order) = (a.clone(), m.clone(), o.clone());
            async move {
                let n = ctx.payload_value()["n"].as_u64().unwrap_or(0);
                order.lock().unwrap().push((ctx.job().to_string(), n));
                // Only the queued job's overlap is measured.
                let queued = ctx.job() == "default/queue";
                if queued {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    max_active.fetch_max(now, Ordering::SeqCst);
                }
                let ms = ctx.payload_value()["sleep_ms"].as_u64().unwrap_or(300);
                let result = tokio::select! {
                    _ = ctx.cancelled() => Err(JobError::msg("cancelled")),
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Output::text(format!("done {n}"))),
                };
                if queued {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
                result
            }
        }))
        .build()
        .expect("executor builds");
    let served = executor.serve("127.0.0.1:0").expect("serves");
    let url = format!("{}/fires", served.address());
    let job = |name: &str, concurrency: &str| json!({ "name": name, "target": { "url": url }, "concurrency": concurrency });
    let run = |id: String, payload: Value| {
        let app = &app;
        async move {
            let (status, fire) = app
                .post(
                    &format!("/api/v1/jobs/{id}/run"),
                    json!({ "payload": payload }),
                )
                .await;
            assert_eq!(status, 202, "{fire}");
            fire["id"].as_str().unwrap().to_string()
        }
    };

    // forbid: the second fire is recorded skipped while the first runs.
    let forbid = app.create_job(job("forbid", "forbid")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = run(forbid.clone(), json!({ "sleep_ms": 2000 })).await;
    app.wait_fires(&forbid, "the first running", |f| {
        f.iter()
            .any(|f| f["id"] == first.as_str() && f["state"] == "running")
    })
    .await;
    let second = run(forbid.clone(), json!({})).await;
    let fires = app
        .wait_fires(&forbid, "the skip", |f| {
            f.iter()
                .any(|f| f["id"] == second.as_str() && f["state"] == "skipped")
        })
        .await;
    assert!(fires
        .iter()
        .any(|f| f["id"] == first.as_str() && f["state"] != "skipped"));

    // replace: the running fire is cancelled (its handler stops), the new one runs.
    let replace = app.create_job(job("replace", "replace")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = run(replace.clone(), json!({ "sleep_ms": 30000 })).await;
    app.wait_fires(&replace, "the old one running", |f| {
        f.iter()
            .any(|f| f["id"] == old.as_str() && f["state"] == "running")
    })
    .await;
    let new = run(replace.clone(), json!({ "sleep_ms": 100 })).await;
    let fires = app
        .wait_fires(&replace, "the replacement", |f| {
            f.iter().any(|f| {
                f["id"] == old.as_str() && f["state"] == "cancelled" && f["late_result"].is_object()
            }) && f
                .iter()
                .any(|f| f["id"] == new.as_str() && f["state"] == "succeeded")
        })
        .await;
    let old_fire = fires.iter().find(|f| f["id"] == old.as_str()).unwrap();
    assert!(
        old_fire["error"].as_str().unwrap().contains("replaced"),
        "{old_fire}"
    );

    // queue: three fires run one after another, in order.
    let queue = app.create_job(job("queue", "queue")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=3 {
        run(queue.clone(), json!({ "n": n, "sleep_ms": 400 })).await;
    }
    app.wait_fires(&queue, "three queued fires done", |f| {
        f.iter().filter(|f| f["state"] == "succeeded").count() == 3
    })
    .await;
    assert_eq!(max_active.load(Ordering::SeqCst), 1, "one at a time");
    let ran: Vec<u64> = order
        .lock()
        .unwrap()
        .iter()
        .filter(|(job, _)| job == "default/queue")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(ran, vec![1, 2, 3], "in order");
    served.stop().await;
    app.stop().await;
}
