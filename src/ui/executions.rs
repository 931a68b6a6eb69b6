//! `/executions` and `/executions/{id}`: fires with filters, and one fire's detail
//! (payload, output, error, HTTP status, attempts) with cancel.

use actix_web::{web, HttpRequest, HttpResponse};

use super::html::{escape, layout};
use super::logged_in;
use crate::domain::FireState;
use crate::error::AppResult;
use crate::routes::parse_id;

pub async fn list_page(req: HttpRequest) -> AppResult<HttpResponse> {
    let states: String = FireState::ALL
        .iter()
        .map(|s| format!(r#"<option value="{0}">{0}</option>"#, s.as_str()))
        .collect();
    logged_in(&req, |s| {
        layout(
            s,
            "Executions",
            "executions",
            "executions",
            &format!(
                r#"
<form id="fire-filters" class="filters" role="search">
  <label for="fire-job">Job</label><select id="fire-job" name="job_id"><option value="">All jobs</option></select>
  <label for="fire-state">State</label><select id="fire-state" name="state"><option value="">Any state</option>{states}</select>
  <label for="fire-executor">Executor</label><input id="fire-executor" name="executor" placeholder="app/instance">
  <label for="fire-from">Scheduled from</label><input id="fire-from" name="from" type="datetime-local">
  <label for="fire-until">until</label><input id="fire-until" name="until" type="datetime-local">
</form>
<p class="note" id="executor-filter-note">The executor filter applies to the 200 most recent fires matching the other filters (the API has no executor filter yet).</p>
<div class="table-wrap">
<table id="fires-table" class="list">
  <thead><tr><th scope="col">Scheduled</th><th scope="col">Job</th><th scope="col">State</th><th scope="col">Attempt</th><th scope="col">Executor</th><th scope="col">HTTP</th><th scope="col">Duration</th></tr></thead>
  <tbody></tbody>
</table>
</div>
<p id="fires-empty" class="muted" hidden>No fires match.</p>
"#
            ),
        )
    })
    .await
}

pub async fn detail_page(req: HttpRequest, id: web::Path<String>) -> AppResult<HttpResponse> {
    let id = parse_id("fire", &id)?;
    logged_in(&req, |s| {
        layout(
            s,
            "Execution",
            "executions",
            "execution-detail",
            &format!(
                r#"
<div id="fire-detail" data-fire-id="{id}">
  <div class="toolbar"><h2 id="fire-title"></h2><span id="fire-state" class="badge"></span>
    <div class="row-actions">
      <button type="button" id="fire-cancel" class="danger">Cancel</button>
      <button type="button" id="fire-retry">Retry</button>
      <small id="cancel-reason" class="reason"></small>
    </div></div>
  <dl id="fire-facts" class="facts"></dl>
  <section aria-labelledby="h-timeline"><h2 id="h-timeline">Timeline</h2><ol id="fire-timeline" class="timeline"></ol></section>
  <section aria-labelledby="h-payload"><h2 id="h-payload">Payload</h2><pre id="fire-payload"></pre></section>
  <section aria-labelledby="h-output"><h2 id="h-output">Output</h2><pre id="fire-output"></pre></section>
  <section aria-labelledby="h-error"><h2 id="h-error">Error</h2><pre id="fire-error"></pre></section>
  <section aria-labelledby="h-attempts"><h2 id="h-attempts">Attempts for this instant</h2>
    <table id="attempts-table" class="list"><thead><tr><th scope="col">Attempt</th><th scope="col">State</th><th scope="col">Executor</th><th scope="col">HTTP</th><th scope="col">Error</th></tr></thead><tbody></tbody></table></section>
</div>
"#,
                id = escape(&id)
            ),
        )
    })
    .await
}
