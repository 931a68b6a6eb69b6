//! Queries on `fires`. Every state change is a compare-and-set on the current
//! state, so two writers (a write-back and a sweeper, two nodes) cannot both win.

use diesel::prelude::*;

use super::schema::fires;
use super::statement::{
    filter_only, fixed_chunks, indexed_by, many_rows, update_from_rows, Statement,
};
use super::DbConnection;
use crate::domain::FireState;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable, PartialEq)]
#[diesel(table_name = fires)]
pub struct FireRow {
    pub id: String,
    pub job_id: String,
    pub trigger_id: Option<String>,
    pub job_version: i32,
    pub attempt: i32,
    pub state: String,
    pub scheduled_at: i64,
    pub due_at: i64,
    pub fired_at: i64,
    pub dispatched_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub owner_node: Option<String>,
    pub executor: Option<String>,
    pub http_status: Option<i32>,
    pub payload: Option<String>,
    pub output: Option<String>,
    pub output_truncated: bool,
    pub error: Option<String>,
    pub reported_started_at: Option<i64>,
    pub reported_finished_at: Option<i64>,
    pub late_result: Option<String>,
    /// Broadcast fires: which executor's share this is (0 otherwise), of how many (1).
    pub shard_index: i32,
    pub shard_total: i32,
}

/// Inserts fire rows; a row whose `(trigger_id, scheduled_at, attempt)` already
/// exists is silently skipped — that unique key is what makes a double fire impossible.
/// Returns the ids actually inserted.
pub fn insert_new(conn: &mut DbConnection, rows: &[FireRow]) -> QueryResult<Vec<String>> {
    let mut inserted = Vec::with_capacity(rows.len());
    // A kept-prepared statement (a claim inserts hundreds of rows per round); the
    // rows that lost a race are the ones not returned.
    let sql = format!(
        "{} INTO fires (id, job_id, trigger_id, job_version, attempt, state, \
         scheduled_at, due_at, fired_at, dispatched_at, acked_at, finished_at, deadline_at, \
         owner_node, executor, http_status, payload, output, output_truncated, error, \
         reported_started_at, reported_finished_at, late_result, shard_index, shard_total) \
         VALUES ",
        many_rows(conn, "INSERT")
    );
    for chunk in fixed_chunks(rows, FIRES_PER_INSERT) {
        let mut insert = Statement::new(&sql);
        insert
            .bind_rows(chunk, |r| {
                [
                    r.id.as_str().into(),
                    r.job_id.as_str().into(),
                    r.trigger_id.as_deref().into(),
                    r.job_version.into(),
                    r.attempt.into(),
                    r.state.as_str().into(),
                    r.scheduled_at.into(),
                    r.due_at.into(),
                    r.fired_at.into(),
                    r.dispatched_at.into(),
                    r.acked_at.into(),
                    r.finished_at.into(),
                    r.deadline_at.into(),
                    r.owner_node.as_deref().into(),
                    r.executor.as_deref().into(),
                    r.http_status.into(),
                    r.payload.as_deref().into(),
                    r.output.as_deref().into(),
                    r.output_truncated.into(),
                    r.error.as_deref().into(),
                    r.reported_started_at.into(),
                    r.reported_finished_at.into(),
                    r.late_result.as_deref().into(),
                    r.shard_index.into(),
                    r.shard_total.into(),
                ]
            })
            .sql(" ON CONFLICT DO NOTHING RETURNING id");
        inserted.extend(insert.load::<super::IdRow>(conn)?.into_iter().map(|r| r.id));
    }
    Ok(inserted)
}

/// Fire rows in one INSERT at most: 25 columns each, well under SQLite's limit of
/// 32,766 parameters. A power of two, for [`fixed_chunks`].
const FIRES_PER_INSERT: usize = 64;

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<FireRow>> {
    fires::table
        .find(id)
        .select(FireRow::as_select())
        .first(conn)
        .optional()
}

/// A fire's job and state, for [`states_of`].
#[derive(Debug, Clone, QueryableByName)]
pub struct FireJobState {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub job_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub state: String,
}

/// Job and state of the fires among `ids` that exist: what batched write-backs need
/// to decide, without reading (and decoding) each fire's payload and output.
pub fn states_of(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<FireJobState>> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in fixed_chunks(ids, super::IDS_PER_STATEMENT) {
        let mut query = Statement::new("SELECT id, job_id, state FROM fires WHERE id IN ");
        query.bind_list(chunk.iter().map(String::as_str));
        rows.extend(query.load::<FireJobState>(conn)?);
    }
    Ok(rows)
}

#[derive(Debug, Default, Clone)]
pub struct FireFilter {
    pub job_id: Option<String>,
    pub state: Option<String>,
    /// Scheduled at or after (epoch ms).
    pub from: Option<i64>,
    /// Scheduled before (epoch ms).
    pub until: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

pub fn list(conn: &mut DbConnection, filter: &FireFilter) -> QueryResult<(Vec<FireRow>, i64)> {
    let build = || {
        let mut query = fires::table.into_boxed();
        if let Some(job) = &filter.job_id {
            query = query.filter(fires::job_id.eq(job.clone()));
        }
        if let Some(state) = &filter.state {
            // A known state goes into the text, not a bound value, so that the planner
            // can see that `fires_running_deadline` holds exactly the running fires
            // (SQLite's planner does not look into bound values: QPSG).
            query = match FireState::parse(state) {
                Some(known) => query.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                    "fires.state = '{}'",
                    known.as_str()
                ))),
                None => query.filter(fires::state.eq(state.clone())),
            };
        }
        if let Some(from) = filter.from {
            query = query.filter(fires::scheduled_at.ge(from));
        }
        if let Some(until) = filter.until {
            query = query.filter(fires::scheduled_at.lt(until));
        }
        query
    };
    let total = build().count().get_result(conn)?;
    let rows = build()
        .order((
            fires::scheduled_at.desc(),
            fires::attempt.desc(),
            fires::fired_at.desc(),
        ))
        .limit(filter.limit)
        .offset(filter.offset)
        .select(FireRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Recorded, not dispatched, not owned by a node, due by `horizon`: retries, run-now
/// fires and fires handed back by a stopping or dead node. Takes ownership of them.
pub fn claim_pending(
    conn: &mut DbConnection,
    node: &str,
    horizon: i64,
    limit: i64,
) -> QueryResult<Vec<FireRow>> {
    // The index of unowned waiting fires: SQLite's state index would hold every
    // waiting fire, thousands of them owned and held by this node under load.
    let table = indexed_by(conn, "fires", "fires_unowned_pending");
    let lock = match conn {
        DbConnection::Sqlite(_) => "",
        DbConnection::Postgresql(_) => " FOR UPDATE SKIP LOCKED",
    };
    let mut pending = Statement::new(format!(
        "SELECT * FROM {table} WHERE state = 'fired' AND dispatched_at IS NULL \
         AND owner_node IS NULL AND due_at <= "
    ));
    pending
        .bind(horizon)
        .sql(" ORDER BY due_at, scheduled_at LIMIT ")
        .bind(limit)
        .sql(lock);
    let mut rows = pending.load::<FireRow>(conn)?;
    if rows.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    diesel::update(
        fires::table
            .filter(fires::id.eq_any(ids))
            .filter(fires::owner_node.is_null()),
    )
    .set(fires::owner_node.eq(node))
    .execute(conn)?;
    for row in &mut rows {
        row.owner_node = Some(node.to_string());
    }
    Ok(rows)
}

/// The dispatch fence: of `ids`, marks those still owned by `node` and waiting
/// (not cancelled, dropped or taken over) as being sent now, and returns them. Only
/// what comes back may be sent: a node that was declared dead (and whose fires were
/// taken over) gets nothing back, so a fire goes out from one node only.
pub fn fence_for_dispatch(
    conn: &mut DbConnection,
    node: &str,
    ids: &[String],
    now: i64,
) -> QueryResult<Vec<String>> {
    // Look up the listed ids only, never the state index: SQLite would walk it (every
    // waiting fire, thousands under load), and PostgreSQL's custom plans AND it with
    // the primary key (a bitmap of every `fired` entry, including each fire's stale
    // one until vacuum: 8 ms for a fence of 16 fires at 7,000 fires/s).
    let state = filter_only(conn, "state");
    let update = format!("{} fires SET dispatched_at = ", many_rows(conn, "UPDATE"));
    let filter = format!(" WHERE {state} = 'fired' AND dispatched_at IS NULL AND owner_node = ");
    let mut fenced = Vec::with_capacity(ids.len());
    for chunk in fixed_chunks(ids, super::IDS_PER_STATEMENT) {
        let mut query = Statement::new(&update);
        query
            .bind(now)
            .sql(&filter)
            .bind(node)
            .sql(" AND id IN ")
            .bind_list(chunk.iter().map(String::as_str))
            .sql(" RETURNING id");
        fenced.extend(
            query
                .load::<super::IdRow>(conn)?
                .into_iter()
                .map(|row| row.id),
        );
    }
    Ok(fenced)
}

/// Whether a queued job's fire must wait its turn: another fire of the job is out
/// (running, or sent and not yet answered), or an earlier one is still waiting.
pub fn queued_fire_must_wait(conn: &mut DbConnection, fire: &FireRow) -> QueryResult<bool> {
    use diesel::dsl::exists;
    let out = fires::state.eq("running").or(fires::state
        .eq("fired")
        .and(fires::dispatched_at.is_not_null()));
    let earlier_waiting = fires::state
        .eq("fired")
        .and(fires::dispatched_at.is_null())
        .and(
            fires::scheduled_at
                .lt(fire.scheduled_at)
                .or(fires::scheduled_at
                    .eq(fire.scheduled_at)
                    .and(fires::id.lt(&fire.id))),
        );
    diesel::select(exists(
        fires::table
            .filter(fires::job_id.eq(&fire.job_id))
            .filter(fires::id.ne(&fire.id))
            .filter(out.or(earlier_waiting)),
    ))
    .get_result(conn)
}

/// The target acknowledged a callback-mode dispatch: `fired → running`.
pub fn mark_running(
    conn: &mut DbConnection,
    id: &str,
    dispatched_at: i64,
    acked_at: i64,
    deadline_at: i64,
    http_status: i32,
    executor: &str,
) -> QueryResult<usize> {
    diesel::update(fires::table.find(id).filter(fires::state.eq("fired")))
        .set((
            fires::state.eq("running"),
            fires::dispatched_at.eq(dispatched_at),
            fires::acked_at.eq(acked_at),
            fires::deadline_at.eq(deadline_at),
            fires::http_status.eq(http_status),
            fires::executor.eq(executor),
        ))
        .execute(conn)
}

/// A callback-mode acknowledgement, for [`mark_running_many`].
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub id: String,
    pub dispatched_at: i64,
    pub acked_at: i64,
    pub deadline_at: i64,
    pub http_status: i32,
    pub executor: String,
}

/// [`mark_running`] for many fires, one `UPDATE … FROM (VALUES …)` per chunk (diesel
/// prepares every UPDATE anew; one per acknowledgement was a large part of recording
/// them). Returns the ids that moved to `running`; the others had left `fired` (a
/// write-back overtook the acknowledgement, a cancel).
pub fn mark_running_many(
    conn: &mut DbConnection,
    acks: &[Acknowledged],
) -> QueryResult<Vec<String>> {
    let (before_rows, after_rows) = update_from_rows(
        conn,
        "fires",
        "state = 'running', dispatched_at = v.dispatched_at, acked_at = v.acked_at, \
         deadline_at = v.deadline_at, http_status = v.http_status, executor = v.executor",
        &[
            "id",
            "dispatched_at",
            "acked_at",
            "deadline_at",
            "http_status",
            "executor",
        ],
    );
    let filter = format!(
        "{after_rows}fires.id = v.id AND {} = 'fired'",
        filter_only(conn, "fires.state")
    );
    let mut changed = Vec::with_capacity(acks.len());
    for chunk in fixed_chunks(acks, super::rows_per_update(conn)) {
        let mut query = Statement::new(&before_rows);
        query
            .bind_rows(chunk, |ack| {
                [
                    ack.id.as_str().into(),
                    ack.dispatched_at.into(),
                    ack.acked_at.into(),
                    ack.deadline_at.into(),
                    ack.http_status.into(),
                    ack.executor.as_str().into(),
                ]
            })
            .sql(&filter)
            .sql(" RETURNING fires.id");
        changed.extend(
            query
                .load::<super::IdRow>(conn)?
                .into_iter()
                .map(|row| row.id),
        );
    }
    Ok(changed)
}

/// Fields written when a fire reaches a terminal state. `None` leaves a column as
/// it is (diesel skips `None` in a changeset), so a write-back keeps the dispatch facts.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = fires)]
pub struct Finish {
    pub state: &'static str,
    pub finished_at: i64,
    pub dispatched_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub http_status: Option<i32>,
    pub executor: Option<String>,
    pub output: Option<String>,
    pub output_truncated: bool,
    pub error: Option<String>,
    pub reported_started_at: Option<i64>,
    pub reported_finished_at: Option<i64>,
}

/// Moves a fire from one of `from` states to a terminal state. Returns rows changed (0 = lost the race).
pub fn finish(conn: &mut DbConnection, id: &str, from: &[&str], f: &Finish) -> QueryResult<usize> {
    diesel::update(fires::table.find(id).filter(fires::state.eq_any(from)))
        .set(f)
        .execute(conn)
}

/// [`finish`] for many fires, one `UPDATE … FROM (VALUES …)` per chunk; as there, a
/// column left `None` keeps its value. `from` are state names (`FireState::as_str`),
/// never user input. Returns the ids that changed; the others had left `from`.
pub fn finish_many(
    conn: &mut DbConnection,
    from: &[&'static str],
    items: &[(&str, &Finish)],
) -> QueryResult<Vec<String>> {
    let from_list = from
        .iter()
        .map(|state| format!("'{state}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let (before_rows, after_rows) = update_from_rows(
        conn,
        "fires",
        "state = v.state, finished_at = v.finished_at, \
         dispatched_at = COALESCE(v.dispatched_at, fires.dispatched_at), \
         acked_at = COALESCE(v.acked_at, fires.acked_at), \
         http_status = COALESCE(v.http_status, fires.http_status), \
         executor = COALESCE(v.executor, fires.executor), \
         output = COALESCE(v.output, fires.output), \
         output_truncated = v.output_truncated, \
         error = COALESCE(v.error, fires.error), \
         reported_started_at = COALESCE(v.reported_started_at, fires.reported_started_at), \
         reported_finished_at = COALESCE(v.reported_finished_at, fires.reported_finished_at)",
        &[
            "id",
            "state",
            "finished_at",
            "dispatched_at",
            "acked_at",
            "http_status",
            "executor",
            "output",
            "output_truncated",
            "error",
            "reported_started_at",
            "reported_finished_at",
        ],
    );
    let filter = format!(
        "{after_rows}fires.id = v.id AND {} IN ({from_list})",
        filter_only(conn, "fires.state")
    );
    let mut changed = Vec::with_capacity(items.len());
    for chunk in fixed_chunks(items, super::rows_per_update(conn)) {
        let mut query = Statement::new(&before_rows);
        query
            .bind_rows(chunk, |(id, f)| {
                [
                    (*id).into(),
                    f.state.into(),
                    f.finished_at.into(),
                    f.dispatched_at.into(),
                    f.acked_at.into(),
                    f.http_status.into(),
                    f.executor.as_deref().into(),
                    f.output.as_deref().into(),
                    f.output_truncated.into(),
                    f.error.as_deref().into(),
                    f.reported_started_at.into(),
                    f.reported_finished_at.into(),
                ]
            })
            .sql(&filter)
            .sql(" RETURNING fires.id");
        changed.extend(
            query
                .load::<super::IdRow>(conn)?
                .into_iter()
                .map(|row| row.id),
        );
    }
    Ok(changed)
}

/// Stores a result that arrived after the fire was already finished (timed out, lost):
/// kept for the record, never reopening the fire.
pub fn record_late_result(conn: &mut DbConnection, id: &str, late: &str) -> QueryResult<usize> {
    diesel::update(fires::table.find(id).filter(fires::late_result.is_null()))
        .set(fires::late_result.eq(late))
        .execute(conn)
}

/// Running (acknowledged) fires whose deadline has passed, from `fires_running_deadline`
/// (SQLite's state index would have it sort every running fire, once a second).
pub fn past_deadline(conn: &mut DbConnection, now: i64, limit: i64) -> QueryResult<Vec<FireRow>> {
    let table = indexed_by(conn, "fires", "fires_running_deadline");
    let mut query = Statement::new(format!(
        "SELECT * FROM {table} WHERE state = 'running' AND deadline_at < "
    ));
    query
        .bind(now)
        .sql(" ORDER BY deadline_at LIMIT ")
        .bind(limit);
    query.load::<FireRow>(conn)
}

/// Hands back what `node` claimed and has not seen answered, so another node (or the
/// next start) fires it. A fire whose send was cut short goes out again with the same
/// fire id, which executors de-duplicate.
pub fn release_owned(conn: &mut DbConnection, node: &str) -> QueryResult<usize> {
    let mut release = Statement::new(release_owned_where());
    release.bind(node);
    release.execute(conn)
}

/// `UPDATE` of owned waiting fires (from `fires_owned_waiting`) that hands them back;
/// the caller adds which owners.
fn release_owned_where() -> &'static str {
    // The owner is named after the state so that both planners see the partial
    // index's condition in the text (a bound 'fired' would not show it).
    "UPDATE fires SET owner_node = NULL, dispatched_at = NULL \
     WHERE state = 'fired' AND owner_node IS NOT NULL AND owner_node = "
}

/// Releases the unanswered fires of nodes that are not in `live_nodes` (stopped or dead).
pub fn release_orphaned(conn: &mut DbConnection, live_nodes: &[String]) -> QueryResult<usize> {
    // Owners first, from the index alone: only the orphans' rows are then written.
    let owners: Vec<OwnerRow> = {
        let table = indexed_by(conn, "fires", "fires_owned_waiting");
        Statement::new(format!(
            "SELECT DISTINCT owner_node FROM {table} \
             WHERE state = 'fired' AND owner_node IS NOT NULL"
        ))
        .load(conn)?
    };
    let mut released = 0;
    for owner in owners {
        if live_nodes.contains(&owner.owner_node) {
            continue;
        }
        let mut release = Statement::new(release_owned_where());
        release.bind(owner.owner_node.as_str());
        released += release.execute(conn)?;
    }
    Ok(released)
}

#[derive(QueryableByName)]
struct OwnerRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    owner_node: String,
}

/// Drops fires recorded but not yet dispatched for a job (its schedule changed or it was paused).
pub fn drop_pending_for_job(conn: &mut DbConnection, job_id: &str) -> QueryResult<usize> {
    diesel::delete(
        fires::table
            .filter(fires::job_id.eq(job_id))
            .filter(fires::state.eq("fired"))
            .filter(fires::dispatched_at.is_null()),
    )
    .execute(conn)
}

/// Whether the trigger (of `job_id`) has a first-attempt fire for an instant after
/// `scheduled_at`. The job narrows the search: `fires_job_scheduled` answers it, as no
/// index leads with the trigger.
pub fn has_later_fire(
    conn: &mut DbConnection,
    job_id: &str,
    trigger_id: &str,
    scheduled_at: i64,
) -> QueryResult<bool> {
    use diesel::dsl::exists;
    diesel::select(exists(
        fires::table
            .filter(fires::job_id.eq(job_id))
            .filter(fires::trigger_id.eq(trigger_id))
            .filter(fires::attempt.eq(1))
            .filter(fires::scheduled_at.gt(scheduled_at)),
    ))
    .get_result(conn)
}

/// Fires cancelled since `since` whose run is on one of `executors` (by label), so
/// the executor's next heartbeat reply tells it to stop them.
pub fn cancelled_on(
    conn: &mut DbConnection,
    executors: &[String],
    since: i64,
) -> QueryResult<Vec<String>> {
    fires::table
        .filter(fires::state.eq("cancelled"))
        .filter(fires::finished_at.ge(since))
        .filter(fires::executor.eq_any(executors))
        .select(fires::id)
        .limit(1_000)
        .load(conn)
}

/// Open fires per executor label: each executor's task list length. Only a `running`
/// fire names its executor (the acknowledgement writes it), so these are the running
/// ones, counted in `fires_running_deadline` without reading a row; a waiting backlog
/// of `fired` fires costs the count nothing.
pub fn open_counts_by_executor(
    conn: &mut DbConnection,
    executors: &[String],
) -> QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Text)]
        executor: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        open: i64,
    }
    let counts: Vec<Count> = running_on_executors(
        conn,
        executors,
        "executor, COUNT(*) AS open",
        " GROUP BY executor",
    )?;
    Ok(counts.into_iter().map(|c| (c.executor, c.open)).collect())
}

/// `(executor label, job id)` of every open (running) fire on the given executors, as
/// [`open_counts_by_executor`] counts them.
pub fn open_jobs_by_executor(
    conn: &mut DbConnection,
    executors: &[String],
) -> QueryResult<Vec<(String, String)>> {
    #[derive(QueryableByName)]
    struct OpenJob {
        #[diesel(sql_type = diesel::sql_types::Text)]
        executor: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        job_id: String,
    }
    let open: Vec<OpenJob> = running_on_executors(conn, executors, "executor, job_id", "")?;
    Ok(open.into_iter().map(|o| (o.executor, o.job_id)).collect())
}

/// `SELECT {columns}` of the running fires on `executors` (by label) from
/// `fires_running_deadline`, `{tail}` appended; the executor lists go in chunks.
fn running_on_executors<R>(
    conn: &mut DbConnection,
    executors: &[String],
    columns: &str,
    tail: &'static str,
) -> QueryResult<Vec<R>>
where
    R: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + 'static,
{
    let table = indexed_by(conn, "fires", "fires_running_deadline");
    let mut rows = Vec::new();
    for chunk in fixed_chunks(executors, super::IDS_PER_STATEMENT) {
        let mut query = Statement::new(format!(
            "SELECT {columns} FROM {table} WHERE state = 'running' AND executor IN "
        ));
        query.bind_list(chunk.iter().map(String::as_str)).sql(tail);
        rows.extend(query.load::<R>(conn)?);
    }
    Ok(rows)
}

/// Fires per job that [`average_durations`] averages.
const DURATION_SAMPLE: i64 = 50;

/// Average run time (ms) of each job's recent succeeded fires: the executor's reported
/// start to finish where it reported them (time queued on the executor excluded),
/// dispatch to finish otherwise. Each job's newest [`DURATION_SAMPLE`] fires are read
/// from `fires_job_scheduled` (recent by scheduled instant: no index holds
/// `finished_at`), so a busy job cannot crowd the others out. On SQLite one query per
/// job (in-process: a query costs no round trip); on PostgreSQL one per chunk of jobs,
/// each job's sample taken by a `LATERAL` subquery, as a pool of many jobs made
/// thousands of round trips a load.
pub fn average_durations(
    conn: &mut DbConnection,
    job_ids: &[String],
) -> QueryResult<Vec<(String, f64)>> {
    const TIMES: &str = "reported_started_at, reported_finished_at, dispatched_at, finished_at";
    // Follows `fires.job_id = <the job>`.
    let newest = format!(
        " AND fires.state = 'succeeded' ORDER BY fires.scheduled_at DESC LIMIT {DURATION_SAMPLE}"
    );
    let mut samples: Vec<DurationSample> = Vec::new();
    match conn {
        DbConnection::Sqlite(_) => {
            let per_job = format!("SELECT job_id, {TIMES} FROM fires WHERE fires.job_id = ");
            for job_id in job_ids {
                let mut query = Statement::new(per_job.as_str());
                query.bind(job_id.as_str()).sql(newest.as_str());
                samples.extend(query.load::<DurationSample>(conn)?);
            }
        }
        DbConnection::Postgresql(_) => {
            let lateral = format!(
                ") AS v (job_id) CROSS JOIN LATERAL \
                 (SELECT {TIMES} FROM fires WHERE fires.job_id = v.job_id{newest}) AS f"
            );
            for chunk in fixed_chunks(job_ids, super::IDS_PER_STATEMENT) {
                let mut query = Statement::new("SELECT v.job_id, f.* FROM (VALUES ");
                query
                    .bind_rows(chunk, |job_id| [job_id.as_str().into()])
                    .sql(lateral.as_str());
                samples.extend(query.load::<DurationSample>(conn)?);
            }
        }
    }
    let mut spans: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for sample in samples {
        let span = match (sample.reported_started_at, sample.reported_finished_at) {
            (Some(started), Some(ended)) => Some((started, ended)),
            _ => sample.dispatched_at.zip(sample.finished_at),
        };
        if let Some((from, to)) = span {
            let (total, count) = spans.entry(sample.job_id).or_default();
            *total += (to - from).max(0);
            *count += 1;
        }
    }
    Ok(job_ids
        .iter()
        .filter_map(|job_id| {
            let (total, count) = spans.get(job_id)?;
            Some((job_id.clone(), *total as f64 / *count as f64))
        })
        .collect())
}

/// One of a job's recent succeeded fires, as [`average_durations`] reads it.
#[derive(QueryableByName)]
struct DurationSample {
    #[diesel(sql_type = diesel::sql_types::Text)]
    job_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    reported_started_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    reported_finished_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    dispatched_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    finished_at: Option<i64>,
}

/// Releases a fire that has not gone out to be claimed again at `due_at` (a pinned
/// fire waiting for its instance, a queued fire waiting for its turn).
pub fn postpone(conn: &mut DbConnection, id: &str, due_at: i64) -> QueryResult<usize> {
    diesel::update(fires::table.find(id).filter(fires::state.eq("fired")))
        .set((
            fires::due_at.eq(due_at),
            fires::owner_node.eq(None::<String>),
            fires::dispatched_at.eq(None::<i64>),
        ))
        .execute(conn)
}

/// Running fires on the executor with this label.
pub fn running_on(conn: &mut DbConnection, executor: &str) -> QueryResult<Vec<FireRow>> {
    let mut query = Statement::new(running_where(conn, "*", "executor"));
    query.bind(executor);
    query.load(conn)
}

/// `SELECT {columns}` of running fires whose `{column} = ` the bound value that follows,
/// read from `fires_running_deadline`: it holds every running fire with its executor
/// and job, so the condition is checked in the index and only matches read a row.
fn running_where(conn: &DbConnection, columns: &str, column: &str) -> String {
    let table = indexed_by(conn, "fires", "fires_running_deadline");
    format!("SELECT {columns} FROM {table} WHERE state = 'running' AND {column} = ")
}

/// Broadcast: records the original fire's share count.
pub fn set_shard_total(conn: &mut DbConnection, id: &str, total: i32) -> QueryResult<usize> {
    diesel::update(fires::table.find(id))
        .set(fires::shard_total.eq(total))
        .execute(conn)
}

pub fn running_ids_for_job(conn: &mut DbConnection, job_id: &str) -> QueryResult<Vec<String>> {
    let mut query = Statement::new(running_where(conn, "id", "job_id"));
    query.bind(job_id);
    Ok(query
        .load::<super::IdRow>(conn)?
        .into_iter()
        .map(|row| row.id)
        .collect())
}

pub fn count_running_for_job(conn: &mut DbConnection, job_id: &str) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        running: i64,
    }
    let mut query = Statement::new(running_where(conn, "COUNT(*) AS running", "job_id"));
    query.bind(job_id);
    Ok(query
        .load::<Count>(conn)?
        .first()
        .map_or(0, |count| count.running))
}

/// Records when a fire was sent, acknowledged and due back, if a write-back already
/// finished it (its acknowledgement was overtaken: about one fire in 200 with an
/// executor that answers at once).
pub fn fill_dispatch_facts(conn: &mut DbConnection, ack: &Acknowledged) -> QueryResult<usize> {
    diesel::update(fires::table.find(&ack.id).filter(fires::acked_at.is_null()))
        .set((
            fires::dispatched_at.eq(ack.dispatched_at),
            fires::acked_at.eq(ack.acked_at),
            fires::deadline_at.eq(ack.deadline_at),
            fires::http_status.eq(ack.http_status),
            fires::executor.eq(&ack.executor),
        ))
        .execute(conn)
}

/// `(job id, due_at)` of the `limit` fires waiting to be sent soonest in `[from, horizon)`.
pub fn waiting_before(
    conn: &mut DbConnection,
    from: i64,
    horizon: i64,
    limit: i64,
) -> QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        job_id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        due_at: i64,
    }
    // Unowned and owned waiting fires have an index each, both led by `due_at`.
    let mut waiting = Vec::new();
    for (index, owned) in [
        ("fires_unowned_pending", "IS NULL"),
        ("fires_owned_waiting", "IS NOT NULL"),
    ] {
        let table = indexed_by(conn, "fires", index);
        let mut query = Statement::new(format!(
            "SELECT job_id, due_at FROM {table} WHERE state = 'fired' \
             AND owner_node {owned} AND dispatched_at IS NULL AND due_at >= "
        ));
        query
            .bind(from)
            .sql(" AND due_at < ")
            .bind(horizon)
            .sql(" ORDER BY due_at LIMIT ")
            .bind(limit);
        waiting.extend(
            query
                .load::<Waiting>(conn)?
                .into_iter()
                .map(|row| (row.job_id, row.due_at)),
        );
    }
    waiting.sort_by_key(|(_, due_at)| *due_at);
    waiting.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(waiting)
}

/// A job's fires recorded and waiting to be sent, due in `[from, until]` (the plan's "recorded" rows).
pub fn waiting_for_job(
    conn: &mut DbConnection,
    job_id: &str,
    from: i64,
    until: i64,
) -> QueryResult<Vec<FireRow>> {
    fires::table
        .filter(fires::job_id.eq(job_id))
        .filter(fires::state.eq("fired"))
        .filter(fires::dispatched_at.is_null())
        .filter(fires::due_at.between(from, until))
        .order(fires::due_at.asc())
        .select(FireRow::as_select())
        .load(conn)
}

/// The highest attempt recorded for a trigger's instant (or for a single run-now fire).
pub fn last_attempt(conn: &mut DbConnection, fire: &FireRow) -> QueryResult<i32> {
    use diesel::dsl::max;
    let Some(trigger_id) = &fire.trigger_id else {
        return Ok(fire.attempt);
    };
    let highest: Option<i32> = fires::table
        .filter(fires::trigger_id.eq(trigger_id))
        .filter(fires::scheduled_at.eq(fire.scheduled_at))
        .filter(fires::shard_index.eq(fire.shard_index))
        .select(max(fires::attempt))
        .first(conn)?;
    Ok(highest.unwrap_or(fire.attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog larger than SQLite's 32,766 bound parameters once made every fence
    /// fail ("too many SQL variables") and the node never caught up.
    #[test]
    fn id_lists_beyond_the_parameter_limit_are_sent_in_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        let mut conn = db.write().expect("a connection");
        let ids: Vec<String> = (0..40_000).map(|i| format!("no-such-fire-{i}")).collect();
        let fenced = fence_for_dispatch(&mut conn, "node", &ids, 0).expect("fence runs");
        assert!(fenced.is_empty());
        let jobs = crate::db::jobs::find_many(&mut conn, &ids).expect("job lookup runs");
        assert!(jobs.is_empty());
        let triggers =
            crate::db::triggers::find_many(&mut conn, &ids).expect("trigger lookup runs");
        assert!(triggers.is_empty());
    }

    /// Without an index on the state (migration 15), open fires are found through
    /// `fires_running_deadline` (running ones, with their executor and job) and
    /// `fires_owned_waiting` / `fires_unowned_pending` (waiting ones).
    #[test]
    fn open_fires_are_found_through_their_own_indexes() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        let mut conn = db.write().expect("a connection");
        let conn: &mut DbConnection = &mut conn;
        conn.batch_execute(
            "INSERT INTO fires (id, job_id, job_version, attempt, state, scheduled_at, due_at, \
             fired_at, owner_node, executor, deadline_at, finished_at) VALUES \
             ('waiting-a', 'j1', 1, 1, 'fired', 100, 100, 90, 'node-a', NULL, NULL, NULL), \
             ('waiting-b', 'j2', 1, 1, 'fired', 200, 200, 90, 'node-b', NULL, NULL, NULL), \
             ('pending', 'j2', 1, 1, 'fired', 150, 150, 90, NULL, NULL, NULL, NULL), \
             ('running-1', 'j1', 1, 1, 'running', 50, 50, 40, 'node-a', 'app/e1', 5000, NULL), \
             ('running-2', 'j2', 1, 1, 'running', 60, 60, 40, 'node-a', 'app/e1', 900, NULL), \
             ('running-3', 'j1', 1, 1, 'running', 70, 70, 40, 'node-a', 'app/e2', 6000, NULL), \
             ('done', 'j1', 1, 1, 'succeeded', 10, 10, 5, NULL, 'app/e1', 100, 20)",
        )
        .expect("fires inserted");

        let labels = [
            "app/e1".to_string(),
            "app/e2".to_string(),
            "app/e3".to_string(),
        ];
        let mut counts = open_counts_by_executor(conn, &labels).expect("counts");
        counts.sort();
        assert_eq!(counts, [("app/e1".into(), 2), ("app/e2".into(), 1)]);
        let mut jobs = open_jobs_by_executor(conn, &labels[..1]).expect("open jobs");
        jobs.sort();
        assert_eq!(
            jobs,
            [
                ("app/e1".into(), "j1".into()),
                ("app/e1".into(), "j2".into())
            ]
        );
        assert_eq!(count_running_for_job(conn, "j1").expect("count"), 2);
        assert_eq!(count_running_for_job(conn, "j3").expect("count"), 0);
        let mut ids = running_ids_for_job(conn, "j1").expect("ids");
        ids.sort();
        assert_eq!(ids, ["running-1", "running-3"]);
        let on_e2: Vec<String> = running_on(conn, "app/e2")
            .expect("running on")
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(on_e2, ["running-3"]);
        let late: Vec<String> = past_deadline(conn, 1_000, 10)
            .expect("past deadline")
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(late, ["running-2"]);

        // Waiting fires, owned or not, soonest first.
        let waiting = waiting_before(conn, 0, 1_000, 10).expect("waiting");
        assert_eq!(
            waiting,
            [("j1".into(), 100), ("j2".into(), 150), ("j2".into(), 200)]
        );
        assert_eq!(waiting_before(conn, 0, 1_000, 2).expect("waiting").len(), 2);
        // node-b is gone: its waiting fire is handed back; node-a's and the running
        // fires are left alone.
        assert_eq!(
            release_orphaned(conn, &["node-a".into()]).expect("release"),
            1
        );
        assert_eq!(
            release_orphaned(conn, &["node-a".into()]).expect("release"),
            0
        );
        assert_eq!(release_owned(conn, "node-a").expect("release"), 1);
        let owners: Vec<(String, Option<String>)> = fires::table
            .filter(fires::state.eq("fired"))
            .select((fires::id, fires::owner_node))
            .order(fires::id)
            .load(conn)
            .expect("owners");
        assert_eq!(
            owners,
            [
                ("pending".into(), None),
                ("waiting-a".into(), None),
                ("waiting-b".into(), None)
            ]
        );
        assert_eq!(count_running_for_job(conn, "j1").expect("count"), 2);

        // The counts read the index alone.
        #[derive(QueryableByName)]
        struct PlanRow {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let DbConnection::Sqlite(lite) = conn else {
            panic!("a SQLite connection")
        };
        let plan: Vec<PlanRow> = diesel::sql_query(
            "EXPLAIN QUERY PLAN SELECT executor, COUNT(*) AS open \
             FROM fires INDEXED BY fires_running_deadline \
             WHERE state = 'running' AND executor IN ('app/e1') GROUP BY executor",
        )
        .load(lite)
        .expect("a plan");
        assert!(
            plan.iter()
                .any(|row| row.detail.contains("COVERING INDEX fires_running_deadline")),
            "{:?}",
            plan.iter().map(|row| &row.detail).collect::<Vec<_>>()
        );
    }
}
