//! Queries on `alerts`: failure alerts waiting for delivery.

use diesel::prelude::*;

use super::schema::alerts;
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: String,
    pub fire_id: String,
    pub url: String,
    pub body: String,
    pub created_at: i64,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn insert(conn: &mut DbConnection, row: &AlertRow) -> QueryResult<()> {
    diesel::insert_into(alerts::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// Alerts due for a delivery attempt, oldest first.
pub fn due(conn: &mut DbConnection, now: i64, limit: i64) -> QueryResult<Vec<AlertRow>> {
    alerts::table
        .filter(alerts::delivered_at.is_null())
        .filter(alerts::next_attempt_at.le(now))
        .order(alerts::next_attempt_at.asc())
        .limit(limit)
        .select(AlertRow::as_select())
        .load(conn)
}

/// Takes an alert for one delivery attempt (compare-and-set on its due instant, so
/// two nodes never send it at once); returns false when another node took it.
pub fn take(conn: &mut DbConnection, row: &AlertRow, hold_until: i64) -> QueryResult<bool> {
    let changed = diesel::update(
        alerts::table
            .find(&row.id)
            .filter(alerts::delivered_at.is_null())
            .filter(alerts::next_attempt_at.eq(row.next_attempt_at)),
    )
    .set((
        alerts::next_attempt_at.eq(hold_until),
        alerts::attempts.eq(alerts::attempts + 1),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

pub fn mark_delivered(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(alerts::table.find(id))
        .set(alerts::delivered_at.eq(now))
        .execute(conn)
}

/// Records a failed attempt; `next` None gives up (delivered_at stays empty, the error kept).
pub fn mark_failed(
    conn: &mut DbConnection,
    id: &str,
    error: &str,
    next: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(alerts::table.find(id))
        .set((
            alerts::last_error.eq(error),
            alerts::next_attempt_at.eq(next.unwrap_or(i64::MAX)),
        ))
        .execute(conn)
}
