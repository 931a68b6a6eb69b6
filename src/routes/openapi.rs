//! The OpenAPI 3.1 document, generated from the `#[utoipa::path]` annotations on the
//! handlers and the `ToSchema` types, served at `/api/openapi.json`; and Swagger UI at
//! `/api/docs`, from files vendored in `assets/swagger/` and compiled into the binary.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{AppError, AppResult, Problem};

/// `/readyz` answer: each check, and whether all passed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// This node's id (as in `/api/v1/nodes`).
    pub node: String,
    pub database: bool,
    pub migrations_applied: bool,
    pub scheduler_loop: bool,
}

/// `/healthz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// One scheduler node as `/api/v1/nodes` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub started_at: String,
    pub last_heartbeat_at: String,
    pub stopped_at: Option<String>,
    /// Not stopped, and its heartbeat is fresher than `scheduler.node_timeout_ms`.
    pub alive: bool,
}

// The health handlers live in `health.rs`, which builds its answers with `json!`;
// their descriptions are here, with the shapes above. The coverage test checks the
// live answers' fields against these shapes.

/// Liveness: the process answers HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process is alive", body = Health))
)]
#[allow(dead_code)]
fn healthz_doc() {}

/// Readiness: the database answers, every migration is applied and the scheduler loop
/// completed a round recently.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing check is false", body = Readiness)
    )
)]
#[allow(dead_code)]
fn readyz_doc() {}

/// The scheduler nodes sharing this database.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "cluster",
    operation_id = "list_nodes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Nodes", body = crate::routes::Items<NodeView>),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
#[allow(dead_code)]
fn nodes_doc() {}

/// Registers the two ways callers authenticate.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Admin API token: `Authorization: Bearer <token>` (the `admin_token` setting, or the one printed at first start).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                cronhook_sdk::protocol::SIGNATURE_HEADER,
                "Executor traffic: `t=<unix seconds>,v1=<hex HMAC-SHA256(signing_secret, \"<t>.<raw body>\")>`, at most 5 minutes off the server's clock.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cronhook",
        description = "A Quartz-style HTTP callback scheduler. Errors are `application/problem+json` (RFC 9457) whose `detail` names the offending field. Instants are RFC 3339 UTC strings.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        healthz_doc,
        readyz_doc,
        nodes_doc,
        super::metrics::metrics,
        document,
        swagger_ui,
        swagger_asset,
        super::jobs::create,
        super::jobs::list,
        super::jobs::get,
        super::jobs::update,
        super::jobs::delete,
        super::jobs::pause,
        super::jobs::resume,
        super::jobs::run_now,
        super::fires::list,
        super::fires::get,
        super::fires::write_back,
        super::fires::write_back_many,
        super::fires::cancel,
        super::cron::preview,
        super::executors::list,
        super::executors::heartbeat,
        super::fires::retry,
        super::calendars::create,
        super::calendars::list,
        super::calendars::get,
        super::calendars::replace,
        super::calendars::delete,
        super::calendars::plan_all,
        super::calendars::plan_job,
        super::calendars::pause_group,
        super::calendars::resume_group,
    ),
    components(schemas(
        Problem,
        cronhook_sdk::protocol::DispatchRequest,
        cronhook_sdk::protocol::Shard,
        crate::domain::FireState,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "jobs", description = "Jobs, their triggers, pause/resume and run-now"),
        (name = "fires", description = "Fire history and cancellation"),
        (name = "executors", description = "The executor protocol (signed) and the executor registry"),
        (name = "calendars", description = "Named exclusions (dates, weekdays, daily windows, cron) that triggers skip"),
        (name = "cron", description = "Quartz cron tools"),
        (name = "cluster", description = "Scheduler nodes"),
        (name = "operations", description = "Health, metrics and this documentation"),
    )
)]
pub struct ApiDoc;

/// The document, rendered once.
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .map_err(|e| e.to_string())
});

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
        (status = 500, description = "Internal error (details in the server log)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn document() -> AppResult<HttpResponse> {
    match &*DOCUMENT {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone())),
        Err(e) => Err(AppError::Internal(format!("OpenAPI document: {e}"))),
    }
}

const SWAGGER_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>cronhook API</title>
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
  </script>
</body>
</html>
"##;

/// Swagger UI for this document.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "operations",
    operation_id = "swagger_ui",
    responses((status = 200, description = "The Swagger UI page", content_type = "text/html", body = String))
)]
pub async fn swagger_ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(SWAGGER_PAGE)
}

const SWAGGER_BUNDLE: &[u8] = include_bytes!("../../assets/swagger/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger/swagger-ui.css");

/// The Swagger UI files the page loads.
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "operations",
    operation_id = "swagger_asset",
    params(("file" = String, Path, description = "`swagger-ui-bundle.js` or `swagger-ui.css`")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn swagger_asset(file: web::Path<String>) -> AppResult<HttpResponse> {
    let (body, content_type) = match file.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_BUNDLE, "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_CSS, "text/css; charset=utf-8"),
        other => {
            return Err(AppError::NotFound(format!(
                "no documentation file {other:?}"
            )))
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        // The files change only with the binary.
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(body))
}
