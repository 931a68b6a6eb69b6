//! Many-row statements that stay prepared. diesel prepares every UPDATE, `IN (…)`
//! list, multi-row INSERT and `sql_query` anew on each run (it cannot know their text
//! repeats); with waves of hundreds of fires that parsing was a large share of the
//! SQLite writer's time (`sqlite3Prepare` ~18 % in a callback-mode profile). A
//! [`Statement`] is plain SQL with typed binds that diesel caches by its text; callers
//! cut their rows into chunks of a few fixed sizes ([`fixed_chunks`]) so only a handful
//! of texts ever occur, each prepared once per connection.

use diesel::backend::Backend;
use diesel::expression::{AsExpression, TypedExpressionType};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::sql_types::{SqlType, Untyped};
use diesel::QueryResult;

enum Piece<'a, DB: Backend> {
    Sql(String),
    Bind(Box<dyn QueryFragment<DB> + 'a>),
}

/// SQL text and typed bind values in order; placeholders are written by the backend
/// (`?` on SQLite, `$n` on PostgreSQL) where each value is bound.
pub struct Statement<'a, DB: Backend> {
    pieces: Vec<Piece<'a, DB>>,
}

impl<'a, DB: Backend> Statement<'a, DB> {
    pub fn new(sql: &str) -> Self {
        Statement {
            pieces: vec![Piece::Sql(sql.to_string())],
        }
    }

    pub fn sql(&mut self, sql: &str) -> &mut Self {
        match self.pieces.last_mut() {
            Some(Piece::Sql(text)) => text.push_str(sql),
            _ => self.pieces.push(Piece::Sql(sql.to_string())),
        }
        self
    }

    /// A placeholder for `value`, as SQL type `ST`.
    pub fn bind<ST, T>(&mut self, value: T) -> &mut Self
    where
        ST: SqlType + TypedExpressionType,
        T: AsExpression<ST>,
        T::Expression: QueryFragment<DB> + 'a,
    {
        self.pieces
            .push(Piece::Bind(Box::new(value.as_expression())));
        self
    }

    /// `(?, ?, …)` with one placeholder per value of `values`, all as `ST`.
    pub fn bind_list<ST, T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        ST: SqlType + TypedExpressionType,
        T: AsExpression<ST>,
        T::Expression: QueryFragment<DB> + 'a,
    {
        self.sql("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.bind::<ST, T>(value);
        }
        self.sql(")")
    }
}

impl<DB: Backend> QueryFragment<DB> for Statement<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Unlike diesel's own dynamic statements this one never calls
        // `unsafe_to_cache_prepared`: its text fully determines it, so diesel caches it.
        for piece in &self.pieces {
            match piece {
                Piece::Sql(text) => out.push_sql(text),
                Piece::Bind(value) => value.walk_ast(out.reborrow())?,
            }
        }
        Ok(())
    }
}

impl<DB: Backend> QueryId for Statement<'_, DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for Statement<'_, DB> {
    type SqlType = Untyped;
}

impl<DB: Backend, Conn> RunQueryDsl<Conn> for Statement<'_, DB> {}

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
