//! The HTTP API (`/api/v1`), health endpoints, and the extractor configuration
//! that turns malformed input into `problem+json` answers naming the field.

mod calendars;
mod cron;
mod executors;
mod fires;
pub use fires::WriteBacks;
mod health;
mod jobs;
mod metrics;
pub mod openapi;
mod views;

use actix_web::dev::Payload;
use actix_web::{error::InternalError, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::{problem_response, AppError};
use crate::state::AppState;

pub use cron::next_times;
pub use executors::{executor_labels, ExecutorView};
pub use views::{FireView, Items, JobView, Page};

/// Declares the route table once: [`ROUTES`] lists it, `mount_routes` mounts exactly
/// it, so the OpenAPI coverage test compares the document with what is really served.
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// `(method, path)` of every route the server mounts (besides the web console).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn mount_routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

route_table! {
    get "/healthz" => health::healthz;
    get "/readyz" => health::readyz;
    get "/metrics" => metrics::metrics;
    get "/api/openapi.json" => openapi::document;
    get "/api/docs" => openapi::swagger_ui;
    get "/api/docs/{file}" => openapi::swagger_asset;
    post "/api/v1/jobs" => jobs::create;
    get "/api/v1/jobs" => jobs::list;
    get "/api/v1/jobs/{id}" => jobs::get;
    put "/api/v1/jobs/{id}" => jobs::update;
    delete "/api/v1/jobs/{id}" => jobs::delete;
    post "/api/v1/jobs/{id}/pause" => jobs::pause;
    post "/api/v1/jobs/{id}/resume" => jobs::resume;
    post "/api/v1/jobs/{id}/run" => jobs::run_now;
    get "/api/v1/fires" => fires::list;
    get "/api/v1/fires/{id}" => fires::get;
    post "/api/v1/fires/results" => fires::write_back_many;
    post "/api/v1/fires/{id}/result" => fires::write_back;
    post "/api/v1/fires/{id}/cancel" => fires::cancel;
    get "/api/v1/cron/preview" => cron::preview;
    get "/api/v1/executors" => executors::list;
    post "/api/v1/executors/heartbeat" => executors::heartbeat;
    get "/api/v1/nodes" => health::nodes;
    post "/api/v1/fires/{id}/retry" => fires::retry;
    get "/api/v1/jobs/{id}/plan" => calendars::plan_job;
    get "/api/v1/plan" => calendars::plan_all;
    post "/api/v1/groups/{group}/pause" => calendars::pause_group;
    post "/api/v1/groups/{group}/resume" => calendars::resume_group;
    post "/api/v1/calendars" => calendars::create;
    get "/api/v1/calendars" => calendars::list;
    get "/api/v1/calendars/{name}" => calendars::get;
    put "/api/v1/calendars/{name}" => calendars::replace;
    delete "/api/v1/calendars/{name}" => calendars::delete;
}

pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::new(max_body_bytes))
        .app_data(query_config())
        .app_data(path_config());
    mount_routes(cfg);
    cfg.configure(crate::ui::configure);
    cfg.default_service(web::to(not_found));
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
