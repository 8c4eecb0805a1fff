//! The bundling defects found in review (issue 14), each driven through the worker's
//! own routing, flush and sweep on a context that runs no loop, so every step happens
//! when the test says (a reclaimed job or a sweep routing an event again, a worker
//! dying between a carrier's delivery and settling its items).

use crate::bundling::ALWAYS_READY;
use crate::helpers::{spawn_app, TestApp, WorkerOptions};
use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

/// Never ready by itself: a bundle waits for the next midnight.
const NEVER_READY: &str = "max_per_day: 4
threshold: 0.99
weights: {bias: -20.0, tours: 0.0, sends_left: 0.0, expected_more: 0.0, since_first: 0.0,
          since_last: 0.0, span: 0.0, sent_today: 0.0, time_left: 0.0}
";

async fn context(app: &TestApp, bundling: &str) -> herald_worker::Context {
    app.worker_context(WorkerOptions {
        bundling_yaml: Some(bundling.into()),
        ..Default::default()
    })
    .await
}

/// Posts one tour told to `user`; returns the event's id.
async fn tour(app: &TestApp, user: &str, friend: &str) -> Uuid {
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([{"user_id": user, "event_type": "tour_completed",
                    "event_timestamp": "2025-10-31T10:00:00Z",
                    "properties": {"friend_id": format!("id_{friend}"), "friend_name": friend}}]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["event_ids"][0].as_str().unwrap().parse().unwrap()
}

async fn route(ctx: &herald_worker::Context, event_id: Uuid) {
    herald_worker::routing::route(ctx, event_id, None, None)
        .await
        .expect("routed");
}

#[derive(Debug, QueryableByName)]
struct BundleFacts {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    items: i32,
}

/// The person's bundles, oldest first, with their status and how many items they hold.
async fn bundles_of(app: &TestApp, user: &str) -> Vec<BundleFacts> {
    let mut conn = crate::fixtures::conn(app).await;
    diesel::sql_query(
        "SELECT b.id, b.status,
                (SELECT count(*)::int FROM notifications n WHERE n.bundle_id = b.id) AS items
         FROM bundles b WHERE b.user_id = $1 ORDER BY b.created_at, b.id",
    )
    .bind::<Text, _>(user)
    .load(&mut conn)
    .await
    .expect("bundles")
}

#[derive(Debug, QueryableByName)]
struct ItemStatus {
    #[diesel(sql_type = Text)]
    status: String,
}

async fn item_statuses(app: &TestApp, user: &str) -> Vec<String> {
    let mut conn = crate::fixtures::conn(app).await;
    diesel::sql_query("SELECT status FROM notifications WHERE user_id = $1 ORDER BY id")
        .bind::<Text, _>(user)
        .load::<ItemStatus>(&mut conn)
        .await
        .expect("items")
        .into_iter()
        .map(|i| i.status)
        .collect()
}

async fn tours_counted(app: &TestApp, bundle: Uuid) -> i32 {
    #[derive(QueryableByName)]
    struct Tours {
        #[diesel(sql_type = Integer)]
        tours: i32,
    }
    let mut conn = crate::fixtures::conn(app).await;
    diesel::sql_query("SELECT tours FROM bundles WHERE id = $1")
        .bind::<SqlUuid, _>(bundle)
        .get_result::<Tours>(&mut conn)
        .await
        .expect("bundle")
        .tours
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_a_tour_again_counts_it_once() {
    // Arrange
    let app = spawn_app().await;
    let ctx = context(&app, NEVER_READY).await;
    let event = tour(&app, "twice", "Ada").await;
    route(&ctx, event).await;

    // Act: a reclaimed job (or the sweep) routes the same event again.
    route(&ctx, event).await;

    // Assert
    let bundles = bundles_of(&app, "twice").await;
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    assert_eq!(
        (bundles[0].status.as_str(), bundles[0].items),
        ("pending", 1)
    );
    assert_eq!(
        tours_counted(&app, bundles[0].id).await,
        1,
        "one tour, counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_the_tour_of_a_sent_bundle_again_leaves_no_empty_bundle() {
    // Arrange: the tour's bundle is sent.
    let app = spawn_app().await;
    let ctx = context(&app, ALWAYS_READY).await;
    let event = tour(&app, "resent", "Ada").await;
    route(&ctx, event).await;
    let sent = bundles_of(&app, "resent").await[0].id;
    herald_worker::bundling::flush(&ctx, sent)
        .await
        .expect("flush");
    assert_eq!(bundles_of(&app, "resent").await[0].status, "sent");

    // Act
    route(&ctx, event).await;

    // Assert: no new pending bundle without items (which the sweep would flush every
    // pass, forever: its flush finds nothing to send and leaves it pending).
    let bundles = bundles_of(&app, "resent").await;
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    assert_eq!(bundles[0].status, "sent");
    let mut conn = crate::fixtures::conn(&app).await;
    let overdue = herald_store::bundles::overdue(
        &mut conn,
        chrono::Utc::now() + chrono::Duration::days(2),
        10,
    )
    .await
    .expect("overdue bundles");
    assert!(
        overdue.is_empty(),
        "nothing for the sweep to flush: {overdue:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_settles_the_items_of_a_bundle_whose_carrier_was_delivered() {
    // Arrange: two tours in one bundle, sent; the carrier was delivered and the
    // worker died before the other item took its status.
    let app = spawn_app().await;
    let ctx = context(&app, NEVER_READY).await;
    for friend in ["Ada", "Bo"] {
        let event = tour(&app, "stranded", friend).await;
        route(&ctx, event).await;
    }
    let bundle = bundles_of(&app, "stranded").await[0].id;
    let mut conn = crate::fixtures::conn(&app).await;
    diesel::sql_query(
        "WITH carrier AS (SELECT min(id::text)::uuid AS id FROM notifications WHERE bundle_id = $1),
              b AS (UPDATE bundles SET status = 'sent', sent_at = now(),
                           notification_id = (SELECT id FROM carrier) WHERE id = $1)
         UPDATE notifications SET status = 'sent', sent_at = now()
         WHERE id = (SELECT id FROM carrier)",
    )
    .bind::<SqlUuid, _>(bundle)
    .execute(&mut conn)
    .await
    .expect("the state a dead worker leaves");
    assert_eq!(item_statuses(&app, "stranded").await, ["sent", "bundled"]);

    // Act
    herald_worker::maintenance::sweep(&ctx)
        .await
        .expect("sweep");

    // Assert
    assert_eq!(item_statuses(&app, "stranded").await, ["sent", "sent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_put_off_by_the_cap_stores_its_new_instant_for_the_sweep() {
    // Arrange: four bundles sent today, a fifth tour waits for tomorrow; its stored
    // ready instant is in the past, as when its flush was scheduled before the cap
    // was spent.
    let app = spawn_app().await;
    let ctx = context(&app, ALWAYS_READY).await;
    for i in 0..4 {
        let event = tour(&app, "capped", &format!("f{i}")).await;
        route(&ctx, event).await;
        let pending = bundles_of(&app, "capped").await;
        let last = pending.last().expect("a bundle");
        herald_worker::bundling::flush(&ctx, last.id)
            .await
            .expect("flush");
    }
    let event = tour(&app, "capped", "f4").await;
    route(&ctx, event).await;
    let waiting = bundles_of(&app, "capped").await;
    assert_eq!(
        waiting
            .iter()
            .map(|b| b.status.as_str())
            .collect::<Vec<_>>(),
        ["sent", "sent", "sent", "sent", "pending"]
    );
    let deferred = waiting[4].id;
    let mut conn = crate::fixtures::conn(&app).await;
    diesel::sql_query("UPDATE bundles SET ready_at = now() - interval '1 hour' WHERE id = $1")
        .bind::<SqlUuid, _>(deferred)
        .execute(&mut conn)
        .await
        .expect("an old ready instant");

    // Act: the flush finds the cap spent and puts the bundle off.
    herald_worker::bundling::flush(&ctx, deferred)
        .await
        .expect("flush");

    // Assert: the new instant is stored, so the sweep does not take it for a lost
    // flush (and re-flush it every pass) until then.
    let overdue = herald_store::bundles::overdue(&mut conn, chrono::Utc::now(), 10)
        .await
        .expect("overdue bundles");
    assert!(
        !overdue.iter().any(|(id, _)| *id == deferred),
        "the deferred bundle is polled"
    );
    assert_eq!(bundles_of(&app, "capped").await[4].status, "pending");
}
