//! Queries on `calendars`, and attaching a calendar's rules to the triggers that name it.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;

use super::schema::{calendars, triggers};
use super::triggers::TriggerRow;
use super::DbConnection;
use crate::domain::{Calendar, CalendarInput, TriggerSpec};
use crate::error::AppError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = calendars)]
pub struct CalendarRow {
    pub name: String,
    pub spec: String,
    pub updated_at: i64,
}

impl CalendarRow {
    pub fn calendar(&self) -> Result<Calendar, AppError> {
        serde_json::from_str::<CalendarInput>(&self.spec)
            .map_err(|e| AppError::Internal(format!("calendar {} is unreadable: {e}", self.name)))?
            .validate()
    }
}

pub fn find(conn: &mut DbConnection, name: &str) -> QueryResult<Option<CalendarRow>> {
    calendars::table
        .find(name)
        .select(CalendarRow::as_select())
        .first(conn)
        .optional()
}

pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<CalendarRow>> {
    calendars::table
        .order(calendars::name.asc())
        .select(CalendarRow::as_select())
        .load(conn)
}

/// Inserts or replaces the calendar named in `row`; returns whether it existed.
pub fn upsert(conn: &mut DbConnection, row: &CalendarRow) -> QueryResult<bool> {
    let existed = find(conn, &row.name)?.is_some();
    if existed {
        diesel::update(calendars::table.find(&row.name))
            .set((
                calendars::spec.eq(&row.spec),
                calendars::updated_at.eq(row.updated_at),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(calendars::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(existed)
}

pub fn delete(conn: &mut DbConnection, name: &str) -> QueryResult<usize> {
    diesel::delete(calendars::table.find(name)).execute(conn)
}

/// The triggers whose spec names `calendar`, with their specs.
pub fn triggers_using(
    conn: &mut DbConnection,
    calendar: &str,
) -> Result<Vec<(TriggerRow, TriggerSpec)>, AppError> {
    // Names are restricted to [A-Za-z0-9._-], so the pattern needs no escaping beyond
    // '_' matching any character; the exact check follows on the parsed spec.
    let pattern = format!("%\"calendar\":\"{calendar}\"%");
    let rows: Vec<TriggerRow> = triggers::table
        .filter(triggers::spec.like(pattern))
        .select(TriggerRow::as_select())
        .load(conn)?;
    let mut using = Vec::new();
    for row in rows {
        let spec: TriggerSpec = serde_json::from_str(&row.spec)
            .map_err(|e| AppError::Internal(format!("trigger {} spec: {e}", row.id)))?;
        if spec.calendar.as_deref() == Some(calendar) {
            using.push((row, spec));
        }
    }
    Ok(using)
}

/// Attaches to each trigger spec the rules of the calendar it names. A name with no
/// calendar is an error naming `field(i)` (saving a job); at claim time the caller
/// logs and fires without the calendar rather than never firing.
pub fn attach<'a>(
    conn: &mut DbConnection,
    specs: impl IntoIterator<Item = &'a mut TriggerSpec>,
) -> Result<Vec<String>, AppError> {
    let mut specs: Vec<&mut TriggerSpec> =
        specs.into_iter().filter(|s| s.calendar.is_some()).collect();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = specs.iter().filter_map(|s| s.calendar.clone()).collect();
    names.sort();
    names.dedup();
    let mut loaded: HashMap<String, Arc<Calendar>> = HashMap::new();
    for row in calendars::table
        .filter(calendars::name.eq_any(&names))
        .select(CalendarRow::as_select())
        .load(conn)?
    {
        loaded.insert(row.name.clone(), Arc::new(row.calendar()?));
    }
    let mut missing = Vec::new();
    for spec in specs.iter_mut() {
        let name = spec.calendar.clone().unwrap_or_default();
        match loaded.get(&name) {
            Some(calendar) => spec.calendar_rules = Some(calendar.clone()),
            None => missing.push(name),
        }
    }
    Ok(missing)
}
