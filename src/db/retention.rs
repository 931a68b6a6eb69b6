//! Purge queries for retention: finished fires by age, and beyond a per-job count.
//! Each call removes at most one batch, so the caller decides how often the single
//! SQLite writer is taken.

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::schema::{fires, jobs};
use super::DbConnection;
use crate::domain::FireState;

/// States a purge may remove: every terminal one, never `fired` or `running`.
fn finished_states() -> Vec<&'static str> {
    FireState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(FireState::as_str)
        .collect()
}

/// Removes up to `batch` finished fires that fired and finished before `cutoff`. They
/// are found by scheduled instant, through the unique index it leads (no index holds
/// `finished_at` or the state: a finish writes no index entry): a fire is scheduled
/// before it fires, or at most a claim's look-ahead after, and such a fire is taken
/// by a later purge.
pub fn purge_finished_before(
    conn: &mut DbConnection,
    cutoff: i64,
    batch: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = fires::table
        .filter(fires::scheduled_at.lt(cutoff))
        .filter(fires::fired_at.lt(cutoff))
        .filter(fires::finished_at.lt(cutoff))
        .filter(fires::state.eq_any(finished_states()))
        .select(fires::id)
        .limit(batch)
        .load(conn)?;
    delete_ids(conn, &ids)
}

/// Jobs with more than `keep` fires in any state, with that count: the candidates for
/// a per-job purge, counted from `fires_job_scheduled` alone. The purge itself counts
/// only finished fires.
pub fn jobs_over(conn: &mut DbConnection, keep: i64) -> QueryResult<Vec<(String, i64)>> {
    fires::table
        .group_by(fires::job_id)
        .having(count_star().gt(keep))
        .select((fires::job_id, count_star()))
        .load(conn)
}

/// Jobs whose spec sets `keep_fires`, with that count. The text filter keeps this from
/// parsing every job's spec; the parse decides.
pub fn keep_fires_overrides(conn: &mut DbConnection) -> QueryResult<Vec<(String, u32)>> {
    let rows: Vec<(String, String)> = jobs::table
        .filter(jobs::spec.like("%\"keep_fires\":%"))
        .select((jobs::id, jobs::spec))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, spec)| {
            let spec: serde_json::Value = serde_json::from_str(&spec).ok()?;
            let keep = u32::try_from(spec.get("keep_fires")?.as_u64()?).ok()?;
            Some((id, keep))
        })
        .collect())
}

/// Removes up to `batch` of the job's finished fires beyond its newest `keep`, newest
/// by scheduled instant (the order of `fires_job_scheduled`).
pub fn purge_beyond_newest(
    conn: &mut DbConnection,
    job_id: &str,
    keep: i64,
    batch: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = fires::table
        .filter(fires::job_id.eq(job_id))
        .filter(fires::finished_at.is_not_null())
        .filter(fires::state.eq_any(finished_states()))
        .order(fires::scheduled_at.desc())
        .select(fires::id)
        .offset(keep)
        .limit(batch)
        .load(conn)?;
    delete_ids(conn, &ids)
}

fn delete_ids(conn: &mut DbConnection, ids: &[String]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(fires::table.filter(fires::id.eq_any(ids))).execute(conn)
}
