//! `/executors`: every executor instance per app, with validity, task list, load,
//! CPU and memory gauges, and the load history seen since the page opened.

use actix_web::{HttpRequest, HttpResponse};

use super::html::layout;
use super::logged_in;
use crate::error::AppResult;

pub async fn page(req: HttpRequest) -> AppResult<HttpResponse> {
    logged_in(&req, |s| {
        layout(
            s,
            "Executors",
            "executors",
            "executors",
            r#"
<p class="note" id="history-note">Load history shows the samples this page has seen since it opened (refreshed every 2 s); the server keeps no load history yet.</p>
<div id="executor-apps"></div>
<p id="executors-empty" class="muted" hidden>No executor has sent a heartbeat yet.</p>
"#,
        )
    })
    .await
}
