//! Many-row statements that stay prepared. diesel prepares every UPDATE, `IN (…)`
//! list, multi-row INSERT and `sql_query` anew on each run (it cannot know their text
//! repeats); with waves of hundreds of fires that parsing was a large share of the
//! SQLite writer's time (`sqlite3Prepare` ~18 % in a callback-mode profile). A
//! [`Statement`] is plain SQL with typed binds that diesel caches by its text; callers
//! cut their rows into chunks of a few fixed sizes ([`fixed_chunks`]) so only a handful
//! of texts ever occur, each prepared once per connection.

use std::borrow::Cow;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Integer, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, QueryableByName};

use super::DbConnection;

/// A bound value, typed. One statement serves both backends: each writes its own
/// placeholder (`?` on SQLite, `$n` on PostgreSQL) where a value is bound.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    NullableText(Option<&'a str>),
    BigInt(i64),
    NullableBigInt(Option<i64>),
    Integer(i32),
    NullableInteger(Option<i32>),
    Bool(bool),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::NullableText(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::BigInt(v)
    }
}
impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::NullableBigInt(v)
    }
}
impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Integer(v)
    }
}
impl From<Option<i32>> for Value<'_> {
    fn from(v: Option<i32>) -> Self {
        Value::NullableInteger(v)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// SQL text is borrowed where it can be: `bind_list` and `bind_rows` put a literal
/// `", "` or `")"` between every two binds, thousands per many-row statement, and
/// an owned `String` each was 2–3 % of the SQLite writer (point 24 of
/// docs/performance.md).
enum Piece<'a> {
    Sql(Cow<'a, str>),
    Bind(Value<'a>),
}

/// SQL text and typed bind values in order.
pub struct Statement<'a> {
    pieces: Vec<Piece<'a>>,
}

impl<'a> Statement<'a> {
    pub fn new(sql: impl Into<Cow<'a, str>>) -> Self {
        Statement {
            pieces: vec![Piece::Sql(sql.into())],
        }
    }

    pub fn sql(&mut self, sql: impl Into<Cow<'a, str>>) -> &mut Self {
        self.pieces.push(Piece::Sql(sql.into()));
        self
    }

    /// A placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Value<'a>>) -> &mut Self {
        self.pieces.push(Piece::Bind(value.into()));
        self
    }

    /// `(?, ?, …)` with one placeholder per value of `values`.
    pub fn bind_list<V: Into<Value<'a>>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        self.sql("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.bind(value);
        }
        self.sql(")")
    }

    /// `(?, …), (?, …), …`: one parenthesised row per item, its values from `row`.
    pub fn bind_rows<T, const N: usize>(
        &mut self,
        items: &'a [T],
        row: impl Fn(&'a T) -> [Value<'a>; N],
    ) -> &mut Self {
        for (i, item) in items.iter().enumerate() {
            self.sql(if i == 0 { "" } else { ", " });
            self.bind_list(row(item));
        }
        self
    }

    /// Runs the statement and reads its rows, on whichever backend `conn` is.
    pub fn load<R>(self, conn: &mut DbConnection) -> QueryResult<Vec<R>>
    where
        R: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
    {
        match conn {
            DbConnection::Postgresql(pg) => RunQueryDsl::load(self, pg),
            DbConnection::Sqlite(lite) => RunQueryDsl::load(self, lite),
        }
    }

    /// Runs the statement; the number of rows it changed.
    pub fn execute(self, conn: &mut DbConnection) -> QueryResult<usize> {
        match conn {
            DbConnection::Postgresql(pg) => RunQueryDsl::execute(self, pg),
            DbConnection::Sqlite(lite) => RunQueryDsl::execute(self, lite),
        }
    }
}

impl<DB> QueryFragment<DB> for Statement<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt> + HasSqlType<Integer> + HasSqlType<Bool>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
    i32: ToSql<Integer, DB>,
    bool: ToSql<Bool, DB>,
    for<'x> Option<&'x str>: ToSql<Nullable<Text>, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    Option<i32>: ToSql<Nullable<Integer>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Unlike diesel's own dynamic statements this one never calls
        // `unsafe_to_cache_prepared`: its text fully determines it, so diesel caches it.
        for piece in &self.pieces {
            match piece {
                Piece::Sql(text) => out.push_sql(text),
                Piece::Bind(Value::Text(v)) => out.push_bind_param::<Text, str>(v)?,
                Piece::Bind(Value::NullableText(v)) => {
                    out.push_bind_param::<Nullable<Text>, Option<&str>>(v)?
                }
                Piece::Bind(Value::BigInt(v)) => out.push_bind_param::<BigInt, i64>(v)?,
                Piece::Bind(Value::NullableBigInt(v)) => {
                    out.push_bind_param::<Nullable<BigInt>, Option<i64>>(v)?
                }
                Piece::Bind(Value::Integer(v)) => out.push_bind_param::<Integer, i32>(v)?,
                Piece::Bind(Value::NullableInteger(v)) => {
                    out.push_bind_param::<Nullable<Integer>, Option<i32>>(v)?
                }
                Piece::Bind(Value::Bool(v)) => out.push_bind_param::<Bool, bool>(v)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Statement<'_> {}

/// How a many-row INSERT or UPDATE starts on this backend: `INSERT OR FAIL` /
/// `UPDATE OR FAIL` on SQLite, plain on PostgreSQL. For a many-row write that could
/// stop half-way on a constraint (any NOT NULL column counts), SQLite keeps a statement
/// journal: a copy of every page the statement changes, spilled to a temporary file
/// beyond 64 KiB, so the half done can be undone. The many-row writes here bind values
/// that cannot break a constraint (ids are fresh, required columns always bound), so
/// `OR FAIL` (stop, keep the rows done) means the same for them and needs no journal;
/// a profile of the writer had the journal at ~13 % of its time.
pub fn many_rows(conn: &DbConnection, verb: &str) -> String {
    match conn {
        DbConnection::Sqlite(_) => format!("{verb} OR FAIL"),
        DbConnection::Postgresql(_) => verb.to_string(),
    }
}

/// A many-row `UPDATE {table} SET {set} FROM <listed rows> AS v WHERE …`, as the text
/// before the listed rows (`(?, …), (?, …)` follow it) and the text after them, which
/// ends where the caller's conditions begin. `columns` name the listed rows' columns,
/// in order, for `set` and the conditions to read as `v.<name>`.
///
/// On PostgreSQL the rows are a `MATERIALIZED` common table expression. Given
/// `FROM (VALUES …)`, the planner sometimes drove a nested loop from the table and
/// scanned the VALUES list again for every row it found; each pass sets up the
/// expression of every listed value anew (`ExecInitExprList`), 128 × 128 × 12 of them
/// for one write-back of 128 fires: 40–100 ms per statement, the largest single cost
/// of PostgreSQL in callback mode. A materialized row set is read back as stored. The
/// join itself is a nested loop over the listed rows with a primary-key lookup each,
/// as hash and merge joins are off on cronhook's PostgreSQL sessions (`db::Db`).
pub fn update_from_rows(
    conn: &DbConnection,
    table: &str,
    set: &str,
    columns: &[&str],
) -> (String, String) {
    let named = columns
        .iter()
        .enumerate()
        .map(|(i, name)| format!("column{} AS {name}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    match conn {
        DbConnection::Sqlite(_) => (
            format!(
                "{} {table} SET {set} FROM (SELECT {named} FROM (VALUES ",
                many_rows(conn, "UPDATE")
            ),
            ") AS listed) AS v WHERE ".to_string(),
        ),
        DbConnection::Postgresql(_) => (
            format!("WITH v AS MATERIALIZED (SELECT {named} FROM (VALUES "),
            format!(") AS listed) UPDATE {table} SET {set} FROM v WHERE "),
        ),
    }
}

/// `table` read through `index` on SQLite (`INDEXED BY`), where the planner has no
/// statistics and takes the state index for any condition on `state`, walking every
/// fire in that state; PostgreSQL picks the index by itself.
pub fn indexed_by(conn: &DbConnection, table: &str, index: &str) -> String {
    match conn {
        DbConnection::Sqlite(_) => format!("{table} INDEXED BY {index}"),
        DbConnection::Postgresql(_) => table.to_string(),
    }
}

/// `column` written so that no index matches it, for a condition that only filters
/// rows found by key: `+column` on SQLite, `(column || '')` on PostgreSQL. Otherwise
/// both planners may walk the state index (every open fire, on PostgreSQL with each
/// fire's stale entries until vacuum) to check a condition on a few listed rows.
pub fn filter_only(conn: &DbConnection, column: &str) -> String {
    match conn {
        DbConnection::Sqlite(_) => format!("+{column}"),
        DbConnection::Postgresql(_) => format!("({column} || '')"),
    }
}

/// Cuts `items` into chunks whose lengths are powers of two no larger than `max` (a
/// power of two), largest first: 700 rows with `max` 512 go as 512 + 128 + 32 + 16 +
/// 8 + 4. So a statement per chunk has one of log2(max)+1 texts.
pub fn fixed_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= max {
            max
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::fixed_chunks;

    #[test]
    fn chunks_are_powers_of_two_covering_every_item_in_order() {
        for n in [0usize, 1, 2, 3, 7, 8, 500, 512, 513, 700, 1_500] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items, 512).collect();
            assert!(chunks
                .iter()
                .all(|c| c.len().is_power_of_two() && c.len() <= 512));
            let joined: Vec<usize> = chunks.concat();
            assert_eq!(joined, items, "n = {n}");
        }
        let sizes: Vec<usize> = fixed_chunks(&[0u8; 700], 512).map(|c| c.len()).collect();
        assert_eq!(sizes, vec![512, 128, 32, 16, 8, 4]);
    }
}
