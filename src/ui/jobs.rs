//! `/jobs`, `/jobs/new`, `/jobs/{id}`, `/jobs/{id}/edit`: the job list with its actions,
//! the create/edit form (live cron preview), and a job's detail with its recent fires.

use actix_web::{web, HttpRequest, HttpResponse};

use super::html::{escape, layout};
use super::logged_in;
use crate::error::AppResult;
use crate::routes::parse_id;

pub async fn list_page(req: HttpRequest) -> AppResult<HttpResponse> {
    logged_in(&req, |s| {
        layout(
            s,
            "Jobs",
            "jobs",
            "jobs",
            r#"
<div class="toolbar">
  <form id="job-filters" class="filters" role="search">
    <label for="job-search">Search</label>
    <input id="job-search" name="q" type="search" placeholder="name or description">
    <label for="job-group">Group</label>
    <select id="job-group" name="group"><option value="">All groups</option></select>
    <label for="job-state">State</label>
    <select id="job-state" name="state"><option value="">Any state</option><option value="active">active</option><option value="paused">paused</option></select>
  </form>
  <a class="button" href="/jobs/new" id="new-job">New job</a>
</div>
<div class="table-wrap">
<table id="jobs-table" class="list">
  <thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Schedule</th><th scope="col">Target</th><th scope="col">Next fire</th><th scope="col">Running</th><th scope="col">Actions</th></tr></thead>
  <tbody></tbody>
</table>
</div>
<p id="jobs-empty" class="muted" hidden>No jobs match.</p>
"#,
        )
    })
    .await
}

/// Options for the time-zone picker: every IANA zone the scheduler knows.
fn time_zone_options() -> String {
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| format!(r#"<option value="{}">"#, escape(tz.name())))
        .collect()
}

fn option_list(values: &[(&str, &str)]) -> String {
    values
        .iter()
        .map(|(value, label)| format!(r#"<option value="{value}">{label}</option>"#))
        .collect()
}

/// The create/edit form. Field errors from the API (`triggers[0].expression: …`) are
/// shown next to the input whose `data-field` names that path.
fn job_form(job_id: Option<&str>) -> String {
    let routing = option_list(&[
        ("least_loaded", "least loaded (default)"),
        ("shortest_eta", "shortest estimated time"),
        ("round_robin", "round robin"),
        ("random", "random"),
        ("consistent_hash", "consistent hash (by job)"),
        ("pinned", "pinned to one instance"),
        ("broadcast", "broadcast (every executor)"),
        ("failover", "failover (first valid)"),
    ]);
    let concurrency = option_list(&[
        ("allow", "allow overlapping fires"),
        ("forbid", "forbid (skip while one runs)"),
        ("replace", "replace (cancel the running one)"),
        ("queue", "queue (one at a time)"),
    ]);
    let misfire = option_list(&[
        ("fire_now", "fire once now (default)"),
        ("skip", "skip missed instants"),
        ("catch_up", "catch up every missed instant"),
    ]);
    format!(
        r#"
<form id="job-form" class="job-form" data-job-id="{job_id}" novalidate>
<p id="form-error" class="error" role="alert" hidden></p>
<fieldset><legend>Job</legend>
  <div class="field"><label for="f-group">Group</label><input id="f-group" data-field="group" value="default" required><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-name">Name</label><input id="f-name" data-field="name" required placeholder="nightly-report"><p class="field-error" hidden></p></div>
  <div class="field wide"><label for="f-description">Description</label><input id="f-description" data-field="description"><p class="field-error" hidden></p></div>
</fieldset>
<fieldset><legend>Schedule</legend>
  <div class="field"><label for="f-kind">Trigger</label><select id="f-kind" data-field="triggers[0].kind">{kinds}</select><p class="field-error" hidden></p></div>
  <div class="field wide" data-kind="cron"><label for="f-cron">Cron expression (Quartz: sec min hour day month weekday [year])</label>
    <input id="f-cron" data-field="triggers[0].expression" value="0 */5 * * * ?" autocomplete="off" spellcheck="false" aria-describedby="cron-preview">
    <p class="field-error" id="cron-error" hidden></p>
    <div id="cron-preview" class="preview" aria-live="polite"><p id="cron-explanation"></p><ol id="cron-next"></ol></div></div>
  <div class="field" data-kind="cron"><label for="f-tz">Time zone</label><input id="f-tz" list="time-zones" data-field="triggers[0].time_zone" value="UTC" autocomplete="off"><datalist id="time-zones">{zones}</datalist><p class="field-error" hidden></p></div>
  <div class="field" data-kind="interval"><label for="f-interval">Every (milliseconds)</label><input id="f-interval" type="number" min="10" data-field="triggers[0].interval_ms" value="60000"><p class="field-error" hidden></p></div>
  <div class="field" data-kind="at"><label for="f-at">At (your local time)</label><input id="f-at" type="datetime-local" data-field="triggers[0].at"><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-misfire">Misfire</label><select id="f-misfire" data-field="triggers[0].misfire">{misfire}</select><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-calendar">Calendar (excluded dates and times)</label><select id="f-calendar" data-field="triggers[0].calendar"><option value="">none</option></select><p class="field-error" hidden></p></div>
</fieldset>
<fieldset><legend>Target</legend>
  <div class="field"><label for="f-target-kind">Call</label><select id="f-target-kind"><option value="url">a URL</option><option value="app">an executor app + handler</option></select></div>
  <div class="field wide" data-target="url"><label for="f-url">URL</label><input id="f-url" type="url" data-field="target.url" placeholder="https://example.com/hook"><p class="field-error" hidden></p></div>
  <div class="field" data-target="app"><label for="f-app">App</label><input id="f-app" data-field="target.app"><p class="field-error" hidden></p></div>
  <div class="field" data-target="app"><label for="f-handler">Handler</label><input id="f-handler" data-field="target.handler"><p class="field-error" hidden></p></div>
  <div class="field" data-target="app"><label for="f-routing">Routing</label><select id="f-routing" data-field="routing">{routing}</select><p class="field-error" hidden></p></div>
  <div class="field" data-target="app"><label for="f-instance">Pinned instance</label><input id="f-instance" data-field="target.instance" placeholder="only for pinned routing"><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-mode">Mode</label><select id="f-mode" data-field="mode"><option value="callback">callback (SDK posts the result)</option><option value="sync">sync (plain webhook)</option></select><p class="field-error" hidden></p></div>
  <div class="field wide"><label for="f-payload">Payload (JSON)</label><textarea id="f-payload" data-field="payload" rows="3" spellcheck="false">{{}}</textarea><p class="field-error" hidden></p></div>
</fieldset>
<fieldset><legend>Policies</legend>
  <div class="field"><label for="f-concurrency">Overlap</label><select id="f-concurrency" data-field="concurrency">{concurrency}</select><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-timeout">Timeout (ms, empty = default)</label><input id="f-timeout" type="number" min="1" data-field="timeout_ms"><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-attempts">Attempts (1 = no retry)</label><input id="f-attempts" type="number" min="1" max="100" value="1" data-field="retry.max_attempts"><p class="field-error" hidden></p></div>
  <div class="field"><label for="f-backoff">Retry backoff (ms)</label><input id="f-backoff" type="number" min="0" value="1000" data-field="retry.backoff_ms"><p class="field-error" hidden></p></div>
</fieldset>
<div class="actions"><button type="submit" id="save-job">Save job</button><a class="button secondary" href="/jobs">Cancel</a></div>
</form>
"#,
        job_id = escape(job_id.unwrap_or("")),
        kinds = option_list(&[
            ("cron", "cron"),
            ("interval", "interval"),
            ("at", "once, at a time"),
            ("immediate", "once, now")
        ]),
        zones = time_zone_options(),
    )
}

pub async fn new_page(req: HttpRequest) -> AppResult<HttpResponse> {
    logged_in(&req, |s| {
        layout(s, "New job", "jobs", "job-form", &job_form(None))
    })
    .await
}

pub async fn edit_page(req: HttpRequest, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    logged_in(&req, |s| {
        layout(s, "Edit job", "jobs", "job-form", &job_form(Some(&id)))
    })
    .await
}

pub async fn detail_page(req: HttpRequest, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("job", &id)?;
    logged_in(&req, |s| {
        layout(
            s,
            "Job",
            "jobs",
            "job-detail",
            &format!(
                r#"
<div id="job-detail" data-job-id="{id}">
  <div class="toolbar"><h2 id="job-title"></h2><span id="job-state" class="badge"></span><div id="job-actions" class="row-actions"></div></div>
  <dl id="job-facts" class="facts"></dl>
  <section aria-labelledby="h-triggers"><h2 id="h-triggers">Triggers</h2>
    <table id="triggers-table" class="list"><thead><tr><th scope="col">Kind</th><th scope="col">When</th><th scope="col">Misfire</th><th scope="col">Next fire</th><th scope="col">Fired</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="h-plan"><h2 id="h-plan">Execution plan (today and tomorrow)</h2>
    <p class="muted" id="plan-note"></p>
    <table id="plan-table" class="list"><thead><tr><th scope="col">When</th><th scope="col">Status</th><th scope="col">Executor</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="h-fires"><h2 id="h-fires">Recent fires</h2>
    <table id="fires-table" class="list"><thead><tr><th scope="col">Scheduled</th><th scope="col">State</th><th scope="col">Attempt</th><th scope="col">Timeline (scheduled → dispatched → acknowledged → finished)</th><th scope="col">Executor</th></tr></thead><tbody></tbody></table></section>
</div>
"#,
                id = escape(&id)
            ),
        )
    })
    .await
}
