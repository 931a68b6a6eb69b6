//! Queries on `triggers`. Claiming due triggers lives in `scheduler::claim`, which
//! composes these with the fire inserts in one transaction.

use diesel::prelude::*;

use super::schema::triggers;
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = triggers)]
pub struct TriggerRow {
    pub id: String,
    pub job_id: String,
    pub position: i32,
    pub kind: String,
    pub spec: String,
    pub next_fire_at: Option<i64>,
    pub fire_count: i64,
    pub created_at: i64,
}

pub fn insert_many(conn: &mut DbConnection, rows: &[TriggerRow]) -> QueryResult<()> {
    for row in rows {
        diesel::insert_into(triggers::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

pub fn for_job(conn: &mut DbConnection, job_id: &str) -> QueryResult<Vec<TriggerRow>> {
    triggers::table
        .filter(triggers::job_id.eq(job_id))
        .order(triggers::position.asc())
        .select(TriggerRow::as_select())
        .load(conn)
}

pub fn for_jobs(conn: &mut DbConnection, job_ids: &[String]) -> QueryResult<Vec<TriggerRow>> {
    triggers::table
        .filter(triggers::job_id.eq_any(job_ids))
        .order((triggers::job_id.asc(), triggers::position.asc()))
        .select(TriggerRow::as_select())
        .load(conn)
}

pub fn find_many(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<TriggerRow>> {
    super::in_id_chunks(ids, |chunk| {
        triggers::table
            .filter(triggers::id.eq_any(chunk))
            .select(TriggerRow::as_select())
            .load(conn)
    })
}

pub fn delete_for_job(conn: &mut DbConnection, job_id: &str) -> QueryResult<usize> {
    diesel::delete(triggers::table.filter(triggers::job_id.eq(job_id))).execute(conn)
}

pub fn set_next_fire_at(
    conn: &mut DbConnection,
    id: &str,
    next: Option<i64>,
    fired: i64,
) -> QueryResult<usize> {
    diesel::update(triggers::table.find(id))
        .set((
            triggers::next_fire_at.eq(next),
            triggers::fire_count.eq(triggers::fire_count + fired),
        ))
        .execute(conn)
}

/// A trigger's new `next_fire_at` and how many instants were fired now.
pub type Advance = (String, Option<i64>, i64);

/// [`set_next_fire_at`] for many triggers, one `UPDATE … FROM (VALUES …)` per chunk:
/// a claim batch advances hundreds of triggers, and diesel prepares every UPDATE
/// anew, so one statement per trigger was a large part of the claim.
pub fn advance_many(conn: &mut DbConnection, advances: &[Advance]) -> QueryResult<()> {
    let (before_rows, after_rows) = super::statement::update_from_rows(
        conn,
        "triggers",
        "next_fire_at = v.next_fire_at, fire_count = triggers.fire_count + v.fired",
        &["id", "next_fire_at", "fired"],
    );
    for chunk in super::statement::fixed_chunks(advances, super::rows_per_update(conn)) {
        let mut query = super::statement::Statement::new(&before_rows);
        query
            .bind_rows(chunk, |(id, next, fired)| {
                [id.as_str().into(), (*next).into(), (*fired).into()]
            })
            .sql(&after_rows)
            .sql("triggers.id = v.id");
        query.execute(conn)?;
    }
    Ok(())
}

/// `(job id, next_fire_at)` of the `limit` triggers due soonest before `horizon`.
pub fn due_before(
    conn: &mut DbConnection,
    horizon: i64,
    limit: i64,
) -> QueryResult<Vec<(String, i64)>> {
    triggers::table
        .filter(triggers::next_fire_at.is_not_null())
        .filter(triggers::next_fire_at.lt(horizon))
        .order(triggers::next_fire_at.asc())
        .limit(limit)
        .select((triggers::job_id, triggers::next_fire_at.assume_not_null()))
        .load(conn)
}

/// Due triggers, earliest first. On PostgreSQL the rows are locked with SKIP LOCKED
/// so concurrent nodes claim disjoint sets without a global lock.
pub fn select_due_for_claim(
    conn: &mut DbConnection,
    horizon: i64,
    limit: i64,
) -> QueryResult<Vec<TriggerRow>> {
    // The query is spelled once but typed per backend: FOR UPDATE exists only on PostgreSQL.
    macro_rules! due {
        () => {
            triggers::table
                .filter(triggers::next_fire_at.le(horizon))
                .order(triggers::next_fire_at.asc())
                .limit(limit)
                .select(TriggerRow::as_select())
        };
    }
    match conn {
        DbConnection::Postgresql(pg) => due!().for_update().skip_locked().load(pg),
        DbConnection::Sqlite(lite) => due!().load(lite),
    }
}

/// Earliest pending instant over all triggers, to know how long the loop may sleep.
pub fn earliest_next_fire_at(conn: &mut DbConnection) -> QueryResult<Option<i64>> {
    use diesel::dsl::min;
    triggers::table
        .select(min(triggers::next_fire_at))
        .first(conn)
}
