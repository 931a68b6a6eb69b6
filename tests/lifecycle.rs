//! Job lifecycle rules, calendars, the execution plan, child jobs, failure alerts and
//! fire retry — through the REST API of a real node on a real SQLite file, with a real
//! SDK executor and a plain webhook over 127.0.0.1.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use common::*;
use cronhook_sdk::{handler_fn, protocol, JobError, Output};
use serde_json::{json, Value};

fn count_state(fires: &[Value], state: &str) -> usize {
    fires.iter().filter(|f| f["state"] == state).count()
}

/// An SDK executor whose handler takes `sleep_ms` from the payload (default 10 ms).
fn slow_executor(app: &TestApp, dir: &std::path::Path) -> cronhook_sdk::ServeHandle {
    executor_builder(app, "worker", dir)
        .default_handler(handler_fn(|ctx| async move {
            let ms = ctx.payload_value()["sleep_ms"].as_u64().unwrap_or(10);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, JobError>(Output::text("done"))
        }))
        .build()
        .expect("executor builds")
        .serve("127.0.0.1:0")
        .expect("executor serves")
}

async fn job_state(app: &TestApp, id: &str) -> String {
    let (status, job) = app.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    job["state"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn pausing_a_running_job_shows_pausing_then_paused_and_delete_waits_for_it() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let served = slow_executor(&app, dir.path());
    let job = app
        .create_job(json!({
            "name": "long",
            "target": { "url": format!("{}/fires", served.address()) },
            "payload": { "sleep_ms": 1500 },
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (status, _) = app.post(&format!("/api/v1/jobs/{id}/run"), json!({})).await;
    assert_eq!(status, 202);
    let fires = app
        .wait_fires(&id, "the fire running", |f| count_state(f, "running") == 1)
        .await;
    // Only a finished fire can be retried.
    let (status, refused) = app
        .post(
            &format!("/api/v1/fires/{}/retry", fires[0]["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");

    let (status, paused) = app
        .post(&format!("/api/v1/jobs/{id}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "pausing", "{paused}");
    // Deleting it now is refused, naming why.
    let (status, refused) = app
        .call("DELETE", &format!("/api/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, 409, "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("1 running fire"), "{refused}");
    assert!(
        detail.contains(fires[0]["id"].as_str().unwrap()),
        "the message names the running fire: {refused}"
    );
    app.wait_fires(&id, "the fire finished", |f| {
        count_state(f, "succeeded") == 1
    })
    .await;
    assert_eq!(job_state(&app, &id).await, "paused");
    let (status, _) = app
        .call("DELETE", &format!("/api/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, 204);
    served.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn immediate_jobs_cannot_be_paused_and_groups_pause_together() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let once = app
        .create_job(json!({
            "group": "nightly", "name": "once", "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "immediate" }],
        }))
        .await;
    let once_id = once["id"].as_str().unwrap();
    let (status, refused) = app
        .post(&format!("/api/v1/jobs/{once_id}/pause"), json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("immediate"),
        "{refused}"
    );

    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let job = app
            .create_job(json!({
                "group": "nightly", "name": name, "mode": "sync",
                "target": { "url": hook.url() },
                "triggers": [{ "kind": "cron", "expression": "0 0 3 * * ?" }],
            }))
            .await;
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (status, answer) = app.post("/api/v1/groups/nightly/pause", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["jobs"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(answer["refused"][0]["job"], "nightly/once", "{answer}");
    for id in &ids {
        assert_eq!(job_state(&app, id).await, "paused");
    }
    let (status, answer) = app.post("/api/v1/groups/nightly/resume", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    for id in &ids {
        let (_, job) = app.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "active");
        assert!(job["next_fire_at"].is_string(), "{job}");
    }
    let (status, _) = app.post("/api/v1/groups/nosuch/pause", json!({})).await;
    assert_eq!(status, 404);
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn updating_the_schedule_drops_pending_fires_and_bumps_the_version() {
    let dir = temp_dir();
    let mut settings = test_settings(dir.path());
    // Fires are recorded 5 s ahead, so some are pending when the update lands.
    settings.scheduler.lookahead_ms = 5_000;
    let app = spawn_app_with(settings);
    let hook = Webhook::start();
    let body = |expression: &str| {
        json!({
            "name": "ticker", "mode": "sync",
            "target": { "url": hook.url() },
            "triggers": [{ "kind": "cron", "expression": expression }],
        })
    };
    let job = app.create_job(body("* * * * * ?")).await;
    let id = job["id"].as_str().unwrap().to_string();
    app.wait_fires(&id, "pending fires", |f| count_state(f, "fired") >= 3)
        .await;
    let (status, updated) = app
        .call(
            "PUT",
            &format!("/api/v1/jobs/{id}"),
            Some(body("0 0 3 * * ?")),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    let updated_at = ms(&updated["updated_at"]);
    let fires = app.fires_of(&id).await;
    let pending_old: Vec<&Value> = fires
        .iter()
        .filter(|f| {
            f["state"] == "fired"
                && f["job_version"] == 1
                && ms(&f["scheduled_at"]) > updated_at + 1_000
        })
        .collect();
    assert!(
        pending_old.is_empty(),
        "old pending fires survived: {pending_old:#?}"
    );
    assert!(
        ms(&updated["next_fire_at"]) > updated_at + 60_000,
        "next fire follows the new schedule: {updated}"
    );
    hook.stop().await;
    app.stop().await;
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[actix_web::test]
async fn calendars_remove_excluded_instants_from_the_plan_and_from_fires() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let tomorrow = (Utc::now() + Days::days(1)).date_naive();
    let calendar = json!({
        "name": "no-tomorrow",
        "exclude": { "dates": [tomorrow.format("%Y-%m-%d").to_string()] },
    });
    let (status, created) = app.post("/api/v1/calendars", calendar.clone()).await;
    assert_eq!(status, 201, "{created}");
    let (status, dup) = app.post("/api/v1/calendars", calendar).await;
    assert_eq!(status, 409, "{dup}");
    let (status, bad) = app
        .post(
            "/api/v1/calendars",
            json!({ "name": "bad", "exclude": { "daily": [{ "from": "25:00", "to": "01:00" }] } }),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .starts_with("exclude.daily[0].from"),
        "{bad}"
    );

    // A job naming a calendar that does not exist is refused, naming the field.
    let (status, refused) = app
        .post(
            "/api/v1/jobs",
            json!({ "name": "x", "mode": "sync", "target": { "url": hook.url() },
                    "triggers": [{ "kind": "cron", "expression": "0 0 * * * ?", "calendar": "nope" }] }),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .starts_with("triggers[0].calendar"),
        "{refused}"
    );

    let job = app
        .create_job(json!({
            "name": "six-hourly", "mode": "sync", "target": { "url": hook.url() },
            "triggers": [{ "kind": "cron", "expression": "0 0 */6 * * ?", "calendar": "no-tomorrow" }],
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let from = rfc3339(Utc::now());
    let until = rfc3339(
        tomorrow
            .succ_opt()
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc(),
    );
    let plan_path = format!("/api/v1/jobs/{id}/plan?from={from}&until={until}");
    let (status, plan) = app.get(&plan_path).await;
    assert_eq!(status, 200, "{plan}");
    let on_tomorrow = |plan: &Value| {
        plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| {
                ms(&i["at"])
                    >= tomorrow
                        .and_hms_opt(0, 0, 0)
                        .unwrap()
                        .and_utc()
                        .timestamp_millis()
            })
            .count()
    };
    assert_eq!(on_tomorrow(&plan), 0, "tomorrow is excluded: {plan:#}");
    assert_eq!(plan["truncated"], false);
    // Deleting a calendar in use is refused, naming the job.
    let (status, refused) = app
        .call("DELETE", "/api/v1/calendars/no-tomorrow", None)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("default/six-hourly"),
        "{refused}"
    );
    // Lifting the exclusion brings tomorrow's four instants back.
    let (status, _) = app
        .call(
            "PUT",
            "/api/v1/calendars/no-tomorrow",
            Some(json!({ "name": "no-tomorrow" })),
        )
        .await;
    assert_eq!(status, 200);
    let (_, plan) = app.get(&plan_path).await;
    assert_eq!(on_tomorrow(&plan), 4, "{plan:#}");

    // Actual fires: a calendar excluding even seconds leaves an every-second job the odd ones.
    let (status, _) = app
        .post(
            "/api/v1/calendars",
            json!({ "name": "odd-only", "exclude": { "cron": ["0/2 * * * * ?"] } }),
        )
        .await;
    assert_eq!(status, 201);
    let odd = app
        .create_job(json!({
            "name": "odd", "mode": "sync", "target": { "url": hook.url() },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?", "calendar": "odd-only" }],
        }))
        .await;
    let odd_id = odd["id"].as_str().unwrap();
    let fires = app
        .wait_fires(odd_id, "four fires", |f| count_state(f, "succeeded") >= 4)
        .await;
    for fire in &fires {
        let second = ms(&fire["scheduled_at"]) / 1000;
        assert_eq!(second % 2, 1, "an excluded instant fired: {fire}");
    }
    let (_, plan) = app
        .get(&format!("/api/v1/jobs/{odd_id}/plan?limit=3"))
        .await;
    assert_eq!(plan["items"].as_array().unwrap().len(), 3, "{plan}");
    assert_eq!(plan["truncated"], true, "{plan}");
    for item in plan["items"].as_array().unwrap() {
        assert_eq!(ms(&item["at"]) / 1000 % 2, 1, "{item}");
    }
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn the_plan_covers_all_jobs_and_skips_paused_ones() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let mut ids = Vec::new();
    for name in ["hourly-a", "hourly-b"] {
        let job = app
            .create_job(json!({
                "name": name, "mode": "sync", "target": { "url": hook.url() },
                "triggers": [{ "kind": "cron", "expression": "0 0 * * * ?", "time_zone": "Asia/Tokyo" }],
            }))
            .await;
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (status, plan) = app.get("/api/v1/plan").await;
    assert_eq!(status, 200, "{plan}");
    let items = plan["items"].as_array().unwrap();
    let of = |key: &str| items.iter().filter(|i| i["job"] == key).count();
    // Default window: now to the end of tomorrow in the job's zone: 24 to 48 hourly instants.
    assert!((24..=48).contains(&of("default/hourly-a")), "{plan:#}");
    assert_eq!(of("default/hourly-a"), of("default/hourly-b"));
    let times: Vec<i64> = items.iter().map(|i| ms(&i["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered by instant");
    let (status, _) = app
        .post(&format!("/api/v1/jobs/{}/pause", ids[1]), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, plan) = app.get("/api/v1/plan").await;
    assert!(
        plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["job"] != "default/hourly-b"),
        "a paused job is not planned: {plan:#}"
    );
    let (_, job_plan) = app.get(&format!("/api/v1/jobs/{}/plan", ids[1])).await;
    assert_eq!(job_plan["job_state"], "paused");
    assert_eq!(job_plan["items"].as_array().unwrap().len(), 0);
    let (status, bad) = app.get("/api/v1/plan?limit=0").await;
    assert_eq!(status, 400, "{bad}");
    hook.stop().await;
    app.stop().await;
}

/// The plan of all jobs reads only the jobs due soonest; it must still be exactly the
/// earliest instants of every job (checked against each job's own plan), including
/// when many jobs share the instant at the cut.
#[actix_web::test]
async fn the_plan_of_all_jobs_is_the_earliest_instants_of_every_job() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let mut ids = Vec::new();
    // 20 jobs sharing one minute (created in reverse name order, so the order the
    // index lists them in differs from the plan's job order), 10 at minutes of their
    // own, one every minute.
    let jobs = (0..20)
        .rev()
        .map(|i| (format!("same-{i:02}"), 7))
        .chain((0..10).map(|i| (format!("own-{i:02}"), i * 6 + 1)));
    for (name, minute) in jobs {
        let job = app
            .create_job(json!({
                "name": name, "mode": "sync",
                "target": { "url": "http://127.0.0.1:9/hook" },
                "triggers": [{ "kind": "cron", "expression": format!("0 {minute} * * * ?") }],
            }))
            .await;
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let job = app
        .create_job(json!({
            "name": "minutely", "mode": "sync",
            "target": { "url": "http://127.0.0.1:9/hook" },
            "triggers": [{ "kind": "cron", "expression": "0 * * * * ?" }],
        }))
        .await;
    ids.push(job["id"].as_str().unwrap().to_string());

    let key = |item: &Value| (ms(&item["at"]), item["job"].as_str().unwrap().to_string());
    let every_job_plan = || async {
        let mut every = Vec::new();
        for id in &ids {
            let (status, plan) = app
                .get(&format!("/api/v1/jobs/{id}/plan?limit=10000"))
                .await;
            assert_eq!(status, 200, "{plan}");
            every.extend(plan["items"].as_array().unwrap().iter().map(key));
        }
        every.sort();
        every
    };
    for limit in [5usize, 25, 70] {
        // The window starts now: compare only when no instant passed meanwhile.
        for attempt in 1.. {
            let before = every_job_plan().await;
            let (status, plan) = app.get(&format!("/api/v1/plan?limit={limit}")).await;
            assert_eq!(status, 200, "{plan}");
            if every_job_plan().await != before && attempt < 5 {
                continue;
            }
            let got: Vec<_> = plan["items"].as_array().unwrap().iter().map(key).collect();
            assert_eq!(got, before[..limit].to_vec(), "limit {limit}");
            assert_eq!(plan["truncated"], true, "limit {limit}");
            break;
        }
    }
    // Only the 20 that share an instant left: the first 5 are the first 5 by name,
    // though the soonest-trigger read sees them in another order.
    for id in &ids[20..] {
        let (status, _) = app
            .post(&format!("/api/v1/jobs/{id}/pause"), json!({}))
            .await;
        assert_eq!(status, 200);
    }
    let (_, plan) = app.get("/api/v1/plan?limit=5").await;
    let names: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "default/same-00",
            "default/same-01",
            "default/same-02",
            "default/same-03",
            "default/same-04"
        ],
        "{plan:#}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn child_jobs_run_after_success_and_cycles_are_refused() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    let child = app
        .create_job(json!({ "group": "etl", "name": "load", "mode": "sync", "target": { "url": hook.url() } }))
        .await;
    let child_id = child["id"].as_str().unwrap().to_string();
    let (status, refused) = app
        .post(
            "/api/v1/jobs",
            json!({ "group": "etl", "name": "extract", "mode": "sync", "target": { "url": hook.url() },
                    "on_success": ["etl/nope"] }),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .starts_with("on_success[0]: no job named etl/nope"),
        "{refused}"
    );
    let parent = app
        .create_job(json!({
            "group": "etl", "name": "extract", "mode": "sync", "target": { "url": hook.url() },
            "on_success": ["etl/load"],
        }))
        .await;
    let parent_id = parent["id"].as_str().unwrap().to_string();
    assert_eq!(parent["on_success"], json!(["etl/load"]));

    let (status, _) = app
        .post(&format!("/api/v1/jobs/{parent_id}/run"), json!({}))
        .await;
    assert_eq!(status, 202);
    let fires = app
        .wait_fires(&child_id, "the child's fire", |f| {
            count_state(f, "succeeded") == 1
        })
        .await;
    assert!(
        fires[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("child of etl/extract"),
        "{fires:#?}"
    );

    // load → extract would close the loop extract → load → extract.
    let (status, refused) = app
        .call(
            "PUT",
            &format!("/api/v1/jobs/{child_id}"),
            Some(json!({ "group": "etl", "name": "load", "mode": "sync", "target": { "url": hook.url() },
                         "on_failure": ["etl/extract"] })),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["detail"],
        "on_failure[0]: would make a cycle: etl/load → etl/extract → etl/load"
    );
    // A job named as a child cannot be deleted from under its parent.
    let (status, refused) = app
        .call("DELETE", &format!("/api/v1/jobs/{child_id}"), None)
        .await;
    assert_eq!(status, 409, "{refused}");
    hook.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn a_final_failure_sends_a_signed_alert_and_a_finished_fire_can_be_retried() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let target = Webhook::start();
    target.state.status.store(500, Ordering::SeqCst);
    let alerts = Webhook::start();
    let job = app
        .create_job(json!({
            "group": "pay", "name": "settle", "mode": "sync",
            "target": { "url": target.url() },
            "retry": { "max_attempts": 2, "backoff_ms": 100, "jitter": 0.0 },
            "alert_url": alerts.url(),
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (status, _) = app.post(&format!("/api/v1/jobs/{id}/run"), json!({})).await;
    assert_eq!(status, 202);
    let fires = app
        .wait_fires(&id, "two failed attempts", |f| {
            count_state(f, "failed") == 2
        })
        .await;
    let start = std::time::Instant::now();
    while alerts.requests().is_empty() {
        assert!(start.elapsed() < PATIENCE, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = alerts.requests();
    assert_eq!(
        received.len(),
        1,
        "one alert, for the final attempt only: {received:#?}"
    );
    let (body, headers) = &received[0];
    assert_eq!(body["event"], "fire.failed");
    assert_eq!(body["job"], "pay/settle");
    assert_eq!(body["state"], "failed");
    assert_eq!(body["attempt"], 2);
    let signature = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(protocol::SIGNATURE_HEADER))
        .map(|(_, v)| v.clone())
        .expect("signed");
    let raw = alerts.raw_bodies()[0].clone();
    assert!(
        protocol::verify(
            SECRET.as_bytes(),
            Some(&signature),
            &raw,
            Utc::now().timestamp()
        )
        .is_ok(),
        "alert signature does not verify"
    );

    // Retry the finished fire by hand: a third attempt, which now succeeds.
    target.state.status.store(200, Ordering::SeqCst);
    let last = fires.iter().find(|f| f["attempt"] == 2).unwrap();
    let (status, retry) = app
        .post(
            &format!("/api/v1/fires/{}/retry", last["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["attempt"], 3);
    app.wait_fires(&id, "the retried attempt", |f| {
        count_state(f, "succeeded") == 1
    })
    .await;
    target.stop().await;
    alerts.stop().await;
    app.stop().await;
}
