//! Per-event-type subscriptions (seed 003). A row says whether a person wants the
//! notifications an event type triggers: `enabled = false` suppresses them (with a
//! reason) whatever the rule, and rules with `recipients: subscribers` reach only
//! people with `enabled = true`. No row means enabled, except for those rules.

use crate::pool::{Conn, StoreError};
use crate::schema::subscriptions;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = subscriptions)]
pub struct Subscription {
    pub event_type: String,
    pub enabled: bool,
}

/// A person's subscriptions, ordered by event type.
pub async fn list(conn: &mut Conn, user_id: &str) -> Result<Vec<Subscription>, StoreError> {
    Ok(subscriptions::table
        .filter(subscriptions::user_id.eq(user_id))
        .order(subscriptions::event_type)
        .select(Subscription::as_select())
        .load(conn)
        .await?)
}

/// Enables or disables a person's subscription to `event_type`; returns whether the
/// row is new. The person must exist (`NotFound` otherwise).
pub async fn set(
    conn: &mut Conn,
    user_id: &str,
    event_type: &str,
    enabled: bool,
) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Created {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        created: bool,
    }
    let res = diesel::sql_query(
        "INSERT INTO subscriptions (user_id, event_type, enabled) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, event_type)
           DO UPDATE SET enabled = excluded.enabled, updated_at = now()
         RETURNING (xmax = 0) AS created",
    )
    .bind::<diesel::sql_types::Text, _>(user_id)
    .bind::<diesel::sql_types::Text, _>(event_type)
    .bind::<diesel::sql_types::Bool, _>(enabled)
    .get_result::<Created>(conn)
    .await;
    match res {
        Ok(c) => Ok(c.created),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        )) => Err(StoreError::NotFound),
        Err(e) => Err(e.into()),
    }
}
