//! The web console, served by the same binary at `/`: login, dashboard, jobs,
//! executions and executors. Pages are server-rendered skeletons; the embedded
//! `console.js` fills and refreshes them from the JSON API (`/api/v1`, which accepts
//! the console session plus its CSRF token) and from `/ui/api/dashboard`.
//! Assets are compiled in: the console works offline, with no CDN.

mod dashboard;
mod executions;
mod executors;
pub mod html;
mod jobs;
mod login;
pub mod session;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppResult;
use session::Session;

pub use login::{FAILURE_WINDOW_MS, MAX_FAILURES};

const CONSOLE_JS: &str = include_str!("../../assets/ui/console.js");
const CONSOLE_CSS: &str = include_str!("../../assets/ui/console.css");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard::page))
        .route("/login", web::get().to(login::show))
        .route("/login", web::post().to(login::submit))
        .route("/logout", web::post().to(login::logout))
        .route("/jobs", web::get().to(jobs::list_page))
        .route("/jobs/new", web::get().to(jobs::new_page))
        .route("/jobs/{id}", web::get().to(jobs::detail_page))
        .route("/jobs/{id}/edit", web::get().to(jobs::edit_page))
        .route("/executions", web::get().to(executions::list_page))
        .route("/executions/{id}", web::get().to(executions::detail_page))
        .route("/executors", web::get().to(executors::page))
        .route("/ui/api/dashboard", web::get().to(dashboard::data))
        .route(
            "/ui/api/executor-load",
            web::get().to(executors::load_history),
        )
        .route("/assets/ui/console.js", web::get().to(script))
        .route("/assets/ui/console.css", web::get().to(stylesheet));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// The page for a logged-in user, or a redirect to the login form.
async fn logged_in(
    req: &HttpRequest,
    render: impl FnOnce(&Session) -> String,
) -> AppResult<HttpResponse> {
    match session::from_request(req).await? {
        Some(session) => Ok(html::page_response(
            actix_web::http::StatusCode::OK,
            render(&session),
        )),
        None => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login"))
            .finish()),
    }
}
