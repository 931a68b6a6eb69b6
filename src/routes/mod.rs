//! The HTTP API (`/api/v1`), health endpoints, and the extractor configuration
//! that turns malformed input into `problem+json` answers naming the field.

mod cron;
mod fires;
mod health;
mod jobs;
mod views;

use actix_web::{error::InternalError, web, HttpRequest};

use crate::error::{problem_response, AppError};
use crate::state::AppState;

pub use cron::next_times;
pub use views::{FireView, JobView, Page};

pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(json_config(max_body_bytes))
        .app_data(web::PayloadConfig::new(max_body_bytes))
        .app_data(query_config())
        .app_data(path_config())
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/api/v1")
                .route("/jobs", web::post().to(jobs::create))
                .route("/jobs", web::get().to(jobs::list))
                .route("/jobs/{id}", web::get().to(jobs::get))
                .route("/jobs/{id}", web::put().to(jobs::update))
                .route("/jobs/{id}", web::delete().to(jobs::delete))
                .route("/jobs/{id}/pause", web::post().to(jobs::pause))
                .route("/jobs/{id}/resume", web::post().to(jobs::resume))
                .route("/jobs/{id}/run", web::post().to(jobs::run_now))
                .route("/fires", web::get().to(fires::list))
                .route("/fires/{id}", web::get().to(fires::get))
                .route("/fires/{id}/result", web::post().to(fires::write_back))
                .route("/cron/preview", web::get().to(cron::preview))
                .route("/nodes", web::get().to(health::nodes)),
        )
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError;
            let (status, detail) = match &err {
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => (
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than the {limit}-byte limit"),
                ),
                JsonPayloadError::ContentType => (
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Content-Type must be application/json".to_string(),
                ),
                JsonPayloadError::Deserialize(e) => (
                    actix_web::http::StatusCode::BAD_REQUEST,
                    format!("body: {e}"),
                ),
                other => (
                    actix_web::http::StatusCode::BAD_REQUEST,
                    format!("body: {other}"),
                ),
            };
            let title = if status.as_u16() == 400 {
                "Invalid request"
            } else {
                "Unacceptable body"
            };
            InternalError::from_response(err, problem_response(status, title, &detail)).into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let detail = format!("query: {err}");
        InternalError::from_response(
            err,
            problem_response(
                actix_web::http::StatusCode::BAD_REQUEST,
                "Invalid request",
                &detail,
            ),
        )
        .into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let detail = format!("path: {err}");
        InternalError::from_response(
            err,
            problem_response(
                actix_web::http::StatusCode::BAD_REQUEST,
                "Invalid request",
                &detail,
            ),
        )
        .into()
    })
}

/// Pagination shared by list endpoints.
pub(crate) fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), AppError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::invalid("limit", "must be between 1 and 500"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(AppError::invalid("offset", "must not be negative"));
    }
    Ok((limit, offset))
}

/// Ids are UUIDs; anything else cannot name a stored row.
pub(crate) fn parse_id(kind: &str, id: &str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| AppError::NotFound(format!("no {kind} with id {id:?} (ids are UUIDs)")))
}

pub(crate) type State = web::Data<AppState>;
