//! Queries on `executor_load_samples`: each executor's load over time, sampled from its
//! heartbeats for the console's executors page.

use diesel::prelude::*;

use super::executors::ExecutorRow;
use super::schema::executor_load_samples;
use super::DbConnection;

/// At most one sample per executor this often, whatever its heartbeat period.
pub const SAMPLE_EVERY_MS: i64 = 5_000;
/// Samples older than this are deleted as new ones arrive.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = executor_load_samples)]
pub struct LoadSample {
    pub executor_id: String,
    pub sampled_at: i64,
    pub running: i32,
    pub queued: i32,
    pub capacity: i32,
    pub cpu_percent: f64,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
}

/// Records the load a heartbeat just reported, unless a sample of this executor is
/// younger than [`SAMPLE_EVERY_MS`]; drops its samples older than [`KEEP_MS`].
pub fn record(conn: &mut DbConnection, row: &ExecutorRow, now: i64) -> QueryResult<bool> {
    use diesel::dsl::exists;
    let recent: bool = diesel::select(exists(
        executor_load_samples::table
            .filter(executor_load_samples::executor_id.eq(&row.id))
            .filter(executor_load_samples::sampled_at.gt(now - SAMPLE_EVERY_MS)),
    ))
    .get_result(conn)?;
    if recent {
        return Ok(false);
    }
    diesel::delete(
        executor_load_samples::table
            .filter(executor_load_samples::executor_id.eq(&row.id))
            .filter(executor_load_samples::sampled_at.lt(now - KEEP_MS)),
    )
    .execute(conn)?;
    let sample = LoadSample {
        executor_id: row.id.clone(),
        sampled_at: now,
        running: row.running,
        queued: row.queued,
        capacity: row.capacity,
        cpu_percent: row.cpu_percent,
        mem_used_bytes: row.mem_used_bytes,
        mem_total_bytes: row.mem_total_bytes,
    };
    // Two nodes taking the same instant's sample is harmless: the second is dropped.
    let inserted = match conn {
        DbConnection::Postgresql(pg) => diesel::insert_into(executor_load_samples::table)
            .values(&sample)
            .on_conflict_do_nothing()
            .execute(pg)?,
        DbConnection::Sqlite(lite) => diesel::insert_or_ignore_into(executor_load_samples::table)
            .values(&sample)
            .execute(lite)?,
    };
    Ok(inserted == 1)
}

/// Every executor's samples since `since`, oldest first.
pub fn since(conn: &mut DbConnection, since: i64) -> QueryResult<Vec<LoadSample>> {
    executor_load_samples::table
        .filter(executor_load_samples::sampled_at.ge(since))
        .order((
            executor_load_samples::executor_id.asc(),
            executor_load_samples::sampled_at.asc(),
        ))
        .select(LoadSample::as_select())
        .load(conn)
}
