//! Heartbeats: tell the scheduler this instance is alive, what it can run and how
//! loaded it is; the reply may change the period and cancel fires.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;

use crate::protocol::{self, Heartbeat, HeartbeatReply, HEARTBEAT_PATH, SIGNATURE_HEADER};
use crate::runner::CANCELLED;
use crate::runtime::Runtime;

/// Bounds on the period the scheduler may ask for.
const MIN_PERIOD: Duration = Duration::from_millis(100);
const MAX_PERIOD: Duration = Duration::from_secs(600);
/// While heartbeats keep failing, a warn line at most this often (debug otherwise).
const WARN_PERIOD: Duration = Duration::from_secs(60);

pub(crate) async fn run(rt: Rc<Runtime>, first_period: Duration) {
    let config = &rt.inner.config;
    let url = format!("{}{HEARTBEAT_PATH}", config.scheduler_url);
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(config.writeback_timeout)
        .finish();
    let mut system = sysinfo::System::new();
    let mut period = first_period;
    let mut reach = Reachability::default();
    let mut told_no_address = false;
    loop {
        let Some(address) = rt.inner.address() else {
            if !told_no_address {
                log::info!(
                    "no advertised address yet: heartbeats wait for one (set .advertise_address(..) when mounting the routes)"
                );
                told_no_address = true;
            }
            let _ = tokio::time::timeout(period, rt.inner.address_set.notified()).await;
            continue;
        };
        let beat = collect(&rt, &mut system, address);
        match send(&client, &url, &config.secret, &beat).await {
            Ok(reply) => {
                reach.succeeded(&url);
                if reply.heartbeat_ms > 0 {
                    period =
                        Duration::from_millis(reply.heartbeat_ms).clamp(MIN_PERIOD, MAX_PERIOD);
                }
                if !reply.cancel.is_empty() {
                    rt.cancel(&reply.cancel, CANCELLED);
                }
            }
            Err(reason) => reach.failed(&url, &reason),
        }
        tokio::time::sleep(period).await;
    }
}

fn collect(rt: &Runtime, system: &mut sysinfo::System, address: String) -> Heartbeat {
    let config = &rt.inner.config;
    let stats = rt.inner.stats();
    // CPU usage is the change since the previous refresh: the first beat reports 0.
    system.refresh_cpu_usage();
    system.refresh_memory();
    Heartbeat {
        app: config.app.clone(),
        instance_id: config.instance_id.clone(),
        address,
        handlers: rt.inner.handler_names(),
        capacity: to_u32(stats.capacity),
        running: to_u32(stats.running),
        queued: to_u32(stats.queued),
        cpu_percent: system.global_cpu_usage(),
        mem_used_bytes: system.used_memory(),
        mem_total_bytes: system.total_memory(),
        load1: sysinfo::System::load_average().one,
        sdk_version: crate::SDK_VERSION.to_owned(),
        features: if config.dispatch_batches {
            vec![crate::protocol::FEATURE_DISPATCH_BATCH.to_owned()]
        } else {
            Vec::new()
        },
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn send(
    client: &awc::Client,
    url: &str,
    secret: &[u8],
    beat: &Heartbeat,
) -> Result<HeartbeatReply, String> {
    let body = serde_json::to_vec(beat).map_err(|e| format!("could not encode: {e}"))?;
    let mut response = client
        .post(url)
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((SIGNATURE_HEADER, protocol::sign_now(secret, &body)))
        .send_body(Bytes::from(body))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .body()
        .limit(64 * 1024)
        .await
        .map_err(|e| format!("unreadable answer ({status}): {e}"))?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        return Err(format!("answer {status}: {text}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("unexpected answer: {e}"))
}

/// Rate-limits the log lines of a scheduler that is down or does not know heartbeats.
#[derive(Default)]
struct Reachability {
    failing_since: Option<Instant>,
    last_warn: Option<Instant>,
}

impl Reachability {
    fn failed(&mut self, url: &str, reason: &str) {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let due = self
            .last_warn
            .is_none_or(|last| now.duration_since(last) >= WARN_PERIOD);
        if due {
            self.last_warn = Some(now);
            log::warn!(
                "heartbeat to {url} failed for {}s: {reason}; fires keep running and heartbeats keep trying",
                now.duration_since(since).as_secs()
            );
        } else {
            log::debug!("heartbeat to {url} failed: {reason}");
        }
    }

    fn succeeded(&mut self, url: &str) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "heartbeats to {url} work again after {}s",
                since.elapsed().as_secs()
            );
        }
        self.last_warn = None;
    }
}
