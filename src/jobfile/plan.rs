//! `apply`'s plan: which jobs of a file to create, update or leave alone, and which
//! server jobs to prune. Jobs are matched by `(group, name)`; a job is updated only when
//! its normalized definition differs from what the server holds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::JobFileError;
use crate::domain::{
    Concurrency, JobInput, Mode, RetryPolicy, Routing, Target, TriggerInput, TriggerKind,
    TriggerSpec,
};
use crate::routes::JobView;
use crate::time::Millis;

/// Only used to range-check a file's job locally; the server applies its own default.
const LOCAL_DEFAULT_TIMEOUT_MS: u64 = 300_000;

pub type Key = (String, String);

pub fn label(key: &Key) -> String {
    format!("{}/{}", key.0, key.1)
}

/// One job of the file.
#[derive(Debug)]
pub struct Entry {
    pub key: Key,
    /// The entry as written (sent to the server as is).
    pub raw: Value,
    /// The entry checked locally, or why it is invalid (naming the field).
    pub input: Result<JobInput, String>,
    /// `paused` when the file sets it; absent means "leave the job's state alone".
    pub paused: Option<bool>,
}

/// Reads the file's entries. A job without a usable name, or a key used twice, makes the
/// whole file invalid (apply cannot tell which server job it means).
pub fn entries(items: Vec<Value>, now: Millis) -> Result<Vec<Entry>, JobFileError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, raw) in items.into_iter().enumerate() {
        let bad = |reason: String| JobFileError::Entry { index: i, reason };
        let Some(map) = raw.as_object() else {
            return Err(bad(format!(
                "expected a map (one job), found {}",
                super::format::kind_of(&raw)
            )));
        };
        let group = match map.get("group") {
            None => "default".to_string(),
            Some(Value::String(g)) => g.clone(),
            Some(other) => {
                return Err(bad(format!(
                    "group: expected a string, found {}",
                    super::format::kind_of(other)
                )))
            }
        };
        let name = match map.get("name") {
            Some(Value::String(n)) => n.clone(),
            None => return Err(bad("name: missing (every job needs one)".into())),
            Some(other) => {
                return Err(bad(format!(
                    "name: expected a string, found {}",
                    super::format::kind_of(other)
                )))
            }
        };
        let key = (group, name);
        if !seen.insert(key.clone()) {
            return Err(bad(format!("{} appears more than once", label(&key))));
        }
        let paused = map.get("paused").and_then(Value::as_bool);
        let input = check(&raw, now);
        out.push(Entry {
            key,
            raw,
            input,
            paused,
        });
    }
    Ok(out)
}

/// The server's own validation, run locally so a bad job is named before anything changes.
fn check(raw: &Value, now: Millis) -> Result<JobInput, String> {
    let input: JobInput = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    input
        .validate(LOCAL_DEFAULT_TIMEOUT_MS)
        .map_err(|e| e.to_string())?;
    for (i, trigger) in input.triggers.iter().enumerate() {
        trigger
            .validate(&format!("triggers[{i}]"), now)
            .map_err(|e| e.to_string())?;
    }
    Ok(input)
}

fn is_paused(view: &JobView) -> bool {
    matches!(view.state.as_str(), "paused" | "pausing")
}

/// A server trigger in the input shape (what `export` writes).
pub fn trigger_input(spec: &Value) -> Result<TriggerInput, String> {
    let mut spec = spec.clone();
    if let Some(map) = spec.as_object_mut() {
        map.remove("id");
        map.remove("next_fire_at");
        map.remove("fire_count");
        // The server records an immediate trigger's instant; the input has none.
        if map.get("kind").and_then(Value::as_str) == Some("immediate") {
            map.remove("at");
        }
    }
    serde_json::from_value(spec).map_err(|e| e.to_string())
}

fn normalized(trigger: &TriggerInput, now: Millis) -> Option<TriggerSpec> {
    trigger.validate("trigger", now).ok()
}

fn same_triggers(file: &[TriggerInput], view: &JobView, now: Millis) -> bool {
    if file.len() != view.triggers.len() {
        return false;
    }
    file.iter().zip(&view.triggers).all(|(wanted, have)| {
        let Ok(have) = trigger_input(&have.spec) else {
            return false;
        };
        let (Some(mut wanted_spec), Some(have_spec)) =
            (normalized(wanted, now), normalized(&have, now))
        else {
            return false;
        };
        // An interval without start_at starts when it is created: any start matches.
        if wanted.kind == TriggerKind::Interval && wanted.start_at.is_none() {
            wanted_spec.start_at = have_spec.start_at;
        }
        wanted_spec == have_spec
    })
}

/// The fields of `input` that differ from the server's job. Defaults the server fills
/// in count as equal; `timeout_ms` is compared only when the file sets it (the default
/// is the server's `scheduler.default_job_timeout_ms`, which a client cannot see).
pub fn differences(input: &JobInput, view: &JobView, now: Millis) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if input.description != view.description {
        fields.push("description");
    }
    if input.target != view.target {
        fields.push("target");
    }
    if input.mode != view.mode {
        fields.push("mode");
    }
    if input.payload != view.payload {
        fields.push("payload");
    }
    if input.timeout_ms.is_some_and(|t| t != view.timeout_ms) {
        fields.push("timeout_ms");
    }
    if input.retry != view.retry {
        fields.push("retry");
    }
    if input.concurrency != view.concurrency {
        fields.push("concurrency");
    }
    if input.routing != view.routing {
        fields.push("routing");
    }
    if !same_triggers(&input.triggers, view, now) {
        fields.push("triggers");
    }
    if input.on_success != view.on_success {
        fields.push("on_success");
    }
    if input.on_failure != view.on_failure {
        fields.push("on_failure");
    }
    if input.alert_url != view.alert_url {
        fields.push("alert_url");
    }
    if input.keep_fires != view.keep_fires {
        fields.push("keep_fires");
    }
    fields
}

#[derive(Debug)]
pub enum Action {
    Create,
    /// `fields` changed (PUT); `pause` = Some(true/false) when the state must change too.
    Update {
        id: String,
        fields: Vec<&'static str>,
        pause: Option<bool>,
    },
    Unchanged,
    /// The file's job is invalid: the reason names the field.
    Invalid(String),
    Delete {
        id: String,
    },
}

#[derive(Debug)]
pub struct Step {
    pub key: Key,
    /// Index into the file's entries (None for prunes).
    pub entry: Option<usize>,
    pub action: Action,
}

/// What to prune: nothing, server jobs in the file's groups, or every server job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    No,
    FileGroups,
    All,
}

pub fn plan(entries: &[Entry], server: &[JobView], prune: Prune, now: Millis) -> Vec<Step> {
    let by_key: BTreeMap<Key, &JobView> = server
        .iter()
        .map(|v| ((v.group.clone(), v.name.clone()), v))
        .collect();
    let mut steps = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let action = match (&entry.input, by_key.get(&entry.key)) {
            (Err(reason), _) => Action::Invalid(reason.clone()),
            (Ok(_), None) => Action::Create,
            (Ok(input), Some(view)) => {
                let fields = differences(input, view, now);
                let pause = entry.paused.filter(|p| *p != is_paused(view));
                if fields.is_empty() && pause.is_none() {
                    Action::Unchanged
                } else {
                    Action::Update {
                        id: view.id.clone(),
                        fields,
                        pause,
                    }
                }
            }
        };
        steps.push(Step {
            key: entry.key.clone(),
            entry: Some(i),
            action,
        });
    }
    if prune != Prune::No {
        let in_file: BTreeSet<&Key> = entries.iter().map(|e| &e.key).collect();
        let groups: BTreeSet<&str> = entries.iter().map(|e| e.key.0.as_str()).collect();
        for (key, view) in &by_key {
            if in_file.contains(key) {
                continue;
            }
            if prune == Prune::FileGroups && !groups.contains(key.0.as_str()) {
                continue;
            }
            steps.push(Step {
                key: key.clone(),
                entry: None,
                action: Action::Delete {
                    id: view.id.clone(),
                },
            });
        }
    }
    steps
}

/// A job as written to a file: the API's input shape, key first, defaults left out
/// (absent fields read back as the same defaults, so a file round-trips).
#[derive(Debug, serde::Serialize)]
pub struct FileJob<'a> {
    pub group: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    pub target: &'a Target,
    #[serde(skip_serializing_if = "is_default")]
    pub mode: Mode,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub payload: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "is_default_policy")]
    pub retry: &'a RetryPolicy,
    #[serde(skip_serializing_if = "is_default")]
    pub concurrency: Concurrency,
    #[serde(skip_serializing_if = "is_default")]
    pub routing: Routing,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    pub triggers: &'a [TriggerInput],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub on_success: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub on_failure: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_fires: Option<u32>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn is_default_policy(retry: &&RetryPolicy) -> bool {
    **retry == RetryPolicy::default()
}

impl<'a> FileJob<'a> {
    pub fn of(input: &'a JobInput) -> FileJob<'a> {
        FileJob {
            group: &input.group,
            name: &input.name,
            description: &input.description,
            target: &input.target,
            mode: input.mode,
            payload: &input.payload,
            timeout_ms: input.timeout_ms,
            retry: &input.retry,
            concurrency: input.concurrency,
            routing: input.routing,
            paused: input.paused,
            triggers: &input.triggers,
            on_success: &input.on_success,
            on_failure: &input.on_failure,
            alert_url: input.alert_url.as_deref(),
            keep_fires: input.keep_fires,
        }
    }
}

/// A server job in the API's input shape (what `export` writes).
pub fn export_input(view: &JobView) -> Result<JobInput, String> {
    let triggers = view
        .triggers
        .iter()
        .map(|t| trigger_input(&t.spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JobInput {
        group: view.group.clone(),
        name: view.name.clone(),
        description: view.description.clone(),
        target: view.target.clone(),
        mode: view.mode,
        payload: view.payload.clone(),
        // Always written: the server's default is its own setting.
        timeout_ms: Some(view.timeout_ms),
        retry: view.retry.clone(),
        concurrency: view.concurrency,
        routing: view.routing,
        triggers,
        on_success: view.on_success.clone(),
        on_failure: view.on_failure.clone(),
        alert_url: view.alert_url.clone(),
        keep_fires: view.keep_fires,
        paused: is_paused(view),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(job: Value) -> JobView {
        let mut base = json!({
            "id": "id-1", "group": "g", "name": "a", "description": "", "state": "active",
            "version": 1, "target": {"url": "http://127.0.0.1:9/x"}, "mode": "callback",
            "payload": null, "timeout_ms": 300000,
            "retry": {"max_attempts": 1, "backoff_ms": 1000, "max_backoff_ms": 300000, "multiplier": 2.0, "jitter": 0.1},
            "concurrency": "allow", "routing": "least_loaded",
            "triggers": [{"id": "t1", "kind": "cron", "expression": "0 0 * * * ?", "time_zone": "UTC",
                          "misfire": "fire_now", "next_fire_at": null, "fire_count": 0}],
            "next_fire_at": null, "running": 0, "created_at": "x", "updated_at": "x"
        });
        if let (Some(b), Some(j)) = (base.as_object_mut(), job.as_object()) {
            for (k, v) in j {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn entry(job: Value) -> Vec<Entry> {
        entries(vec![job], 0).unwrap()
    }

    #[test]
    fn server_defaults_are_not_differences() {
        let e = entry(
            json!({"group": "g", "name": "a", "target": {"url": "http://127.0.0.1:9/x"},
            "triggers": [{"kind": "cron", "expression": " 0 0 * * * ? "}]}),
        );
        let steps = plan(&e, &[view(json!({}))], Prune::No, 0);
        assert!(matches!(steps[0].action, Action::Unchanged), "{steps:?}");
    }

    #[test]
    fn changed_fields_are_named() {
        let e = entry(
            json!({"group": "g", "name": "a", "target": {"url": "http://127.0.0.1:9/x"},
            "retry": {"max_attempts": 3}, "timeout_ms": 1000,
            "triggers": [{"kind": "cron", "expression": "0 5 * * * ?"}]}),
        );
        let steps = plan(&e, &[view(json!({}))], Prune::No, 0);
        match &steps[0].action {
            Action::Update { fields, pause, .. } => {
                assert_eq!(fields, &["timeout_ms", "retry", "triggers"]);
                assert_eq!(*pause, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paused_counts_only_when_the_file_says_so() {
        let base = json!({"group": "g", "name": "a", "target": {"url": "http://127.0.0.1:9/x"},
            "triggers": [{"kind": "cron", "expression": "0 0 * * * ?"}]});
        let paused = view(json!({"state": "paused"}));
        let steps = plan(&entry(base.clone()), &[paused], Prune::No, 0);
        assert!(matches!(steps[0].action, Action::Unchanged));
        let mut resume = base;
        resume["paused"] = json!(false);
        let steps = plan(
            &entry(resume),
            &[view(json!({"state": "pausing"}))],
            Prune::No,
            0,
        );
        assert!(matches!(
            steps[0].action,
            Action::Update {
                pause: Some(false),
                ..
            }
        ));
    }

    #[test]
    fn invalid_entries_name_the_field_and_bad_files_are_refused() {
        let e = entry(
            json!({"name": "a", "target": {"url": "http://127.0.0.1:9/x"},
            "triggers": [{"kind": "cron", "expression": "0 0 25 * * ?"}]}),
        );
        match &e[0].input {
            Err(reason) => assert!(reason.starts_with("triggers[0].expression"), "{reason}"),
            Ok(_) => panic!("accepted"),
        }
        let e = entry(json!({"name": "a", "target": {"url": "http://x"}, "retyr": {}}));
        assert!(e[0].input.as_ref().unwrap_err().contains("retyr"));
        let err = entries(vec![json!({"group": "g"})], 0).unwrap_err();
        assert!(err.to_string().contains("name: missing"), "{err}");
        let twice = json!({"name": "a", "target": {"url": "http://x"}});
        let err = entries(vec![twice.clone(), twice], 0).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn prune_stays_in_the_file_groups_unless_all() {
        let e = entry(
            json!({"group": "g", "name": "a", "target": {"url": "http://127.0.0.1:9/x"},
            "triggers": [{"kind": "cron", "expression": "0 0 * * * ?"}]}),
        );
        let server = [
            view(json!({})),
            view(json!({"id": "id-2", "name": "b"})),
            view(json!({"id": "id-3", "group": "other", "name": "c"})),
        ];
        let deleted = |prune| {
            plan(&e, &server, prune, 0)
                .into_iter()
                .filter(|s| matches!(s.action, Action::Delete { .. }))
                .map(|s| label(&s.key))
                .collect::<Vec<_>>()
        };
        assert_eq!(deleted(Prune::No), Vec::<String>::new());
        assert_eq!(deleted(Prune::FileGroups), ["g/b"]);
        assert_eq!(deleted(Prune::All), ["g/b", "other/c"]);
    }

    #[test]
    fn export_then_plan_is_unchanged() {
        let v = view(json!({"state": "paused", "payload": {"k": 1},
        "triggers": [
            {"id": "t1", "kind": "immediate", "at": "2026-01-01T00:00:00.000Z", "misfire": "fire_now", "next_fire_at": null, "fire_count": 1},
            {"id": "t2", "kind": "interval", "interval_ms": 500, "start_at": "2026-01-01T00:00:00.000Z", "misfire": "skip", "next_fire_at": null, "fire_count": 0}
        ]}));
        let input = export_input(&v).unwrap();
        let exported = serde_json::to_value(FileJob::of(&input)).unwrap();
        assert_eq!(exported["paused"], json!(true));
        assert!(exported["triggers"][0].get("at").is_none(), "{exported}");
        let steps = plan(&entry(exported), &[v], Prune::No, 5);
        assert!(matches!(steps[0].action, Action::Unchanged), "{steps:?}");
    }
}
