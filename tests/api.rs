//! The admin API: authentication, CRUD, listing, and bad input refused with the
//! field named and nothing stored.

mod common;

use common::*;
use serde_json::{json, Value};

fn valid_job(name: &str) -> Value {
    json!({
        "group": "ops",
        "name": name,
        "description": "nightly scan",
        "target": { "url": "http://127.0.0.1:9/hook" },
        "triggers": [{ "kind": "cron", "expression": "0 0 3 * * ?", "time_zone": "Europe/Berlin" }],
    })
}

#[actix_web::test]
async fn admin_endpoints_need_the_bearer_token() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let url = app.url("/api/v1/jobs");
    let (status, problem) = call("GET", &url, None, None).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("Bearer"),
        "{problem}"
    );
    let (status, _) = call("GET", &url, Some("Bearer wrong-token-wrong-token"), None).await;
    assert_eq!(status, 401);
    let (status, _) = call("POST", &url, Some("Basic abc"), Some(valid_job("x"))).await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/api/v1/jobs").await;
    assert_eq!(status, 200);
    // Health needs no token.
    let (status, ready) = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    app.stop().await;
}

#[actix_web::test]
async fn jobs_crud_list_filter_and_paginate() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let first = app.create_job(valid_job("scan-a")).await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["version"], 1);
    assert_eq!(first["triggers"][0]["time_zone"], "Europe/Berlin");
    // 03:00 Berlin is 01:00 or 02:00 UTC.
    let next = first["next_fire_at"].as_str().unwrap();
    assert!(
        next.contains("T01:00:00") || next.contains("T02:00:00"),
        "{next}"
    );

    let (status, problem) = app.post("/api/v1/jobs", valid_job("scan-a")).await;
    assert_eq!(status, 409, "duplicate key: {problem}");
    let mut other = valid_job("sync-b");
    other["group"] = json!("billing");
    other["paused"] = json!(true);
    app.create_job(other).await;
    app.create_job(valid_job("scan-c")).await;

    let (_, page) = app.get("/api/v1/jobs?group=ops").await;
    assert_eq!(page["total"], 2);
    let (_, page) = app.get("/api/v1/jobs?q=sync").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["name"], "sync-b");
    let (_, page) = app.get("/api/v1/jobs?state=paused").await;
    assert_eq!(page["total"], 1);
    let (_, page) = app.get("/api/v1/jobs?limit=2&offset=2").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let mut changed = valid_job("scan-a");
    changed["triggers"] = json!([{ "kind": "interval", "interval_ms": 60000 }]);
    let (status, updated) = app
        .call("PUT", &format!("/api/v1/jobs/{id}"), Some(changed))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["triggers"][0]["kind"], "interval");

    let (status, paused) = app
        .post(&format!("/api/v1/jobs/{id}/pause"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(paused["state"], "paused");
    assert!(paused["next_fire_at"].is_null());
    let (_, resumed) = app
        .post(&format!("/api/v1/jobs/{id}/resume"), json!({}))
        .await;
    assert_eq!(resumed["state"], "active");
    assert!(resumed["next_fire_at"].is_string());

    let (status, _) = app
        .call("DELETE", &format!("/api/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, problem) = app.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
    app.stop().await;
}

/// Each case: a mutation of a valid job and a text the error must contain.
#[actix_web::test]
async fn invalid_jobs_are_refused_naming_the_field_and_nothing_is_stored() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>, &str)> = vec![
        (
            "bad cron field",
            Box::new(|j| j["triggers"][0]["expression"] = json!("0 0 25 * * ?")),
            "triggers[0].expression",
        ),
        (
            "cron with both days",
            Box::new(|j| j["triggers"][0]["expression"] = json!("0 0 3 1 * MON")),
            "triggers[0].expression",
        ),
        (
            "unknown zone",
            Box::new(|j| j["triggers"][0]["time_zone"] = json!("Mars/Olympus")),
            "triggers[0].time_zone",
        ),
        (
            "malformed url",
            Box::new(|j| j["target"]["url"] = json!("not a url")),
            "target.url",
        ),
        (
            "ftp url",
            Box::new(|j| j["target"]["url"] = json!("ftp://example.com/x")),
            "target.url",
        ),
        (
            "unknown field",
            Box::new(|j| j["colour"] = json!("blue")),
            "colour",
        ),
        (
            "wrong type",
            Box::new(|j| j["timeout_ms"] = json!("soon")),
            "timeout_ms",
        ),
        ("empty name", Box::new(|j| j["name"] = json!("")), "name"),
        (
            "slash in name",
            Box::new(|j| j["name"] = json!("a/b")),
            "name",
        ),
        (
            "zero attempts",
            Box::new(|j| j["retry"] = json!({ "max_attempts": 0 })),
            "retry.max_attempts",
        ),
        (
            "tiny interval",
            Box::new(|j| j["triggers"] = json!([{ "kind": "interval", "interval_ms": 1 }])),
            "triggers[0].interval_ms",
        ),
        (
            "field for another kind",
            Box::new(
                |j| j["triggers"] = json!([{ "kind": "at", "at": "2030-01-01T00:00:00Z", "expression": "* * * * * ?" }]),
            ),
            "triggers[0].expression",
        ),
        (
            "unknown trigger kind",
            Box::new(|j| j["triggers"] = json!([{ "kind": "sometimes" }])),
            "sometimes",
        ),
        ("no target", Box::new(|j| j["target"] = json!({})), "target"),
    ];
    for (what, mutate, field) in cases {
        let mut body = valid_job("bad");
        mutate(&mut body);
        let (status, problem) = app.post("/api/v1/jobs", body).await;
        assert_eq!(status, 400, "{what}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(field),
            "{what}: {detail:?} should name {field}"
        );
        assert_eq!(problem["status"], 400);
    }
    // A malformed JSON body and a wrong content type.
    let (status, problem) = call_raw(
        &app.url("/api/v1/jobs"),
        &[
            ("Authorization", format!("Bearer {ADMIN_TOKEN}")),
            ("Content-Type", "application/json".into()),
        ],
        b"{\"name\": ".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    // Oversized body: 413.
    let mut huge = valid_job("huge");
    huge["payload"] = json!("x".repeat(300 * 1024));
    let (status, problem) = app.post("/api/v1/jobs", huge).await;
    assert_eq!(status, 413, "{problem}");
    // Bad query parameters.
    let (status, problem) = app.get("/api/v1/jobs?limit=0").await;
    assert_eq!(status, 400);
    assert!(problem["detail"].as_str().unwrap().contains("limit"));
    let (status, problem) = app.get("/api/v1/fires?state=exploded").await;
    assert_eq!(status, 400);
    assert!(problem["detail"].as_str().unwrap().contains("state"));

    let (_, page) = app.get("/api/v1/jobs").await;
    assert_eq!(page["total"], 0, "nothing stored: {page}");

    // A refused update leaves the stored job as it was.
    let job = app.create_job(valid_job("kept")).await;
    let id = job["id"].as_str().unwrap();
    let mut bad = valid_job("kept");
    bad["triggers"][0]["expression"] = json!("0 61 * * * ?");
    let (status, _) = app
        .call("PUT", &format!("/api/v1/jobs/{id}"), Some(bad))
        .await;
    assert_eq!(status, 400);
    let (_, stored) = app.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["triggers"][0]["expression"], "0 0 3 * * ?");
    app.stop().await;
}

#[actix_web::test]
async fn cron_preview_lists_next_times_and_explains() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let (status, preview) = app
        .get("/api/v1/cron/preview?expression=0%2030%202%20*%20*%20%3F&time_zone=America/New_York&after=2024-03-09T12:00:00Z&count=3")
        .await;
    assert_eq!(status, 200, "{preview}");
    // 2024-03-10 02:30 does not exist in New York: Quartz skips that day.
    assert_eq!(
        preview["next"],
        json!([
            "2024-03-11T06:30:00Z",
            "2024-03-12T06:30:00Z",
            "2024-03-13T06:30:00Z"
        ])
    );
    assert!(preview["explanation"].as_str().unwrap().len() > 5);
    let (status, problem) = app.get("/api/v1/cron/preview?expression=bogus").await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("expression"),
        "{problem}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn search_finds_substrings_of_group_name_and_description_and_follows_changes() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut settle = valid_job("settle-payments");
    settle["group"] = json!("billing");
    settle["description"] = json!("Closes the day's \"card\" ledger");
    let settle = app.create_job(settle).await;
    app.create_job(valid_job("scan-servers")).await;
    app.create_job(valid_job("sync-policies")).await;

    for (q, expected) in [
        ("payments", vec!["settle-payments"]), // inside the name
        ("PAYMENT", vec!["settle-payments"]),  // any case
        ("illin", vec!["settle-payments"]),    // inside the group
        ("\"card\"", vec!["settle-payments"]), // quotes in the description
        ("nightly", vec!["scan-servers", "sync-policies"]),
        ("e-", vec!["settle-payments"]), // two characters: scanned, same answer
        ("no-such-text", vec![]),
        ("50%", vec![]), // LIKE wildcards are plain text
    ] {
        let (status, page) = app.get(&format!("/api/v1/jobs?q={}", urlencode(q))).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(names(&page), expected, "q={q}: {page}");
        assert_eq!(page["total"], expected.len(), "q={q}: {page}");
    }

    // A renamed job is found by its new name only; a deleted one not at all.
    let id = settle["id"].as_str().unwrap();
    let mut renamed = valid_job("settle-invoices");
    renamed["group"] = json!("billing");
    let (status, body) = app
        .call("PUT", &format!("/api/v1/jobs/{id}"), Some(renamed))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = app.get("/api/v1/jobs?q=payments").await;
    assert_eq!(page["total"], 0, "{page}");
    let (_, page) = app.get("/api/v1/jobs?q=invoice").await;
    assert_eq!(names(&page), ["settle-invoices"]);
    let (status, _) = app
        .call("DELETE", &format!("/api/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (_, page) = app.get("/api/v1/jobs?q=invoice").await;
    assert_eq!(page["total"], 0, "{page}");
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
