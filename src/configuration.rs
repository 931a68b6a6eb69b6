//! Settings: built-in defaults, then a TOML file, then `CRONHOOK_*` environment
//! variables, then command-line flags — each layer overrides the one before.
//! Nested settings use a double underscore in the environment
//! (`CRONHOOK_SCHEDULER__LOOKAHEAD_MS=500`).

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// How far ahead due triggers are claimed and turned into fire rows.
    pub lookahead_ms: u64,
    /// Longest sleep between two claim rounds when nothing wakes the loop earlier.
    pub poll_interval_ms: u64,
    /// Triggers (and pending fires) claimed per transaction.
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
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            lookahead_ms: 1_000,
            poll_interval_ms: 250,
            batch_size: 500,
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
                Settings::ENV_KEYS
                    .iter()
                    .any(|known| k == *known || k.starts_with("scheduler."))
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
