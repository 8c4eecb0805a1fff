//! Notification rows and their delivery attempts.
//!
//! Routing inserts a chunk of rows with one statement; the unique index on (event,
//! recipient, type, channel) makes re-processing an event a no-op. Delivery state
//! changes in one round trip per try: the attempt row and the notification's new
//! status are written together by a single statement.

use crate::pool::{Conn, StoreError};
use crate::schema::{delivery_attempts, events, notifications, users, webhook_secrets};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment};
use diesel::sql_types::{Array, Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;
use herald_core::debounce::Debounce;
use herald_core::retry::AttemptOutcome;
use herald_core::routing::{apply_debounce, debounce_windows, PlannedNotification};
use herald_core::status::NotificationStatus;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = notifications)]
pub struct NewNotification {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: &'static str,
    pub suppression_reason: Option<String>,
    pub severity: &'static str,
    pub private: bool,
    pub subject: Option<String>,
    pub text: String,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The pending bundle this row is an item of (contract §8).
    pub bundle_id: Option<Uuid>,
    /// Why `due_at` is later than the event asked (quiet hours, a send window).
    pub hold_reason: Option<String>,
}

impl From<PlannedNotification> for NewNotification {
    /// The row routing planned, with a fresh time-ordered id.
    fn from(p: PlannedNotification) -> Self {
        NewNotification {
            id: Uuid::now_v7(),
            event_id: p.event_id,
            user_id: p.user_id,
            notification_type: p.notification_type,
            channel: p.channel,
            status: p.status.as_str(),
            suppression_reason: p.suppression_reason,
            severity: p.severity.as_str(),
            private: p.private,
            subject: p.subject,
            text: p.text,
            due_at: p.due_at,
            sent_at: p.sent_at,
            bundle_id: None,
            hold_reason: p.hold_reason,
        }
    }
}

/// A newly inserted row that now needs delivering.
#[derive(Debug, Clone, Queryable)]
pub struct Inserted {
    pub id: Uuid,
    pub status: String,
    pub severity: String,
    pub due_at: DateTime<Utc>,
    /// Whose it is: its delivery job's partition follows the person.
    pub user_id: Option<String>,
    /// What a delivery handed off at routing needs besides the event and the person
    /// (`herald_worker::hand_off`), so that it loads nothing.
    pub notification_type: String,
    pub channel: String,
    pub subject: Option<String>,
    pub text: String,
}

/// A chunk of rows, column by column, inserted with
/// `INSERT … SELECT * FROM unnest($1, …, $15) ON CONFLICT DO NOTHING`: the SQL is the
/// same whatever the row count, so it is prepared once per connection (a `VALUES`
/// list is new SQL for every count, prepared and planned afresh each time).
#[derive(Default)]
struct UnnestNotifications<'a> {
    id: Vec<Uuid>,
    event_id: Vec<Uuid>,
    user_id: Vec<Option<&'a str>>,
    notification_type: Vec<&'a str>,
    channel: Vec<&'a str>,
    status: Vec<&'a str>,
    suppression_reason: Vec<Option<&'a str>>,
    severity: Vec<&'a str>,
    private: Vec<bool>,
    subject: Vec<Option<&'a str>>,
    text: Vec<&'a str>,
    due_at: Vec<DateTime<Utc>>,
    sent_at: Vec<Option<DateTime<Utc>>>,
    bundle_id: Vec<Option<Uuid>>,
    hold_reason: Vec<Option<&'a str>>,
    /// Where the events' `received_at` is looked for first (see [`INSERT_TAIL`]).
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
}

impl<'a> UnnestNotifications<'a> {
    /// Sets the window of the rows' events, once all rows are in.
    fn with_event_window(mut self) -> Self {
        if let Some((from, to)) = crate::partitions::id_window(&self.event_id) {
            self.window = (Some(from), Some(to));
        }
        self
    }

    fn push(&mut self, n: &'a NewNotification) {
        self.id.push(n.id);
        self.event_id.push(n.event_id);
        self.user_id.push(n.user_id.as_deref());
        self.notification_type.push(&n.notification_type);
        self.channel.push(&n.channel);
        self.status.push(n.status);
        self.suppression_reason
            .push(n.suppression_reason.as_deref());
        self.severity.push(n.severity);
        self.private.push(n.private);
        self.subject.push(n.subject.as_deref());
        self.text.push(&n.text);
        self.due_at.push(n.due_at);
        self.sent_at.push(n.sent_at);
        self.bundle_id.push(n.bundle_id);
        self.hold_reason.push(n.hold_reason.as_deref());
    }
}

/// What follows the arrays of [`UnnestNotifications`], in three parts: the bounds of
/// the window of the chunk's event ids ([`crate::partitions::id_window`]) are bound
/// between them. A row's `created_at` is its event's `received_at`, looked up once per
/// event: within the window first (an index probe in one or two partitions of
/// `events`), and in every partition only when that finds nothing (COALESCE calls
/// `herald_event_received_at` only then: a PL/pgSQL function, so its query over every
/// partition is planned only when called, not with each insert). The same value
/// however often the event is routed, so the unique index `notifications_once`, which
/// must contain the partition key `created_at`, still refuses a second row, and an
/// event and its notifications share a partition range (retention drops them
/// together). `now()` if the event is gone. Rows go in in the arrays' order
/// ([`in_key_order`]).
const INSERT_TAIL: [&str; 3] = [
    ") WITH ORDINALITY AS u(id, event_id, user_id, notification_type, channel, \
     status, suppression_reason, severity, private, subject, text, due_at, sent_at, \
     bundle_id, hold_reason, n)),
     received AS MATERIALIZED (
       SELECT d.event_id,
              COALESCE(
                (SELECT e.received_at FROM events e WHERE e.id = d.event_id
                   AND e.received_at >= COALESCE(",
    ", '-infinity') AND e.received_at <= COALESCE(",
    ", 'infinity') LIMIT 1),
                herald_event_received_at(d.event_id)) AS at
       FROM (SELECT DISTINCT event_id FROM u) d)
     INSERT INTO notifications (id, event_id, user_id, notification_type, channel, status, \
       suppression_reason, severity, private, subject, text, due_at, sent_at, bundle_id, \
       hold_reason, created_at)
     SELECT u.id, u.event_id, u.user_id, u.notification_type, u.channel, u.status, \
       u.suppression_reason, u.severity, u.private, u.subject, u.text, u.due_at, u.sent_at, \
       u.bundle_id, u.hold_reason, COALESCE(r.at, now())
     FROM u JOIN received r ON r.event_id = u.event_id
     ORDER BY u.n
     ON CONFLICT DO NOTHING \
     RETURNING id, status, severity, due_at, user_id, notification_type, channel, subject, text",
];

cacheable_statement!(UnnestNotifications);

impl Query for UnnestNotifications<'_> {
    type SqlType = (
        SqlUuid,
        Text,
        Text,
        Timestamptz,
        Nullable<Text>,
        Text,
        Text,
        Nullable<Text>,
        Text,
    );
}

impl QueryFragment<Pg> for UnnestNotifications<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH u AS MATERIALIZED (SELECT * FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.id,
            Array<SqlUuid> => &self.event_id,
            Array<Nullable<Text>> => &self.user_id,
            Array<Text> => &self.notification_type,
            Array<Text> => &self.channel,
            Array<Text> => &self.status,
            Array<Nullable<Text>> => &self.suppression_reason,
            Array<Text> => &self.severity,
            Array<Bool> => &self.private,
            Array<Nullable<Text>> => &self.subject,
            Array<Text> => &self.text,
            Array<Timestamptz> => &self.due_at,
            Array<Nullable<Timestamptz>> => &self.sent_at,
            Array<Nullable<SqlUuid>> => &self.bundle_id,
            Array<Nullable<Text>> => &self.hold_reason,
        );
        out.push_sql(INSERT_TAIL[0]);
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.0)?;
        out.push_sql(INSERT_TAIL[1]);
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.1)?;
        out.push_sql(INSERT_TAIL[2]);
        Ok(())
    }
}

/// The SQL of the notifications' insert ([`insert_chunks`]; `$1`…`$15`: the columns
/// of [`NewNotification`], `$16`, `$17`: the events' window), for checking its plan.
pub fn insert_sql() -> Result<String, StoreError> {
    crate::prepared::sql_of(&UnnestNotifications::default())
}

/// Inserts a chunk of rows with one prepared statement; returns those that did not
/// exist yet.
pub async fn insert_batch(
    conn: &mut diesel_async::AsyncPgConnection,
    rows: &[NewNotification],
) -> Result<Vec<Inserted>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut columns = UnnestNotifications::default();
    for row in in_key_order(rows.iter()) {
        columns.push(row);
    }
    Ok(columns.with_event_window().get_results(conn).await?)
}

/// Rows in the order of the unique index `notifications_once`. Two inserts of the
/// same keys (an event routed again after a reclaim) wait for each other's
/// uncommitted keys; inserting in one order means they queue rather than deadlock.
fn in_key_order<'a>(rows: impl Iterator<Item = &'a NewNotification>) -> Vec<&'a NewNotification> {
    let mut rows: Vec<&NewNotification> = rows.collect();
    rows.sort_by(|a, b| {
        (a.event_id, &a.user_id, &a.notification_type, &a.channel).cmp(&(
            b.event_id,
            &b.user_id,
            &b.notification_type,
            &b.channel,
        ))
    });
    rows
}

/// Inserts the planned rows of a debounced rule (all of one event and one type).
/// Within one transaction it locks each recipient, counts what they already got in
/// their debounce window, and suppresses the rows over the limit
/// ([`apply_debounce`]), so concurrent workers cannot both see room for one more.
pub async fn insert_debounced(
    conn: &mut diesel_async::AsyncPgConnection,
    debounce: Debounce,
    event_time: DateTime<Utc>,
    mut rows: Vec<PlannedNotification>,
) -> Result<Vec<Inserted>, StoreError> {
    let Some(first) = <[_]>::first(&rows) else {
        return Ok(Vec::new());
    };
    let (event_id, notification_type) = (first.event_id, first.notification_type.clone());
    let windows = debounce_windows(&rows, debounce, event_time);
    conn.transaction(async move |tx| {
        let ids: Vec<&str> = windows.iter().map(|w| w.user_id.as_str()).collect();
        crate::history::lock_people(tx, &ids).await?;
        let counts =
            crate::history::debounce_counts(tx, &notification_type, &windows, event_id).await?;
        apply_debounce(&mut rows, &counts, debounce, &notification_type);
        let rows: Vec<NewNotification> = rows.into_iter().map(NewNotification::from).collect();
        insert_batch(tx, &rows).await
    })
    .await
}

/// Inserts several callers' chunks with one statement; returns, per chunk, its rows
/// that did not exist yet.
pub async fn insert_chunks(
    conn: &mut Conn,
    chunks: &[Vec<NewNotification>],
) -> Result<Vec<Vec<Inserted>>, StoreError> {
    let mut columns = UnnestNotifications::default();
    for row in in_key_order(chunks.iter().flatten()) {
        columns.push(row);
    }
    if columns.id.is_empty() {
        return Ok(vec![Vec::new(); chunks.len()]);
    }
    let inserted: Vec<Inserted> = columns.with_event_window().get_results(conn).await?;
    let mut by_id: HashMap<Uuid, Inserted> = inserted.into_iter().map(|n| (n.id, n)).collect();
    Ok(chunks
        .iter()
        .map(|chunk| {
            chunk
                .iter()
                .filter_map(|row| by_id.remove(&row.id))
                .collect()
        })
        .collect())
}

/// Everything a delivery needs, read in one query.
#[derive(Debug, Clone, Queryable)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: String,
    pub severity: String,
    pub subject: Option<String>,
    pub text: String,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub event_type: String,
    pub event_timestamp: DateTime<Utc>,
    pub properties: Value,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub webhook_url: Option<String>,
    /// The person's webhook answered 410 Gone and is disabled.
    pub webhook_disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Set on a bundle's carrier (and items): its final state spreads to the items.
    pub bundle_id: Option<Uuid>,
    /// When an open circuit first held it.
    pub held_at: Option<DateTime<Utc>>,
    /// The person's stored traits (null without a person).
    pub traits: Option<Value>,
    /// The event's own `user_traits`.
    pub event_traits: Value,
    /// The person's webhook secret, the one it replaced and when (see `webhook_secrets`).
    pub webhook_secret: Option<String>,
    pub previous_webhook_secret: Option<String>,
    pub webhook_secret_rotated_at: Option<DateTime<Utc>>,
    /// When the api accepted the event (the start of the delivery latency metric).
    pub received_at: DateTime<Utc>,
}

/// The delivery rows of `ids` (those that exist). `notifications` (by `created_at`)
/// and `events` (by `received_at`, the same instant) are partitioned by time, which the
/// ids alone do not name: looked up by id only, every partition of both is read, and
/// Postgres hash-joins all of `events`. The ids' times narrow both
/// ([`crate::partitions::id_window`]); only ids not found there are looked for in
/// every partition, with a second query.
pub async fn for_delivery(conn: &mut Conn, ids: &[Uuid]) -> Result<Vec<DeliveryRow>, StoreError> {
    // One query shape, with or without the window's bounds (each shape is a static
    // query of its own, prepared once per connection).
    macro_rules! delivery_rows {
        ($ids:expr $(, $bound:expr)*) => {
            notifications::table
                .inner_join(events::table.on(crate::partitions::event_of_notification()))
                .left_join(users::table)
                .left_join(
                    webhook_secrets::table.on(webhook_secrets::user_id
                        .nullable()
                        .eq(notifications::user_id)),
                )
                .filter(notifications::id.eq_any($ids))
                $(.filter($bound))*
                .select((
                    notifications::id,
                    notifications::event_id,
                    notifications::user_id,
                    notifications::notification_type,
                    notifications::channel,
                    notifications::status,
                    notifications::severity,
                    notifications::subject,
                    notifications::text,
                    notifications::attempts,
                    notifications::due_at,
                    events::event_type,
                    events::event_timestamp,
                    events::properties,
                    users::email.nullable(),
                    users::phone.nullable(),
                    users::webhook_url.nullable(),
                    users::webhook_disabled_at.nullable().is_not_null(),
                    notifications::created_at,
                    notifications::bundle_id,
                    notifications::held_at,
                    users::traits.nullable(),
                    events::user_traits,
                    webhook_secrets::secret.nullable(),
                    webhook_secrets::previous_secret.nullable(),
                    webhook_secrets::rotated_at.nullable(),
                    events::received_at,
                ))
                .load::<DeliveryRow>(conn)
                .await?
        };
    }
    let mut found = match crate::partitions::id_window(ids) {
        Some((from, to)) => delivery_rows!(
            ids,
            notifications::created_at.between(from, to),
            events::received_at.between(from, to)
        ),
        None => Vec::new(),
    };
    let missing = crate::partitions::not_found(ids, found.iter().map(|r| r.id));
    if !missing.is_empty() {
        found.extend(delivery_rows!(&missing));
    }
    Ok(found)
}

/// One try's result, as the worker reports it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub notification_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// Already capped: a retry past `max_attempts` arrives as a permanent failure.
    pub outcome: AttemptOutcome,
    /// When the next try is due, for a retry.
    pub next_due: Option<DateTime<Utc>>,
}

/// Tries, column by column, recorded with one prepared statement (see
/// [`record_attempts`]).
#[derive(Default)]
struct UnnestAttempts<'a> {
    id: Vec<Uuid>,
    new_status: Vec<&'static str>,
    next_due: Vec<Option<DateTime<Utc>>>,
    error: Vec<Option<&'a str>>,
    started_at: Vec<DateTime<Utc>>,
    duration_ms: Vec<i32>,
    http_status: Vec<Option<i32>>,
    outcome: Vec<&'static str>,
    /// Where the notifications' `created_at` lies, as far as their ids tell
    /// ([`crate::partitions::id_window`]); None: anywhere.
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
}

cacheable_statement!(UnnestAttempts);

impl<'a> UnnestAttempts<'a> {
    /// `column` within the window: `column >= COALESCE($n, '-infinity') AND column <=
    /// COALESCE($n+1, 'infinity')`.
    fn push_window<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, column: &str) -> QueryResult<()> {
        out.push_sql(column);
        out.push_sql(" >= COALESCE(");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.0)?;
        out.push_sql(", '-infinity') AND ");
        out.push_sql(column);
        out.push_sql(" <= COALESCE(");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.1)?;
        out.push_sql(", 'infinity')");
        Ok(())
    }
}

impl Query for UnnestAttempts<'_> {
    type SqlType = SqlUuid;
}

impl QueryFragment<Pg> for UnnestAttempts<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH r AS (SELECT * FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.id,
            Array<Text> => &self.new_status,
            Array<Nullable<Timestamptz>> => &self.next_due,
            Array<Nullable<Text>> => &self.error,
            Array<Timestamptz> => &self.started_at,
            Array<Int4> => &self.duration_ms,
            Array<Nullable<Int4>> => &self.http_status,
            Array<Text> => &self.outcome,
        );
        // Both the lock and the update read `notifications` within the window only
        // (NULL bounds: every partition). The bounds are parameters of the statement
        // itself, not of a subquery, so Postgres prunes the other partitions when it
        // plans (or starts) the statement.
        out.push_sql(
            ") AS r(id, new_status, next_due, error, started_at, duration_ms, http_status, \
             outcome)),
             locked AS MATERIALIZED (
               SELECT id FROM notifications WHERE id IN (SELECT id FROM r)
                 AND ",
        );
        self.push_window(&mut out, "created_at")?;
        out.push_sql(
            "
               ORDER BY id FOR UPDATE),
             n AS (
               UPDATE notifications SET
                 attempts = notifications.attempts + 1,
                 status = CASE WHEN notifications.status = 'pending' THEN r.new_status
                               ELSE notifications.status END,
                 sent_at = CASE WHEN r.new_status = 'sent'
                                THEN COALESCE(notifications.sent_at, now())
                                ELSE notifications.sent_at END,
                 due_at = COALESCE(r.next_due, notifications.due_at),
                 last_error = CASE WHEN r.new_status = 'sent' THEN NULL ELSE r.error END
               FROM r WHERE notifications.id = r.id AND ",
        );
        self.push_window(&mut out, "notifications.created_at")?;
        out.push_sql(" AND ");
        out.push_sql(crate::locking::LOCKED_FIRST);
        out.push_sql(
            "
               RETURNING notifications.id, notifications.attempts)
             INSERT INTO delivery_attempts
               (notification_id, attempt, started_at, duration_ms, http_status, error, outcome)
             SELECT r.id, n.attempts, r.started_at, r.duration_ms, r.http_status, r.error,
                    r.outcome
             FROM r JOIN n ON n.id = r.id
             RETURNING notification_id",
        );
        Ok(())
    }
}

/// The SQL of [`record_attempts`]' statement (`$1`…`$8`: the columns of
/// [`AttemptRecord`]), for checking its plan.
pub fn record_attempts_sql() -> Result<String, StoreError> {
    crate::prepared::sql_of(&UnnestAttempts::default())
}

/// Writes each try's attempt row and moves its notification on, all in one statement
/// (and one commit). A row that is no longer `pending` (a duplicate delivery after a
/// reclaim) keeps its status, but the attempt is still recorded: it happened. A
/// notification may appear once per call (its attempt number comes from the update).
/// The statement locks its rows in id order before updating any
/// ([`crate::locking`]), so it cannot deadlock with a receipt batch; a receipt that
/// came first (`delivered_at`, `opened_at`) is kept.
pub async fn record_attempts(conn: &mut Conn, recs: &[AttemptRecord]) -> Result<(), StoreError> {
    // The attempt number comes from the UPDATE, which sees a row once per statement:
    // a notification that appears again goes into a later round.
    let mut rounds: Vec<(HashSet<Uuid>, Vec<&AttemptRecord>)> = Vec::new();
    for rec in recs {
        let round = match rounds
            .iter()
            .position(|(ids, _)| !ids.contains(&rec.notification_id))
        {
            Some(i) => i,
            None => {
                rounds.push(Default::default());
                rounds.len() - 1
            }
        };
        let (ids, round) = &mut rounds[round];
        ids.insert(rec.notification_id);
        round.push(rec);
    }
    if rounds.len() == 1 {
        let (_, round) = rounds.remove(0);
        record_round(conn, &round).await?;
    } else if !rounds.is_empty() {
        conn.transaction(async move |tx| {
            for (_, round) in rounds {
                record_round(tx, &round).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await?
    }
    Ok(())
}

/// One round (each notification once): within the window of the ids first
/// ([`crate::partitions::id_window`]), then, for the notifications not found there,
/// over every partition. The first statement leaves those untouched (no lock, no
/// update, no attempt row), so the second records each of them exactly once.
async fn record_round(
    conn: &mut diesel_async::AsyncPgConnection,
    round: &[&AttemptRecord],
) -> Result<(), diesel::result::Error> {
    let ids: Vec<Uuid> = round.iter().map(|r| r.notification_id).collect();
    let done: Vec<Uuid> = match crate::partitions::id_window(&ids) {
        Some((from, to)) => {
            attempt_columns(round.iter().copied(), (Some(from), Some(to)))
                .get_results(conn)
                .await?
        }
        None => Vec::new(),
    };
    let missing: HashSet<Uuid> = crate::partitions::not_found(&ids, done)
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let rest = round
            .iter()
            .copied()
            .filter(|r| missing.contains(&r.notification_id));
        let _: Vec<Uuid> = attempt_columns(rest, (None, None))
            .get_results(conn)
            .await?;
    }
    Ok(())
}

/// The statement's columns for these tries.
fn attempt_columns<'a>(
    recs: impl Iterator<Item = &'a AttemptRecord>,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> UnnestAttempts<'a> {
    let mut columns = UnnestAttempts {
        window,
        ..Default::default()
    };
    for rec in recs {
        columns.id.push(rec.notification_id);
        columns.new_status.push(match rec.outcome {
            AttemptOutcome::Success => NotificationStatus::Sent.as_str(),
            AttemptOutcome::Retry => NotificationStatus::Pending.as_str(),
            AttemptOutcome::PermanentFailure => NotificationStatus::Failed.as_str(),
        });
        columns.next_due.push(rec.next_due);
        columns.error.push(rec.error.as_deref());
        columns.started_at.push(rec.started_at);
        columns.duration_ms.push(rec.duration_ms);
        columns.http_status.push(rec.http_status);
        columns.outcome.push(rec.outcome.as_str());
    }
    columns
}

/// Marks a pending notification sent without an HTTP call (the `in_app` channel).
pub async fn mark_sent(conn: &mut Conn, id: Uuid) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .set((
            notifications::status.eq(NotificationStatus::Sent.as_str()),
            notifications::sent_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Fails a pending notification without trying (e.g. no address to deliver to).
pub async fn mark_failed(conn: &mut Conn, id: Uuid, reason: &str) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .set((
            notifications::status.eq(NotificationStatus::Failed.as_str()),
            notifications::last_error.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Pending notifications due before `cutoff`: their delivery job may be lost.
pub async fn pending_due_before(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String, Option<String>)>, StoreError> {
    Ok(notifications::table
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .filter(notifications::due_at.lt(cutoff))
        .order(notifications::due_at)
        .limit(limit)
        .select((
            notifications::id,
            notifications::severity,
            notifications::user_id,
        ))
        .load(conn)
        .await?)
}

/// A notification as `GET /api/v1/notifications/{id}` shows it.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = notifications)]
pub struct NotificationRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: String,
    pub suppression_reason: Option<String>,
    pub severity: String,
    pub private: bool,
    pub subject: Option<String>,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub bundle_id: Option<Uuid>,
    /// Why `due_at` is later than the event asked (quiet hours, a send window,
    /// `deliver_at`).
    pub hold_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = delivery_attempts)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
}

pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Option<NotificationRow>, StoreError> {
    Ok(notifications::table
        .find(id)
        .select(NotificationRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn attempts_of(conn: &mut Conn, id: Uuid) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(delivery_attempts::table
        .filter(delivery_attempts::notification_id.eq(id))
        .order((delivery_attempts::attempt, delivery_attempts::id))
        .select(AttemptRow::as_select())
        .load(conn)
        .await?)
}

/// Filters of `GET /api/v1/notifications`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub event_id: Option<Uuid>,
    pub user_id: Option<String>,
    /// Keyset cursor: rows with ids below this one (ids are UUID v7, time-ordered).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(conn: &mut Conn, f: &ListFilter) -> Result<Vec<NotificationRow>, StoreError> {
    let mut q = notifications::table
        .select(NotificationRow::as_select())
        .order(notifications::id.desc())
        .limit(f.limit)
        .into_boxed();
    if let Some(s) = &f.status {
        q = q.filter(notifications::status.eq(s.clone()));
    }
    if let Some(e) = f.event_id {
        q = q.filter(notifications::event_id.eq(e));
    }
    if let Some(u) = &f.user_id {
        q = q.filter(notifications::user_id.eq(u.clone()));
    }
    if let Some(b) = f.before {
        q = q.filter(notifications::id.lt(b));
    }
    Ok(q.load(conn).await?)
}

/// Suppresses a pending notification, e.g. when its conditions no longer hold at the
/// end of its delay.
pub async fn mark_suppressed(conn: &mut Conn, id: Uuid, reason: &str) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .set((
            notifications::status.eq(NotificationStatus::Suppressed.as_str()),
            notifications::suppression_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What `POST /api/v1/notifications/{id}/retry` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Back to `pending`, due now; the caller enqueues its delivery job. Its attempt
    /// count is kept (history), so it gets one more try before failing again.
    Requeued {
        severity: String,
        /// The recipient, whose live views are told.
        user_id: Option<String>,
    },
    /// Only a `failed` notification can be retried; this one is in `status`.
    NotFailed {
        status: String,
    },
    NotFound,
}

/// Moves a failed notification back to `pending`, due now.
pub async fn retry(conn: &mut Conn, id: Uuid) -> Result<Retry, StoreError> {
    let requeued: Option<(String, Option<String>)> = diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Failed.as_str()))
        .set((
            notifications::status.eq(NotificationStatus::Pending.as_str()),
            notifications::due_at.eq(diesel::dsl::now),
        ))
        .returning((notifications::severity, notifications::user_id))
        .get_result(conn)
        .await
        .optional()?;
    if let Some((severity, user_id)) = requeued {
        return Ok(Retry::Requeued { severity, user_id });
    }
    let current: Option<String> = notifications::table
        .find(id)
        .select(notifications::status)
        .first(conn)
        .await
        .optional()?;
    Ok(match current {
        Some(status) => Retry::NotFailed { status },
        None => Retry::NotFound,
    })
}

/// Moves a pending notification's due time (held by an open circuit), so the recovery
/// sweep does not think its job was lost.
pub async fn reschedule(
    conn: &mut Conn,
    id: Uuid,
    due_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .set(notifications::due_at.eq(due_at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Holds a pending notification behind an open circuit until `due_at`, remembering
/// when the first hold began (the longest hold counts from there).
pub async fn hold(conn: &mut Conn, id: Uuid, due_at: DateTime<Utc>) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
        .set((
            notifications::due_at.eq(due_at),
            notifications::held_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("COALESCE(held_at, now())")),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
