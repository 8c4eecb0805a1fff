//! Helpers for the hand-written statements whose SQL text never changes (`unnest` of
//! array parameters, `= ANY($1)`): diesel-async prepares such a statement once per
//! connection and reuses it, where diesel's own multi-row `VALUES` and update DSL are
//! prepared afresh on every call.

/// Marks a statement type (with one lifetime parameter) as fixed SQL: safe to prepare
/// once and cache.
macro_rules! cacheable_statement {
    ($t:ident) => {
        impl diesel::query_builder::QueryId for $t<'_> {
            type QueryId = $t<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
    };
}

/// Pushes typed bind parameters separated by `, ` (the arguments of an `unnest(…)`).
macro_rules! push_binds {
    ($out:ident; $ty0:ty => $val0:expr $(, $ty:ty => $val:expr)* $(,)?) => {
        $out.push_bind_param::<$ty0, _>($val0)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<$ty, _>($val)?;
        )*
    };
}

/// The SQL text of `query` with its `$n` placeholders, for checking the plan Postgres
/// makes of it (the store's tests `EXPLAIN` it).
pub(crate) fn sql_of<Q>(query: &Q) -> Result<String, crate::StoreError>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    use diesel::query_builder::QueryBuilder;
    let mut sql = diesel::pg::PgQueryBuilder::default();
    query.to_sql(&mut sql, &diesel::pg::Pg)?;
    Ok(sql.finish())
}
