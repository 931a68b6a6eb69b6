//! Queries on `executors`: SDK instances, registered and refreshed by their heartbeats.

use diesel::prelude::*;

use super::schema::executors;
use super::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = executors)]
pub struct ExecutorRow {
    pub id: String,
    pub app: String,
    pub instance_id: String,
    pub address: String,
    /// JSON array of handler names.
    pub handlers: String,
    pub capacity: i32,
    pub running: i32,
    pub queued: i32,
    pub cpu_percent: f64,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub load1: f64,
    pub sdk_version: String,
    pub last_heartbeat_at: i64,
    /// Dispatch failures since the last successful contact.
    pub failures: i32,
    pub valid: bool,
    /// JSON array of the optional protocol features it takes (`dispatch_batch`).
    pub features: String,
}

impl ExecutorRow {
    /// Whether it may get new work at `now`: not marked invalid, and its last heartbeat
    /// within `timeout_ms`.
    pub fn is_valid(&self, now: i64, timeout_ms: u64) -> bool {
        self.valid && now - self.last_heartbeat_at <= timeout_ms as i64
    }

    /// Whether dispatch must see this row (just recorded by a heartbeat) at once rather
    /// than at its next periodic reload: a new executor, one back after expiring or
    /// being marked invalid, or one whose address, handlers, capacity or features
    /// changed. A beat that only refreshes load figures does not qualify: reloading the
    /// pools on every beat cost a reload per beat (100 a second with 300 executors).
    pub fn changes_routing(&self, before: Option<&ExecutorRow>, now: i64, timeout_ms: u64) -> bool {
        let Some(before) = before else {
            return true;
        };
        !before.is_valid(now, timeout_ms)
            || before.address != self.address
            || before.handlers != self.handlers
            || before.capacity != self.capacity
            || before.features != self.features
    }

    /// A valid executor of app `app` with id `id`, for unit tests to adjust.
    #[cfg(test)]
    pub fn for_tests(id: &str) -> ExecutorRow {
        ExecutorRow {
            id: id.into(),
            app: "app".into(),
            instance_id: format!("i-{id}"),
            address: format!("http://127.0.0.1:9/{id}"),
            handlers: "[]".into(),
            capacity: 4,
            running: 0,
            queued: 0,
            cpu_percent: 0.0,
            mem_used_bytes: 0,
            mem_total_bytes: 0,
            load1: 0.0,
            sdk_version: "test".into(),
            last_heartbeat_at: 0,
            failures: 0,
            valid: true,
            features: "[]".into(),
        }
    }

    /// Whether it advertised `feature` in its last heartbeat.
    pub fn has_feature(&self, feature: &str) -> bool {
        serde_json::from_str::<Vec<String>>(&self.features)
            .is_ok_and(|features| features.iter().any(|f| f == feature))
    }
}

/// What a heartbeat refreshes (everything but the row id).
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = executors)]
pub struct HeartbeatUpdate<'a> {
    pub address: &'a str,
    pub handlers: &'a str,
    pub capacity: i32,
    pub running: i32,
    pub queued: i32,
    pub cpu_percent: f64,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub load1: f64,
    pub sdk_version: &'a str,
    pub last_heartbeat_at: i64,
    pub failures: i32,
    pub valid: bool,
    pub features: &'a str,
}

/// Records a heartbeat: updates the instance's row, or creates it on its first beat.
/// A heartbeat is a successful contact, so it clears failures and makes the instance valid.
/// Returns the row as it was before (none for a new executor) and as it is now.
pub fn record_heartbeat(
    conn: &mut DbConnection,
    app: &str,
    instance_id: &str,
    update: &HeartbeatUpdate<'_>,
) -> QueryResult<(Option<ExecutorRow>, ExecutorRow)> {
    let before = find_instance(conn, app, instance_id)?;
    let changed = diesel::update(
        executors::table
            .filter(executors::app.eq(app))
            .filter(executors::instance_id.eq(instance_id)),
    )
    .set(update)
    .execute(conn)?;
    if changed == 0 {
        let row = ExecutorRow {
            id: uuid::Uuid::now_v7().to_string(),
            app: app.to_string(),
            instance_id: instance_id.to_string(),
            address: update.address.to_string(),
            handlers: update.handlers.to_string(),
            capacity: update.capacity,
            running: update.running,
            queued: update.queued,
            cpu_percent: update.cpu_percent,
            mem_used_bytes: update.mem_used_bytes,
            mem_total_bytes: update.mem_total_bytes,
            load1: update.load1,
            sdk_version: update.sdk_version.to_string(),
            last_heartbeat_at: update.last_heartbeat_at,
            failures: update.failures,
            valid: update.valid,
            features: update.features.to_string(),
        };
        let inserted = diesel::insert_into(executors::table)
            .values(&row)
            .execute(conn);
        match inserted {
            Ok(_) => return Ok((before, row)),
            // Another node registered the same instance a moment ago: update that row.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {
                diesel::update(
                    executors::table
                        .filter(executors::app.eq(app))
                        .filter(executors::instance_id.eq(instance_id)),
                )
                .set(update)
                .execute(conn)?;
            }
            Err(e) => return Err(e),
        }
    }
    let after = find_instance(conn, app, instance_id)?.ok_or(diesel::result::Error::NotFound)?;
    Ok((before, after))
}

fn find_instance(
    conn: &mut DbConnection,
    app: &str,
    instance_id: &str,
) -> QueryResult<Option<ExecutorRow>> {
    executors::table
        .filter(executors::app.eq(app))
        .filter(executors::instance_id.eq(instance_id))
        .select(ExecutorRow::as_select())
        .first(conn)
        .optional()
}

/// Executors, optionally of one app, by app and instance.
pub fn list(conn: &mut DbConnection, app: Option<&str>) -> QueryResult<Vec<ExecutorRow>> {
    let mut query = executors::table.into_boxed();
    if let Some(app) = app {
        query = query.filter(executors::app.eq(app.to_string()));
    }
    query
        .order((executors::app.asc(), executors::instance_id.asc()))
        .select(ExecutorRow::as_select())
        .load(conn)
}

/// Counts an unreachable dispatch; at `max_failures` in a row the executor is invalid
/// until its next heartbeat.
pub fn record_failure(conn: &mut DbConnection, id: &str, max_failures: i32) -> QueryResult<usize> {
    diesel::update(executors::table.find(id))
        .set(executors::failures.eq(executors::failures + 1))
        .execute(conn)?;
    diesel::update(
        executors::table
            .find(id)
            .filter(executors::failures.ge(max_failures)),
    )
    .set(executors::valid.eq(false))
    .execute(conn)
}

/// Valid executors whose last heartbeat is older than `cutoff`: to be probed.
pub fn silent_since(conn: &mut DbConnection, cutoff: i64) -> QueryResult<Vec<ExecutorRow>> {
    executors::table
        .filter(executors::valid.eq(true))
        .filter(executors::last_heartbeat_at.lt(cutoff))
        .select(ExecutorRow::as_select())
        .load(conn)
}

/// Declares an executor invalid (compare-and-set, so one node does it once).
pub fn mark_invalid(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    let changed = diesel::update(executors::table.find(id).filter(executors::valid.eq(true)))
        .set(executors::valid.eq(false))
        .execute(conn)?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ExecutorRow {
        ExecutorRow {
            handlers: r#"["scan"]"#.into(),
            last_heartbeat_at: 1_000,
            ..ExecutorRow::for_tests("e")
        }
    }

    #[test]
    fn only_a_beat_that_changes_where_work_may_go_changes_routing() {
        let before = row();
        let beat = |change: fn(&mut ExecutorRow)| {
            let mut after = row();
            after.last_heartbeat_at = 4_000;
            change(&mut after);
            after
        };
        let timeout = 10_000;
        // A new executor; one that only refreshed its load figures.
        assert!(beat(|_| {}).changes_routing(None, 4_000, timeout));
        let load_only = beat(|r| {
            r.running = 3;
            r.queued = 1;
            r.cpu_percent = 80.0;
        });
        assert!(!load_only.changes_routing(Some(&before), 4_000, timeout));
        // Anything that decides which fires it may take.
        assert!(
            beat(|r| r.address = "http://127.0.0.1:10".into()).changes_routing(
                Some(&before),
                4_000,
                timeout
            )
        );
        assert!(
            beat(|r| r.handlers = r#"["scan","sync"]"#.into()).changes_routing(
                Some(&before),
                4_000,
                timeout
            )
        );
        assert!(beat(|r| r.capacity = 8).changes_routing(Some(&before), 4_000, timeout));
        assert!(
            beat(|r| r.features = r#"["dispatch_batch"]"#.into()).changes_routing(
                Some(&before),
                4_000,
                timeout
            )
        );
        // Back after expiring, or after being marked invalid for failing.
        assert!(beat(|_| {}).changes_routing(Some(&before), 1_000 + timeout as i64 + 1, timeout));
        let failed = ExecutorRow {
            valid: false,
            ..row()
        };
        assert!(beat(|_| {}).changes_routing(Some(&failed), 4_000, timeout));
    }
}
