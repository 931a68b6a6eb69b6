//! The execution plan: which fires are coming, for one job or all, in a window —
//! the fires already recorded and waiting, then the instants the triggers will
//! produce, honouring pause state and calendars.

use chrono::{Duration, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use crate::db::{self, DbConnection};
use crate::dispatch::routing::executor_label;
use crate::domain::{JobState, Routing, TriggerKind};
use crate::error::AppError;
use crate::lifecycle::{assemble, StoredJob};
use crate::time::{to_rfc3339, Millis};

/// Rows a plan returns at most; beyond it the answer says `truncated`.
pub const MAX_PLAN_ROWS: usize = 10_000;
pub const DEFAULT_PLAN_ROWS: usize = 1_000;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PlannedFire {
    pub job_id: String,
    pub job: String,
    pub trigger_id: Option<String>,
    pub at: String,
    #[serde(skip)]
    pub at_ms: Millis,
    /// `recorded` (a fire row exists, waiting for its instant) or `planned`.
    pub status: &'static str,
    /// The executor a `pinned` job goes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub from: String,
    /// The window's end when one was given; otherwise each job's own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    pub items: Vec<PlannedFire>,
    pub truncated: bool,
}

/// The end of tomorrow in the job's zone (its first cron trigger's zone, else UTC).
fn default_until(job: &StoredJob, now: Millis) -> Millis {
    let zone: Tz = job
        .triggers
        .iter()
        .find_map(|(_, spec)| spec.time_zone.as_deref())
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let today = crate::time::to_datetime(now)
        .with_timezone(&zone)
        .date_naive();
    let day_after_tomorrow = today + Duration::days(2);
    zone.from_local_datetime(&day_after_tomorrow.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map_or(now + 2 * 86_400_000, |t| t.timestamp_millis())
}

/// The plan of the given jobs (all when `job_ids` is None) over `[from, until)`.
pub fn plan(
    conn: &mut DbConnection,
    job_ids: Option<Vec<String>>,
    from: Millis,
    until: Option<Millis>,
    limit: usize,
    now: Millis,
) -> Result<Plan, AppError> {
    match job_ids {
        Some(ids) => {
            let rows = db::jobs::find_many(conn, &ids)?;
            plan_of_jobs(conn, rows, from, until, limit, now)
        }
        None => plan_of_all_jobs(conn, from, until, limit, now),
    }
}

/// No job's default window (the end of tomorrow in its zone) reaches past this.
const LONGEST_DEFAULT_WINDOW_MS: Millis = 3 * 86_400_000;

/// Every job's plan, reading only the jobs that can be in it: the triggers due
/// soonest and the fires waiting soonest (both from indexes), `k` of each, growing
/// until the jobs left out cannot place anything among the first `limit` items.
/// With millions of jobs, planning each one was a full read of the database.
fn plan_of_all_jobs(
    conn: &mut DbConnection,
    from: Millis,
    until: Option<Millis>,
    limit: usize,
    now: Millis,
) -> Result<Plan, AppError> {
    let horizon = until.unwrap_or(now + LONGEST_DEFAULT_WINDOW_MS);
    let mut k = (limit as i64 + 1) * 2;
    loop {
        let triggers = db::triggers::due_before(conn, horizon, k)?;
        let waiting = db::fires::waiting_before(conn, from, horizon, k)?;
        // A job left out has no trigger and no waiting fire before `cut`.
        let cut = [&triggers, &waiting]
            .into_iter()
            .filter(|listed| listed.len() as i64 == k)
            .filter_map(|listed| listed.last().map(|(_, at)| *at))
            .min();
        let mut ids: Vec<String> = triggers
            .into_iter()
            .chain(waiting)
            .map(|(job_id, _)| job_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = db::jobs::find_many(conn, &ids)?;
        let mut plan = plan_of_jobs(conn, rows, from, until, limit, now)?;
        match cut {
            None => return Ok(plan),
            Some(cut) if plan.items.len() >= limit && plan.items[limit - 1].at_ms < cut => {
                // Jobs left out only have later instants.
                plan.truncated = true;
                return Ok(plan);
            }
            Some(_) => k = k.saturating_mul(4),
        }
    }
}

/// The plan of these jobs over `[from, until)`.
fn plan_of_jobs(
    conn: &mut DbConnection,
    rows: Vec<db::jobs::JobRow>,
    from: Millis,
    until: Option<Millis>,
    limit: usize,
    now: Millis,
) -> Result<Plan, AppError> {
    let mut items = Vec::new();
    let mut truncated = false;
    for row in rows {
        if JobState::parse(&row.state) != Some(JobState::Active) {
            continue;
        }
        let job = assemble(conn, row)?;
        let end = until.unwrap_or_else(|| default_until(&job, now));
        let key = format!("{}/{}", job.job.group_name, job.job.name);
        let executor = (job.spec.routing == Routing::Pinned)
            .then(|| {
                let target = &job.spec.target;
                Some(executor_label(
                    target.app.as_deref()?,
                    target.instance.as_deref()?,
                ))
            })
            .flatten();
        let planned = |trigger_id: Option<String>, at: Millis, status| PlannedFire {
            job_id: job.job.id.clone(),
            job: key.clone(),
            trigger_id,
            at: to_rfc3339(at),
            at_ms: at,
            status,
            executor: executor.clone(),
        };
        for fire in db::fires::waiting_for_job(conn, &job.job.id, from, end - 1)? {
            items.push(planned(fire.trigger_id.clone(), fire.due_at, "recorded"));
        }
        for (trigger, spec) in &job.triggers {
            let mut cursor = trigger.next_fire_at;
            let mut count = 0;
            while let Some(at) = cursor.filter(|at| *at < end) {
                if count > limit {
                    truncated = true;
                    break;
                }
                if at >= from {
                    items.push(planned(Some(trigger.id.clone()), at, "planned"));
                    count += 1;
                }
                cursor = match spec.kind {
                    TriggerKind::At | TriggerKind::Immediate => None,
                    _ => spec.next_after(at),
                };
            }
        }
    }
    items.sort_by(|a, b| (a.at_ms, &a.job).cmp(&(b.at_ms, &b.job)));
    if items.len() > limit {
        items.truncate(limit);
        truncated = true;
    }
    Ok(Plan {
        from: to_rfc3339(from),
        until: until.map(to_rfc3339),
        items,
        truncated,
    })
}
