//! Log set-up: `env_logger` with a readable default, or JSON lines for log shippers.
//!
//! Lines about a fire start with `fire <id> job <group/name>:` (or `job_id <id>` where
//! only the id is at hand); the JSON format lifts those into `fire_id` and `job` /
//! `job_id` fields, so a shipper can filter on them without parsing messages.
//! Secrets are never passed to the logger in the first place (tokens and the signing
//! secret are shown once on the terminal, database passwords are masked).

use std::io::Write;

use chrono::Utc;
use serde_json::{Map, Value};

/// Default filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,actix_server=warn";

pub fn init_logging(format: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    builder.format_timestamp_millis();
    if format == "json" {
        builder.format(|buf, record| {
            let message = record.args().to_string();
            let line = json_line(
                &Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                record.level().as_str(),
                record.target(),
                &message,
            );
            writeln!(buf, "{line}")
        });
    }
    let _ = builder.try_init();
}

/// One JSON log line: `ts`, `level`, `target`, `message`, and `fire_id` plus `job` or
/// `job_id` when the message is about a fire.
pub fn json_line(ts: &str, level: &str, target: &str, message: &str) -> Value {
    let mut line = Map::new();
    line.insert("ts".into(), ts.into());
    line.insert("level".into(), level.into());
    line.insert("target".into(), target.into());
    line.insert("message".into(), message.into());
    if let Some(about) = FireSubject::of(message) {
        line.insert("fire_id".into(), about.fire_id.into());
        match about.job {
            Some(JobRef::Key(key)) => line.insert("job".into(), key.into()),
            Some(JobRef::Id(id)) => line.insert("job_id".into(), id.into()),
            None => None,
        };
    }
    Value::Object(line)
}

#[derive(Debug, PartialEq, Eq)]
enum JobRef<'a> {
    Key(&'a str),
    Id(&'a str),
}

/// The fire a message is about, from its `fire <id> job <key>:` prefix.
#[derive(Debug, PartialEq, Eq)]
struct FireSubject<'a> {
    fire_id: &'a str,
    job: Option<JobRef<'a>>,
}

impl<'a> FireSubject<'a> {
    fn of(message: &'a str) -> Option<FireSubject<'a>> {
        let rest = message.strip_prefix("fire ")?;
        let end = rest.find([' ', ':']).unwrap_or(rest.len());
        let fire_id = &rest[..end];
        uuid::Uuid::parse_str(fire_id).ok()?;
        let rest = &rest[end..];
        let token = |s: &'a str| s.split([':', ' ']).next().filter(|t| !t.is_empty());
        let job = if let Some(after) = rest.strip_prefix(" job_id ") {
            token(after).map(JobRef::Id)
        } else if let Some(after) = rest.strip_prefix(" job ") {
            token(after).map(JobRef::Key)
        } else {
            None
        };
        Some(FireSubject { fire_id, job })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRE: &str = "01a2075a-504a-7470-9968-e238aaa98e58";

    #[test]
    fn fire_lines_carry_fire_and_job_fields() {
        let line = json_line(
            "t",
            "INFO",
            "cronhook::dispatch",
            &format!("fire {FIRE} job billing/nightly: dispatch failed: HTTP 500"),
        );
        assert_eq!(line["fire_id"], FIRE);
        assert_eq!(line["job"], "billing/nightly");
        assert!(line.get("job_id").is_none());
        let line = json_line(
            "t",
            "INFO",
            "x",
            &format!("fire {FIRE} job_id {FIRE}: timed out"),
        );
        assert_eq!(line["job_id"], FIRE);
        let line = json_line("t", "INFO", "x", &format!("fire {FIRE}: result recorded"));
        assert_eq!(line["fire_id"], FIRE);
        assert!(line.get("job").is_none());
    }

    #[test]
    fn other_lines_have_no_fire_fields() {
        for message in ["fire fighting drill", "applied 1 migration(s)", "fire "] {
            let line = json_line("t", "INFO", "x", message);
            assert!(line.get("fire_id").is_none(), "{message}: {line}");
            assert_eq!(line["message"], message);
        }
    }
}
