//! Where fires are created: due triggers are claimed in batches, their fire rows
//! inserted in state `fired` and their `next_fire_at` advanced — all in one
//! transaction, so a fire row is durable before any request for it is sent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diesel::Connection;

use crate::db::fires::{Finish, FireRow};
use crate::db::triggers::TriggerRow;
use crate::db::{self, DbConnection};
use crate::domain::{Concurrency, FireState, JobSpec, JobState, MisfirePolicy, TriggerSpec};
use crate::error::AppError;
use crate::scheduler::current_jobs::current_jobs;
use crate::time::Millis;

/// A job as the dispatcher needs it.
#[derive(Debug)]
pub struct JobForDispatch {
    pub id: String,
    pub key: String,
    pub version: i32,
    pub spec: JobSpec,
}

impl JobForDispatch {
    pub fn from_row(row: &crate::db::jobs::JobRow) -> Result<JobForDispatch, AppError> {
        let spec: JobSpec = serde_json::from_str(&row.spec).map_err(|e| {
            AppError::Internal(format!("job {} has an unreadable spec: {e}", row.id))
        })?;
        Ok(JobForDispatch {
            id: row.id.clone(),
            key: format!("{}/{}", row.group_name, row.name),
            version: row.version,
            spec,
        })
    }
}

/// A recorded fire owned by this node, waiting for its instant.
#[derive(Debug, Clone)]
pub struct DueFire {
    pub fire: FireRow,
    pub job: Arc<JobForDispatch>,
}

#[derive(Debug, Clone, Copy)]
pub struct ClaimWindow {
    pub now: Millis,
    /// Instants up to here are claimed now and held in memory until due.
    pub horizon: Millis,
    pub batch: i64,
    pub misfire_threshold_ms: u64,
    pub catch_up_max: u32,
}

/// One instant a trigger produced in a claim round.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedInstant {
    pub scheduled_at: Millis,
    pub due_at: Millis,
    pub state: FireState,
    pub note: Option<String>,
}

/// What one trigger yields for a claim round, and where it goes next.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerPlan {
    pub instants: Vec<PlannedInstant>,
    pub next_fire_at: Option<Millis>,
}

/// Missed instants counted one by one before jumping ahead (a months-old every-second
/// trigger would otherwise take long to walk).
const MAX_MISSED_WALK: usize = 100_000;
/// Instants one trigger may produce within one lookahead window.
const MAX_INSTANTS_PER_CLAIM: usize = 10_000;

/// Applies the misfire policy to instants older than the threshold, then takes every
/// instant up to the horizon.
pub fn plan_trigger(spec: &TriggerSpec, first: Millis, window: &ClaimWindow) -> TriggerPlan {
    let threshold = spec
        .misfire_threshold_ms
        .unwrap_or(window.misfire_threshold_ms) as i64;
    let late_cutoff = window.now - threshold;
    let keep = match spec.misfire {
        MisfirePolicy::CatchUp => window.catch_up_max.max(1) as usize,
        _ => 1,
    };
    let mut recent_missed: std::collections::VecDeque<Millis> =
        std::collections::VecDeque::with_capacity(keep);
    let mut missed = 0usize;
    let mut cursor = Some(first);
    // Once a trigger has misfired, `fire_now` and `skip` also fold in the instants that
    // are past but within the threshold (as Quartz moves a misfired trigger to now),
    // so a restart yields one fire now, not one plus a burst of slightly late ones.
    let folds_recent = spec.misfire != MisfirePolicy::CatchUp;
    let is_missed = |instant: Millis, missed: usize| {
        instant < late_cutoff || (folds_recent && missed > 0 && instant < window.now)
    };
    while let Some(instant) = cursor.filter(|i| is_missed(*i, missed)) {
        missed += 1;
        if recent_missed.len() == keep {
            recent_missed.pop_front();
        }
        recent_missed.push_back(instant);
        cursor = if missed >= MAX_MISSED_WALK {
            spec.first_at_or_after(late_cutoff)
        } else {
            spec.next_after(instant)
        };
    }

    let mut instants = Vec::new();
    if missed > 0 {
        let plural = if missed == 1 { "" } else { "s" };
        match spec.misfire {
            MisfirePolicy::FireNow => {
                let last = recent_missed.back().copied().unwrap_or(first);
                instants.push(PlannedInstant {
                    scheduled_at: last,
                    due_at: window.now,
                    state: FireState::Fired,
                    note: Some(format!(
                        "misfire: {missed} instant{plural} missed; fired once now"
                    )),
                });
            }
            MisfirePolicy::Skip => {
                let last = recent_missed.back().copied().unwrap_or(first);
                instants.push(PlannedInstant {
                    scheduled_at: last,
                    due_at: window.now,
                    state: FireState::Misfired,
                    note: Some(format!(
                        "misfire: {missed} instant{plural} missed; skipped per policy"
                    )),
                });
            }
            MisfirePolicy::CatchUp => {
                let dropped = missed - recent_missed.len();
                for (i, at) in recent_missed.iter().enumerate() {
                    let note = (i == 0 && dropped > 0)
                        .then(|| format!("misfire: {dropped} older instant(s) beyond catch_up_max were not fired"));
                    instants.push(PlannedInstant {
                        scheduled_at: *at,
                        due_at: window.now,
                        state: FireState::Fired,
                        note,
                    });
                }
            }
        }
    }
    while let Some(instant) = cursor.filter(|i| *i <= window.horizon) {
        if instants.len() >= MAX_INSTANTS_PER_CLAIM {
            break;
        }
        instants.push(PlannedInstant {
            scheduled_at: instant,
            due_at: instant,
            state: FireState::Fired,
            note: None,
        });
        cursor = spec.next_after(instant);
    }
    TriggerPlan {
        instants,
        next_fire_at: cursor,
    }
}

pub fn new_fire_row(
    job: &JobForDispatch,
    trigger_id: Option<&str>,
    attempt: i32,
    scheduled_at: Millis,
    due_at: Millis,
    now: Millis,
    owner: Option<&str>,
) -> FireRow {
    FireRow {
        id: uuid::Uuid::now_v7().to_string(),
        job_id: job.id.clone(),
        trigger_id: trigger_id.map(str::to_string),
        job_version: job.version,
        attempt,
        state: FireState::Fired.as_str().into(),
        scheduled_at,
        due_at,
        fired_at: now,
        dispatched_at: None,
        acked_at: None,
        finished_at: None,
        deadline_at: None,
        owner_node: owner.map(str::to_string),
        executor: None,
        http_status: None,
        payload: None,
        output: None,
        output_truncated: false,
        error: None,
        reported_started_at: None,
        reported_finished_at: None,
        late_result: None,
        shard_index: 0,
        shard_total: 1,
    }
}

/// Claims due triggers for `node` and records their fires. Returns the fires to
/// dispatch and whether the batch was full (more may be due).
pub fn claim_due_triggers(
    conn: &mut DbConnection,
    node: &str,
    window: &ClaimWindow,
) -> Result<(Vec<DueFire>, bool), AppError> {
    conn.transaction(|conn| {
        let triggers: Vec<TriggerRow> =
            db::triggers::select_due_for_claim(conn, window.horizon, window.batch)?;
        let full = triggers.len() as i64 == window.batch;
        if triggers.is_empty() {
            return Ok((Vec::new(), false));
        }
        let job_ids: Vec<String> = triggers.iter().map(|t| t.job_id.clone()).collect();
        let jobs = current_jobs(conn, &job_ids)?;
        let mut specs: Vec<Option<TriggerSpec>> = triggers
            .iter()
            .map(|trigger| {
                serde_json::from_str(&trigger.spec)
                    .map_err(|e| log::error!("trigger {} has an unreadable spec: {e}", trigger.id))
                    .ok()
            })
            .collect();
        for missing in db::calendars::attach(conn, specs.iter_mut().flatten())? {
            log::error!(
                "a trigger names calendar {missing:?}, which does not exist; it fires without it"
            );
        }
        let mut rows = Vec::new();
        let mut owners: Vec<Arc<JobForDispatch>> = Vec::new();
        // (trigger id, its next instant, instants fired now), written in one statement
        // per chunk after the loop.
        let mut advanced: Vec<db::triggers::Advance> = Vec::with_capacity(triggers.len());
        for (trigger, spec) in triggers.iter().zip(specs) {
            let Some(first) = trigger.next_fire_at else {
                continue;
            };
            let job = jobs.get(&trigger.job_id);
            let (Some((job_state, job)), Some(spec)) = (job, spec) else {
                // Nothing sensible to fire; park the trigger instead of spinning on it.
                advanced.push((trigger.id.clone(), None, 0));
                continue;
            };
            if *job_state != JobState::Active {
                advanced.push((trigger.id.clone(), None, 0));
                continue;
            }
            // The calendar may have changed since `next_fire_at` was computed.
            let first = if spec.is_excluded(first) {
                match spec.next_after(first) {
                    Some(next) => next,
                    None => {
                        advanced.push((trigger.id.clone(), None, 0));
                        continue;
                    }
                }
            } else {
                first
            };
            let plan = plan_trigger(&spec, first, window);
            if plan.instants.iter().any(|i| i.note.is_some()) {
                // Only misfire handling annotates a planned instant.
                crate::metrics::misfire(crate::metrics::group_of_key(&job.key), spec.misfire);
            }
            let fired = plan
                .instants
                .iter()
                .filter(|i| i.state == FireState::Fired)
                .count() as i64;
            for planned in &plan.instants {
                let mut row = new_fire_row(
                    job,
                    Some(&trigger.id),
                    1,
                    planned.scheduled_at,
                    planned.due_at,
                    window.now,
                    Some(node),
                );
                row.error = planned.note.clone();
                if planned.state != FireState::Fired {
                    row.state = planned.state.as_str().into();
                    row.finished_at = Some(window.now);
                    row.owner_node = None;
                }
                rows.push(row);
                owners.push(job.clone());
            }
            advanced.push((trigger.id.clone(), plan.next_fire_at, fired));
        }
        db::triggers::advance_many(conn, &advanced)?;
        let inserted: std::collections::HashSet<String> =
            db::fires::insert_new(conn, &rows)?.into_iter().collect();
        let due = rows
            .into_iter()
            .zip(owners)
            .filter(|(row, _)| row.state == FireState::Fired.as_str() && inserted.contains(&row.id))
            .map(|(fire, job)| DueFire { fire, job })
            .collect();
        Ok((due, full))
    })
}

/// Claims recorded-but-undispatched fires nobody owns (retries, run-now, handed back).
/// A handed-back first attempt that is now late beyond its trigger's misfire threshold
/// follows the trigger's misfire policy, like the instants the node was down for.
pub fn claim_pending_fires(
    conn: &mut DbConnection,
    node: &str,
    window: &ClaimWindow,
) -> Result<(Vec<DueFire>, bool), AppError> {
    conn.transaction(|conn| {
        let fires = db::fires::claim_pending(conn, node, window.horizon, window.batch)?;
        let full = fires.len() as i64 == window.batch;
        if fires.is_empty() {
            return Ok((Vec::new(), false));
        }
        let job_ids: Vec<String> = fires.iter().map(|f| f.job_id.clone()).collect();
        let jobs = current_jobs(conn, &job_ids)?;
        let triggers = load_trigger_specs(conn, &fires)?;
        let mut due = Vec::with_capacity(fires.len());
        for fire in fires {
            let Some((_, job)) = jobs.get(&fire.job_id) else {
                log::warn!(
                    "fire {} belongs to a job that no longer exists; not dispatched",
                    fire.id
                );
                continue;
            };
            // A queued job's fires wait their turn on purpose: lateness is not a misfire.
            let spec = fire
                .trigger_id
                .as_ref()
                .and_then(|id| triggers.get(id))
                .filter(|_| job.spec.concurrency != Concurrency::Queue);
            if let Some(reason) = late_hand_back_verdict(conn, &fire, spec, window)? {
                let finish = Finish {
                    state: FireState::Misfired.as_str(),
                    finished_at: window.now,
                    error: Some(reason),
                    ..Default::default()
                };
                db::fires::finish(conn, &fire.id, &[FireState::Fired.as_str()], &finish)?;
                crate::metrics::misfire(
                    crate::metrics::group_of_key(&job.key),
                    spec.map(|s| s.misfire).unwrap_or_default(),
                );
                continue;
            }
            due.push(DueFire {
                fire,
                job: job.clone(),
            });
        }
        Ok((due, full))
    })
}

/// How often a queued fire (concurrency: queue) looks again whether its turn came.
pub const QUEUE_RECHECK_MS: i64 = 200;

/// At their instant, which held fires go out now. Each must pass the dispatch fence
/// (`db::fires::fence_for_dispatch`: still this node's, still waiting); a fire held past
/// its misfire threshold (the node could not reach the database in time) follows its
/// trigger's misfire policy; a queued job's fire goes only when no other fire of the
/// job is out and no earlier one waits, decided under the job's row lock so two nodes cannot both start one.
pub fn take_due_for_dispatch(
    conn: &mut DbConnection,
    node: &str,
    wave: &[DueFire],
    window: &ClaimWindow,
) -> Result<HashSet<String>, AppError> {
    conn.transaction(|conn| {
        let is_late = |due: &DueFire| {
            due.job.spec.concurrency != Concurrency::Queue
                && window.now - due.fire.due_at > window.misfire_threshold_ms as i64
        };
        let late: Vec<FireRow> = wave
            .iter()
            .filter(|d| is_late(d))
            .map(|d| d.fire.clone())
            .collect();
        let triggers = if late.is_empty() {
            HashMap::new()
        } else {
            load_trigger_specs(conn, &late)?
        };
        let mut plain = Vec::with_capacity(wave.len());
        let mut queued = Vec::new();
        for due in wave {
            if is_late(due) {
                let spec = due.fire.trigger_id.as_ref().and_then(|id| triggers.get(id));
                if let Some(reason) = late_hand_back_verdict(conn, &due.fire, spec, window)? {
                    let finish = Finish {
                        state: FireState::Misfired.as_str(),
                        finished_at: window.now,
                        error: Some(reason),
                        ..Default::default()
                    };
                    db::fires::finish(conn, &due.fire.id, &[FireState::Fired.as_str()], &finish)?;
                    crate::metrics::misfire(
                        crate::metrics::group_of_key(&due.job.key),
                        spec.map(|s| s.misfire).unwrap_or_default(),
                    );
                    continue;
                }
            }
            if due.job.spec.concurrency == Concurrency::Queue {
                queued.push(due);
            } else {
                plain.push(due.fire.id.clone());
            }
        }
        let mut send: HashSet<String> =
            db::fires::fence_for_dispatch(conn, node, &plain, window.now)?
                .into_iter()
                .collect();
        // One lock order for every node, so two nodes locking jobs cannot deadlock.
        queued.sort_by(|a, b| {
            (&a.job.id, a.fire.scheduled_at).cmp(&(&b.job.id, b.fire.scheduled_at))
        });
        for due in queued {
            db::jobs::lock_for_update(conn, &due.job.id)?;
            let fenced =
                db::fires::fence_for_dispatch(conn, node, &[due.fire.id.clone()], window.now)?;
            if fenced.is_empty() {
                continue;
            }
            if db::fires::queued_fire_must_wait(conn, &due.fire)? {
                db::fires::postpone(conn, &due.fire.id, window.now + QUEUE_RECHECK_MS)?;
            } else {
                send.insert(due.fire.id.clone());
            }
        }
        Ok(send)
    })
}

fn load_trigger_specs(
    conn: &mut DbConnection,
    fires: &[FireRow],
) -> Result<HashMap<String, TriggerSpec>, AppError> {
    let mut ids: Vec<String> = fires.iter().filter_map(|f| f.trigger_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut specs = HashMap::with_capacity(ids.len());
    for row in db::triggers::find_many(conn, &ids)? {
        match serde_json::from_str::<TriggerSpec>(&row.spec) {
            Ok(spec) => {
                specs.insert(row.id, spec);
            }
            Err(e) => log::error!("trigger {} has an unreadable spec: {e}", row.id),
        }
    }
    Ok(specs)
}

/// Why a handed-back fire must not run now, if it must not: it is a first attempt,
/// late beyond the threshold, and its trigger says `skip`, or says `fire_now` while a
/// later instant of the same trigger is already recorded (that one is the "once now").
fn late_hand_back_verdict(
    conn: &mut DbConnection,
    fire: &FireRow,
    spec: Option<&TriggerSpec>,
    window: &ClaimWindow,
) -> Result<Option<String>, AppError> {
    let (Some(spec), Some(trigger_id)) = (spec, fire.trigger_id.as_deref()) else {
        return Ok(None);
    };
    if fire.attempt != 1 {
        return Ok(None);
    }
    let threshold = spec
        .misfire_threshold_ms
        .unwrap_or(window.misfire_threshold_ms) as i64;
    let late_by = window.now - fire.due_at;
    if late_by <= threshold {
        return Ok(None);
    }
    let verdict = match spec.misfire {
        MisfirePolicy::CatchUp => None,
        MisfirePolicy::Skip => Some(format!(
            "misfire: handed back {late_by} ms late; skipped per policy"
        )),
        MisfirePolicy::FireNow => db::fires::has_later_fire(conn, &fire.job_id, trigger_id, fire.scheduled_at)?
            .then(|| {
                format!("misfire: handed back {late_by} ms late; a later instant of the trigger fires instead")
            }),
    };
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TriggerKind;

    fn every_second(misfire: MisfirePolicy) -> TriggerSpec {
        TriggerSpec {
            kind: TriggerKind::Interval,
            expression: None,
            time_zone: None,
            at: None,
            interval_ms: Some(1_000),
            start_at: Some(0),
            repeat_count: None,
            misfire,
            misfire_threshold_ms: Some(5_000),
            calendar: None,
            calendar_rules: None,
        }
    }

    fn window(now: Millis) -> ClaimWindow {
        ClaimWindow {
            now,
            horizon: now + 1_000,
            batch: 100,
            misfire_threshold_ms: 5_000,
            catch_up_max: 3,
        }
    }

    #[test]
    fn on_time_instants_up_to_the_horizon() {
        let plan = plan_trigger(
            &every_second(MisfirePolicy::FireNow),
            10_000,
            &window(10_000),
        );
        let at: Vec<_> = plan.instants.iter().map(|i| i.scheduled_at).collect();
        assert_eq!(at, vec![10_000, 11_000]);
        assert_eq!(plan.next_fire_at, Some(12_000));
    }

    #[test]
    fn fire_now_fires_the_latest_missed_instant_once() {
        // Down from 10 s to 100 s: instants 10..=94 s are beyond the 5 s threshold, and
        // 95..=99 s, past but within it, fold into the same single fire.
        let plan = plan_trigger(
            &every_second(MisfirePolicy::FireNow),
            10_000,
            &window(100_000),
        );
        assert_eq!(plan.instants[0].scheduled_at, 99_000);
        assert_eq!(plan.instants[0].due_at, 100_000);
        assert_eq!(plan.instants[0].state, FireState::Fired);
        assert!(plan.instants[0]
            .note
            .as_deref()
            .unwrap_or("")
            .contains("90 instants missed"));
        // Then the instants from now to the lookahead, on their own times.
        let rest: Vec<_> = plan.instants[1..].iter().map(|i| i.scheduled_at).collect();
        assert_eq!(rest, vec![100_000, 101_000]);
        // Merely late (within the threshold) without a misfire: fired as they are.
        let plan = plan_trigger(
            &every_second(MisfirePolicy::FireNow),
            97_000,
            &window(100_000),
        );
        let at: Vec<_> = plan.instants.iter().map(|i| i.scheduled_at).collect();
        assert_eq!(at, vec![97_000, 98_000, 99_000, 100_000, 101_000]);
        assert!(plan.instants.iter().all(|i| i.note.is_none()));
    }

    #[test]
    fn skip_records_a_misfire_and_catch_up_is_bounded() {
        let plan = plan_trigger(&every_second(MisfirePolicy::Skip), 10_000, &window(100_000));
        assert_eq!(plan.instants[0].state, FireState::Misfired);
        assert_eq!(
            plan.instants
                .iter()
                .filter(|i| i.state == FireState::Fired && i.scheduled_at < 100_000)
                .count(),
            0
        );
        let plan = plan_trigger(
            &every_second(MisfirePolicy::CatchUp),
            10_000,
            &window(100_000),
        );
        let caught: Vec<_> = plan
            .instants
            .iter()
            .filter(|i| i.scheduled_at < 95_000)
            .map(|i| i.scheduled_at)
            .collect();
        assert_eq!(caught, vec![92_000, 93_000, 94_000]);
    }
}
