//! Queries on `jobs`.

use diesel::prelude::*;

use super::schema::{fires, jobs};
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: String,
    pub group_name: String,
    pub name: String,
    pub description: String,
    pub state: String,
    pub version: i32,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn insert(conn: &mut DbConnection, row: &JobRow) -> QueryResult<()> {
    diesel::insert_into(jobs::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<JobRow>> {
    jobs::table
        .find(id)
        .select(JobRow::as_select())
        .first(conn)
        .optional()
}

/// The group of a job, without reading its spec.
pub fn group_of(conn: &mut DbConnection, id: &str) -> QueryResult<Option<String>> {
    jobs::table
        .find(id)
        .select(jobs::group_name)
        .first(conn)
        .optional()
}

/// The `group/name` key of the job a fire belongs to, for log lines about the fire.
pub fn key_of_fire(conn: &mut DbConnection, fire_id: &str) -> QueryResult<Option<String>> {
    let key: Option<(String, String)> = fires::table
        .inner_join(jobs::table.on(jobs::id.eq(fires::job_id)))
        .filter(fires::id.eq(fire_id))
        .select((jobs::group_name, jobs::name))
        .first(conn)
        .optional()?;
    Ok(key.map(|(group, name)| format!("{group}/{name}")))
}

pub fn find_by_key(
    conn: &mut DbConnection,
    group: &str,
    name: &str,
) -> QueryResult<Option<JobRow>> {
    jobs::table
        .filter(jobs::group_name.eq(group))
        .filter(jobs::name.eq(name))
        .select(JobRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_many(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<JobRow>> {
    super::in_id_chunks(ids, |chunk| {
        jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select(JobRow::as_select())
            .load(conn)
    })
}

/// Which version of a job is current, and its state (pausing does not change the version).
#[derive(Debug, Clone, QueryableByName)]
pub struct JobVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub version: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub state: String,
}

/// The token a database trigger replaces on every change to `jobs` (migration 10):
/// while it reads the same, no job was added, changed or removed.
pub fn generation(conn: &mut DbConnection) -> QueryResult<i64> {
    use super::schema::jobs_generation;
    jobs_generation::table
        .find(1)
        .select(jobs_generation::generation)
        .first(conn)
}

/// Version and state of the jobs among `ids` that exist: whether a job changed since a
/// fire of it was claimed, without reading (and parsing) its spec.
pub fn versions_of(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<JobVersion>> {
    let mut versions = Vec::with_capacity(ids.len());
    for chunk in super::statement::fixed_chunks(ids, super::IDS_PER_STATEMENT) {
        let mut query =
            super::statement::Statement::new("SELECT id, version, state FROM jobs WHERE id IN ");
        query.bind_list(chunk.iter().map(String::as_str));
        versions.extend(query.load::<JobVersion>(conn)?);
    }
    Ok(versions)
}

#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub group: Option<String>,
    pub state: Option<String>,
    /// Substring of group, name or description.
    pub text: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Shortest text the SQLite trigram index can find; shorter searches scan.
const MIN_INDEXED_SEARCH_CHARS: usize = 3;

pub fn list(conn: &mut DbConnection, filter: &JobFilter) -> QueryResult<(Vec<JobRow>, i64)> {
    // SQLite answers substring searches from the trigram index of migration 6;
    // PostgreSQL's ILIKE below uses its pg_trgm indexes where they exist. Both ignore
    // case, as SQLite's LIKE does for the short searches it scans for.
    let postgres = matches!(conn, DbConnection::Postgresql(_));
    let indexed_text = match conn {
        DbConnection::Sqlite(_) => filter
            .text
            .as_ref()
            .filter(|t| t.chars().count() >= MIN_INDEXED_SEARCH_CHARS)
            .map(|t| format!("\"{}\"", t.replace('"', "\"\""))),
        DbConnection::Postgresql(_) => None,
    };
    let build = || {
        let mut query = jobs::table.into_boxed();
        if let Some(group) = &filter.group {
            query = query.filter(jobs::group_name.eq(group.clone()));
        }
        if let Some(state) = &filter.state {
            query = query.filter(jobs::state.eq(state.clone()));
        }
        if let Some(phrase) = &indexed_text {
            use diesel::sql_types::{Bool, Text};
            query = query.filter(
                diesel::dsl::sql::<Bool>(
                    "jobs.id IN (SELECT k.job_id FROM job_search_keys k WHERE k.seq IN \
                     (SELECT rowid FROM job_search WHERE job_search MATCH ",
                )
                .bind::<Text, _>(phrase.clone())
                .sql("))"),
            );
        } else if let Some(text) = &filter.text {
            let pattern = format!(
                "%{}%",
                text.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            use diesel::sql_types::{Bool, Text};
            // SQLite's LIKE ignores ASCII case already; PostgreSQL's needs ILIKE.
            let like = if postgres { "ILIKE" } else { "LIKE" };
            query = query.filter(
                diesel::dsl::sql::<Bool>(&format!("(jobs.name {like} "))
                    .bind::<Text, _>(pattern.clone())
                    .sql(&format!(" ESCAPE '\\' OR jobs.group_name {like} "))
                    .bind::<Text, _>(pattern.clone())
                    .sql(&format!(" ESCAPE '\\' OR jobs.description {like} "))
                    .bind::<Text, _>(pattern)
                    .sql(" ESCAPE '\\')"),
            );
        }
        query
    };
    let total = build().count().get_result(conn)?;
    let rows = build()
        .order((jobs::group_name.asc(), jobs::name.asc()))
        .limit(filter.limit)
        .offset(filter.offset)
        .select(JobRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Jobs whose spec may name child jobs: empty `on_success`/`on_failure` lists are not
/// stored, so a text match leaves out (without reading their specs into memory) the
/// jobs that name none — deleting or renaming a job among millions checks only these.
pub fn naming_children(conn: &mut DbConnection) -> QueryResult<Vec<JobRow>> {
    jobs::table
        .filter(
            jobs::spec
                .like("%\"on\\_success\"%")
                .escape('\\')
                .or(jobs::spec.like("%\"on\\_failure\"%").escape('\\')),
        )
        .order((jobs::group_name.asc(), jobs::name.asc()))
        .select(JobRow::as_select())
        .load(conn)
}

pub fn update(conn: &mut DbConnection, row: &JobRow) -> QueryResult<usize> {
    diesel::update(jobs::table.find(&row.id))
        .set(row)
        .execute(conn)
}

pub fn set_state(conn: &mut DbConnection, id: &str, state: &str, now: i64) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id))
        .set((jobs::state.eq(state), jobs::updated_at.eq(now)))
        .execute(conn)
}

/// Deletes the job, its triggers (cascade) and its history.
pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(fires::table.filter(fires::job_id.eq(id))).execute(conn)?;
    diesel::delete(super::schema::triggers::table.filter(super::schema::triggers::job_id.eq(id)))
        .execute(conn)?;
    diesel::delete(jobs::table.find(id)).execute(conn)
}

/// Locks the job's row until the transaction ends, so decisions about the job's
/// running fires (the `queue` policy's one at a time) are taken by one node at a time.
/// SQLite needs nothing: it has a single writer.
pub fn lock_for_update(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    if let DbConnection::Postgresql(pg) = conn {
        jobs::table
            .find(id)
            .select(jobs::id)
            .for_update()
            .load::<String>(pg)?;
    }
    Ok(())
}
