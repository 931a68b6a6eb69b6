//! Jobs as files, through the real `cronhook` binary against a real server:
//! `jobs export`, `jobs apply -f FILE` (idempotent, --prune, --dry-run, refusals) and
//! `jobs import-crontab`.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use common::*;
use cronhook::schedule::cron::CronExpr;
use serde_json::{json, Value};

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs `cronhook jobs ARGS --url <app> --token <admin>` off the async runtime.
async fn jobs(app: &TestApp, args: &[&str]) -> Run {
    let mut full: Vec<String> = vec!["jobs".into()];
    full.extend(args.iter().map(|a| a.to_string()));
    full.extend(["--url".into(), app.address.clone()]);
    full.extend(["--token".into(), ADMIN_TOKEN.into()]);
    run_cli(full).await
}

async fn run_cli(args: Vec<String>) -> Run {
    let output = tokio::task::spawn_blocking(move || {
        cronhook_command()
            .args(&args)
            .output()
            .expect("cronhook runs")
    })
    .await
    .expect("the cronhook process was waited for");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.out.contains(ADMIN_TOKEN) && !run.err.contains(ADMIN_TOKEN),
        "the token was printed: {} {}",
        run.out,
        run.err
    );
    run
}

/// The report lines of an apply, without the summary.
fn report(run: &Run) -> Vec<String> {
    let mut lines: Vec<String> = run.out.lines().map(str::to_string).collect();
    lines.pop();
    lines
        .into_iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

async fn job_map(app: &TestApp) -> std::collections::BTreeMap<String, Value> {
    let (status, page) = app.get("/api/v1/jobs?limit=500").await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                format!(
                    "{}/{}",
                    j["group"].as_str().unwrap(),
                    j["name"].as_str().unwrap()
                ),
                j.clone(),
            )
        })
        .collect()
}

fn versions(jobs: &std::collections::BTreeMap<String, Value>) -> Vec<(String, i64)> {
    jobs.iter()
        .map(|(k, j)| (k.clone(), j["version"].as_i64().unwrap()))
        .collect()
}

const THREE_JOBS: &str = r#"
- group: files
  name: nightly
  target: {url: "http://127.0.0.1:9/nightly"}
  mode: sync
  triggers:
    - kind: cron
      expression: "0 0 3 * * ?"
      time_zone: Europe/Berlin
- group: files
  name: every-minute
  target: {url: "http://127.0.0.1:9/minute"}
  payload: {k: [1, 2.5, "x"]}
  retry: {max_attempts: 3}
  triggers:
    - {kind: cron, expression: "0 * * * * ?"}
- group: files
  name: ticker
  description: an interval without a start
  target: {url: "http://127.0.0.1:9/tick"}
  concurrency: forbid
  paused: true
  triggers:
    - {kind: interval, interval_ms: 60000, misfire: skip}
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("file written");
    path.display().to_string()
}

#[actix_web::test]
async fn apply_creates_then_changes_nothing_then_updates_only_the_edited_job() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let file = write(dir.path(), "jobs.yaml", THREE_JOBS);

    let run = jobs(&app, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(
        report(&run),
        [
            "created files/nightly",
            "created files/every-minute",
            "created files/ticker"
        ]
    );
    assert!(
        run.out
            .ends_with("3 created, 0 updated, 0 unchanged, 0 deleted, 0 failed\n"),
        "{}",
        run.out
    );
    let first = job_map(&app).await;
    assert_eq!(first.len(), 3);
    assert_eq!(first["files/ticker"]["state"], "paused");
    assert_eq!(first["files/every-minute"]["retry"]["max_attempts"], 3);

    // The second apply changes nothing: same report, same versions.
    let run = jobs(&app, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(
        report(&run),
        [
            "unchanged files/nightly",
            "unchanged files/every-minute",
            "unchanged files/ticker"
        ]
    );
    let second = job_map(&app).await;
    assert_eq!(versions(&first), versions(&second));
    assert_eq!(
        first["files/ticker"]["triggers"][0]["start_at"],
        second["files/ticker"]["triggers"][0]["start_at"]
    );

    // Only the edited job is updated, and only its triggers.
    let edited = THREE_JOBS.replace("0 0 3 * * ?", "0 30 4 * * ?");
    let file = write(dir.path(), "jobs.yaml", &edited);
    let dry = jobs(&app, &["apply", "-f", &file, "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}{}", dry.out, dry.err);
    assert_eq!(report(&dry)[0], "update files/nightly (triggers) (dry run)");
    assert_eq!(versions(&job_map(&app).await), versions(&first));
    let run = jobs(&app, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(
        report(&run),
        [
            "updated files/nightly (triggers)",
            "unchanged files/every-minute",
            "unchanged files/ticker"
        ]
    );
    let third = job_map(&app).await;
    assert_eq!(third["files/nightly"]["version"], 2);
    assert_eq!(
        third["files/nightly"]["triggers"][0]["expression"],
        "0 30 4 * * ?"
    );
    assert_eq!(third["files/every-minute"]["version"], 1);
    assert_eq!(third["files/ticker"]["version"], 1);
}

#[actix_web::test]
async fn export_writes_yaml_and_json_that_apply_reads_back_unchanged() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    app.create_job(json!({
        "group": "exp", "name": "a",
        "target": {"url": "http://127.0.0.1:9/a"},
        "payload": {"greeting": "hi", "n": 1.5},
        "timeout_ms": 1234,
        "triggers": [{"kind": "cron", "expression": "*/5 * * * * ?", "time_zone": "America/New_York"}],
    }))
    .await;
    app.create_job(json!({
        "group": "exp", "name": "b", "paused": true,
        "target": {"url": "http://127.0.0.1:9/b"},
        "triggers": [{"kind": "at", "at": "2099-01-01T00:00:00Z"},
                     {"kind": "interval", "interval_ms": 1000, "repeat_count": 3}],
    }))
    .await;
    app.create_job(json!({
        "group": "elsewhere", "name": "c",
        "target": {"url": "http://127.0.0.1:9/c"},
        "triggers": [{"kind": "cron", "expression": "0 0 12 ? * MON"}],
    }))
    .await;

    let run = jobs(&app, &["export"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let yaml: Vec<Value> = serde_norway::from_str(&run.out).expect("export is YAML");
    let keys: Vec<String> = yaml
        .iter()
        .map(|j| {
            format!(
                "{}/{}",
                j["group"].as_str().unwrap(),
                j["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(keys, ["elsewhere/c", "exp/a", "exp/b"]);
    let a = &yaml[1];
    assert_eq!(a["triggers"][0]["expression"], "*/5 * * * * ?");
    assert_eq!(a["triggers"][0]["time_zone"], "America/New_York");
    assert_eq!(a["payload"], json!({"greeting": "hi", "n": 1.5}));
    assert_eq!(a["timeout_ms"], 1234);
    assert!(
        a.get("id").is_none() && a["triggers"][0].get("next_fire_at").is_none(),
        "{a}"
    );
    assert_eq!(yaml[2]["paused"], true);
    assert_eq!(yaml[2]["triggers"][1]["repeat_count"], 3);

    let path = dir.path().join("exp.json");
    let path = path.display().to_string();
    let run = jobs(&app, &["export", "--group", "exp", "-o", &path]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let json: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("export is JSON");
    assert_eq!(json, yaml[1..].to_vec());

    // Both round-trip: apply reads them back and finds nothing to change.
    let yaml_path = write(dir.path(), "all.yml", &jobs(&app, &["export"]).await.out);
    for file in [&yaml_path, &path] {
        let run = jobs(&app, &["apply", "-f", file]).await;
        assert_eq!(run.code, 0, "{}{}", run.out, run.err);
        assert!(
            report(&run).iter().all(|l| l.starts_with("unchanged ")),
            "{}",
            run.out
        );
    }
}

#[actix_web::test]
async fn prune_deletes_only_in_the_file_groups_unless_prune_all() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    for (group, name) in [("g", "keep"), ("g", "gone"), ("other", "kept")] {
        app.create_job(json!({
            "group": group, "name": name,
            "target": {"url": "http://127.0.0.1:9/x"},
            "triggers": [{"kind": "cron", "expression": "0 0 1 * * ?"}],
        }))
        .await;
    }
    let file = write(
        dir.path(),
        "g.json",
        &json!([{"group": "g", "name": "keep", "target": {"url": "http://127.0.0.1:9/x"},
                 "triggers": [{"kind": "cron", "expression": "0 0 1 * * ?"}]}])
        .to_string(),
    );
    // Without --prune nothing is deleted.
    let run = jobs(&app, &["apply", "-f", &file]).await;
    assert_eq!(report(&run), ["unchanged g/keep"]);
    let dry = jobs(&app, &["apply", "-f", &file, "--prune", "--dry-run"]).await;
    assert_eq!(
        report(&dry),
        ["unchanged g/keep", "delete g/gone (dry run)"]
    );
    assert_eq!(job_map(&app).await.len(), 3);

    let run = jobs(&app, &["apply", "-f", &file, "--prune"]).await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(report(&run), ["unchanged g/keep", "deleted g/gone"]);
    let left: Vec<String> = job_map(&app).await.into_keys().collect();
    assert_eq!(left, ["g/keep", "other/kept"]);

    let run = jobs(&app, &["apply", "-f", &file, "--prune-all"]).await;
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert_eq!(report(&run), ["unchanged g/keep", "deleted other/kept"]);
    let left: Vec<String> = job_map(&app).await.into_keys().collect();
    assert_eq!(left, ["g/keep"]);
}

#[actix_web::test]
async fn prune_of_a_job_with_a_running_fire_reports_the_conflict() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let hook = Webhook::start();
    // Acknowledges like an executor and never writes back: the fire stays running.
    hook.state.status.store(202, Ordering::SeqCst);
    let busy = app
        .create_job(json!({
            "group": "g", "name": "busy",
            "target": {"url": hook.url()},
            "timeout_ms": 600000,
            "triggers": [{"kind": "immediate"}],
        }))
        .await;
    let id = busy["id"].as_str().unwrap();
    app.wait_fires(id, "a running fire", |f| {
        f.len() == 1 && f[0]["state"] == "running"
    })
    .await;
    let file = write(
        dir.path(),
        "g.yaml",
        "- {group: g, name: fresh, target: {url: 'http://127.0.0.1:9/x'}, triggers: [{kind: cron, expression: '0 0 1 * * ?'}]}\n",
    );
    let run = jobs(&app, &["apply", "-f", &file, "--prune"]).await;
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    let lines = report(&run);
    assert_eq!(lines[0], "created g/fresh");
    assert!(
        lines[1].starts_with("failed g/busy: not deleted:") && lines[1].ends_with("(HTTP 409)"),
        "{lines:?}"
    );
    assert!(
        run.err.contains("g/busy") && run.err.contains("409"),
        "{}",
        run.err
    );
    assert!(job_map(&app).await.contains_key("g/busy"));
    hook.stop().await;
}

#[actix_web::test]
async fn invalid_jobs_are_named_with_their_field_and_the_others_still_apply() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let file = write(
        dir.path(),
        "mixed.yaml",
        r#"
- name: good-1
  target: {url: "http://127.0.0.1:9/1"}
  triggers: [{kind: cron, expression: "0 0 * * * ?"}]
- name: bad-hour
  target: {url: "http://127.0.0.1:9/2"}
  triggers: [{kind: cron, expression: "0 0 25 * * ?"}]
- name: paused-immediate
  paused: true
  target: {url: "http://127.0.0.1:9/3"}
  triggers: [{kind: immediate}]
- name: good-2
  target: {url: "http://127.0.0.1:9/4"}
  triggers: [{kind: cron, expression: "0 0 * * * ?"}]
"#,
    );
    let run = jobs(&app, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 2, "{}{}", run.out, run.err);
    let lines = report(&run);
    assert_eq!(lines[0], "created default/good-1");
    // Caught locally: the job and the field are named.
    assert!(
        lines[1].starts_with("invalid default/bad-hour: triggers[0].expression: hours:"),
        "{lines:?}"
    );
    // Refused by the server: its problem detail is shown.
    assert_eq!(
        lines[2],
        "failed default/paused-immediate: not created: paused: a job with an immediate trigger cannot be created paused (HTTP 400)"
    );
    assert_eq!(lines[3], "created default/good-2");
    assert!(run
        .out
        .ends_with("2 created, 0 updated, 0 unchanged, 0 deleted, 2 failed\n"));
    assert!(
        run.err.contains("default/bad-hour: triggers[0].expression")
            && run.err.contains("default/paused-immediate: not created"),
        "{}",
        run.err
    );
    let present: Vec<String> = job_map(&app).await.into_keys().collect();
    assert_eq!(present, ["default/good-1", "default/good-2"]);

    // A file that cannot be read as jobs changes nothing and exits 2.
    let broken = write(dir.path(), "broken.yaml", "- name: x\n  target: [\n");
    let run = jobs(&app, &["apply", "-f", &broken]).await;
    assert_eq!(run.code, 2);
    assert!(run.err.contains("broken.yaml"), "{}", run.err);
    let nameless = write(dir.path(), "nameless.json", r#"[{"group": "g"}]"#);
    let run = jobs(&app, &["apply", "-f", &nameless, "--prune-all"]).await;
    assert_eq!(run.code, 2);
    assert!(run.err.contains("jobs[0]: name: missing"), "{}", run.err);
    assert_eq!(job_map(&app).await.len(), 2);
}

#[actix_web::test]
async fn url_and_token_come_from_the_environment_and_help_hides_the_token() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let file = write(
        dir.path(),
        "one.yaml",
        "- {name: env, target: {url: 'http://127.0.0.1:9/x'}, triggers: [{kind: cron, expression: '0 0 1 * * ?'}]}\n",
    );
    let (url, file2) = (app.address.clone(), file.clone());
    let output = tokio::task::spawn_blocking(move || {
        cronhook_command()
            .args(["jobs", "apply", "-f", &file2])
            .env("CRONHOOK_URL", url)
            .env("CRONHOOK_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("cronhook runs")
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.starts_with("created    default/env\n"), "{out}");
    let help = tokio::task::spawn_blocking(|| {
        cronhook_command()
            .args(["jobs", "apply", "--help"])
            .env("CRONHOOK_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("cronhook runs")
    })
    .await
    .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("CRONHOOK_TOKEN"), "{help}");
    assert!(!help.contains(ADMIN_TOKEN), "{help}");

    // An empty file with --prune-all would delete everything: refused.
    let empty = write(dir.path(), "empty.yaml", "[]\n");
    let run = jobs(&app, &["apply", "-f", &empty, "--prune-all"]).await;
    assert_eq!(run.code, 2);
    assert!(run.err.contains("refusing"), "{}", run.err);
    assert_eq!(job_map(&app).await.len(), 1);
}

#[actix_web::test]
async fn a_missing_or_wrong_token_is_refused_without_printing_it() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let run = run_cli(vec![
        "jobs".into(),
        "export".into(),
        "--url".into(),
        app.address.clone(),
    ])
    .await;
    assert_eq!(run.code, 2);
    assert!(run.err.contains("CRONHOOK_TOKEN"), "{}", run.err);
    let run = run_cli(vec![
        "jobs".into(),
        "export".into(),
        "--url".into(),
        app.address.clone(),
        "--token".into(),
        "wrong-token-wrong-token".into(),
    ])
    .await;
    assert_eq!(run.code, 1);
    assert!(run.err.contains("401"), "{}", run.err);
    assert!(!run.err.contains("wrong-token-wrong-token"), "{}", run.err);
}

const CRONTAB: &str = "\
# backups and pings
SHELL=/bin/bash
MAILTO=ops@example.com

*/15 * * * * curl -fsS http://127.0.0.1:9/ping # ping
0 9 * * 1-5 curl -X POST 'http://127.0.0.1:9/standup'
@reboot curl http://127.0.0.1:9/boot
30 2 * * * /usr/local/bin/backup.sh
CRON_TZ=Europe/Berlin
0 6 1 * * http://127.0.0.1:9/monthly # monthly
0 0 1 * 5 curl http://127.0.0.1:9/friday-or-first
61 * * * * curl http://127.0.0.1:9/bad-minute
";

fn next_after(expression: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
    let expr = CronExpr::parse(expression).expect("a valid Quartz expression");
    let zone: chrono_tz::Tz = zone.parse().expect("zone");
    let mut t: DateTime<Utc> = after.parse().expect("instant");
    (0..count)
        .map(|_| {
            t = expr.next_after(t, zone).expect("fires again");
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .collect()
}

#[actix_web::test]
async fn import_crontab_converts_reports_bad_lines_and_applies() {
    let dir = temp_dir();
    let app = spawn_app(dir.path());
    let crontab = write(dir.path(), "crontab", CRONTAB);

    let run = jobs(&app, &["import-crontab", &crontab]).await;
    assert_eq!(run.code, 2, "{}{}", run.out, run.err);
    let converted: Vec<Value> = serde_norway::from_str(&run.out).expect("a YAML job file");
    let by_name = |name: &str| {
        converted
            .iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("no job {name} in {converted:?}"))
            .clone()
    };
    assert_eq!(converted.len(), 3);
    let ping = by_name("ping");
    assert_eq!(ping["group"], "crontab");
    assert_eq!(ping["mode"], "sync");
    assert_eq!(ping["target"]["url"], "http://127.0.0.1:9/ping");
    let trigger = &ping["triggers"][0];
    assert_eq!(trigger["expression"], "0 */15 * * * ?");
    assert_eq!(
        next_after("0 */15 * * * ?", "UTC", "2026-11-23T10:07:00Z", 2),
        ["2026-11-23T10:15:00Z", "2026-11-23T10:30:00Z"]
    );
    let standup = by_name("line-6");
    let expression = standup["triggers"][0]["expression"].as_str().unwrap();
    assert_eq!(expression, "0 0 9 ? * MON-FRI");
    // From Friday 2026-11-27 10:00 UTC: Monday and Tuesday 09:00.
    assert_eq!(
        next_after(expression, "UTC", "2026-11-27T10:00:00Z", 2),
        ["2026-11-30T09:00:00Z", "2026-12-01T09:00:00Z"]
    );
    let monthly = by_name("monthly");
    let trigger = &monthly["triggers"][0];
    assert_eq!(trigger["time_zone"], "Europe/Berlin");
    assert_eq!(
        next_after(
            trigger["expression"].as_str().unwrap(),
            "Europe/Berlin",
            "2026-11-23T00:00:00Z",
            2
        ),
        ["2026-12-01T05:00:00Z", "2027-01-01T05:00:00Z"]
    );

    // Each unconvertible line is reported with its number and reason.
    let reported: Vec<&str> = run
        .err
        .lines()
        .filter(|l| l.contains("not converted"))
        .collect();
    assert_eq!(reported.len(), 4, "{}", run.err);
    assert!(
        reported[0].contains("crontab:7:") && reported[0].contains("@reboot"),
        "{reported:?}"
    );
    assert!(
        reported[1].contains("crontab:8:") && reported[1].contains("no http"),
        "{reported:?}"
    );
    assert!(
        reported[2].contains("crontab:11:") && reported[2].contains("either"),
        "{reported:?}"
    );
    assert!(
        reported[3].contains("crontab:12:") && reported[3].contains("minute: value 61"),
        "{reported:?}"
    );
    assert!(run.err.contains("4 line(s)"), "{}", run.err);

    // -o writes JSON by extension; `cronhook cron next` agrees with the conversion.
    let out = dir.path().join("crontab.json").display().to_string();
    let run = jobs(&app, &["import-crontab", &crontab, "-o", &out]).await;
    assert_eq!(run.code, 2);
    let file: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(file, converted);
    let next = run_cli(
        [
            "cron",
            "next",
            "0 0 9 ? * MON-FRI",
            "--after",
            "2026-11-27T10:00:00Z",
            "--count",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(next.out, "2026-11-30T09:00:00Z\n");

    // --apply creates the converted jobs (and still exits 2 for the bad lines) ...
    let run = jobs(&app, &["import-crontab", &crontab, "--apply"]).await;
    assert_eq!(run.code, 2, "{}{}", run.out, run.err);
    assert_eq!(
        report(&run),
        [
            "created crontab/ping",
            "created crontab/line-6",
            "created crontab/monthly"
        ]
    );
    let on_server = job_map(&app).await;
    assert_eq!(
        on_server["crontab/line-6"]["triggers"][0]["expression"],
        "0 0 9 ? * MON-FRI"
    );
    assert_eq!(on_server["crontab/monthly"]["mode"], "sync");
    // ... and is idempotent like apply.
    let run = jobs(&app, &["import-crontab", &crontab, "--apply"]).await;
    assert!(
        report(&run).iter().all(|l| l.starts_with("unchanged ")),
        "{}",
        run.out
    );
}
