//! Job lifecycle rules (origin document 001): create, update, pause, resume,
//! delete and run-now, each one transaction over the database.

use diesel::Connection;

use crate::db::fires::FireRow;
use crate::db::jobs::JobRow;
use crate::db::triggers::TriggerRow;
use crate::db::{self, DbConnection};
use crate::domain::{JobInput, JobSpec, JobState, TriggerKind, TriggerSpec};
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
    triggers: Vec<TriggerSpec>,
    now: Millis,
) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
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
    triggers: Vec<TriggerSpec>,
    now: Millis,
) -> AppResult<StoredJob> {
    conn.transaction(|conn| {
        let mut row = db::jobs::find(conn, id)?
            .ok_or_else(|| AppError::NotFound(format!("no job with id {id}")))?;
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
            return Err(AppError::Conflict(format!(
                "job {}/{} has {} running fire(s); wait for them or cancel them first",
                job.job.group_name, job.job.name, job.running
            )));
        }
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
