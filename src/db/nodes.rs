//! Queries on `nodes`: scheduler processes and their heartbeats.

use diesel::prelude::*;

use super::schema::nodes;
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = nodes)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub started_at: i64,
    pub last_heartbeat_at: i64,
    pub stopped_at: Option<i64>,
}

pub fn register(conn: &mut DbConnection, row: &NodeRow) -> QueryResult<()> {
    diesel::insert_into(nodes::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// Returns false when the node row is gone or marked stopped (another node declared it dead).
pub fn heartbeat(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<bool> {
    let changed = diesel::update(nodes::table.find(id).filter(nodes::stopped_at.is_null()))
        .set(nodes::last_heartbeat_at.eq(now))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Brings back a node that another node declared dead (it was paused or cut off for
/// longer than the node timeout). Its fires were taken over; it starts afresh.
pub fn rejoin(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(nodes::table.find(id))
        .set((
            nodes::stopped_at.eq(None::<i64>),
            nodes::last_heartbeat_at.eq(now),
        ))
        .execute(conn)
}

pub fn mark_stopped(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(nodes::table.find(id))
        .set(nodes::stopped_at.eq(now))
        .execute(conn)
}

/// Marks the nodes silent since before `cutoff` as stopped (dead) and returns them
/// with their last heartbeat. A marked node that was only paused learns it from its
/// next heartbeat (see [`heartbeat`]).
pub fn declare_dead(
    conn: &mut DbConnection,
    cutoff: i64,
    now: i64,
) -> QueryResult<Vec<(String, i64)>> {
    macro_rules! declare {
        () => {
            diesel::update(
                nodes::table
                    .filter(nodes::stopped_at.is_null())
                    .filter(nodes::last_heartbeat_at.lt(cutoff)),
            )
            .set(nodes::stopped_at.eq(now))
            .returning((nodes::id, nodes::last_heartbeat_at))
        };
    }
    match conn {
        DbConnection::Postgresql(pg) => declare!().get_results(pg),
        DbConnection::Sqlite(lite) => declare!().get_results(lite),
    }
}

/// Ids of nodes with a heartbeat newer than `cutoff` that have not stopped.
pub fn live_ids(conn: &mut DbConnection, cutoff: i64) -> QueryResult<Vec<String>> {
    nodes::table
        .filter(nodes::stopped_at.is_null())
        .filter(nodes::last_heartbeat_at.ge(cutoff))
        .select(nodes::id)
        .load(conn)
}

pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<NodeRow>> {
    nodes::table
        .order(nodes::started_at.desc())
        .limit(100)
        .select(NodeRow::as_select())
        .load(conn)
}
