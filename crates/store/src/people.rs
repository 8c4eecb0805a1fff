//! People, their preference level and per-channel switches, topics and memberships.
//! The worker reads [`Person`] rows to decide who gets what; the api writes them.

use crate::pool::{Conn, StoreError};
use crate::schema::{topic_members, topics, users};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment};
use diesel::sql_types::{Array, Bool, Jsonb, Nullable, Text};
use diesel::upsert::excluded;
use diesel::PgJsonbExpressionMethods;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

/// A person as routing and delivery need them.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, serde::Serialize)]
#[diesel(table_name = users)]
pub struct Person {
    pub user_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub timezone: String,
    pub traits: Value,
    pub level: String,
    pub channels: Value,
    pub webhook_url: Option<String>,
    /// Set when the webhook answered 410 Gone; a new `webhook_url` clears it.
    pub webhook_disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Quiet hours as stored (`herald_core::schedule::QuietHoursSpec`), if any.
    pub quiet_hours: Option<Value>,
}

impl Person {
    /// The person as conditions, templates and routing see them.
    pub fn facts(&self) -> herald_core::routing::PersonFacts<'_> {
        herald_core::routing::PersonFacts {
            user_id: &self.user_id,
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            timezone: &self.timezone,
            traits: &self.traits,
            level: &self.level,
            quiet_hours: self.quiet_hours.as_ref(),
        }
    }

    /// Whether the person switched `channel` off; a channel not mentioned is on.
    pub fn channel_enabled(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

/// Fields of `PUT /api/v1/users/{id}`: those given are merged, the rest kept.
#[derive(Debug, Clone, Default)]
pub struct PersonPatch {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub traits: Option<Value>,
    pub level: Option<String>,
    pub channels: Option<Value>,
    /// `Some("")` clears the webhook.
    pub webhook_url: Option<String>,
    /// Replaces the memberships when given; unknown topics are created.
    pub topics: Option<Vec<String>>,
    /// Quiet hours: `Some(null)` clears them, `None` keeps them.
    pub quiet_hours: Option<Value>,
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Bool)]
    created: bool,
}

/// Creates or updates a person; returns whether it was created.
pub async fn upsert(
    conn: &mut Conn,
    user_id: &str,
    patch: &PersonPatch,
) -> Result<bool, StoreError> {
    let (user_id, patch) = (user_id.to_string(), patch.clone());
    conn.transaction(async move |conn| {
        let created = diesel::sql_query(
            "INSERT INTO users (user_id, email, phone, timezone, traits, level, channels, webhook_url)
             VALUES ($1, $2, $3, COALESCE($4, 'UTC'), COALESCE($5, '{}'), COALESCE($6, 'standard'),
                     COALESCE($7, '{}'), NULLIF($8, ''))
             ON CONFLICT (user_id) DO UPDATE SET
               email = COALESCE($2, users.email),
               phone = COALESCE($3, users.phone),
               timezone = COALESCE($4, users.timezone),
               traits = users.traits || COALESCE($5, '{}'),
               level = COALESCE($6, users.level),
               channels = users.channels || COALESCE($7, '{}'),
               webhook_url = CASE WHEN $8 IS NULL THEN users.webhook_url ELSE NULLIF($8, '') END,
               webhook_disabled_at = CASE WHEN $8 IS NULL THEN users.webhook_disabled_at ELSE NULL END,
               updated_at = now()
             RETURNING (xmax = 0) AS created",
        )
        .bind::<Text, _>(&user_id)
        .bind::<Nullable<Text>, _>(&patch.email)
        .bind::<Nullable<Text>, _>(&patch.phone)
        .bind::<Nullable<Text>, _>(&patch.timezone)
        .bind::<Nullable<Jsonb>, _>(&patch.traits)
        .bind::<Nullable<Text>, _>(&patch.level)
        .bind::<Nullable<Jsonb>, _>(&patch.channels)
        .bind::<Nullable<Text>, _>(&patch.webhook_url)
        .get_result::<Created>(conn)
        .await?
        .created;
        if let Some(quiet) = &patch.quiet_hours {
            set_quiet_hours(conn, &user_id, quiet).await?;
        }
        if let Some(wanted) = &patch.topics {
            replace_memberships(conn, &user_id, wanted).await?;
        }
        Ok::<_, StoreError>(created)
    })
    .await
}

/// Sets (or, given `null`, clears) the person's quiet hours.
async fn set_quiet_hours(
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: &str,
    quiet: &Value,
) -> Result<(), StoreError> {
    let value = (!quiet.is_null()).then_some(quiet);
    diesel::update(users::table.find(user_id))
        .set(users::quiet_hours.eq(value))
        .execute(conn)
        .await?;
    Ok(())
}

async fn replace_memberships(
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: &str,
    wanted: &[String],
) -> Result<(), StoreError> {
    let new_topics: Vec<_> = wanted.iter().map(|t| topics::topic.eq(t)).collect();
    if !new_topics.is_empty() {
        diesel::insert_into(topics::table)
            .values(&new_topics)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    diesel::delete(
        topic_members::table
            .filter(topic_members::user_id.eq(user_id))
            .filter(topic_members::topic.ne_all(wanted)),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = wanted
        .iter()
        .map(|t| {
            (
                topic_members::topic.eq(t),
                topic_members::user_id.eq(user_id),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(topic_members::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn find(conn: &mut Conn, user_id: &str) -> Result<Option<Person>, StoreError> {
    Ok(users::table
        .find(user_id)
        .select(Person::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The topics a person belongs to, sorted.
pub async fn topics_of(conn: &mut Conn, user_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(topic_members::table
        .filter(topic_members::user_id.eq(user_id))
        .select(topic_members::topic)
        .order(topic_members::topic)
        .load(conn)
        .await?)
}

/// Sets a person's level; false when the person does not exist.
pub async fn set_level(conn: &mut Conn, user_id: &str, level: &str) -> Result<bool, StoreError> {
    let n = diesel::update(users::table.find(user_id))
        .set((
            users::level.eq(level),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Creates the person an event is about if unknown, merging the event's traits into
/// theirs, and returns them.
pub async fn ensure_subject(
    conn: &mut Conn,
    user_id: &str,
    traits: &Value,
) -> Result<Person, StoreError> {
    let empty = traits.as_object().is_none_or(|o| o.is_empty());
    let insert = diesel::insert_into(users::table)
        .values((users::user_id.eq(user_id), users::traits.eq(traits)));
    if empty {
        insert.on_conflict_do_nothing().execute(conn).await?;
        return find(conn, user_id).await?.ok_or(StoreError::NotFound);
    }
    Ok(insert
        .on_conflict(users::user_id)
        .do_update()
        .set((
            users::traits.eq(users::traits.concat(excluded(users::traits))),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Person::as_returning())
        .get_result(conn)
        .await?)
}

/// Creates a topic; returns whether it was new.
pub async fn create_topic(conn: &mut Conn, topic: &str) -> Result<bool, StoreError> {
    let n = diesel::insert_into(topics::table)
        .values(topics::topic.eq(topic))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

pub async fn topic_exists(conn: &mut Conn, topic: &str) -> Result<bool, StoreError> {
    Ok(
        diesel::select(diesel::dsl::exists(topics::table.find(topic)))
            .get_result(conn)
            .await?,
    )
}

/// Adds a member; returns whether they were new. Both must exist (else NotFound).
pub async fn add_member(conn: &mut Conn, topic: &str, user_id: &str) -> Result<bool, StoreError> {
    let res = diesel::insert_into(topic_members::table)
        .values((
            topic_members::topic.eq(topic),
            topic_members::user_id.eq(user_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await;
    match res {
        Ok(n) => Ok(n == 1),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        )) => Err(StoreError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Removes a member; returns whether they were one.
pub async fn remove_member(
    conn: &mut Conn,
    topic: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let n = diesel::delete(topic_members::table.find((topic, user_id)))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// One page of a topic's member ids, ordered, after `after` (keyset pagination).
pub async fn member_ids(
    conn: &mut Conn,
    topic: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let mut q = topic_members::table
        .filter(topic_members::topic.eq(topic))
        .select(topic_members::user_id)
        .order(topic_members::user_id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(topic_members::user_id.gt(after.to_string()));
    }
    Ok(q.load(conn).await?)
}

/// One page of a topic's members for [`topic_pages`]: members after `after` (by
/// user id; `""` for the first page).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPage {
    pub topic: String,
    pub after: String,
    /// The event type whose subscription switches are reported.
    pub event_type: String,
}

/// A member of a page, and whether they switched the page's event type off.
#[derive(Debug, Clone, QueryableByName)]
pub struct Member {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    page: i64,
    #[diesel(embed)]
    pub person: Person,
    #[diesel(sql_type = Bool)]
    pub unsubscribed: bool,
}

/// Several pages of topic members in one prepared statement (one lateral scan of
/// `topic_members` per page), each with the members' subscription switch.
struct TopicPages<'a> {
    topics: Vec<&'a str>,
    afters: Vec<&'a str>,
    event_types: Vec<&'a str>,
    limit: i64,
}

cacheable_statement!(TopicPages);

impl Query for TopicPages<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl QueryFragment<Pg> for TopicPages<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT r.page, u.user_id, u.email, u.phone, u.timezone, u.traits, u.level, \
               u.channels, u.webhook_url, u.webhook_disabled_at, u.quiet_hours, \
               EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.user_id \
                       AND s.event_type = r.event_type AND NOT s.enabled) AS unsubscribed \
             FROM unnest(",
        );
        push_binds!(out;
            Array<Text> => &self.topics,
            Array<Text> => &self.afters,
            Array<Text> => &self.event_types,
        );
        // Each page reads only the members' index; `users` is joined once, outside the
        // per-page loop. Inside it, a table the planner thinks small (never analysed,
        // as in a new database) was hash-joined by a full scan for every page.
        out.push_sql(
            ") WITH ORDINALITY AS r(topic, after, event_type, page) \
             CROSS JOIN LATERAL ( \
               SELECT m.user_id FROM topic_members m \
               WHERE m.topic = r.topic AND m.user_id > r.after \
               ORDER BY m.user_id LIMIT ",
        );
        out.push_bind_param::<diesel::sql_types::Int8, _>(&self.limit)?;
        // Every member is a person (`topic_members.user_id` references `users`), so
        // the join drops no one.
        out.push_sql(
            ") m JOIN users u ON u.user_id = m.user_id \
             ORDER BY r.page, u.user_id",
        );
        Ok(())
    }
}

/// Each page's members (at most `limit`, ordered by user id), in the pages' order.
pub async fn topic_pages(
    conn: &mut Conn,
    pages: &[TopicPage],
    limit: i64,
) -> Result<Vec<Vec<Member>>, StoreError> {
    if pages.is_empty() {
        return Ok(Vec::new());
    }
    let query = TopicPages {
        topics: pages.iter().map(|p| p.topic.as_str()).collect(),
        afters: pages.iter().map(|p| p.after.as_str()).collect(),
        event_types: pages.iter().map(|p| p.event_type.as_str()).collect(),
        limit,
    };
    let members: Vec<Member> = query.load(conn).await?;
    let mut out: Vec<Vec<Member>> = vec![Vec::new(); pages.len()];
    for m in members {
        // `page` is the 1-based ordinality of an input page.
        if let Some(slot) = usize::try_from(m.page - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            slot.push(m);
        }
    }
    Ok(out)
}

/// One page of everyone, ordered by user_id.
pub async fn everyone(
    conn: &mut Conn,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Person>, StoreError> {
    let mut q = users::table
        .select(Person::as_select())
        .order(users::user_id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(users::user_id.gt(after.to_string()));
    }
    Ok(q.load(conn).await?)
}

/// One page of the people with an enabled subscription to `event_type` (members of
/// `topic` when given), ordered by user_id.
pub async fn subscribers(
    conn: &mut Conn,
    event_type: &str,
    topic: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Person>, StoreError> {
    use crate::schema::subscriptions;
    let mut q = users::table
        .inner_join(subscriptions::table)
        .filter(subscriptions::event_type.eq(event_type.to_string()))
        .filter(subscriptions::enabled.eq(true))
        .select(Person::as_select())
        .order(users::user_id)
        .limit(limit)
        .into_boxed();
    if let Some(topic) = topic {
        q = q.filter(diesel::dsl::exists(
            topic_members::table
                .filter(topic_members::user_id.eq(users::user_id))
                .filter(topic_members::topic.eq(topic.to_string())),
        ));
    }
    if let Some(after) = after {
        q = q.filter(users::user_id.gt(after.to_string()));
    }
    Ok(q.load(conn).await?)
}

/// Which of `user_ids` disabled their subscription to `event_type`.
pub async fn disabled_subscriptions(
    conn: &mut Conn,
    event_type: &str,
    user_ids: &[&str],
) -> Result<std::collections::HashSet<String>, StoreError> {
    use crate::schema::subscriptions;
    if user_ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(subscriptions::table
        .filter(subscriptions::event_type.eq(event_type))
        .filter(subscriptions::enabled.eq(false))
        .filter(subscriptions::user_id.eq_any(user_ids))
        .select(subscriptions::user_id)
        .load::<String>(conn)
        .await?
        .into_iter()
        .collect())
}

/// Deletes a person (contract §4): their memberships, subscriptions, notifications and
/// delivery attempts go with them (foreign keys cascade), and their events stay for
/// the audit trail with `user_id` and `user_traits` blanked. Returns false when the
/// person does not exist.
pub async fn delete(conn: &mut Conn, user_id: &str) -> Result<bool, StoreError> {
    use crate::schema::events;
    use crate::schema::notifications;
    let user_id = user_id.to_string();
    conn.transaction(async move |conn| {
        // The cascade deletes the person's notifications in no set order: lock them
        // in id order first ([`crate::locking`]), as the worker's and receipts'
        // batches do, so a delivery recorded meanwhile cannot deadlock with it.
        notifications::table
            .filter(notifications::user_id.eq(&user_id))
            .order(notifications::id)
            .select(notifications::id)
            .for_update()
            .load::<uuid::Uuid>(conn)
            .await?;
        diesel::update(events::table.filter(events::user_id.eq(&user_id)))
            .set((
                events::user_id.eq(None::<String>),
                events::user_traits.eq(serde_json::json!({})),
            ))
            .execute(conn)
            .await?;
        let n = diesel::delete(users::table.find(&user_id))
            .execute(conn)
            .await?;
        Ok::<_, StoreError>(n == 1)
    })
    .await
}

/// What a bulk membership change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkAdded {
    /// New memberships.
    pub added: usize,
    /// People who did not exist and were created (with default preferences).
    pub created_users: usize,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    created_users: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    added: i64,
}

/// Adds `user_ids` (distinct, at most a batch) to an existing topic in one
/// statement, creating the people who do not exist yet. Existing memberships are
/// kept. `NotFound` when the topic does not exist.
pub async fn add_members(
    conn: &mut Conn,
    topic: &str,
    user_ids: &[String],
) -> Result<BulkAdded, StoreError> {
    if !topic_exists(conn, topic).await? {
        return Err(StoreError::NotFound);
    }
    if user_ids.is_empty() {
        return Ok(BulkAdded::default());
    }
    // Both inserts in one statement: one CTE creates the unknown people, the other
    // the memberships; the foreign key is checked at the end of the statement, when
    // the new people exist.
    let counts: Counts = diesel::sql_query(
        "WITH ids AS (SELECT DISTINCT unnest($2::text[]) AS user_id),
              created AS (
                INSERT INTO users (user_id) SELECT user_id FROM ids
                ON CONFLICT (user_id) DO NOTHING RETURNING user_id),
              added AS (
                INSERT INTO topic_members (topic, user_id)
                SELECT $1, user_id FROM ids
                ON CONFLICT (topic, user_id) DO NOTHING RETURNING user_id)
         SELECT (SELECT count(*) FROM created) AS created_users,
                (SELECT count(*) FROM added) AS added",
    )
    .bind::<Text, _>(topic)
    .bind::<diesel::sql_types::Array<Text>, _>(user_ids)
    .get_result(conn)
    .await?;
    Ok(BulkAdded {
        added: usize::try_from(counts.added).unwrap_or(0),
        created_users: usize::try_from(counts.created_users).unwrap_or(0),
    })
}

pub async fn exists(conn: &mut Conn, user_id: &str) -> Result<bool, StoreError> {
    Ok(
        diesel::select(diesel::dsl::exists(users::table.find(user_id)))
            .get_result(conn)
            .await?,
    )
}

/// Disables a person's webhook after it answered 410 Gone; setting a `webhook_url`
/// again re-enables it.
pub async fn disable_webhook(conn: &mut Conn, user_id: &str) -> Result<(), StoreError> {
    diesel::update(users::table.find(user_id))
        .set(users::webhook_disabled_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}
