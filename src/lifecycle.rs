//! Job lifecycle rules (origin document 001): create, update, pause, resume,
//! delete and run-now, each one transaction over the database.

use std::collections::HashMap;

use diesel::Connection;

use crate::db::fires::FireRow;
use crate::db::jobs::JobRow;
use crate::db::triggers::TriggerRow;
use crate::db::{self, DbConnection};
use crate::domain::{Calendar, JobInput, JobSpec, JobState, TriggerKind, TriggerSpec};
use crate::error::{AppError, AppResult};
use crate::scheduler::claim::{new_fire_row, JobForDispatch};
use crate::time::Millis;

/// A job with its triggers, as read back after a change.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub job: JobRow,
    pub spec: JobSpec,
    pub triggers: Vec<(TriggerRow, TriggerSpec)>,
    /// Fires of this job in state `running` (a paused job with some is "pausing").
    pub running: i64,
}

impl StoredJob {
    pub fn next_fire_at(&self) -> Option<Millis> {
        self.triggers
            .iter()
            .filter_map(|(row, _)| row.next_fire_at)
            .min()
    }

    pub fn is_immediate_only(&self) -> bool {
        !self.triggers.is_empty()
            && self
                .triggers
                .iter()
                .all(|(_, spec)| spec.kind == TriggerKind::Immediate)
    }
}

/// Validated triggers for `input`, with field-named errors.
pub fn validate_triggers(input: &JobInput, now: Millis) -> AppResult<Vec<TriggerSpec>> {
    input
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| t.validate(&format!("triggers[{i}]"), now))
        .collect()
}

/// Attaches each trigger's calendar; a trigger naming a calendar that does not exist
/// is refused, naming the field.
fn attach_calendars(conn: &mut DbConnection, triggers: &mut [TriggerSpec]) -> AppResult<()> {
    let missing = db::calendars::attach(conn, triggers.iter_mut())?;
    if let Some(name) = missing.first() {
        let index = triggers
            .iter()
            .position(|t| t.calendar.as_deref() == Some(name.as_str()))
            .unwrap_or(0);
        return Err(AppError::invalid(
            &format!("triggers[{index}].calendar"),
            format!("no calendar named {name:?} (create it with POST /api/v1/calendars)"),
        ));
    }
    Ok(())
}

fn trigger_rows(
    job_id: &str,
    specs: &[TriggerSpec],
    paused: bool,
    now: Millis,
) -> AppResult<Vec<TriggerRow>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            Ok(TriggerRow {
                id: uuid::Uuid::now_v7().to_string(),
                job_id: job_id.to_string(),
                position: i as i32,
                kind: spec.kind.as_str().into(),
                spec: serde_json::to_string(spec).map_err(|e| AppError::Internal(e.to_string()))?,
                next_fire_at: if paused {
                    None
                } else {
                    spec.first_at_or_after(now)
                },
                fire_count: 0,
                created_at: now,
            })
        })
        .collect()
}

pub fn load(conn: &mut DbConnection, id: &str) -> AppResult<StoredJob> {
    let job = db::jobs::find(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id}")))?;
    assemble(conn, job)
}

pub fn assemble(conn: &mut DbConnection, job: JobRow) -> AppResult<StoredJob> {
    let spec: JobSpec = serde_json::from_str(&job.spec)
        .map_err(|e| AppError::Internal(format!("job {} spec: {e}", job.id)))?;
    let mut triggers = Vec::new();
    for row in db::triggers::for_job(conn, &job.id)? {
        let trigger: TriggerSpec = serde_json::from_str(&row.spec)
            .map_err(|e| AppError::Internal(format!("trigger {} spec: {e}", row.id)))?;
        triggers.push((row, trigger));
    }
    for missing in db::calendars::attach(conn, triggers.iter_mut().map(|(_, spec)| spec))? {
        log::warn!(
            "job {}: trigger names calendar {missing:?}, which does not exist",
            job.id
        );
    }
    let running = db::fires::count_running_for_job(conn, &job.id)?;
    Ok(StoredJob {
        job,
        spec,
        triggers,
        running,
    })
}

pub fn create(
    conn: &mut DbConnection,
    input: &JobInput,
    spec: JobSpec,
    mut triggers: Vec<TriggerSpec>,
    now: Millis,
) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
        attach_calendars(conn, &mut triggers)?;
        check_children(conn, &format!("{}/{}", input.group, input.name), &spec)?;
        if db::jobs::find_by_key(conn, &input.group, &input.name)?.is_some() {
            return Err(AppError::Conflict(format!(
                "a job {}/{} already exists",
                input.group, input.name
            )));
        }
        let paused = input.paused;
        if paused && triggers.iter().any(|t| t.kind == TriggerKind::Immediate) {
            return Err(AppError::invalid(
                "paused",
                "a job with an immediate trigger cannot be created paused",
            ));
        }
        let row = JobRow {
            id: uuid::Uuid::now_v7().to_string(),
            group_name: input.group.clone(),
            name: input.name.clone(),
            description: input.description.clone(),
            state: if paused {
                JobState::Paused
            } else {
                JobState::Active
            }
            .as_str()
            .into(),
            version: 1,
            spec: serde_json::to_string(&spec).map_err(|e| AppError::Internal(e.to_string()))?,
            created_at: now,
            updated_at: now,
        };
        db::jobs::insert(conn, &row)?;
        db::triggers::insert_many(conn, &trigger_rows(&row.id, &triggers, paused, now)?)?;
        assemble(conn, row)
    })
}

/// Replaces a job's definition: fires recorded but not yet dispatched for the old
/// schedule are dropped, triggers are rebuilt from now, the version goes up.
pub fn update(
    conn: &mut DbConnection,
    id: &str,
    input: &JobInput,
    spec: JobSpec,
    mut triggers: Vec<TriggerSpec>,
    now: Millis,
) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
        attach_calendars(conn, &mut triggers)?;
        let mut row = db::jobs::find(conn, id)?
            .ok_or_else(|| AppError::NotFound(format!("no job with id {id}")))?;
        let old_key = format!("{}/{}", row.group_name, row.name);
        let new_key = format!("{}/{}", input.group, input.name);
        if old_key != new_key {
            // Other jobs name this one as a child by its key.
            refuse_if_named_as_child(conn, &old_key)?;
        }
        check_children(conn, &new_key, &spec)?;
        if (row.group_name.as_str(), row.name.as_str())
            != (input.group.as_str(), input.name.as_str())
        {
            if let Some(other) = db::jobs::find_by_key(conn, &input.group, &input.name)? {
                return Err(AppError::Conflict(format!(
                    "a job {}/{} already exists (id {})",
                    input.group, input.name, other.id
                )));
            }
        }
        let paused = JobState::parse(&row.state) == Some(JobState::Paused);
        db::fires::drop_pending_for_job(conn, id)?;
        db::triggers::delete_for_job(conn, id)?;
        db::triggers::insert_many(conn, &trigger_rows(id, &triggers, paused, now)?)?;
        row.group_name = input.group.clone();
        row.name = input.name.clone();
        row.description = input.description.clone();
        row.version += 1;
        row.spec = serde_json::to_string(&spec).map_err(|e| AppError::Internal(e.to_string()))?;
        row.updated_at = now;
        db::jobs::update(conn, &row)?;
        assemble(conn, row)
    })
}

fn refuse_if_immediate(job: &StoredJob, action: &str) -> AppResult<()> {
    if job.is_immediate_only() {
        return Err(AppError::Conflict(format!(
            "job {}/{} is an immediate job; it cannot be {action}",
            job.job.group_name, job.job.name
        )));
    }
    Ok(())
}

/// No new fires; running fires finish (the job reads `pausing` until they have).
pub fn pause(conn: &mut DbConnection, id: &str, now: Millis) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
        let job = load(conn, id)?;
        refuse_if_immediate(&job, "paused")?;
        db::jobs::set_state(conn, id, JobState::Paused.as_str(), now)?;
        for (trigger, _) in &job.triggers {
            db::triggers::set_next_fire_at(conn, &trigger.id, None, 0)?;
        }
        db::fires::drop_pending_for_job(conn, id)?;
        load(conn, id)
    })
}

/// Next instants computed from now: no backlog.
pub fn resume(conn: &mut DbConnection, id: &str, now: Millis) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
        let job = load(conn, id)?;
        refuse_if_immediate(&job, "resumed")?;
        if JobState::parse(&job.job.state) == Some(JobState::Active) {
            return Ok(job);
        }
        db::jobs::set_state(conn, id, JobState::Active.as_str(), now)?;
        for (trigger, spec) in &job.triggers {
            let next = match spec.kind {
                // A one-shot instant that never fired keeps its instant; if it is past,
                // the trigger's misfire policy decides.
                TriggerKind::At | TriggerKind::Immediate => {
                    spec.at.filter(|_| trigger.fire_count == 0)
                }
                _ => spec.first_at_or_after(now),
            };
            db::triggers::set_next_fire_at(conn, &trigger.id, next, 0)?;
        }
        load(conn, id)
    })
}

/// Refused while a fire runs.
pub fn delete(conn: &mut DbConnection, id: &str) -> AppResult<()> {
    conn.transaction(|conn| {
        let job = load(conn, id)?;
        if job.running > 0 {
            let running = db::fires::running_ids_for_job(conn, id)?;
            return Err(AppError::Conflict(format!(
                "job {}/{} has {} running fire(s) ({}); wait for them or cancel them first",
                job.job.group_name,
                job.job.name,
                job.running,
                running.join(", ")
            )));
        }
        refuse_if_named_as_child(conn, &format!("{}/{}", job.job.group_name, job.job.name))?;
        db::jobs::delete(conn, id)?;
        Ok(())
    })
}

/// Records a fire due now, outside the job's schedule; the claim loop dispatches it.
pub fn run_now(
    conn: &mut DbConnection,
    id: &str,
    payload: Option<serde_json::Value>,
    now: Millis,
) -> AppResult<FireRow> {
    conn.transaction(|conn| {
        let job = db::jobs::find(conn, id)?
            .ok_or_else(|| AppError::NotFound(format!("no job with id {id}")))?;
        let for_dispatch = JobForDispatch::from_row(&job)?;
        let mut fire = new_fire_row(&for_dispatch, None, 1, now, now, now, None);
        fire.payload = payload.map(|p| p.to_string());
        db::fires::insert_new(conn, std::slice::from_ref(&fire))?;
        Ok(fire)
    })
}

/// Creates (or, with `replace`, replaces) a calendar. Triggers that name it get their
/// next instant recomputed under the new rules, so a newly excluded day is skipped and
/// a newly allowed one is not missed.
pub fn save_calendar(
    conn: &mut DbConnection,
    calendar: Calendar,
    replace: bool,
    now: Millis,
) -> AppResult<(Calendar, bool)> {
    conn.transaction(|conn| {
        let name = calendar.input.name.clone();
        let exists = db::calendars::find(conn, &name)?.is_some();
        if exists && !replace {
            return Err(AppError::Conflict(format!(
                "a calendar named {name:?} already exists (PUT /api/v1/calendars/{name} replaces it)"
            )));
        }
        if !exists && replace {
            return Err(AppError::NotFound(format!("no calendar named {name:?}")));
        }
        let row = db::calendars::CalendarRow {
            name: name.clone(),
            spec: serde_json::to_string(&calendar.input)
                .map_err(|e| AppError::Internal(e.to_string()))?,
            updated_at: now,
        };
        db::calendars::upsert(conn, &row)?;
        let rules = std::sync::Arc::new(calendar.clone());
        for (trigger, mut spec) in db::calendars::triggers_using(conn, &name)? {
            let Some(next) = trigger.next_fire_at else {
                continue; // paused or finished
            };
            spec.calendar_rules = Some(rules.clone());
            // A past instant (a pending misfire) stays for the misfire policy to judge.
            let recomputed = if next >= now {
                spec.first_at_or_after(now)
            } else {
                Some(next)
            };
            db::triggers::set_next_fire_at(conn, &trigger.id, recomputed, 0)?;
        }
        Ok((calendar, exists))
    })
}

/// Refused while a trigger names the calendar; the message says which jobs.
pub fn delete_calendar(conn: &mut DbConnection, name: &str) -> AppResult<()> {
    conn.transaction(|conn| {
        if db::calendars::find(conn, name)?.is_none() {
            return Err(AppError::NotFound(format!("no calendar named {name:?}")));
        }
        let using = db::calendars::triggers_using(conn, name)?;
        if !using.is_empty() {
            let mut job_ids: Vec<String> = using.into_iter().map(|(t, _)| t.job_id).collect();
            job_ids.sort();
            job_ids.dedup();
            let keys: Vec<String> = db::jobs::find_many(conn, &job_ids)?
                .into_iter()
                .map(|j| format!("{}/{}", j.group_name, j.name))
                .collect();
            return Err(AppError::Conflict(format!(
                "calendar {name:?} is used by the triggers of {}; change those jobs first",
                keys.join(", ")
            )));
        }
        db::calendars::delete(conn, name)?;
        Ok(())
    })
}

/// Pauses (or resumes) every job of a group; jobs that cannot be (immediate ones) are
/// reported with the reason instead of failing the whole group.
pub fn set_group_paused(
    conn: &mut DbConnection,
    group: &str,
    paused: bool,
    now: Millis,
) -> AppResult<(Vec<StoredJob>, Vec<(String, String)>)> {
    let filter = db::jobs::JobFilter {
        group: Some(group.to_string()),
        limit: i64::MAX,
        ..Default::default()
    };
    let (rows, _) = db::jobs::list(conn, &filter)?;
    if rows.is_empty() {
        return Err(AppError::NotFound(format!("no jobs in group {group:?}")));
    }
    let mut changed = Vec::new();
    let mut refused = Vec::new();
    for row in rows {
        let result = if paused {
            pause(conn, &row.id, now)
        } else {
            resume(conn, &row.id, now)
        };
        match result {
            Ok(job) => changed.push(job),
            Err(AppError::Conflict(reason)) => {
                refused.push((format!("{}/{}", row.group_name, row.name), reason))
            }
            Err(e) => return Err(e),
        }
    }
    Ok((changed, refused))
}

/// Records a new attempt of a finished fire, due now, with the same instant and payload.
pub fn retry_fire(conn: &mut DbConnection, id: &str, now: Millis) -> AppResult<FireRow> {
    conn.transaction(|conn| {
        let fire = db::fires::find(conn, id)?
            .ok_or_else(|| AppError::NotFound(format!("no fire with id {id}")))?;
        let state = crate::domain::FireState::parse(&fire.state);
        if !state.is_some_and(|s| s.is_terminal()) {
            return Err(AppError::Conflict(format!(
                "fire {id} is {}; only a finished fire can be retried",
                fire.state
            )));
        }
        let job = db::jobs::find(conn, &fire.job_id)?
            .ok_or_else(|| AppError::NotFound(format!("the job of fire {id} no longer exists")))?;
        let for_dispatch = JobForDispatch::from_row(&job)?;
        let attempt = db::fires::last_attempt(conn, &fire)? + 1;
        let mut retry = new_fire_row(
            &for_dispatch,
            fire.trigger_id.as_deref(),
            attempt,
            fire.scheduled_at,
            now,
            now,
            None,
        );
        retry.payload = fire.payload.clone();
        retry.shard_index = fire.shard_index;
        retry.shard_total = fire.shard_total;
        retry.error = Some(format!("retry of fire {id}, requested by an operator"));
        if db::fires::insert_new(conn, std::slice::from_ref(&retry))?.is_empty() {
            return Err(AppError::Conflict(format!(
                "attempt {attempt} of this fire's instant was just recorded by another request"
            )));
        }
        Ok(retry)
    })
}

/// Child jobs must exist, and following children from the job must never lead back
/// to it: a cycle would fire forever. The error names the field and the cycle.
fn check_children(conn: &mut DbConnection, key: &str, spec: &JobSpec) -> AppResult<()> {
    if spec.on_success.is_empty() && spec.on_failure.is_empty() {
        return Ok(());
    }
    let mut children = child_links(conn)?;
    let own: Vec<String> = spec
        .on_success
        .iter()
        .chain(&spec.on_failure)
        .cloned()
        .collect();
    children.insert(key.to_string(), own);
    for (field, list) in [
        ("on_success", &spec.on_success),
        ("on_failure", &spec.on_failure),
    ] {
        for (i, child) in list.iter().enumerate() {
            let exists = child == key
                || match child.split_once('/') {
                    Some((group, name)) => db::jobs::find_by_key(conn, group, name)?.is_some(),
                    None => false,
                };
            if !exists {
                return Err(AppError::invalid(
                    &format!("{field}[{i}]"),
                    format!("no job named {child}"),
                ));
            }
            if let Some(path) = path_between(&children, child, key) {
                return Err(AppError::invalid(
                    &format!("{field}[{i}]"),
                    format!("would make a cycle: {key} → {}", path.join(" → ")),
                ));
            }
        }
    }
    Ok(())
}

/// A path of child links from `from` to `to` (both included), if there is one.
fn path_between(
    children: &HashMap<String, Vec<String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = std::collections::HashSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last()?.clone();
        if last == to {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in children.get(&last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

/// A job other jobs name as a child keeps its key (renaming or deleting it would
/// leave them pointing at nothing).
fn refuse_if_named_as_child(conn: &mut DbConnection, key: &str) -> AppResult<()> {
    let mut parents: Vec<String> = child_links(conn)?
        .into_iter()
        .filter(|(_, children)| children.iter().any(|c| c == key))
        .map(|(parent, _)| parent)
        .collect();
    // Listed as the job list orders them: by group, then name.
    parents.sort_by(|a, b| a.split_once('/').cmp(&b.split_once('/')));
    if parents.is_empty() {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "job {key} is a child job of {}; remove it from their on_success/on_failure first",
        parents.join(", ")
    )))
}

/// Every job that names children, with them (on success or on failure).
fn child_links(conn: &mut DbConnection) -> AppResult<HashMap<String, Vec<String>>> {
    let mut links = HashMap::new();
    for row in db::jobs::naming_children(conn)? {
        let spec: JobSpec = serde_json::from_str(&row.spec)
            .map_err(|e| AppError::Internal(format!("job {} spec: {e}", row.id)))?;
        let children = spec.on_success.into_iter().chain(spec.on_failure).collect();
        links.insert(format!("{}/{}", row.group_name, row.name), children);
    }
    Ok(links)
}
