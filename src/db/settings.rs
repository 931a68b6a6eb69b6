//! Queries on `settings`: small persistent key/value facts (the generated signing secret).

use diesel::prelude::*;

use super::schema::settings;
use super::DbConnection;

pub fn get(conn: &mut DbConnection, key: &str) -> QueryResult<Option<String>> {
    settings::table
        .find(key)
        .select(settings::value)
        .first(conn)
        .optional()
}

/// Stores `value` unless the key exists; returns the value that is stored afterwards.
pub fn get_or_insert(conn: &mut DbConnection, key: &str, value: &str) -> QueryResult<String> {
    conn.transaction(|conn| {
        if let Some(existing) = get(conn, key)? {
            return Ok(existing);
        }
        diesel::insert_into(settings::table)
            .values((settings::key.eq(key), settings::value.eq(value)))
            .execute(conn)?;
        Ok(value.to_string())
    })
}

/// Stores (or clears) the global alert URL the sweepers' alerts use.
pub fn store_alert_url(db: &super::Db, url: Option<&str>) -> Result<(), super::DbError> {
    let key = crate::scheduler::outcome::ALERT_URL_SETTING;
    let mut conn = db.write()?;
    diesel::delete(settings::table.find(key)).execute(&mut *conn)?;
    if let Some(url) = url {
        diesel::insert_into(settings::table)
            .values((settings::key.eq(key), settings::value.eq(url)))
            .execute(&mut *conn)?;
    }
    Ok(())
}
