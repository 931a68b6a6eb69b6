//! The HTTP API (`/api/v1`), health endpoints, and the extractor configuration
//! that turns malformed input into `problem+json` answers naming the field.

mod calendars;
mod cron;
mod executors;
mod fires;
mod health;
mod jobs;
mod views;

use actix_web::dev::Payload;
use actix_web::{error::InternalError, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::{problem_response, AppError};
use crate::state::AppState;

pub use cron::next_times;
pub use executors::{executor_labels, is_valid, ExecutorView};
pub use views::{FireView, JobView, Page};

pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::new(max_body_bytes))
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
                .route("/fires/{id}/cancel", web::post().to(fires::cancel))
                .route("/fires/{id}/retry", web::post().to(fires::retry))
                .route("/jobs/{id}/plan", web::get().to(calendars::plan_job))
                .route("/plan", web::get().to(calendars::plan_all))
                .route(
                    "/groups/{group}/pause",
                    web::post().to(calendars::pause_group),
                )
                .route(
                    "/groups/{group}/resume",
                    web::post().to(calendars::resume_group),
                )
                .route("/calendars", web::post().to(calendars::create))
                .route("/calendars", web::get().to(calendars::list))
                .route("/calendars/{name}", web::get().to(calendars::get))
                .route("/calendars/{name}", web::put().to(calendars::replace))
                .route("/calendars/{name}", web::delete().to(calendars::delete))
                .route("/executors", web::get().to(executors::list))
                .route("/executors/heartbeat", web::post().to(executors::heartbeat))
                .route("/nodes", web::get().to(health::nodes)),
        )
        .configure(crate::ui::configure)
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// A JSON request body whose errors name the field they are about
/// (`timeout_ms: invalid type: string "soon", expected u64`), unlike `web::Json`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = is_json_content_type(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(AppError::UnsupportedMediaType(
                    "Content-Type must be application/json".into(),
                ));
            }
            let bytes = bytes.await.map_err(body_read_error)?;
            parse_json(&bytes).map(JsonBody)
        })
    }
}

/// The raw request body (for signed requests, verified over the exact bytes), with
/// read failures answered as problems like every other error.
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move { bytes.await.map(RawBody).map_err(body_read_error) })
    }
}

fn is_json_content_type(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage;
    let content_type = req.content_type();
    content_type == "application/json" || content_type.ends_with("+json")
}

/// Maps a failure to read the body (too large, broken stream) to a problem answer.
pub(crate) fn body_read_error(e: actix_web::Error) -> AppError {
    use actix_web::error::PayloadError;
    match e.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            AppError::PayloadTooLarge("body larger than the configured max_body_bytes".into())
        }
        _ => AppError::Invalid(format!("body: {e}")),
    }
}

/// Parses JSON, naming the path of the offending field in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            AppError::Invalid(format!("body: {inner}"))
        } else {
            AppError::invalid(&path, inner)
        }
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
