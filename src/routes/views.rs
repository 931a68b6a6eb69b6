//! JSON shapes the API returns. Instants are RFC 3339 UTC strings.

use serde::{Deserialize, Serialize};

use crate::db::fires::FireRow;
use crate::domain::{Concurrency, Mode, RetryPolicy, Routing, Target, TriggerSpec};
use crate::lifecycle::StoredJob;
use crate::time::to_rfc3339;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A list answered whole, without paging.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub id: String,
    /// The trigger as it was given (instants as RFC 3339).
    #[serde(flatten)]
    #[schema(value_type = crate::domain::TriggerInput)]
    pub spec: serde_json::Value,
    pub next_fire_at: Option<String>,
    pub fire_count: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub group: String,
    pub name: String,
    pub description: String,
    /// `active`, `paused`, or `pausing` (paused while a fire still runs).
    pub state: String,
    pub version: i32,
    pub target: Target,
    pub mode: Mode,
    pub payload: serde_json::Value,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
    pub concurrency: Concurrency,
    pub routing: Routing,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_url: Option<String>,
    /// Per-job retention count, when set (`0`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_fires: Option<u32>,
    pub triggers: Vec<TriggerView>,
    pub next_fire_at: Option<String>,
    pub running: i64,
    pub created_at: String,
    pub updated_at: String,
}

fn trigger_view(row: &crate::db::triggers::TriggerRow, spec: &TriggerSpec) -> TriggerView {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    // Stored instants are epoch ms; show them like every other instant.
    if let Some(map) = value.as_object_mut() {
        for key in ["at", "start_at"] {
            if let Some(ms) = map.get(key).and_then(|v| v.as_i64()) {
                map.insert(key.into(), serde_json::Value::String(to_rfc3339(ms)));
            }
        }
    }
    TriggerView {
        id: row.id.clone(),
        spec: value,
        next_fire_at: row.next_fire_at.map(to_rfc3339),
        fire_count: row.fire_count,
    }
}

impl From<&StoredJob> for JobView {
    fn from(stored: &StoredJob) -> Self {
        let state = match (stored.job.state.as_str(), stored.running) {
            ("paused", n) if n > 0 => "pausing".to_string(),
            (s, _) => s.to_string(),
        };
        JobView {
            id: stored.job.id.clone(),
            group: stored.job.group_name.clone(),
            name: stored.job.name.clone(),
            description: stored.job.description.clone(),
            state,
            version: stored.job.version,
            target: stored.spec.target.clone(),
            mode: stored.spec.mode,
            payload: stored.spec.payload.clone(),
            timeout_ms: stored.spec.timeout_ms,
            retry: stored.spec.retry.clone(),
            concurrency: stored.spec.concurrency,
            routing: stored.spec.routing,
            on_success: stored.spec.on_success.clone(),
            on_failure: stored.spec.on_failure.clone(),
            alert_url: stored.spec.alert_url.clone(),
            keep_fires: stored.spec.keep_fires,
            triggers: stored
                .triggers
                .iter()
                .map(|(row, spec)| trigger_view(row, spec))
                .collect(),
            next_fire_at: stored.next_fire_at().map(to_rfc3339),
            running: stored.running,
            created_at: to_rfc3339(stored.job.created_at),
            updated_at: to_rfc3339(stored.job.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireView {
    pub id: String,
    pub job_id: String,
    pub trigger_id: Option<String>,
    pub job_version: i32,
    pub attempt: i32,
    pub state: String,
    pub scheduled_at: String,
    pub due_at: String,
    pub fired_at: String,
    pub dispatched_at: Option<String>,
    pub acked_at: Option<String>,
    pub finished_at: Option<String>,
    pub deadline_at: Option<String>,
    pub executor: Option<String>,
    pub http_status: Option<i32>,
    pub payload: Option<serde_json::Value>,
    pub output: Option<String>,
    pub output_truncated: bool,
    pub error: Option<String>,
    pub reported_started_at: Option<String>,
    pub reported_finished_at: Option<String>,
    pub late_result: Option<serde_json::Value>,
    pub node: Option<String>,
    /// Broadcast share: `{index, total}`; absent for ordinary fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<serde_json::Value>,
}

impl From<&FireRow> for FireView {
    fn from(f: &FireRow) -> Self {
        let json = |s: &Option<String>| s.as_deref().and_then(|t| serde_json::from_str(t).ok());
        FireView {
            id: f.id.clone(),
            job_id: f.job_id.clone(),
            trigger_id: f.trigger_id.clone(),
            job_version: f.job_version,
            attempt: f.attempt,
            state: f.state.clone(),
            scheduled_at: to_rfc3339(f.scheduled_at),
            due_at: to_rfc3339(f.due_at),
            fired_at: to_rfc3339(f.fired_at),
            dispatched_at: f.dispatched_at.map(to_rfc3339),
            acked_at: f.acked_at.map(to_rfc3339),
            finished_at: f.finished_at.map(to_rfc3339),
            deadline_at: f.deadline_at.map(to_rfc3339),
            executor: f.executor.clone(),
            http_status: f.http_status,
            payload: json(&f.payload),
            output: f.output.clone(),
            output_truncated: f.output_truncated,
            error: f.error.clone(),
            reported_started_at: f.reported_started_at.map(to_rfc3339),
            reported_finished_at: f.reported_finished_at.map(to_rfc3339),
            late_result: json(&f.late_result),
            node: f.owner_node.clone(),
            shard: (f.shard_total > 1)
                .then(|| serde_json::json!({ "index": f.shard_index, "total": f.shard_total })),
        }
    }
}
