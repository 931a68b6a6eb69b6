//! Test harness: a write-back/heartbeat receiver standing in for the scheduler, a
//! signed dispatch client, and polling with a bounded deadline.
#![allow(dead_code)] // each test binary uses a different part of it

use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use cronhook_sdk::protocol::{
    self, DispatchRequest, Heartbeat, HeartbeatReply, WriteBack, FIRE_HEADER, SIGNATURE_HEADER,
};
use cronhook_sdk::{handler_fn, Executor, ExecutorBuilder, FireContext, JobError, Output};
use serde_json::Value;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub const SECRET: &[u8] = b"test-secret";
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// What the fake scheduler saw.
#[derive(Default)]
pub struct ReceiverState {
    results: Mutex<Vec<(Uuid, WriteBack)>>,
    heartbeats: Mutex<Vec<Heartbeat>>,
    bad_signatures: AtomicUsize,
    /// Status answered to write-backs (200 unless a test changes it).
    pub answer: AtomicU16,
    /// Fire ids to cancel in the next heartbeat reply.
    pub cancel: Mutex<Vec<Uuid>>,
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<ReceiverState>,
    handle: ServerHandle,
}

impl Receiver {
    /// Starts on `port` (0 for any); must run inside an actix system.
    pub fn start(port: u16) -> Receiver {
        let state = Arc::new(ReceiverState {
            answer: AtomicU16::new(200),
            ..Default::default()
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/api/v1/fires/{id}/result", web::post().to(write_back))
                .route("/api/v1/executors/heartbeat", web::post().to(heartbeat))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .expect("receiver binds");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            port,
            state,
            handle,
        }
    }

    pub fn base(&self) -> String {
        base(self.port)
    }

    pub fn results_for(&self, id: Uuid) -> Vec<WriteBack> {
        self.state
            .results
            .lock()
            .unwrap()
            .iter()
            .filter(|(fire, _)| *fire == id)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The single result for `id`, once it arrived.
    pub async fn wait_result(&self, id: Uuid) -> WriteBack {
        wait_for(&format!("write-back of fire {id}"), || {
            self.results_for(id).into_iter().next()
        })
        .await
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.state.heartbeats.lock().unwrap().clone()
    }

    pub fn bad_signatures(&self) -> usize {
        self.state.bad_signatures.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

pub fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn verified(req: &HttpRequest, body: &[u8], state: &ReceiverState) -> bool {
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|h| h.to_str().ok());
    let ok = protocol::verify(SECRET, header, body, Utc::now().timestamp()).is_ok();
    if !ok {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn write_back(
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    if !verified(&req, &body, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let result: WriteBack = match serde_json::from_slice(&body) {
        Ok(result) => result,
        Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
    };
    let answer = state.answer.load(Ordering::SeqCst);
    if answer == 200 {
        state.results.lock().unwrap().push((*id, result));
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answer).unwrap()).finish()
}

async fn heartbeat(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    if !verified(&req, &body, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let beat: Heartbeat = match serde_json::from_slice(&body) {
        Ok(beat) => beat,
        Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
    };
    state.heartbeats.lock().unwrap().push(beat);
    let cancel = std::mem::take(&mut *state.cancel.lock().unwrap());
    HttpResponse::Ok().json(HeartbeatReply {
        heartbeat_ms: 100,
        cancel,
    })
}

/// Polls `check` until it yields a value; panics after [`PATIENCE`].
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test executor's settings: fast retries and heartbeats, outbox in `dir`.
pub fn builder(scheduler_port: u16, dir: &Path) -> ExecutorBuilder {
    Executor::builder(base(scheduler_port), "test-app", SECRET)
        .outbox_dir(dir)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .heartbeat_interval(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(10))
        .flush_timeout(Duration::from_millis(500))
}

/// A dispatch for `handler` whose results go to the receiver on `callback_port`.
pub fn fire(
    callback_port: u16,
    handler: Option<&str>,
    payload: Value,
    deadline_in: Duration,
) -> DispatchRequest {
    let fire_id = Uuid::new_v4();
    let now = Utc::now();
    DispatchRequest {
        fire_id,
        job_id: Uuid::new_v4(),
        job: "tests/job".into(),
        handler: handler.map(str::to_owned),
        attempt: 1,
        scheduled_at: now,
        fired_at: now,
        deadline: now + chrono::Duration::from_std(deadline_in).unwrap(),
        payload,
        callback_url: format!("{}/api/v1/fires/{fire_id}/result", base(callback_port)),
        shard: None,
    }
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

/// POSTs raw `body` to `url` signed with `secret` (no signature when `None`).
pub async fn post_raw(url: &str, body: Vec<u8>, secret: Option<&[u8]>) -> Answer {
    let client = awc::Client::default();
    let mut request = client
        .post(url)
        .insert_header(("Content-Type", "application/json"));
    if let Some(secret) = secret {
        request = request.insert_header((SIGNATURE_HEADER, protocol::sign_now(secret, &body)));
    }
    let response = request.send_body(body).await.expect("executor answers");
    read(response).await
}

/// Sends `fire` to the executor's dispatch route, signed with the test secret.
pub async fn dispatch(address: &str, fire: &DispatchRequest) -> Answer {
    let body = serde_json::to_vec(fire).unwrap();
    let client = awc::Client::default();
    let response = client
        .post(format!("{address}/fires"))
        .insert_header(("Content-Type", "application/json"))
        .insert_header((FIRE_HEADER, fire.fire_id.to_string()))
        .insert_header((SIGNATURE_HEADER, protocol::sign_now(SECRET, &body)))
        .send_body(body)
        .await
        .expect("executor answers");
    read(response).await
}

/// GETs `url`, signed over the empty body when `signed`.
pub async fn get(url: &str, signed: bool) -> Answer {
    let client = awc::Client::default();
    let mut request = client.get(url);
    if signed {
        request = request.insert_header((SIGNATURE_HEADER, protocol::sign_now(SECRET, b"")));
    }
    let response = request.send().await.expect("executor answers");
    read(response).await
}

async fn read<S>(mut response: awc::ClientResponse<S>) -> Answer
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.body().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

/// Counts runs; returns its payload as output.
pub fn echo(runs: Arc<AtomicUsize>) -> impl cronhook_sdk::Handler {
    handler_fn(move |ctx: FireContext| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Output::from(ctx.payload_value().clone())))
    })
}

/// A gate handlers wait at; closed until [`open`] adds permits.
pub fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

pub fn open(gate: &Semaphore) {
    gate.add_permits(1000);
}

/// Counts runs, then waits at `gate` before succeeding with "passed".
pub fn gated(runs: Arc<AtomicUsize>, gate: Arc<Semaphore>) -> impl cronhook_sdk::Handler {
    handler_fn(move |_ctx: FireContext| {
        runs.fetch_add(1, Ordering::SeqCst);
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.map_err(JobError::from)?;
            Ok(Output::text("passed"))
        }
    })
}

pub fn count(runs: &AtomicUsize) -> usize {
    runs.load(Ordering::SeqCst)
}
