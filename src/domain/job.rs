//! A job: what to call (target, payload, mode) and the policies around its fires.

use serde::{Deserialize, Serialize};

use super::trigger::TriggerInput;
use crate::error::AppError;

/// The body of `POST /api/v1/jobs` and `PUT /api/v1/jobs/{id}`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    #[serde(default = "default_group")]
    pub group: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub target: Target,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub concurrency: Concurrency,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub triggers: Vec<TriggerInput>,
    /// Jobs (`group/name`) run once when a fire of this job succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// Jobs run once when a fire of this job fails for good (`failed`, `timed_out`,
    /// `lost`, with no retry left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Receives a signed JSON alert when a fire fails for good; the global
    /// `alert_url` setting applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_url: Option<String>,
    /// Create the job paused.
    #[serde(default)]
    pub paused: bool,
    /// Finished fires of this job kept by retention, the newest; overrides the
    /// `retention.max_fires_per_job` setting for this job (`0`: no limit).
    #[serde(default)]
    pub keep_fires: Option<u32>,
}

fn default_group() -> String {
    "default".into()
}

/// What is stored in `jobs.spec`: everything about a job except its key and triggers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct JobSpec {
    pub target: Target,
    pub mode: Mode,
    pub payload: serde_json::Value,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
    pub concurrency: Concurrency,
    pub routing: Routing,
    /// Jobs (`group/name`) run once when a fire of this job succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// Jobs run once when a fire of this job fails for good (`failed`, `timed_out`,
    /// `lost`, with no retry left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// Receives a signed JSON alert when a fire fails for good; the global
    /// `alert_url` setting applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_url: Option<String>,
    /// Per-job retention count (see [`JobInput::keep_fires`]); absent in specs stored before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_fires: Option<u32>,
}

/// Child jobs must be job keys; the alert URL an http(s) URL.
fn validate_follow_ups(
    on_success: &[String],
    on_failure: &[String],
    alert_url: Option<&str>,
) -> Result<(), AppError> {
    for (field, children) in [("on_success", on_success), ("on_failure", on_failure)] {
        for (i, child) in children.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some((group, name)) = child.split_once('/') else {
                return Err(AppError::invalid(
                    &field,
                    format!("{child:?} is not a job key (group/name)"),
                ));
            };
            validate_key_part(&field, group)?;
            validate_key_part(&field, name)?;
        }
    }
    if let Some(url) = alert_url {
        validate_http_url("alert_url", url)?;
    }
    Ok(())
}

/// An absolute http(s) URL with a host.
pub fn validate_http_url(field: &str, url: &str) -> Result<(), AppError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| AppError::invalid(field, format!("{url:?} is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AppError::invalid(
            field,
            format!(
                "scheme {:?} not supported (use http or https)",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(AppError::invalid(field, "has no host"));
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The instance a `pinned` job must run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Pinned jobs: what a fire does while the instance is not valid.
    #[serde(default)]
    pub when_unavailable: WhenUnavailable,
}

/// `callback`: the target answers 202 and posts the result later (SDK).
/// `sync`: a plain webhook; its 2xx answer is the result.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Callback,
    Sync,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub backoff_ms: u64,
    /// Cap on the wait between attempts.
    pub max_backoff_ms: u64,
    /// Growth of the wait from one attempt to the next.
    pub multiplier: f64,
    /// Random spread of each wait, as a fraction (0.1 = ±10 %), so retries of many fires do not align.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt `failed_attempt + 1`, jitter applied with `unit` in [0, 1).
    pub fn backoff_after(&self, failed_attempt: u32, unit: f64) -> u64 {
        let exponent = failed_attempt.saturating_sub(1).min(64) as i32;
        let base = (self.backoff_ms as f64 * self.multiplier.powi(exponent))
            .min(self.max_backoff_ms as f64);
        let spread = base * self.jitter * (unit * 2.0 - 1.0);
        (base + spread).max(0.0).round() as u64
    }

    fn validate(&self) -> Result<(), AppError> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(AppError::invalid(
                "retry.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.max_backoff_ms < self.backoff_ms {
            return Err(AppError::invalid(
                "retry.max_backoff_ms",
                "must not be smaller than retry.backoff_ms",
            ));
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            return Err(AppError::invalid(
                "retry.multiplier",
                "must be between 1 and 10",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(AppError::invalid("retry.jitter", "must be between 0 and 1"));
        }
        Ok(())
    }
}

/// What happens when a fire is due while another fire of the same job still runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    #[default]
    Allow,
    /// Record the new fire as `skipped`.
    Forbid,
    /// Cancel the running fire (through its executor's heartbeat) and run the new one.
    Replace,
    /// Hold the new fire until the running one ends: one at a time, in order.
    Queue,
}

/// How an executor is picked when the target is an app (DESIGN.md, executor selection).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Fewest open fires (task list), ties by reported running + queued.
    #[default]
    LeastLoaded,
    /// Least estimated time to drain its task list, from the jobs' observed average durations.
    ShortestEta,
    RoundRobin,
    Random,
    /// Same executor for the same job while it stays valid.
    ConsistentHash,
    /// Only `target.instance`; never another one.
    Pinned,
    /// Every valid executor, each fire carrying its shard index and total.
    Broadcast,
    /// First valid executor in registration order.
    Failover,
}

/// What a pinned fire does while its instance is not valid.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// End the fire `failed` (the retry policy may add an attempt).
    #[default]
    Fail,
    /// Keep the fire waiting (re-checked every second) until the job's timeout passes.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Active,
    Paused,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Active => "active",
            JobState::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "active" => Some(JobState::Active),
            "paused" => Some(JobState::Paused),
            _ => None,
        }
    }
}

const MAX_KEY_LEN: usize = 128;
/// Hard cap for a job's timeout: a week.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

fn validate_key_part(field: &str, value: &str) -> Result<(), AppError> {
    if value.is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(AppError::invalid(
            field,
            format!("longer than {MAX_KEY_LEN} characters"),
        ));
    }
    // Keeps `group/name` unambiguous in paths, logs and metrics.
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(AppError::invalid(
            field,
            format!("character {bad:?} not allowed (use letters, digits, '-', '_', '.')"),
        ));
    }
    Ok(())
}

impl Target {
    fn validate(&self) -> Result<(), AppError> {
        match (&self.url, &self.app) {
            (Some(url), None) => {
                if self.handler.is_some() {
                    return Err(AppError::invalid(
                        "target.handler",
                        "only used with target.app",
                    ));
                }
                validate_http_url("target.url", url)
            }
            (None, Some(app)) => {
                validate_key_part("target.app", app)?;
                if self.handler.as_deref().is_some_and(str::is_empty) {
                    return Err(AppError::invalid("target.handler", "must not be empty"));
                }
                Ok(())
            }
            (Some(_), Some(_)) => Err(AppError::invalid(
                "target",
                "give either url or app, not both",
            )),
            (None, None) => Err(AppError::invalid("target", "needs url (or app + handler)")),
        }
    }

    pub fn describe(&self) -> String {
        match (&self.url, &self.app) {
            (Some(url), _) => url.clone(),
            (None, Some(app)) => format!(
                "app {app} handler {}",
                self.handler.as_deref().unwrap_or("(default)")
            ),
            _ => String::new(),
        }
    }
}

impl JobInput {
    fn validate_routing(&self) -> Result<(), AppError> {
        let pinned = self.routing == Routing::Pinned;
        if self.target.app.is_none() && self.routing != Routing::default() {
            return Err(AppError::invalid(
                "routing",
                "only used with target.app (a url target has one endpoint)",
            ));
        }
        match (&self.target.instance, pinned) {
            (None, true) => Err(AppError::invalid(
                "target.instance",
                "required with routing pinned (the instance id that must run the job)",
            )),
            (Some(_), false) => Err(AppError::invalid(
                "target.instance",
                "only used with routing pinned",
            )),
            _ => Ok(()),
        }
    }

    /// Checks every field and returns the spec to store; the triggers are validated separately.
    pub fn validate(&self, default_timeout_ms: u64) -> Result<JobSpec, AppError> {
        validate_key_part("group", &self.group)?;
        validate_key_part("name", &self.name)?;
        if self.description.len() > 4_096 {
            return Err(AppError::invalid(
                "description",
                "longer than 4096 characters",
            ));
        }
        self.target.validate()?;
        let timeout_ms = self.timeout_ms.unwrap_or(default_timeout_ms);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(AppError::invalid(
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        self.retry.validate()?;
        self.validate_routing()?;
        if self.triggers.len() > 32 {
            return Err(AppError::invalid("triggers", "at most 32 triggers per job"));
        }
        validate_follow_ups(
            &self.on_success,
            &self.on_failure,
            self.alert_url.as_deref(),
        )?;
        Ok(JobSpec {
            target: self.target.clone(),
            mode: self.mode,
            payload: self.payload.clone(),
            timeout_ms,
            retry: self.retry.clone(),
            concurrency: self.concurrency,
            routing: self.routing,
            on_success: self.on_success.clone(),
            on_failure: self.on_failure.clone(),
            alert_url: self.alert_url.clone(),
            keep_fires: self.keep_fires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 5,
            backoff_ms: 100,
            max_backoff_ms: 350,
            multiplier: 2.0,
            jitter: 0.0,
        };
        assert_eq!(policy.backoff_after(1, 0.5), 100);
        assert_eq!(policy.backoff_after(2, 0.5), 200);
        assert_eq!(policy.backoff_after(3, 0.5), 350);
        let jittered = RetryPolicy {
            jitter: 0.5,
            ..policy
        };
        assert_eq!(jittered.backoff_after(1, 0.0), 50);
        assert_eq!(jittered.backoff_after(1, 0.999_999), 150);
    }

    #[test]
    fn key_parts_reject_slashes() {
        let err = validate_key_part("name", "a/b").unwrap_err().to_string();
        assert!(err.starts_with("name: character '/'"), "{err}");
    }
}
