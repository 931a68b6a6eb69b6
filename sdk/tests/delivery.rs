//! Getting results to the scheduler: outages, restarts, graceful shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use cronhook_sdk::protocol::ResultStatus;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn outbox_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

#[actix_web::test]
async fn result_reaches_a_receiver_that_was_down_for_a_while() {
    init_logs();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let executor = builder(port, dir.path())
        .without_heartbeats()
        .handler("echo", echo(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(port, Some("echo"), json!("kept"), LONG);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);

    // Nobody listens: the result waits on disk while attempts fail.
    wait_for("several failed attempts", || {
        (executor.stats().delivery_retries >= 3).then_some(())
    })
    .await;
    assert_eq!(outbox_files(dir.path()), 1);
    assert_eq!(executor.stats().outbox_depth, 1);

    let receiver = Receiver::start(port);
    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.output.as_deref(), Some("\"kept\""));
    wait_for("the outbox to empty", || {
        (outbox_files(dir.path()) == 0 && executor.stats().outbox_depth == 0).then_some(())
    })
    .await;
    assert_eq!(executor.stats().delivered, 1);
    server.stop().await;
}

#[actix_web::test]
async fn server_errors_are_retried_and_final_refusals_are_dropped_with_a_count() {
    init_logs();
    let receiver = Receiver::start(0);
    receiver.state.answer.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let executor = builder(receiver.port, dir.path())
        .handler("echo", echo(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();

    let retried = fire(receiver.port, Some("echo"), json!(1), LONG);
    assert_eq!(dispatch(server.address(), &retried).await.status, 202);
    wait_for("retries on 503", || {
        (executor.stats().delivery_retries >= 2).then_some(())
    })
    .await;
    receiver.state.answer.store(200, Ordering::SeqCst);
    receiver.wait_result(retried.fire_id).await;

    receiver.state.answer.store(409, Ordering::SeqCst);
    let refused = fire(receiver.port, Some("echo"), json!(2), LONG);
    assert_eq!(dispatch(server.address(), &refused).await.status, 202);
    wait_for("the refusal", || {
        (executor.stats().delivery_failures == 1).then_some(())
    })
    .await;
    assert_eq!(outbox_files(dir.path()), 0);
    assert_eq!(executor.stats().outbox_depth, 0);
    server.stop().await;
}

#[actix_web::test]
async fn restarted_executor_delivers_what_its_outbox_holds() {
    init_logs();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let first_runs = Arc::new(AtomicUsize::new(0));
    let first = builder(port, dir.path())
        .without_heartbeats()
        .flush_timeout(Duration::from_millis(200))
        .handler("echo", echo(first_runs.clone()))
        .build()
        .unwrap();
    let server = first.serve("127.0.0.1:0").unwrap();
    let fire = fire(
        port,
        Some("echo"),
        json!({"from": "before the restart"}),
        LONG,
    );
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    wait_for("a failed attempt", || {
        (first.stats().delivery_retries >= 1).then_some(())
    })
    .await;

    let report = server.stop().await;
    assert_eq!(report.undelivered, 1);
    assert_eq!(outbox_files(dir.path()), 1);

    let receiver = Receiver::start(port);
    let second_runs = Arc::new(AtomicUsize::new(0));
    let second = builder(port, dir.path())
        .without_heartbeats()
        .handler("echo", echo(second_runs.clone()))
        .build()
        .unwrap();
    let result = receiver.wait_result(fire.fire_id).await;
    assert_eq!(result.status, ResultStatus::Succeeded);
    assert_eq!(
        result.output.as_deref(),
        Some(r#"{"from":"before the restart"}"#)
    );
    // The counters move last, after the outbox entry is gone: waiting on them (not on
    // the outbox file) is what sees the delivery's bookkeeping done.
    wait_for("the delivery to be counted", || {
        (second.stats().delivered >= 1).then_some(())
    })
    .await;
    assert_eq!(second.stats().delivered, 1);
    assert_eq!(outbox_files(dir.path()), 0);
    assert_eq!(count(&first_runs), 1);
    assert_eq!(count(&second_runs), 0);
    second.shutdown().await;
}

#[actix_web::test]
async fn restarted_executor_does_not_rerun_a_fire_whose_result_is_pending() {
    init_logs();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let first = builder(port, dir.path())
        .without_heartbeats()
        .flush_timeout(Duration::from_millis(100))
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let server = first.serve("127.0.0.1:0").unwrap();
    let fire = fire(port, Some("echo"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    wait_for("a failed attempt", || {
        (first.stats().delivery_retries >= 1).then_some(())
    })
    .await;
    server.stop().await;

    // Still no receiver: the result stays pending in the new instance too.
    let second = builder(port, dir.path())
        .without_heartbeats()
        .handler("echo", echo(runs.clone()))
        .build()
        .unwrap();
    let server = second.serve("127.0.0.1:0").unwrap();
    let again = dispatch(server.address(), &fire).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["status"], "duplicate");
    let status = get(
        &format!("{}/fires/{}", server.address(), fire.fire_id),
        true,
    )
    .await;
    assert_eq!(status.body["state"], "finished");
    assert_eq!(status.body["result"]["output"], "null");
    assert_eq!(count(&runs), 1);
    assert_eq!(second.stats().accepted, 0);
    server.stop().await;
}

#[actix_web::test]
async fn graceful_shutdown_refuses_new_fires_and_finishes_running_ones() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = gate();
    let executor = builder(receiver.port, dir.path())
        .capacity(1)
        .handler("gated", gated(runs.clone(), gate.clone()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let address = server.address().to_owned();

    let running = fire(receiver.port, Some("gated"), json!(null), LONG);
    let queued = fire(receiver.port, Some("gated"), json!(null), LONG);
    assert_eq!(dispatch(&address, &running).await.status, 202);
    assert_eq!(dispatch(&address, &queued).await.status, 202);
    wait_for("the first fire to run", || {
        (count(&runs) == 1).then_some(())
    })
    .await;

    let stopping = actix_rt::spawn(server.stop());
    wait_for("shutdown to begin", || {
        executor.stats().queued.eq(&0).then_some(())
    })
    .await;
    let late = fire(receiver.port, Some("gated"), json!(null), LONG);
    let refused = dispatch(&address, &late).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.content_type, "application/problem+json");
    let health = get(&format!("{address}/healthz"), false).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.body["status"], "draining");
    // The queued fire is handed back as failed at once; the running one still runs.
    let handed_back = receiver.wait_result(queued.fire_id).await;
    assert!(handed_back.error.unwrap().starts_with("not started"));
    assert!(receiver.results_for(running.fire_id).is_empty());
    assert!(!stopping.is_finished());

    open(&gate);
    let report = stopping.await.unwrap();
    assert!(report.finished_in_grace);
    assert_eq!(
        (report.cancelled, report.not_started, report.undelivered),
        (0, 1, 0)
    );
    let result = receiver.results_for(running.fire_id);
    assert_eq!(result.len(), 1, "delivered before shutdown returned");
    assert_eq!(result[0].output.as_deref(), Some("passed"));
    assert_eq!(count(&runs), 1);
    assert!(receiver.results_for(late.fire_id).is_empty());
    // The listener is closed.
    assert!(awc::Client::default()
        .get(format!("{address}/healthz"))
        .send()
        .await
        .is_err());
}

#[actix_web::test]
async fn shutdown_cancels_handlers_that_outlive_the_grace_period() {
    init_logs();
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let executor = builder(receiver.port, dir.path())
        .shutdown_grace(Duration::from_millis(200))
        .handler("stuck", gated(runs.clone(), gate()))
        .build()
        .unwrap();
    let server = executor.serve("127.0.0.1:0").unwrap();
    let fire = fire(receiver.port, Some("stuck"), json!(null), LONG);
    assert_eq!(dispatch(server.address(), &fire).await.status, 202);
    wait_for("the fire to run", || (count(&runs) == 1).then_some(())).await;

    let report = server.stop().await;
    assert!(!report.finished_in_grace);
    assert_eq!(report.cancelled, 1);
    let result = receiver.results_for(fire.fire_id);
    assert_eq!(result.len(), 1);
    assert!(result[0]
        .error
        .as_deref()
        .unwrap()
        .contains("shut down before the handler finished"));
}
