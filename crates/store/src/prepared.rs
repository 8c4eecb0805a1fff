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
