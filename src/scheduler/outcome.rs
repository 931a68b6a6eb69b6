//! Ending a fire: the state change and, when the job's retry policy allows, the
//! next attempt — in one transaction, so a retry is never lost or made twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diesel::Connection;
use rand::Rng;

use crate::db::fires::{Finish, FireRow};
use crate::db::{self, DbConnection};
use crate::domain::{FireState, JobState};
use crate::error::AppError;
use crate::time::Millis;

use super::claim::{new_fire_row, JobForDispatch};

#[derive(Debug, Default)]
pub struct Ended {
    /// False when another writer ended the fire first.
    pub changed: bool,
    pub retry: Option<FireRow>,
    /// Child jobs' fires recorded (due now).
    pub children: usize,
    /// The job's group, for metrics (set when `changed`).
    pub group: String,
}

impl Ended {
    /// A retry or child fires were recorded: the claim loop should look now.
    pub fn made_new_work(&self) -> bool {
        self.retry.is_some() || self.children > 0
    }
}

/// Moves `fire` from one of `from` to `finish.state`; schedules a retry at its backoff
/// instant if the outcome is a failure and attempts remain.
pub fn end_fire(
    conn: &mut DbConnection,
    fire: &FireRow,
    from: &[&str],
    finish: &Finish,
) -> Result<Ended, AppError> {
    let ended = conn.transaction(|conn| {
        let changed = db::fires::finish(conn, &fire.id, from, finish)? == 1;
        if !changed {
            return Ok::<_, AppError>(Ended::default());
        }
        let state = FireState::parse(finish.state).unwrap_or(FireState::Failed);
        // The job is read once for the retry, the follow-ups and the metrics label; a
        // job gone (or unreadable) gets neither a retry nor follow-ups.
        let job_row = db::jobs::find(conn, &fire.job_id)?;
        let job = job_row
            .as_ref()
            .and_then(|row| JobForDispatch::from_row(row).ok());
        let retry = match &job {
            Some(job) if state.is_retryable_failure() => {
                schedule_retry(conn, fire, job, finish.finished_at)?
            }
            _ => None,
        };
        let failed_for_good = state.is_retryable_failure() && retry.is_none();
        // Broadcast shares end one by one; the follow-ups belong to the original share.
        let mut children = 0;
        if let Some(job) = &job {
            if fire.shard_index == 0 && (state == FireState::Succeeded || failed_for_good) {
                children = follow_up(conn, fire, job, state, finish)?;
            }
        }
        let group = job_row.map(|row| row.group_name).unwrap_or_default();
        Ok(Ended {
            changed,
            retry,
            children,
            group,
        })
    })?;
    // Counted once the change took (on SQLite the group commit may still be pending:
    // a failed group commit would leave the count one ahead).
    crate::metrics::fire_ended(&ended, finish.state);
    Ok(ended)
}

/// A fire to end, with its job as it was claimed (the dispatcher has it at hand).
#[derive(Debug, Clone)]
pub struct Ending {
    pub fire: FireRow,
    pub job: Arc<JobForDispatch>,
    pub finish: Finish,
}

impl Ending {
    /// A success of a job naming no child jobs: ending it is one column update, with
    /// no retry or follow-up to decide (provided the job has not changed since).
    fn is_plain_success(&self) -> bool {
        self.finish.state == FireState::Succeeded.as_str() && self.job.spec.on_success.is_empty()
    }
}

/// Ends many fires: the plain successes of unchanged jobs in one statement per 500
/// (under load this is most fires, and one UPDATE per fire was most of the database
/// work of recording them); the others — failures with their retries and alerts, jobs
/// with child jobs or changed since the claim — through [`end_fire`] one by one.
/// Results in the order given; an error of one fire's `end_fire` is its own.
pub fn end_fires(
    conn: &mut DbConnection,
    endings: &[Ending],
) -> Result<Vec<Result<Ended, AppError>>, AppError> {
    let mut results: Vec<Option<Result<Ended, AppError>>> = std::iter::repeat_with(|| None)
        .take(endings.len())
        .collect();
    let candidates: Vec<usize> = (0..endings.len())
        .filter(|&i| endings[i].is_plain_success())
        .collect();
    if !candidates.is_empty() {
        let job_ids: Vec<String> = candidates
            .iter()
            .map(|&i| endings[i].job.id.clone())
            .collect();
        let jobs = crate::scheduler::current_jobs::current_jobs(conn, &job_ids)?;
        let plain: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| {
                jobs.get(&endings[i].job.id)
                    .is_some_and(|(_, job)| job.version == endings[i].job.version)
            })
            .collect();
        let listed: Vec<(&str, &Finish, &str)> = plain
            .iter()
            .map(|&i| {
                let ending = &endings[i];
                let group = crate::metrics::group_of_key(&ending.job.key);
                (ending.fire.id.as_str(), &ending.finish, group)
            })
            .collect();
        let changed = end_plain_successes(conn, &listed)?;
        for (&i, (id, _, group)) in plain.iter().zip(&listed) {
            // Not changed: another writer ended it first, as `end_fire` would find.
            let ended = if changed.contains(*id) {
                Ended {
                    changed: true,
                    group: group.to_string(),
                    ..Default::default()
                }
            } else {
                Ended::default()
            };
            results[i] = Some(Ok(ended));
        }
    }
    Ok(results
        .into_iter()
        .zip(endings)
        .map(|(result, ending)| {
            result.unwrap_or_else(|| end_fire(conn, &ending.fire, OPEN_STATES, &ending.finish))
        })
        .collect())
}

/// The states a fire can end from.
const OPEN_STATES: &[&str] = &["fired", "running"];

/// Ends fires `(id, finish, group)` as plain successes (no retry or follow-up to
/// decide) in one statement per chunk, counting each that changed under its group.
/// Returns the ids that changed; the others had already ended.
fn end_plain_successes(
    conn: &mut DbConnection,
    plain: &[(&str, &Finish, &str)],
) -> Result<HashSet<String>, AppError> {
    let updates: Vec<(&str, &Finish)> = plain.iter().map(|(id, f, _)| (*id, *f)).collect();
    let changed: HashSet<String> = db::fires::finish_many(conn, OPEN_STATES, &updates)?
        .into_iter()
        .collect();
    for (id, finish, group) in plain {
        if changed.contains(*id) {
            crate::metrics::fire_finished(group, finish.state);
        }
    }
    Ok(changed)
}

/// The global alert URL, stored by each node at start (`alert_url` setting).
pub const ALERT_URL_SETTING: &str = "alert_url";

/// After a fire's final outcome: records the child jobs' fires (due now) and, for a
/// failure, the alert — in the transaction that ends the fire, so neither is lost.
/// Returns how many child fires were recorded.
fn follow_up(
    conn: &mut DbConnection,
    fire: &FireRow,
    job: &JobForDispatch,
    state: FireState,
    finish: &Finish,
) -> Result<usize, AppError> {
    let mut recorded = 0;
    let (spec, key) = (&job.spec, &job.key);
    let now = finish.finished_at;
    let children = if state == FireState::Succeeded {
        &spec.on_success
    } else {
        &spec.on_failure
    };
    for child in children {
        let Some((group, name)) = child.split_once('/') else {
            continue;
        };
        let Some(child_row) = db::jobs::find_by_key(conn, group, name)? else {
            log::warn!("job {key}: child job {child} no longer exists; not run");
            continue;
        };
        if JobState::parse(&child_row.state) != Some(JobState::Active) {
            log::info!("job {key}: child job {child} is paused; not run");
            continue;
        }
        let job = JobForDispatch::from_row(&child_row)?;
        let mut row = new_fire_row(&job, None, 1, now, now, now, None);
        row.error = Some(format!(
            "run as a child of {key} (fire {} {state})",
            fire.id
        ));
        recorded += db::fires::insert_new(conn, std::slice::from_ref(&row))?.len();
        log::info!(
            "fire {} job {key}: {state}; child job {child} fire {} recorded",
            fire.id,
            row.id
        );
    }
    if state == FireState::Succeeded {
        return Ok(recorded);
    }
    let url = match spec.alert_url.clone() {
        Some(url) => Some(url),
        None => db::settings::get(conn, ALERT_URL_SETTING)?,
    };
    let Some(url) = url else {
        return Ok(recorded);
    };
    let body = serde_json::json!({
        "event": "fire.failed",
        "fire_id": fire.id,
        "job_id": fire.job_id,
        "job": key,
        "state": state.as_str(),
        "attempt": fire.attempt,
        "scheduled_at": crate::time::to_rfc3339(fire.scheduled_at),
        "finished_at": crate::time::to_rfc3339(now),
        "error": finish.error,
        "executor": finish.executor.clone().or_else(|| fire.executor.clone()),
    });
    db::alerts::insert(
        conn,
        &db::alerts::AlertRow {
            id: uuid::Uuid::now_v7().to_string(),
            fire_id: fire.id.clone(),
            url,
            body: body.to_string(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            delivered_at: None,
            last_error: None,
        },
    )?;
    Ok(recorded)
}

fn schedule_retry(
    conn: &mut DbConnection,
    fire: &FireRow,
    job: &JobForDispatch,
    now: Millis,
) -> Result<Option<FireRow>, AppError> {
    if fire.attempt as u32 >= job.spec.retry.max_attempts {
        return Ok(None);
    }
    let wait = job
        .spec
        .retry
        .backoff_after(fire.attempt as u32, rand::thread_rng().gen::<f64>());
    let mut row = new_fire_row(
        job,
        fire.trigger_id.as_deref(),
        fire.attempt + 1,
        fire.scheduled_at,
        now + wait as i64,
        now,
        None,
    );
    row.payload = fire.payload.clone();
    row.shard_index = fire.shard_index;
    row.shard_total = fire.shard_total;
    let inserted = db::fires::insert_new(conn, std::slice::from_ref(&row))?;
    Ok((!inserted.is_empty()).then_some(row))
}

/// How a write-back was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteBackResult {
    /// The fire was open and now has this result; `new_work`: a retry or child fires
    /// were recorded with it.
    Recorded { new_work: bool },
    /// The same result was already stored (a retried delivery).
    Repeat,
    /// The fire was cancelled while it ran; the executor's result (usually its report
    /// of the cancellation) is kept as a late result without reopening the fire.
    AfterCancel,
}

/// Applies an executor's result to a fire. Terminal states never change: an
/// identical repeat is accepted, a different result is a conflict (and, for a fire
/// that timed out or was lost, kept on record as a late result).
pub fn apply_write_back(
    conn: &mut DbConnection,
    fire_id: &str,
    result: &cronhook_sdk::protocol::WriteBack,
    now: Millis,
) -> Result<WriteBackResult, AppError> {
    use cronhook_sdk::protocol::{truncate_output, ResultStatus};
    let fire = db::fires::find(conn, fire_id)?
        .ok_or_else(|| AppError::NotFound(format!("no fire with id {fire_id}")))?;
    // The signature covers the body only; the fire id inside it ties the result to this URL.
    if result.fire_id.map(|id| id.to_string()).as_deref() != Some(fire_id) {
        return Err(AppError::invalid(
            "fire_id",
            format!("must be present in the body and equal the fire in the path ({fire_id})"),
        ));
    }
    let state = match result.status {
        ResultStatus::Succeeded => FireState::Succeeded,
        ResultStatus::Failed => FireState::Failed,
    };
    let mut output = result.output.clone();
    let truncated = output.as_mut().map(truncate_output).unwrap_or(false);
    let current = FireState::parse(&fire.state).unwrap_or(FireState::Failed);
    if !current.is_terminal() {
        let finish = Finish {
            state: state.as_str(),
            finished_at: now,
            output: output.clone(),
            output_truncated: truncated,
            error: result.error.clone(),
            reported_started_at: result.started_at.map(|t| t.timestamp_millis()),
            reported_finished_at: result.finished_at.map(|t| t.timestamp_millis()),
            ..Default::default()
        };
        let ended = end_fire(conn, &fire, OPEN_STATES, &finish)?;
        if ended.changed {
            return Ok(WriteBackResult::Recorded {
                new_work: ended.made_new_work(),
            });
        }
    }
    // Already terminal (possibly just now, by another writer): compare.
    let stored = db::fires::find(conn, fire_id)?
        .ok_or_else(|| AppError::NotFound(format!("no fire with id {fire_id}")))?;
    if stored.state == state.as_str() && stored.output == output && stored.error == result.error {
        return Ok(WriteBackResult::Repeat);
    }
    if stored.state == FireState::Cancelled.as_str() {
        record_late(conn, fire_id, state, &output, result, now)?;
        return Ok(WriteBackResult::AfterCancel);
    }
    // A different result for a finished fire (it timed out, was lost or cancelled, or
    // its dispatch was judged failed while the executor ran it after all) is kept on
    // record for the operator, but never reopens the fire or counts as a second outcome.
    record_late(conn, fire_id, state, &output, result, now)?;
    Err(AppError::Conflict(format!(
        "fire {fire_id} already ended as {} with a different result; this one was recorded as a late result and does not change it",
        stored.state
    )))
}

/// A write-back as the route received it (signature checked, body parsed).
#[derive(Debug, Clone)]
pub struct WriteBackItem {
    pub fire_id: String,
    pub result: cronhook_sdk::protocol::WriteBack,
    pub received_at: Millis,
}

/// [`apply_write_back`] for many results: successes for open fires of jobs naming no
/// child jobs are recorded in one statement per 500 (in callback mode that is most
/// results); the others — failures, repeats, conflicts, child jobs — one by one.
/// Results in the order given.
pub fn apply_write_backs(
    conn: &mut DbConnection,
    items: &[WriteBackItem],
) -> Result<Vec<Result<WriteBackResult, AppError>>, AppError> {
    use cronhook_sdk::protocol::{truncate_output, ResultStatus};
    let mut results: Vec<Option<Result<WriteBackResult, AppError>>> =
        std::iter::repeat_with(|| None).take(items.len()).collect();
    let candidates: Vec<usize> = (0..items.len())
        .filter(|&i| {
            let item = &items[i];
            item.result.status == ResultStatus::Succeeded
                && item.result.fire_id.map(|id| id.to_string()).as_deref()
                    == Some(item.fire_id.as_str())
        })
        .collect();
    if !candidates.is_empty() {
        let ids: Vec<String> = candidates
            .iter()
            .map(|&i| items[i].fire_id.clone())
            .collect();
        let fires: HashMap<String, db::fires::FireJobState> = db::fires::states_of(conn, &ids)?
            .into_iter()
            .map(|fire| (fire.id.clone(), fire))
            .collect();
        let job_ids: Vec<String> = fires.values().map(|f| f.job_id.clone()).collect();
        let jobs = crate::scheduler::current_jobs::current_jobs(conn, &job_ids)?;
        let mut plain: Vec<(usize, Finish, String)> = Vec::new();
        for i in candidates {
            let item = &items[i];
            let Some(fire) = fires.get(&item.fire_id) else {
                continue;
            };
            let open = FireState::parse(&fire.state).is_some_and(|s| !s.is_terminal());
            let Some((_, job)) = jobs.get(&fire.job_id) else {
                continue;
            };
            if !open || !job.spec.on_success.is_empty() {
                continue;
            }
            let mut output = item.result.output.clone();
            let output_truncated = output.as_mut().map(truncate_output).unwrap_or(false);
            let finish = Finish {
                state: FireState::Succeeded.as_str(),
                finished_at: item.received_at,
                output,
                output_truncated,
                error: item.result.error.clone(),
                reported_started_at: item.result.started_at.map(|t| t.timestamp_millis()),
                reported_finished_at: item.result.finished_at.map(|t| t.timestamp_millis()),
                ..Default::default()
            };
            let group = crate::metrics::group_of_key(&job.key).to_string();
            plain.push((i, finish, group));
        }
        let listed: Vec<(&str, &Finish, &str)> = plain
            .iter()
            .map(|(i, finish, group)| (items[*i].fire_id.as_str(), finish, group.as_str()))
            .collect();
        let changed = end_plain_successes(conn, &listed)?;
        for (i, _, _) in &plain {
            // Unchanged: ended by another writer meanwhile; the long way compares.
            if changed.contains(&items[*i].fire_id) {
                results[*i] = Some(Ok(WriteBackResult::Recorded { new_work: false }));
            }
        }
    }
    Ok(results
        .into_iter()
        .zip(items)
        .map(|(result, item)| {
            result.unwrap_or_else(|| {
                apply_write_back(conn, &item.fire_id, &item.result, item.received_at)
            })
        })
        .collect())
}

fn record_late(
    conn: &mut DbConnection,
    fire_id: &str,
    state: FireState,
    output: &Option<String>,
    result: &cronhook_sdk::protocol::WriteBack,
    now: Millis,
) -> Result<(), AppError> {
    let late = serde_json::json!({
        "status": state.as_str(),
        "output": output,
        "error": result.error,
        "received_at": crate::time::to_rfc3339(now),
    });
    db::fires::record_late_result(conn, fire_id, &late.to_string())?;
    Ok(())
}

/// Cancels a fire that has not ended: one not yet dispatched never goes out; a running
/// one is told to stop through its executor's next heartbeat reply. No retry follows.
pub fn cancel_fire(
    conn: &mut DbConnection,
    fire_id: &str,
    now: Millis,
    reason: &str,
) -> Result<FireRow, AppError> {
    conn.transaction(|conn| {
        let fire = db::fires::find(conn, fire_id)?
            .ok_or_else(|| AppError::NotFound(format!("no fire with id {fire_id}")))?;
        let finish = Finish {
            state: FireState::Cancelled.as_str(),
            finished_at: now,
            error: Some(reason.to_string()),
            ..Default::default()
        };
        if db::fires::finish(conn, fire_id, OPEN_STATES, &finish)? == 0 {
            return Err(AppError::Conflict(format!(
                "fire {fire_id} already ended as {}; only fired or running fires can be cancelled",
                fire.state
            )));
        }
        let group = db::jobs::group_of(conn, &fire.job_id)?.unwrap_or_default();
        let fire = db::fires::find(conn, fire_id)?
            .ok_or_else(|| AppError::NotFound(format!("no fire with id {fire_id}")))?;
        Ok((fire, group))
    })
    .map(|(fire, group)| {
        crate::metrics::fire_finished(&group, FireState::Cancelled.as_str());
        fire
    })
}
