//! Queries on the web console's tables: admin users, login sessions and failed logins.

use diesel::prelude::*;

use super::schema::{console_login_failures, console_sessions, console_users};
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions)]
pub struct SessionRow {
    pub token_sha256: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn count_users(conn: &mut DbConnection) -> QueryResult<i64> {
    console_users::table.count().get_result(conn)
}

pub fn find_user_by_name(conn: &mut DbConnection, username: &str) -> QueryResult<Option<UserRow>> {
    console_users::table
        .filter(console_users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_user(conn: &mut DbConnection, user: &UserRow) -> QueryResult<()> {
    diesel::insert_into(console_users::table)
        .values(user)
        .execute(conn)
        .map(|_| ())
}

pub fn set_password(
    conn: &mut DbConnection,
    user_id: &str,
    password_hash: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::update(console_users::table.find(user_id))
        .set((
            console_users::password_hash.eq(password_hash),
            console_users::updated_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn insert_session(conn: &mut DbConnection, session: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(console_sessions::table)
        .values(session)
        .execute(conn)
        .map(|_| ())
}

/// The unexpired session with this digest, with its user's name.
pub fn find_session(
    conn: &mut DbConnection,
    token_sha256: &str,
    now: i64,
) -> QueryResult<Option<(SessionRow, String)>> {
    console_sessions::table
        .inner_join(console_users::table)
        .filter(console_sessions::token_sha256.eq(token_sha256))
        .filter(console_sessions::expires_at.gt(now))
        .select((SessionRow::as_select(), console_users::username))
        .first(conn)
        .optional()
}

pub fn delete_session(conn: &mut DbConnection, token_sha256: &str) -> QueryResult<()> {
    diesel::delete(console_sessions::table.find(token_sha256))
        .execute(conn)
        .map(|_| ())
}

pub fn delete_expired_sessions(conn: &mut DbConnection, now: i64) -> QueryResult<usize> {
    diesel::delete(console_sessions::table.filter(console_sessions::expires_at.le(now)))
        .execute(conn)
}

pub fn record_login_failure(conn: &mut DbConnection, key: &str, now: i64) -> QueryResult<()> {
    diesel::insert_into(console_login_failures::table)
        .values((
            console_login_failures::id.eq(uuid::Uuid::now_v7().to_string()),
            console_login_failures::attempt_key.eq(key),
            console_login_failures::failed_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Failed logins for `key` since `since`, oldest first.
pub fn login_failures_since(
    conn: &mut DbConnection,
    key: &str,
    since: i64,
) -> QueryResult<Vec<i64>> {
    console_login_failures::table
        .filter(console_login_failures::attempt_key.eq(key))
        .filter(console_login_failures::failed_at.gt(since))
        .order(console_login_failures::failed_at.asc())
        .select(console_login_failures::failed_at)
        .load(conn)
}

/// Forgets failures for `key` (after a good login) and everyone's failures older than `before`.
pub fn clear_login_failures(conn: &mut DbConnection, key: &str, before: i64) -> QueryResult<()> {
    diesel::delete(
        console_login_failures::table.filter(
            console_login_failures::attempt_key
                .eq(key)
                .or(console_login_failures::failed_at.lt(before)),
        ),
    )
    .execute(conn)
    .map(|_| ())
}

/// What the dashboard needs to know about one recent fire.
#[derive(Debug, Clone, Queryable)]
pub struct RecentFire {
    pub job_id: String,
    pub state: String,
    pub due_at: i64,
    pub fired_at: i64,
    pub dispatched_at: Option<i64>,
    pub error: Option<String>,
}

/// The most recent `limit` fires scheduled since `since`, newest first. The dashboard's
/// queries select by scheduled instant, which the fires' unique index leads (no index
/// holds `fired_at`; within a window they differ by a claim's look-ahead).
pub fn fires_since(
    conn: &mut DbConnection,
    since: i64,
    limit: i64,
) -> QueryResult<Vec<RecentFire>> {
    use super::schema::fires;
    fires::table
        .filter(fires::scheduled_at.ge(since))
        .order(fires::scheduled_at.desc())
        .limit(limit)
        .select((
            fires::job_id,
            fires::state,
            fires::due_at,
            fires::fired_at,
            fires::dispatched_at,
            fires::error,
        ))
        .load(conn)
}

/// Exact fire counts per state of the fires scheduled since `since`.
pub fn fire_counts_since(conn: &mut DbConnection, since: i64) -> QueryResult<Vec<(String, i64)>> {
    use super::schema::fires;
    use diesel::dsl::count_star;
    fires::table
        .filter(fires::scheduled_at.ge(since))
        .group_by(fires::state)
        .select((fires::state, count_star()))
        .load(conn)
}

/// Jobs with fires in one of `states` scheduled since `since`, with how many.
pub fn failures_by_job_since(
    conn: &mut DbConnection,
    since: i64,
    states: &[&str],
) -> QueryResult<Vec<(String, i64)>> {
    use super::schema::fires;
    use diesel::dsl::count_star;
    fires::table
        .filter(fires::scheduled_at.ge(since))
        .filter(fires::state.eq_any(states))
        .group_by(fires::job_id)
        .select((fires::job_id, count_star()))
        .load(conn)
}

/// The error of a job's latest fire in one of `states` scheduled since `since`.
pub fn last_error(
    conn: &mut DbConnection,
    job_id: &str,
    since: i64,
    states: &[&str],
) -> QueryResult<Option<String>> {
    use super::schema::fires;
    fires::table
        .filter(fires::job_id.eq(job_id))
        .filter(fires::scheduled_at.ge(since))
        .filter(fires::state.eq_any(states))
        .order(fires::scheduled_at.desc())
        .select(fires::error)
        .first::<Option<String>>(conn)
        .optional()
        .map(Option::flatten)
}

/// Job counts per stored state (`active`, `paused`).
pub fn job_counts_by_state(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    use super::schema::jobs;
    use diesel::dsl::count_star;
    jobs::table
        .group_by(jobs::state)
        .select((jobs::state, count_star()))
        .load(conn)
}

/// Paused jobs that still have a running fire (shown as `pausing`).
pub fn pausing_jobs(conn: &mut DbConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pausing: i64,
    }
    // Running fires from their own index, then each one's job by key.
    let fires = super::statement::indexed_by(conn, "fires", "fires_running_deadline");
    let rows: Vec<Count> = super::statement::Statement::new(format!(
        "SELECT COUNT(DISTINCT fires.job_id) AS pausing FROM {fires} \
         JOIN jobs ON jobs.id = fires.job_id \
         WHERE fires.state = 'running' AND jobs.state = 'paused'"
    ))
    .load(conn)?;
    Ok(rows.first().map_or(0, |count| count.pausing))
}
