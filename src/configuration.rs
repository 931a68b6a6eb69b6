//! Settings: built-in defaults, then a TOML file, then `CRONHOOK_*` environment
//! variables, then command-line flags — each layer overrides the one before.
//! Nested settings use a double underscore in the environment
//! (`CRONHOOK_SCHEDULER__LOOKAHEAD_MS=500`).

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

// Debug is written by hand below: the secrets must not reach a log through `{:?}`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server binds, e.g. `127.0.0.1:7070`.
    pub listen: String,
    /// `sqlite://path/to/file.db` (or a plain path) or `postgres://…`.
    pub database_url: String,
    /// Base URL executors use to reach this node (write-backs, heartbeats); defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Admin bearer token. When unset, one is generated on first start, stored hashed and printed once.
    pub admin_token: Option<String>,
    /// Password of the web console's `admin` user. When unset, one is generated on first
    /// start, stored as an argon2 hash and printed once.
    pub admin_password: Option<String>,
    /// HMAC key for executor traffic. When unset, one is generated on first start, stored and printed once.
    pub signing_secret: Option<String>,
    /// Largest request body accepted by the API, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads (0 = one per core).
    pub http_workers: usize,
    /// `text` (default) or `json` log lines.
    pub log_format: String,
    /// Receives a signed JSON alert when a fire fails for good (jobs may name their own
    /// `alert_url`). Stored in the database at start, so give every node the same value.
    pub alert_url: Option<String>,
    pub scheduler: SchedulerSettings,
    pub retention: RetentionSettings,
}

/// How long finished fires are kept. Purges run in the background on `schedule`, in
/// batches of `batch_size` rows, each its own short transaction, so claiming never
/// waits behind a long delete. Only finished fires are removed, never fired or running ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Finished fires older than this many days (by finish time) are removed; 0 keeps them.
    pub max_age_days: u32,
    /// At most this many finished fires are kept per job, the newest; 0 means no limit.
    pub max_fires_per_job: u32,
    /// Quartz cron expression (UTC) for the housekeeping run.
    pub schedule: String,
    /// Rows removed per transaction.
    pub batch_size: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age_days: 30,
            max_fires_per_job: 10_000,
            schedule: "0 */10 * * * ?".into(),
            batch_size: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// How far ahead due triggers are claimed and turned into fire rows.
    pub lookahead_ms: u64,
    /// Longest sleep between two claim rounds when nothing wakes the loop earlier.
    pub poll_interval_ms: u64,
    /// Triggers (and pending fires) claimed per claim write; a busy round sends several.
    pub batch_size: i64,
    /// A trigger later than this is misfired and its misfire policy applies.
    pub misfire_threshold_ms: u64,
    /// Upper bound for `catch_up` misfire handling per trigger and claim.
    pub catch_up_max: u32,
    /// Dispatches in flight at once on this node.
    pub dispatch_concurrency: usize,
    /// Longest wait for a target to answer a dispatch.
    pub dispatch_timeout_ms: u64,
    /// Default per-fire time limit for jobs that set none.
    pub default_job_timeout_ms: u64,
    /// A running fire is marked `timed_out` this long after its deadline, so the
    /// executor's own timeout report (sent at the deadline) gets there first.
    pub deadline_grace_ms: u64,
    /// How often sweepers (deadlines, node takeover) run.
    pub sweep_interval_ms: u64,
    /// A node whose heartbeat is older than this is dead.
    pub node_timeout_ms: u64,
    /// How long a stopping node waits for in-flight dispatches.
    pub shutdown_grace_ms: u64,
    /// Heartbeat period the scheduler asks executors for.
    pub executor_heartbeat_ms: u64,
    /// An executor whose last heartbeat is older than this is invalid: no new work.
    pub executor_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:7070".into(),
            database_url: "sqlite://data/cronhook.db".into(),
            public_url: None,
            admin_token: None,
            admin_password: None,
            signing_secret: None,
            max_body_bytes: 256 * 1024,
            http_workers: 0,
            log_format: "text".into(),
            alert_url: None,
            scheduler: SchedulerSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            lookahead_ms: 1_000,
            poll_interval_ms: 250,
            batch_size: 128,
            misfire_threshold_ms: 10_000,
            catch_up_max: 100,
            dispatch_concurrency: 512,
            dispatch_timeout_ms: 10_000,
            default_job_timeout_ms: 300_000,
            deadline_grace_ms: 2_000,
            sweep_interval_ms: 1_000,
            node_timeout_ms: 15_000,
            shutdown_grace_ms: 10_000,
            executor_heartbeat_ms: 3_000,
            executor_timeout_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { Some("<redacted>") } else { None };
        let database = crate::db::Backend::from_url(&self.database_url)
            .map(|b| b.describe())
            .unwrap_or_else(|_| "<unparsable>".into());
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &database)
            .field("public_url", &self.public_url)
            .field("admin_token", &hidden(self.admin_token.is_some()))
            .field("signing_secret", &hidden(self.signing_secret.is_some()))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("http_workers", &self.http_workers)
            .field("log_format", &self.log_format)
            .field("alert_url", &self.alert_url)
            .field("scheduler", &self.scheduler)
            .field("retention", &self.retention)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults ← `file` (if given) ← environment; `overrides` (flags) are merged last.
    pub fn load(
        file: Option<&Path>,
        overrides: Serialized<serde_json::Value>,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only keys the settings know are read from the environment, so unrelated
        // CRONHOOK_* variables (the test suite's, say) do not break start-up.
        figment = figment
            .merge(Env::prefixed("CRONHOOK_").split("__").filter(|k| {
                // Keys keep the environment's case here (CRONHOOK_DATABASE_URL → DATABASE_URL).
                let k = k.as_str().to_ascii_lowercase();
                Settings::ENV_KEYS.iter().any(|known| {
                    k == *known || k.starts_with("scheduler.") || k.starts_with("retention.")
                })
            }))
            .merge(overrides);
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    const ENV_KEYS: &'static [&'static str] = &[
        "listen",
        "database_url",
        "public_url",
        "admin_token",
        "admin_password",
        "signing_secret",
        "max_body_bytes",
        "http_workers",
        "log_format",
        "alert_url",
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.scheduler.batch_size < 1 {
            return Err(ConfigError::Invalid(
                "scheduler.batch_size must be at least 1".into(),
            ));
        }
        if self.scheduler.dispatch_concurrency < 1 {
            return Err(ConfigError::Invalid(
                "scheduler.dispatch_concurrency must be at least 1".into(),
            ));
        }
        if self.retention.batch_size < 1 {
            return Err(ConfigError::Invalid(
                "retention.batch_size must be at least 1".into(),
            ));
        }
        crate::schedule::cron::CronExpr::parse(&self.retention.schedule).map_err(|e| {
            ConfigError::Invalid(format!(
                "retention.schedule {:?} is not a Quartz cron expression: {e}",
                self.retention.schedule
            ))
        })?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            )));
        }
        if let Some(url) = &self.public_url {
            url::Url::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("public_url {url:?}: {e}")))?;
        }
        if let Some(url) = &self.alert_url {
            crate::domain::job::validate_http_url("alert_url", url)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if matches!(&self.admin_token, Some(t) if t.len() < 16) {
            return Err(ConfigError::Invalid(
                "admin_token must be at least 16 characters".into(),
            ));
        }
        if matches!(&self.admin_password, Some(p) if p.chars().count() < 8) {
            return Err(ConfigError::Invalid(
                "admin_password must be at least 8 characters".into(),
            ));
        }
        if matches!(&self.signing_secret, Some(s) if s.len() < 16) {
            return Err(ConfigError::Invalid(
                "signing_secret must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }

    /// Base URL executors call back to.
    pub fn public_base_url(&self, bound_port: u16) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = self
                    .listen
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or("127.0.0.1");
                let host = if host == "0.0.0.0" || host.is_empty() {
                    "127.0.0.1"
                } else {
                    host
                };
                format!("http://{host}:{bound_port}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A top-level setting missing from ENV_KEYS would silently ignore its variable.
    #[test]
    fn every_top_level_setting_is_read_from_the_environment() {
        let defaults = serde_json::to_value(Settings::default()).expect("serialises");
        for (key, value) in defaults.as_object().expect("an object") {
            if !value.is_object() {
                assert!(Settings::ENV_KEYS.contains(&key.as_str()), "{key}");
            }
        }
    }
}
