//! Wire protocol v1 between the cronhook scheduler and executors.
//!
//! Both sides use these types and the signing functions, so the scheduler and
//! the SDK cannot drift apart. `docs/protocol.md` describes the same thing for
//! executors written in other languages.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// Header carrying the fire id on a dispatch (lets a target de-duplicate without parsing).
pub const FIRE_HEADER: &str = "Cronhook-Fire";
/// Header carrying the scheduled instant (RFC 3339) on a dispatch.
pub const SCHEDULED_HEADER: &str = "Cronhook-Scheduled-At";
/// Header carrying the attempt number on a dispatch.
pub const ATTEMPT_HEADER: &str = "Cronhook-Attempt";
/// Header carrying `t=<unix seconds>,v1=<hex hmac>` on every signed request.
pub const SIGNATURE_HEADER: &str = "Cronhook-Signature";
/// How far a signature's timestamp may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Output bytes stored per fire; longer output is cut and marked truncated.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Body of a dispatch: scheduler → target.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DispatchRequest {
    pub fire_id: Uuid,
    pub job_id: Uuid,
    /// `<group>/<name>`
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    pub attempt: u32,
    pub scheduled_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    #[serde(default)]
    pub payload: serde_json::Value,
    pub callback_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

/// Final outcome an executor reports for a fire.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Succeeded,
    Failed,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Failed => "failed",
        }
    }
}

/// Body of a write-back: executor → `POST /api/v1/fires/{fire_id}/result`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WriteBack {
    /// The fire this result is for. Inside the signed body it binds the result to its
    /// fire, so a captured write-back cannot be replayed against another fire's URL.
    /// The scheduler requires it; the SDK fills it in when it sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_id: Option<Uuid>,
    pub status: ResultStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Path of the batch write-back: several results in one signed request. Each result
/// gets its own answer, as if it had been posted alone to its fire's result URL.
pub const RESULTS_PATH: &str = "/api/v1/fires/results";
/// Results in one batch write-back at most.
pub const MAX_RESULTS_PER_BATCH: usize = 500;

/// Body of a batch write-back: executor → `POST /api/v1/fires/results`. Every result
/// must carry its `fire_id`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WriteBackBatch {
    pub results: Vec<WriteBack>,
}

/// The scheduler's answer to a batch write-back (HTTP 200): one entry per result, in
/// the order sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriteBackBatchAnswer {
    pub results: Vec<WriteBackAnswer>,
}

/// How one result of a batch was taken: `status` is the HTTP status the result would
/// have had alone (200 accepted or identical repeat, 400, 404, 409, 500).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriteBackAnswer {
    /// `null` only for a result sent without its `fire_id`.
    pub fire_id: Option<Uuid>,
    pub status: u16,
    #[serde(default)]
    pub repeat: bool,
    #[serde(default)]
    pub after_cancel: bool,
    /// Why it was not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Body of a heartbeat: executor → `POST /api/v1/executors/heartbeat`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Heartbeat {
    pub app: String,
    pub instance_id: String,
    /// Base URL the scheduler dispatches to, e.g. `http://10.0.0.5:8080/cronhook`.
    pub address: String,
    #[serde(default)]
    pub handlers: Vec<String>,
    pub capacity: u32,
    #[serde(default)]
    pub running: u32,
    #[serde(default)]
    pub queued: u32,
    #[serde(default)]
    pub cpu_percent: f32,
    #[serde(default)]
    pub mem_used_bytes: u64,
    #[serde(default)]
    pub mem_total_bytes: u64,
    #[serde(default)]
    pub load1: f64,
    #[serde(default)]
    pub sdk_version: String,
    /// Optional protocol features this executor takes, e.g. [`FEATURE_DISPATCH_BATCH`].
    /// Executors that send none get the plain v1 protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// Heartbeat `features` entry of an executor that takes batch dispatches at
/// [`FIRES_BATCH_ROUTE`].
pub const FEATURE_DISPATCH_BATCH: &str = "dispatch_batch";
/// Route (below the SDK prefix) receiving several callback-mode dispatches in one signed
/// request: `POST {prefix}/fires/batch`. The scheduler uses it only for executors that
/// advertise [`FEATURE_DISPATCH_BATCH`].
pub const FIRES_BATCH_ROUTE: &str = "/fires/batch";
/// Fires in one batch dispatch at most.
pub const MAX_FIRES_PER_DISPATCH_BATCH: usize = 256;
/// Body bytes of one batch dispatch at most. Executors take batches up to this size
/// even when their own dispatch body limit is lower.
pub const MAX_DISPATCH_BATCH_BYTES: usize = 256 * 1024;
/// A fire whose dispatch body is larger than this is sent alone, so it meets the
/// executor's own body limit as before.
pub const MAX_BATCHED_FIRE_BYTES: usize = 64 * 1024;

/// Body of a batch dispatch: scheduler → `POST {prefix}/fires/batch`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DispatchBatch {
    pub fires: Vec<DispatchRequest>,
}

/// The executor's answer to a batch dispatch (HTTP 200): one entry per fire, in the
/// order sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DispatchBatchAnswer {
    pub answers: Vec<DispatchAnswer>,
}

/// How one fire of a batch was taken: `status` is the HTTP status its dispatch would
/// have had alone (202 accepted or duplicate, 404 no such handler, 429 busy, 503
/// shutting down).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DispatchAnswer {
    pub fire_id: Uuid,
    pub status: u16,
    /// Why it was not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Answer to a heartbeat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HeartbeatReply {
    pub heartbeat_ms: u64,
    #[serde(default)]
    pub cancel: Vec<Uuid>,
}

/// Path of the heartbeat endpoint on the scheduler.
pub const HEARTBEAT_PATH: &str = "/api/v1/executors/heartbeat";
/// Default path prefix under which the SDK mounts its routes.
pub const DEFAULT_PREFIX: &str = "/cronhook";
/// Route (below the SDK prefix) receiving dispatches: `POST {prefix}/fires`.
pub const FIRES_ROUTE: &str = "/fires";
/// Route (below the SDK prefix) answering health: `GET {prefix}/healthz`.
pub const HEALTH_ROUTE: &str = "/healthz";

/// Where an executor is with a fire it knows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorFireState {
    Queued,
    Running,
    Finished,
}

/// Answer to `GET {prefix}/fires/{fire_id}` on an executor (404 when it does not know
/// the fire). The request is signed like a dispatch, over an empty body, because a
/// finished fire's result may carry the job's output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FireStatusReply {
    pub fire_id: Uuid,
    pub state: ExecutorFireState,
    /// Present once the fire finished. `output` is only included while the result
    /// still waits for delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<WriteBack>,
    /// Whether the write-back is done (accepted, or finally refused by the scheduler).
    #[serde(default)]
    pub delivered: bool,
}

/// Answer to `GET {prefix}/healthz` on an executor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecutorHealth {
    /// `ok`, or `draining` while shutting down (then the status code is 503).
    pub status: String,
    pub running: u32,
    pub queued: u32,
    pub capacity: u32,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Cronhook-Signature header")]
    Missing,
    #[error("malformed Cronhook-Signature header (expected t=<unix seconds>,v1=<hex>)")]
    Malformed,
    #[error("signature timestamp is outside the {SIGNATURE_TOLERANCE_SECS} s tolerance")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

fn mac_for(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Cronhook-Signature` header value for `body` signed at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac_for(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// The header value for `body` signed now.
pub fn sign_now(secret: &[u8], body: &[u8]) -> String {
    sign(secret, Utc::now().timestamp(), body)
}

/// Checks a `Cronhook-Signature` header value against `body`, with a replay window
/// of [`SIGNATURE_TOLERANCE_SECS`] around `now` (unix seconds).
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            // Several v1 tags may be present while a secret is being rotated.
            "v1" => tags.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    // verify_slice compares in constant time.
    let matches = tags
        .iter()
        .any(|tag| mac_for(secret, timestamp, body).verify_slice(tag).is_ok());
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Cuts `output` to [`MAX_OUTPUT_BYTES`] on a character boundary; returns whether it was cut.
pub fn truncate_output(output: &mut String) -> bool {
    if output.len() <= MAX_OUTPUT_BYTES {
        return false;
    }
    let mut end = MAX_OUTPUT_BYTES;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    output.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_and_rejects_tampering() {
        let header = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(b"secret", Some(&header), b"{\"a\":1}", 1_700_000_010).is_ok());
        assert_eq!(
            verify(b"secret", Some(&header), b"{\"a\":2}", 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&header), b"{\"a\":1}", 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", Some(&header), b"{\"a\":1}", 1_700_000_000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"secret", None, b"", 0),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"secret", Some("v1=zz"), b"", 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "é".repeat(MAX_OUTPUT_BYTES);
        assert!(truncate_output(&mut s));
        assert!(s.len() <= MAX_OUTPUT_BYTES);
        let mut short = "ok".to_string();
        assert!(!truncate_output(&mut short));
    }
}
