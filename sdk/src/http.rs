//! The executor's routes: dispatch, health, fire status.

use std::sync::Arc;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header::{CONTENT_LENGTH, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::web::{self, BytesMut, Data};
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::executor::Inner;
use crate::protocol::{
    self, DispatchAnswer, DispatchBatch, DispatchBatchAnswer, DispatchRequest, ExecutorFireState,
    ExecutorHealth, FireStatusReply, FIRES_BATCH_ROUTE, FIRES_ROUTE, FIRE_HEADER, HEALTH_ROUTE,
    SIGNATURE_HEADER,
};
use crate::state::{Admission, Known};
use crate::stats::Counters;

/// The executor's routes as an actix-web service: `App::new().service(executor.service())`.
///
/// Registers plain resources (no scope), so the host's own routes beside the prefix
/// keep working.
pub struct ExecutorService {
    inner: Arc<Inner>,
}

impl ExecutorService {
    pub(crate) fn new(inner: Arc<Inner>) -> ExecutorService {
        ExecutorService { inner }
    }
}

impl HttpServiceFactory for ExecutorService {
    fn register(self, config: &mut AppService) {
        let prefix = self.inner.config.prefix.clone();
        let data = Data::from(self.inner);
        web::resource(format!("{prefix}{FIRES_ROUTE}"))
            .app_data(data.clone())
            .route(web::post().to(dispatch))
            .register(config);
        // Before `/fires/{fire_id}`, which would otherwise take the path.
        web::resource(format!("{prefix}{FIRES_BATCH_ROUTE}"))
            .app_data(data.clone())
            .route(web::post().to(dispatch_batch))
            .register(config);
        web::resource(format!("{prefix}{FIRES_ROUTE}/{{fire_id}}"))
            .app_data(data.clone())
            .route(web::get().to(fire_status))
            .register(config);
        web::resource(format!("{prefix}{HEALTH_ROUTE}"))
            .app_data(data)
            .route(web::get().to(health))
            .register(config);
    }
}

/// `POST {prefix}/fires`: verify, parse, admit, answer 202 at once.
async fn dispatch(req: HttpRequest, payload: web::Payload, inner: Data<Inner>) -> HttpResponse {
    let body = match verified_body(&req, payload, &inner, inner.config.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let request: DispatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("invalid dispatch body: {e}"),
            )
        }
    };
    if let Some(header) = req.headers().get(FIRE_HEADER) {
        let matches = header
            .to_str()
            .ok()
            .and_then(|h| Uuid::parse_str(h.trim()).ok())
            == Some(request.fire_id);
        if !matches {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "{FIRE_HEADER} header does not match the body's fire_id {}",
                    request.fire_id
                ),
            );
        }
    }
    let id = request.fire_id;
    let (status, detail) = admit(&inner, request);
    if status == StatusCode::ACCEPTED {
        return accepted(id, detail);
    }
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return busy(status, detail);
    }
    problem(status, detail)
}

/// `POST {prefix}/fires/batch`: several callback-mode dispatches in one signed request
/// (sent only to executors that advertise the feature). Each fire is admitted as if it
/// had come alone and gets its own answer, in the order sent.
async fn dispatch_batch(
    req: HttpRequest,
    payload: web::Payload,
    inner: Data<Inner>,
) -> HttpResponse {
    let limit = inner
        .config
        .max_body_bytes
        .max(protocol::MAX_DISPATCH_BATCH_BYTES);
    let body = match verified_body(&req, payload, &inner, limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let batch: DispatchBatch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("invalid batch dispatch body: {e}"),
            )
        }
    };
    if batch.fires.len() > protocol::MAX_FIRES_PER_DISPATCH_BATCH {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch dispatch carries at most {} fires, this one {}",
                protocol::MAX_FIRES_PER_DISPATCH_BATCH,
                batch.fires.len()
            ),
        );
    }
    Counters::bump(&inner.counters.dispatch_batches);
    let answers = batch
        .fires
        .into_iter()
        .map(|request| {
            let fire_id = request.fire_id;
            let (status, detail) = admit(&inner, request);
            DispatchAnswer {
                fire_id,
                status: status.as_u16(),
                detail: (status != StatusCode::ACCEPTED).then_some(detail),
            }
        })
        .collect();
    HttpResponse::Ok().json(DispatchBatchAnswer { answers })
}

/// The body of a dispatch, once the executor is not shutting down (503), the body is
/// within `limit` (413) and its signature holds (401); otherwise the refusal.
async fn verified_body(
    req: &HttpRequest,
    payload: web::Payload,
    inner: &Inner,
    limit: usize,
) -> Result<BytesMut, HttpResponse> {
    if inner.table().is_draining() {
        return Err(busy(
            StatusCode::SERVICE_UNAVAILABLE,
            "the executor is shutting down",
        ));
    }
    let body = read_body(req, payload, limit).await?;
    match verify(req, inner, &body) {
        Some(refused) => Err(refused),
        None => Ok(body),
    }
}

/// Admits one verified dispatch: the status it is answered with (202 accepted or
/// duplicate, 404 no handler, 429 busy, 503 draining) and a word on why.
fn admit(inner: &Inner, request: DispatchRequest) -> (StatusCode, String) {
    match inner.admit(request) {
        Err(reason) => (StatusCode::NOT_FOUND, reason),
        Ok(Admission::Accepted) => (StatusCode::ACCEPTED, "accepted".into()),
        Ok(Admission::Duplicate) => (StatusCode::ACCEPTED, "duplicate".into()),
        Ok(Admission::Busy) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "all {} slots are busy and the queue of {} is full",
                inner.config.capacity, inner.config.queue_len
            ),
        ),
        Ok(Admission::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the executor is shutting down".into(),
        ),
    }
}

/// `GET {prefix}/healthz`: 200 while accepting, 503 while draining.
async fn health(inner: Data<Inner>) -> HttpResponse {
    let (running, queued, draining) = {
        let table = inner.table();
        (table.running(), table.queued(), table.is_draining())
    };
    let body = ExecutorHealth {
        status: if draining { "draining" } else { "ok" }.to_owned(),
        running: running as u32,
        queued: queued as u32,
        capacity: inner.config.capacity as u32,
    };
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(body)
}

/// `GET {prefix}/fires/{fire_id}` (signed over an empty body): what this instance knows.
async fn fire_status(req: HttpRequest, id: web::Path<String>, inner: Data<Inner>) -> HttpResponse {
    if let Some(refused) = verify(&req, &inner, b"") {
        return refused;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a fire id (uuid)", id.as_str()),
        );
    };
    let known = inner.table().status(id);
    let pending = || inner.outbox.read(id);
    let reply = match known {
        Some(Known::Queued) => reply(id, ExecutorFireState::Queued, None, false),
        Some(Known::Running) => reply(id, ExecutorFireState::Running, None, false),
        Some(Known::Finished { result, delivered }) => {
            // The table keeps no outputs; an undelivered result has its output on disk.
            let result = match delivered {
                false => pending().map(|e| e.result).unwrap_or(result),
                true => result,
            };
            reply(id, ExecutorFireState::Finished, Some(result), delivered)
        }
        // Finished before a restart and still waiting for delivery.
        None => match pending() {
            Some(entry) => reply(id, ExecutorFireState::Finished, Some(entry.result), false),
            None => {
                return problem(
                    StatusCode::NOT_FOUND,
                    format!("fire {id} is not known to this executor"),
                )
            }
        },
    };
    HttpResponse::Ok().json(reply)
}

fn reply(
    fire_id: Uuid,
    state: ExecutorFireState,
    result: Option<protocol::WriteBack>,
    delivered: bool,
) -> FireStatusReply {
    FireStatusReply {
        fire_id,
        state,
        result,
        delivered,
    }
}

/// The 401 answer for a request whose signature does not hold, if it does not.
fn verify(req: &HttpRequest, inner: &Inner, body: &[u8]) -> Option<HttpResponse> {
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|h| h.to_str().ok());
    protocol::verify(&inner.config.secret, header, body, Utc::now().timestamp())
        .err()
        .map(|e| problem(StatusCode::UNAUTHORIZED, e.to_string()))
}

/// Reads the body up to `limit` bytes (413 beyond, 400 if the stream breaks).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, HttpResponse> {
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("dispatch body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            problem(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn accepted(fire_id: Uuid, status: String) -> HttpResponse {
    HttpResponse::Accepted().json(json!({ "fire_id": fire_id, "status": status }))
}

/// 429/503: the scheduler should try another executor or later.
fn busy(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    let mut response = problem(status, detail);
    response.headers_mut().insert(
        RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("1"),
    );
    response
}

/// An `application/problem+json` answer with a human `detail`.
fn problem(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .body(body.to_string())
}
