//! Receiving fires: acknowledgement, authentication, validation, duplicates,
//! capacity, deadline, panics, status, mounting, heartbeats.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use common::*;
use cronhook_sdk::protocol::ResultStatus;
use cronhook_sdk::{handler_fn, Executor, FireContext, JobError, Output};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

#[actix_web::test]
async fn accepted_dispatch_is_acknowledged_and_written_back_signed() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let executor = builder(receiver.port, dir.path())
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    assert_eq!(
        server.address(),
        format!("http://{}/cronhook", server.local_addr())
    );

    let fire = fire(receiver.port, Some("echo"), json!({"x": 1}), LONG);
    let answer = dispatch(server.address(), &fire).await;
    assert_eq!(answer.status, 202);
    assert_eq!(answer.body["status"], "accepted");

    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.status, ResultStatus::Succeeded);
    assert_eq!(result.output.as_deref(), Some(r#"{"x":1}"#));
    assert!(result.started_at.unwrap() <= result.finished_at.unwrap());
    assert_eq!(receiver.bad_signatures(), 0);
    wait_for("the outbox to empty", || {
        (executor.stats().outbox_depth == 0).then_some(())
    })
    .await;
    let stats = executor.stats();
    assert_eq!(
        (stats.accepted, stats.delivered, stats.succeeded),
        (1, 1, 1)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(count(&runs), 1);
    server.stop().await;
}

#[actix_web::test]
async fn bad_signature_is_refused_and_the_handler_does_not_run() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let url = format!("{}/fires", server.address());

    let forged = fire(receiver.port, Some("echo"), json!(1), LONG);
    let body = serde_json::to_vec(&forged).unwrap();
    let wrong = post_raw(&url, body.clone(), Some(b"not-the-secret")).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.content_type, "application/problem+json");
    assert!(wrong.body["detail"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    let unsigned = post_raw(&url, body, None).await;
    assert_eq!(unsigned.status, 401);
    assert!(unsigned.body["detail"]
        .as_str()
        .unwrap()
        .contains("missing"));

    // A valid fire afterwards runs; once its result is in, nothing else ran before it.
    let sentinel = fire(receiver.port, Some("echo"), json!(2), LONG);
    assert_eq!(dispatch(server.address(), &sentinel).await.status, 202);
    receiver.wait_result(sentinel.fire_id).await;
    assert_eq!(count(&runs), 1);
    assert!(receiver.results_for(forged.fire_id).is_empty());
    assert_eq!(executor.stats().accepted, 1);
    server.stop().await;
}

#[actix_web::test]
async fn malformed_or_unroutable_dispatches_are_refused_with_the_reason() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let executor = builder(free_port(), dir.path())
        .without_heartbeats()
        .handler("echo", echo(runs.clone()))
        .handler("other", echo(runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let url = format!("{}/fires", server.address());

    let garbage = post_raw(&url, b"{not json".to_vec(), Some(SECRET)).await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.content_type, "application/problem+json");
    assert!(garbage.body["detail"]
        .as_str()
        .unwrap()
        .contains("invalid dispatch body"));

    let missing = post_raw(&url, br#"{"job":"a/b"}"#.to_vec(), Some(SECRET)).await;
    assert_eq!(missing.status, 400);
    assert!(missing.body["detail"].as_str().unwrap().contains("fire_id"));

    let unknown = fire(1, Some("nope"), json!(null), LONG);
    let answer = dispatch(server.address(), &unknown).await;
    assert_eq!(answer.status, 404);
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"nope\"") && detail.contains("echo, other"),
        "{detail}"
    );

    // Two handlers and no default: an unnamed dispatch has nowhere to go.
    let unnamed = fire(1, None, json!(null), LONG);
    let answer = dispatch(server.address(), &unnamed).await;
    assert_eq!(answer.status, 404);
    assert!(answer.body["detail"]
        .as_str()
        .unwrap()
        .contains("no default handler"));

    let big = post_raw(&url, vec![b' '; 2 * 1024 * 1024], Some(SECRET)).await;
    assert_eq!(big.status, 413);

    assert_eq!(count(&runs), 0);
    assert_eq!(executor.stats().accepted, 0);
    server.stop().await;
}

#[actix_web::test]
async fn a_batch_dispatch_answers_each_fire_as_if_it_came_alone() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let echo_runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .queue_len(1)
        .handler("gated", gated(runs.clone(), gate.clone()))
        .handler("echo", echo(echo_runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let url = format!("{}/fires/batch", server.address());

    let running = fire(receiver.port, Some("gated"), json!(null), LONG);
    let queued = fire(receiver.port, Some("echo"), json!("q"), LONG);
    let unknown = fire(receiver.port, Some("nope"), json!(null), LONG);
    let refused = fire(receiver.port, Some("echo"), json!("r"), LONG);
    let batch = json!({ "fires": [&running, &queued, &running, &unknown, &refused] });
    let body = serde_json::to_vec(&batch).unwrap();

    let unsigned = post_raw(&url, body.clone(), None).await;
    assert_eq!(unsigned.status, 401);
    let garbage = post_raw(&url, b"{\"fires\": 3}".to_vec(), Some(SECRET)).await;
    assert_eq!(garbage.status, 400);
    assert!(garbage.body["detail"]
        .as_str()
        .unwrap()
        .contains("invalid batch dispatch body"));
    let too_many: Vec<_> = (0..257)
        .map(|_| fire(receiver.port, Some("echo"), json!(null), LONG))
        .collect();
    let too_many = serde_json::to_vec(&json!({ "fires": too_many })).unwrap();
    let answer = post_raw(&url, too_many, Some(SECRET)).await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        executor.stats().accepted,
        0,
        "nothing of a refused batch runs"
    );

    let answer = post_raw(&url, body, Some(SECRET)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answers = answer.body["answers"].as_array().unwrap();
    let statuses: Vec<u64> = answers
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    // Running, queued, a repeat of the running one, no such handler, queue full.
    assert_eq!(statuses, [202, 202, 202, 404, 429], "{}", answer.body);
    let ids: Vec<String> = answers
        .iter()
        .map(|a| a["fire_id"].as_str().unwrap().to_string())
        .collect();
    let sent: Vec<String> = [&running, &queued, &running, &unknown, &refused]
        .iter()
        .map(|f| f.fire_id.to_string())
        .collect();
    assert_eq!(ids, sent, "answers come in the order sent");
    assert!(answers[0].get("detail").is_none());
    assert!(answers[3]["detail"].as_str().unwrap().contains("\"nope\""));
    assert!(answers[4]["detail"].as_str().unwrap().contains("busy"));

    open(&gate);
    receiver.wait_result(running.fire_id).await;
    receiver.wait_result(queued.fire_id).await;
    assert_eq!((count(&runs), count(&echo_runs)), (1, 1));
    assert!(receiver.results_for(refused.fire_id).is_empty());
    let stats = executor.stats();
    assert_eq!(
        (stats.dispatch_batches, stats.accepted, stats.rejected_busy),
        (1, 2, 1)
    );
    server.stop().await;
}

#[actix_web::test]
async fn unnamed_dispatch_goes_to_the_default_handler() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let executor = builder(receiver.port, dir.path())
        .handler("named", handler_fn(|_| async { Ok(Output::text("named")) }))
        .default_handler(handler_fn(|ctx: FireContext| async move {
            Ok(Output::text(format!("default:{}", ctx.handler())))
        }))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(receiver.port, None, json!(null), LONG);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.output.as_deref(), Some("default:"));
    server.stop().await;
}

#[actix_web::test]
async fn duplicate_dispatch_runs_once() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let sentinel_runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .handler("gated", gated(runs.clone(), gate.clone()))
        .handler("echo", echo(sentinel_runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();

    let first = fire(receiver.port, Some("gated"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &first).await.status, 202);
    let again = dispatch(server.address(), &first).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["status"], "duplicate");
    // With one slot, a second run of `first` would come before this sentinel finishes.
    let sentinel = fire(receiver.port, Some("echo"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &sentinel).await.status, 202);
    open(&gate);
    receiver.wait_result(sentinel.fire_id).await;
    receiver.wait_result(first.fire_id).await;

    // Once finished, the id is still remembered.
    assert_eq!(
        dispatch(server.address(), &first).await.body["status"],
        "duplicate"
    );
    let sentinel = fire(receiver.port, Some("echo"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &sentinel).await.status, 202);
    receiver.wait_result(sentinel.fire_id).await;

    assert_eq!(count(&runs), 1);
    assert_eq!(receiver.results_for(first.fire_id).len(), 1);
    assert_eq!(executor.stats().accepted, 3);
    server.stop().await;
}

#[actix_web::test]
async fn full_capacity_and_queue_answer_429() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .queue_len(1)
        .handler("gated", gated(runs.clone(), gate.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();

    let running = fire(receiver.port, Some("gated"), json!(null), LONG);
    let queued = fire(receiver.port, Some("gated"), json!(null), LONG);
    let refused = fire(receiver.port, Some("gated"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &running).await.status, 202);
    assert_eq!(dispatch(server.address(), &queued).await.status, 202);
    let busy = dispatch(server.address(), &refused).await;
    assert_eq!(busy.status, 429);
    assert!(busy.body["detail"].as_str().unwrap().contains("queue"));

    wait_for("one running, one queued", || {
        let s = executor.stats();
        (s.running == 1 && s.queued == 1).then_some(())
    })
    .await;
    let health = get(&format!("{}/healthz", server.address()), false).await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body,
        json!({"status": "ok", "running": 1, "queued": 1, "capacity": 1})
    );

    open(&gate);
    receiver.wait_result(running.fire_id).await;
    receiver.wait_result(queued.fire_id).await;
    assert_eq!(count(&runs), 2);
    assert!(receiver.results_for(refused.fire_id).is_empty());
    assert_eq!(executor.stats().rejected_busy, 1);
    // The refused fire may be sent again once there is room.
    assert_eq!(dispatch(server.address(), &refused).await.status, 202);
    receiver.wait_result(refused.fire_id).await;
    server.stop().await;
}

#[actix_web::test]
async fn deadline_cancels_the_handler_and_reports_a_timeout() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let executor = builder(receiver.port, dir.path())
        .handler(
            "slow",
            handler_fn(|ctx: FireContext| async move {
                ctx.log().info("sleeping far past the deadline");
                tokio::time::sleep(Duration::from_secs(120)).await;
                Ok(Output::text("too late"))
            }),
        )
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(
        receiver.port,
        Some("slow"),
        json!(null),
        Duration::from_millis(300),
    );
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.status, ResultStatus::Failed);
    let error = result.error.unwrap();
    assert!(error.starts_with("timeout"), "{error}");
    assert_eq!(executor.stats().running, 0);
    server.stop().await;
}

#[actix_web::test]
async fn panic_becomes_a_failed_result_and_the_executor_keeps_working() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .handler(
            "panics",
            handler_fn(|ctx: FireContext| async move {
                let n: u32 = ctx.payload()?;
                if n == 42 {
                    panic!("boom {n}");
                }
                Ok::<_, JobError>(Output::none())
            }),
        )
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();

    let boom = fire(receiver.port, Some("panics"), json!(42), LONG);
    assert_eq!(dispatch(server.address(), &boom).await.status, 202);
    let result = receiver.wait_result(boom.fire_id).await;
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("handler panicked: boom 42"));

    let wrong_payload = fire(receiver.port, Some("panics"), json!("text"), LONG);
    assert_eq!(dispatch(server.address(), &wrong_payload).await.status, 202);
    let result = receiver.wait_result(wrong_payload.fire_id).await;
    assert!(result.error.unwrap().contains("payload does not match"));

    let after = fire(receiver.port, Some("echo"), json!("still here"), LONG);
    assert_eq!(dispatch(server.address(), &after).await.status, 202);
    let result = receiver.wait_result(after.fire_id).await;
    assert_eq!(result.status, ResultStatus::Succeeded);
    assert_eq!(result.output.as_deref(), Some("\"still here\""));
    server.stop().await;
}

#[actix_web::test]
async fn fire_status_reports_what_the_instance_knows() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .handler("gated", gated(runs.clone(), gate.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(receiver.port, Some("gated"), json!(null), LONG);
    let status_url = format!("{}/fires/{}", server.address(), fire.fire_id);

    assert_eq!(get(&status_url, true).await.status, 404);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    wait_for("the fire to run", || (count(&runs) == 1).then_some(())).await;
    let running = get(&status_url, true).await;
    assert_eq!(running.status, 200);
    assert_eq!(running.body["state"], "running");
    assert_eq!(get(&status_url, false).await.status, 401);

    open(&gate);
    receiver.wait_result(fire.fire_id).await;
    wait_for("delivery", || {
        (executor.stats().delivered == 1).then_some(())
    })
    .await;
    let answer = get(&status_url, true).await;
    assert_eq!(answer.body["delivered"], true);
    assert_eq!(answer.body["state"], "finished");
    assert_eq!(answer.body["result"]["status"], "succeeded");
    let bad = get(&format!("{}/fires/not-a-uuid", server.address()), true).await;
    assert_eq!(bad.status, 400);
    server.stop().await;
}

#[actix_web::test]
async fn mounted_on_a_host_app_beside_its_own_routes() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let port = free_port();
    let executor = builder(receiver.port, dir.path())
        .prefix("/jobs")
        .advertise_address(format!("http://127.0.0.1:{port}/jobs"))
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let mounted = executor.clone();
    let server = HttpServer::new(move || {
        App::new()
            .service(mounted.service())
            .route("/hello", web::get().to(|| async { "hi" }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let address = format!("http://127.0.0.1:{port}/jobs");

    let fire = fire(receiver.port, Some("echo"), json!([1, 2]), LONG);
    assert_eq!(dispatch(&address, &fire).await.status, 202);
    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.output.as_deref(), Some("[1,2]"));

    let host_route = awc::Client::default()
        .get(format!("http://127.0.0.1:{port}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(host_route.status(), 200);
    let health = get(&format!("{address}/healthz"), false).await;
    assert_eq!(health.body["capacity"], 4);
    // The heartbeat announces the advertised address.
    let beat = wait_for("a heartbeat", || receiver.heartbeats().into_iter().next()).await;
    assert_eq!(beat.address, address);

    let report = executor.shutdown().await;
    assert!(report.finished_in_grace);
    assert_eq!(report.undelivered, 0);
    assert_eq!(dispatch(&address, &fire).await.status, 503);
    handle.stop(true).await;
}

#[actix_web::test]
async fn heartbeats_describe_the_executor_and_carry_cancels() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .instance_id("instance-7")
        .capacity(1)
        .queue_len(2)
        .handler("gated", gated(runs.clone(), gate.clone()))
        .handler("echo", echo(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();

    let beat = wait_for("a heartbeat", || receiver.heartbeats().into_iter().next()).await;
    assert_eq!(beat.app, "test-app");
    assert_eq!(beat.instance_id, "instance-7");
    assert_eq!(beat.address, server.address());
    assert_eq!(beat.handlers, vec!["echo".to_owned(), "gated".to_owned()]);
    assert_eq!(beat.capacity, 1);
    assert!(beat.mem_total_bytes > 0);
    assert_eq!(beat.sdk_version, cronhook_sdk::SDK_VERSION);
    assert_eq!(
        beat.features,
        ["dispatch_batch"],
        "batch dispatches are offered by default"
    );

    let running = fire(receiver.port, Some("gated"), json!(null), LONG);
    let queued = fire(receiver.port, Some("gated"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &running).await.status, 202);
    assert_eq!(dispatch(server.address(), &queued).await.status, 202);
    wait_for("a heartbeat with 1 running and 1 queued", || {
        receiver
            .heartbeats()
            .iter()
            .any(|b| b.running == 1 && b.queued == 1)
            .then_some(())
    })
    .await;
    receiver
        .state
        .cancel
        .lock()
        .unwrap()
        .extend([running.fire_id, queued.fire_id]);
    for id in [running.fire_id, queued.fire_id] {
        let result = receiver.wait_result(id).await;
        assert_eq!(result.status, ResultStatus::Failed);
        assert_eq!(result.error.as_deref(), Some("cancelled"));
    }
    assert_eq!(count(&runs), 1, "the queued fire never started");
    assert_eq!(receiver.bad_signatures(), 0);
    server.stop().await;
}

#[actix_web::test]
async fn a_scheduler_without_heartbeats_does_not_disturb_fires() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    // Heartbeats go to a port nothing listens on; fires still work.
    let executor = builder(free_port(), dir.path())
        .handler("echo", echo(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(receiver.port, Some("echo"), json!("ok"), LONG);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    assert_eq!(
        receiver.wait_result(fire.fire_id).await.status,
        ResultStatus::Succeeded
    );
    server.stop().await;
}

#[test]
fn build_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let h = || handler_fn(|_| async { Ok(Output::none()) });
    let b = || Executor::builder("http://127.0.0.1:1", "app", SECRET).outbox_dir(dir.path());
    assert!(matches!(
        b().build(),
        Err(cronhook_sdk::BuildError::NoHandlers)
    ));
    assert!(matches!(
        b().handler("a", h()).capacity(0).build(),
        Err(cronhook_sdk::BuildError::ZeroCapacity)
    ));
    assert!(matches!(
        b().handler("a", h()).prefix("jobs/").build(),
        Err(cronhook_sdk::BuildError::InvalidPrefix(_))
    ));
    assert!(matches!(
        Executor::builder("localhost:7070", "app", SECRET)
            .handler("a", h())
            .build(),
        Err(cronhook_sdk::BuildError::InvalidSchedulerUrl(_))
    ));
}
