//! The store's transactions against a real Postgres: each test gets its own database
//! ([`TestDb`]), makes the people and events the foreign keys need, runs one
//! transaction and checks the rows it left. These are the guarantees the worker
//! relies on: the debounce limit holds even under concurrent calls (the per-person
//! lock), a person's items gather in one pending bundle, and a flush sends a bundle
//! once.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use herald_core::debounce::{Debounce, Period};
use herald_core::queues::QueueName;
use herald_core::routing::PlannedNotification;
use herald_core::severity::Severity;
use herald_core::status::NotificationStatus;
use herald_store::bundles::{self, BundleRow, Day, DayCounts, FlushStep, Flushed};
use herald_store::notifications::{self, NewNotification};
use herald_store::people::{self, PersonPatch};
use herald_store::schema::notifications as notifications_t;
use herald_store::testing::{insert_event, TestDb};
use herald_store::Pool;
use uuid::Uuid;

const TYPE: &str = "digest";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

/// At most one notification per person within an hour either side of the event.
fn one_per_hour() -> Debounce {
    Debounce {
        limit: 1,
        period: Period::Window(Duration::hours(1)),
    }
}

/// A fresh, migrated database and a pool on it (the database lives as long as it).
async fn database() -> (TestDb, Pool) {
    let db = TestDb::create().await.expect("test database");
    let pool = herald_store::connect(&db.url, 4).expect("pool");
    (db, pool)
}

async fn add_people(pool: &Pool, ids: &[&str]) {
    let mut conn = pool.get().await.expect("connection");
    for id in ids {
        people::upsert(&mut conn, id, &PersonPatch::default())
            .await
            .expect("person");
    }
}

/// Stores an event that happened at `when`; returns its id.
async fn add_event(pool: &Pool, when: DateTime<Utc>) -> Uuid {
    insert_event(pool, "friend_joined", when).await
}

/// The row routing plans for `user_id` from `event_id`: pending, in-app, due at once.
fn planned(event_id: Uuid, user_id: &str, due_at: DateTime<Utc>) -> PlannedNotification {
    PlannedNotification {
        event_id,
        user_id: Some(user_id.into()),
        notification_type: TYPE.into(),
        channel: "in_app".into(),
        status: NotificationStatus::Pending,
        suppression_reason: None,
        severity: Severity::Standard,
        queue: QueueName::Default,
        private: false,
        subject: None,
        text: "Ann joined".into(),
        due_at,
        hold_reason: None,
        sent_at: None,
        timezone: Tz::UTC,
    }
}

/// Routes `users`' rows of an event at `when` through the debounced insert.
async fn route_debounced(pool: &Pool, when: DateTime<Utc>, users: &[&str]) -> Uuid {
    let event_id = add_event(pool, when).await;
    let rows = users.iter().map(|u| planned(event_id, u, when)).collect();
    let mut conn = pool.get().await.expect("connection");
    notifications::insert_debounced(&mut conn, one_per_hour(), when, rows)
        .await
        .expect("debounced insert");
    event_id
}

/// `(status, suppression_reason)` of `user_id`'s row of `event_id`.
async fn outcome(pool: &Pool, event_id: Uuid, user_id: &str) -> (String, Option<String>) {
    let mut conn = pool.get().await.expect("connection");
    notifications_t::table
        .filter(notifications_t::event_id.eq(event_id))
        .filter(notifications_t::user_id.eq(user_id))
        .select((notifications_t::status, notifications_t::suppression_reason))
        .first(&mut conn)
        .await
        .expect("notification row")
}

/// `(id, status, bundle_id)` of every row of `user_id`, oldest first.
async fn items_of(pool: &Pool, user_id: &str) -> Vec<(Uuid, String, Option<Uuid>)> {
    let mut conn = pool.get().await.expect("connection");
    notifications_t::table
        .filter(notifications_t::user_id.eq(user_id))
        .order(notifications_t::id)
        .select((
            notifications_t::id,
            notifications_t::status,
            notifications_t::bundle_id,
        ))
        .load(&mut conn)
        .await
        .expect("notification rows")
}

async fn bundle(pool: &Pool, id: Uuid) -> BundleRow {
    let mut conn = pool.get().await.expect("connection");
    bundles::find(&mut conn, id)
        .await
        .expect("bundle query")
        .expect("bundle exists")
}

const NOON: &str = "2026-03-10T12:00:00Z";

fn day() -> Day {
    (at("2026-03-10T00:00:00Z"), at("2026-03-11T00:00:00Z"))
}

/// A bundle-state decision as the state machine makes it: a new bundle of one tour,
/// or the existing one with one more tour.
fn one_more_tour(existing: Option<&BundleRow>, _: DayCounts) -> BundleRow {
    let now = at(NOON);
    match existing {
        Some(b) => BundleRow {
            tours: b.tours + 1,
            last_at: now,
            ..b.clone()
        },
        None => BundleRow {
            id: Uuid::now_v7(),
            user_id: "ann".into(),
            notification_type: TYPE.into(),
            status: "pending".into(),
            first_at: now,
            last_at: now,
            tours: 1,
            first_friend: "bob".into(),
            ready_at: now + Duration::hours(1),
            sent_at: None,
            notification_id: None,
            bundle_key: String::new(),
        },
    }
}

/// Adds one bundled item for ann from a new event; returns the saved bundle.
async fn add_item_for_ann(pool: &Pool) -> BundleRow {
    let event_id = add_event(pool, at(NOON)).await;
    add_item_of(pool, event_id)
        .await
        .expect("a new item saves its bundle")
}

/// Adds ann's item of `event_id` to her bundle; the saved bundle, if the item was new.
async fn add_item_of(pool: &Pool, event_id: Uuid) -> Option<BundleRow> {
    let item = NewNotification::from(planned(event_id, "ann", at(NOON)));
    let mut conn = pool.get().await.expect("connection");
    let (_, saved) = bundles::add_item(&mut conn, item, "", day(), one_more_tour)
        .await
        .expect("add item");
    saved
}

async fn flush_ann(pool: &Pool, id: Uuid, when: DateTime<Utc>, step: FlushStep) -> Flushed {
    let mut conn = pool.get().await.expect("connection");
    bundles::flush(&mut conn, id, "ann", day(), when, move |_, _, _| step)
        .await
        .expect("flush")
}

/// Send now with `text`, due at `when`.
fn send(text: &str, when: DateTime<Utc>) -> FlushStep {
    FlushStep::Send {
        subject: None,
        text: text.into(),
        due_at: when,
        hold_reason: None,
    }
}

#[tokio::test]
async fn a_second_row_in_the_same_window_is_suppressed_with_the_debounce_reason() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let first = route_debounced(&pool, at("2026-03-10T10:00:00Z"), &["ann"]).await;

    // Act
    let second = route_debounced(&pool, at("2026-03-10T10:30:00Z"), &["ann"]).await;

    // Assert
    assert_eq!(outcome(&pool, first, "ann").await, ("pending".into(), None));
    assert_eq!(
        outcome(&pool, second, "ann").await,
        (
            "suppressed".into(),
            Some("skipped digest: already sent 1 within 1h (limit 1)".into())
        )
    );
}

#[tokio::test]
async fn one_persons_debounce_does_not_hold_back_another_person() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann", "bob"]).await;
    route_debounced(&pool, at("2026-03-10T10:00:00Z"), &["ann"]).await;

    // Act
    let second = route_debounced(&pool, at("2026-03-10T10:30:00Z"), &["ann", "bob"]).await;

    // Assert
    assert_eq!(outcome(&pool, second, "ann").await.0, "suppressed");
    assert_eq!(
        outcome(&pool, second, "bob").await,
        ("pending".into(), None)
    );
}

#[tokio::test]
async fn a_row_outside_the_window_is_not_suppressed() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    route_debounced(&pool, at("2026-03-10T10:00:00Z"), &["ann"]).await;

    // Act
    let later = route_debounced(&pool, at("2026-03-10T11:30:00Z"), &["ann"]).await;

    // Assert
    assert_eq!(outcome(&pool, later, "ann").await, ("pending".into(), None));
}

/// One event at `when` for ann, routed through the debounced insert on its own
/// connection; returns the status of the row it inserted.
async fn route_ann_on_own_connection(pool: &Pool, event_id: Uuid, when: DateTime<Utc>) -> String {
    let mut conn = pool.get().await.expect("connection");
    let rows = vec![planned(event_id, "ann", when)];
    let inserted = notifications::insert_debounced(&mut conn, one_per_hour(), when, rows)
        .await
        .expect("debounced insert");
    assert_eq!(inserted.len(), 1, "each event's row is new");
    inserted[0].status.clone()
}

#[tokio::test]
async fn concurrent_debounced_inserts_for_one_person_let_only_one_through() {
    // Arrange: four events in one window, each routed on its own connection at once
    // (without the person's lock, several of them count zero and all get through).
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let when = at("2026-03-10T10:00:00Z");
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(add_event(&pool, when).await);
    }

    // Act
    let (s1, s2, s3, s4) = tokio::join!(
        route_ann_on_own_connection(&pool, events[0], when),
        route_ann_on_own_connection(&pool, events[1], when),
        route_ann_on_own_connection(&pool, events[2], when),
        route_ann_on_own_connection(&pool, events[3], when),
    );

    // Assert
    let statuses = [s1, s2, s3, s4];
    assert_eq!(statuses.iter().filter(|s| *s == "pending").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "suppressed").count(), 3);
}

#[tokio::test]
async fn the_first_item_creates_a_pending_bundle_and_is_bundled_in_it() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;

    // Act
    let saved = add_item_for_ann(&pool).await;

    // Assert
    let stored = bundle(&pool, saved.id).await;
    assert_eq!((stored.status.as_str(), stored.tours), ("pending", 1));
    let items = items_of(&pool, "ann").await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].1.as_str(), items[0].2),
        ("bundled", Some(saved.id))
    );
}

#[tokio::test]
async fn a_second_item_joins_the_same_bundle_and_adds_a_tour() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let first = add_item_for_ann(&pool).await;

    // Act
    let second = add_item_for_ann(&pool).await;

    // Assert
    assert_eq!(second.id, first.id);
    assert_eq!(bundle(&pool, first.id).await.tours, 2);
    let items = items_of(&pool, "ann").await;
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|(_, status, b)| status == "bundled" && *b == Some(first.id)));
}

#[tokio::test]
async fn sending_a_bundle_turns_its_oldest_item_into_the_pending_carrier() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    add_item_for_ann(&pool).await;
    let saved = add_item_for_ann(&pool).await;
    let when = at("2026-03-10T13:00:00Z");
    let text = "Bob and 1 other joined".to_string();

    // Act
    let flushed = flush_ann(&pool, saved.id, when, send(&text, when)).await;

    // Assert
    let items = items_of(&pool, "ann").await;
    let (oldest, other) = (&items[0], &items[1]);
    assert_eq!(
        flushed,
        Flushed::Sent {
            carrier: oldest.0,
            severity: "standard".into(),
            user_id: "ann".into(),
            due_at: when,
        }
    );
    let sent = bundle(&pool, saved.id).await;
    assert_eq!(
        (sent.status.as_str(), sent.sent_at, sent.notification_id),
        ("sent", Some(when), Some(oldest.0))
    );
    assert_eq!(oldest.1, "pending");
    assert_eq!(other.1, "bundled", "items wait for the carrier's delivery");
    let mut conn = pool.get().await.expect("connection");
    let (carrier_text, due_at): (String, DateTime<Utc>) = notifications_t::table
        .find(oldest.0)
        .select((notifications_t::text, notifications_t::due_at))
        .first(&mut conn)
        .await
        .expect("carrier");
    assert_eq!((carrier_text, due_at), (text, when));
}

/// ann's bundle of two items, flushed and sent: its carrier and when it was sent.
async fn sent_bundle_of_two(pool: &Pool) -> (Uuid, DateTime<Utc>) {
    add_people(pool, &["ann"]).await;
    add_item_for_ann(pool).await;
    let saved = add_item_for_ann(pool).await;
    let when = at("2026-03-10T13:00:00Z");
    let Flushed::Sent { carrier, .. } = flush_ann(pool, saved.id, when, send("x", when)).await
    else {
        panic!("the bundle was not sent");
    };
    (carrier, when)
}

#[tokio::test]
async fn once_the_carrier_is_sent_the_other_items_take_its_status() {
    // Arrange
    let (_db, pool) = database().await;
    let (carrier, when) = sent_bundle_of_two(&pool).await;
    let mut conn = pool.get().await.expect("connection");
    diesel::update(notifications_t::table.find(carrier))
        .set((
            notifications_t::status.eq("sent"),
            notifications_t::sent_at.eq(Some(when)),
        ))
        .execute(&mut conn)
        .await
        .expect("carrier delivered");

    // Act
    let settled = bundles::settle_items(&mut conn, carrier)
        .await
        .expect("settle");

    // Assert
    assert_eq!(settled, 1);
    let statuses: Vec<String> = items_of(&pool, "ann")
        .await
        .into_iter()
        .map(|i| i.1)
        .collect();
    assert_eq!(statuses, ["sent", "sent"]);
}

#[tokio::test]
async fn a_bundle_flushed_for_later_stays_pending_with_its_new_ready_instant() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let saved = add_item_for_ann(&pool).await;
    let again = at("2026-03-10T15:00:00Z");

    // Act
    let flushed = flush_ann(&pool, saved.id, at(NOON), FlushStep::Later(again)).await;

    // Assert
    assert_eq!(flushed, Flushed::Later(again));
    let stored = bundle(&pool, saved.id).await;
    assert_eq!((stored.status.as_str(), stored.sent_at), ("pending", None));
    assert_eq!(
        stored.ready_at, again,
        "the sweep must not take it for a lost flush"
    );
    assert_eq!(items_of(&pool, "ann").await[0].1, "bundled");
}

#[tokio::test]
async fn flushing_an_already_sent_bundle_does_nothing() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let saved = add_item_for_ann(&pool).await;
    let first_send = at("2026-03-10T13:00:00Z");
    flush_ann(&pool, saved.id, first_send, send("x", first_send)).await;

    // Act
    let again = flush_ann(
        &pool,
        saved.id,
        at("2026-03-10T14:00:00Z"),
        send("y", at("2026-03-10T14:00:00Z")),
    )
    .await;

    // Assert
    assert_eq!(again, Flushed::Nothing);
    assert_eq!(bundle(&pool, saved.id).await.sent_at, Some(first_send));
}

#[tokio::test]
async fn an_item_routed_again_leaves_its_bundle_alone() {
    // Arrange
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let event_id = add_event(&pool, at(NOON)).await;
    let saved = add_item_of(&pool, event_id).await.expect("new item");

    // Act
    let again = add_item_of(&pool, event_id).await;

    // Assert
    assert_eq!(again, None);
    assert_eq!(bundle(&pool, saved.id).await.tours, 1);
    assert_eq!(items_of(&pool, "ann").await.len(), 1);
}

#[tokio::test]
async fn flushing_a_bundle_without_items_deletes_it() {
    // Arrange: a pending bundle whose only item went away.
    let (_db, pool) = database().await;
    add_people(&pool, &["ann"]).await;
    let saved = add_item_for_ann(&pool).await;
    let mut conn = pool.get().await.expect("connection");
    diesel::delete(notifications_t::table.filter(notifications_t::user_id.eq("ann")))
        .execute(&mut conn)
        .await
        .expect("item removed");

    // Act
    let flushed = flush_ann(&pool, saved.id, at(NOON), send("x", at(NOON))).await;

    // Assert
    assert_eq!(flushed, Flushed::Nothing);
    let gone = bundles::find(&mut conn, saved.id).await.expect("query");
    assert_eq!(
        gone, None,
        "nothing left for the sweep to flush again and again"
    );
}

#[tokio::test]
async fn the_sweep_settles_items_a_dead_worker_left_bundled() {
    // Arrange: a sent bundle whose carrier was delivered, its other item not settled.
    let (_db, pool) = database().await;
    let (carrier, _) = sent_bundle_of_two(&pool).await;
    let mut conn = pool.get().await.expect("connection");
    diesel::update(notifications_t::table.find(carrier))
        .set((
            notifications_t::status.eq("failed"),
            notifications_t::sent_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(&mut conn)
        .await
        .expect("carrier failed");

    // Act
    let settled = bundles::settle_stranded(&mut conn, 100)
        .await
        .expect("settle");

    // Assert
    assert_eq!(settled, 1);
    let statuses: Vec<String> = items_of(&pool, "ann")
        .await
        .into_iter()
        .map(|i| i.1)
        .collect();
    assert_eq!(statuses, ["failed", "failed"]);
    assert_eq!(
        bundles::settle_stranded(&mut conn, 100)
            .await
            .expect("again"),
        0
    );
}
