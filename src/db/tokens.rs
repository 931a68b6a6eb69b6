//! Queries on `api_tokens`: admin bearer tokens, stored as SHA-256 digests only.

use diesel::prelude::*;

use super::schema::api_tokens;
use super::DbConnection;

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    api_tokens::table.count().get_result(conn)
}

pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    label: &str,
    token_sha256: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(id),
            api_tokens::label.eq(label),
            api_tokens::token_sha256.eq(token_sha256),
            api_tokens::created_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn exists(conn: &mut DbConnection, token_sha256: &str) -> QueryResult<bool> {
    use diesel::dsl::exists;
    diesel::select(exists(
        api_tokens::table.filter(api_tokens::token_sha256.eq(token_sha256)),
    ))
    .get_result(conn)
}
