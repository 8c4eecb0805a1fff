//! Routing hands a fresh delivery to the worker's own job slots (`hand_off`): into a
//! free slot at once, else into the list the routing job works off in its own slot;
//! once the slots are closed (the worker drains) it goes to the streams as before.
//! Routing runs on a context whose slots the test lends, so each case is set exactly.

use crate::critical_queue::jobs_on;
use crate::helpers::{alert, spawn_app, TestApp, WorkerOptions};
use herald_queue::QueueName;
use herald_worker::Context;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

/// An app whose shop has one critical member and whose provider answers 200, and a
/// worker context with `slots` lent to its hand-off; no worker loop runs.
async fn app_lending(slots: Arc<Semaphore>) -> (TestApp, Arc<Context>) {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    app.put("/api/v1/topics/Carrefour", json!({})).await;
    let (status, body) = app
        .put(
            "/api/v1/users/crit",
            json!({"topics": ["Carrefour"], "level": "CRITICAL"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let ctx = Arc::new(app.worker_context(WorkerOptions::default()).await);
    herald_worker::consumer::lend_slots(&ctx, slots);
    (app, ctx)
}

/// Posts a theft alert and routes it on `ctx`; returns the event's id.
async fn route_theft(app: &TestApp, ctx: &Context) -> String {
    let (status, resp) = app
        .post("/webhooks/alerts", alert("Carrefour", "theft"))
        .await;
    assert_eq!(status, 202, "{resp}");
    let event_id = resp["event_id"].as_str().expect("event id").to_string();
    herald_worker::routing::route(ctx, event_id.parse().expect("uuid"), None, None)
        .await
        .expect("routed");
    event_id
}

/// The delivery jobs on the test's streams, both priorities.
async fn delivery_jobs(app: &TestApp) -> Vec<Value> {
    let mut jobs = jobs_on(app, QueueName::Critical).await;
    jobs.extend(jobs_on(app, QueueName::Default).await);
    jobs.retain(|job| job["kind"] == "deliver");
    jobs
}

async fn statuses(app: &TestApp, event_id: &str) -> Vec<String> {
    app.notifications_of(event_id)
        .await
        .iter()
        .map(|n| n["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_delivery_runs_in_a_free_slot_without_a_job_on_the_streams() {
    let slots = Arc::new(Semaphore::new(4));
    let (app, ctx) = app_lending(slots.clone()).await;
    let event_id = route_theft(&app, &ctx).await;
    let items = app.wait_final(&event_id, 1, Duration::from_secs(20)).await;
    assert_eq!(items[0]["status"], "sent");
    assert_eq!(app.provider.received_requests().await.unwrap().len(), 1);
    assert_eq!(delivery_jobs(&app).await, Vec::<Value>::new());
    // The slot came back once the delivery was done.
    app.wait_for("the slot back", Duration::from_secs(5), || async {
        (slots.available_permits() == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_free_slot_it_waits_for_the_routing_job_to_work_it_off() {
    let (app, ctx) = app_lending(Arc::new(Semaphore::new(0))).await;
    let event_id = route_theft(&app, &ctx).await;
    assert_eq!(statuses(&app, &event_id).await, ["pending"]);
    assert_eq!(delivery_jobs(&app).await, Vec::<Value>::new());
    assert!(app.provider.received_requests().await.unwrap().is_empty());

    // What `consumer::handle` does once the route job is acknowledged.
    herald_worker::consumer::work_off(&ctx).await;
    assert_eq!(statuses(&app, &event_id).await, ["sent"]);
    assert_eq!(app.provider.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_slots_are_closed_it_goes_to_the_stream() {
    let slots = Arc::new(Semaphore::new(4));
    let (app, ctx) = app_lending(slots.clone()).await;
    slots.close();
    let event_id = route_theft(&app, &ctx).await;
    let pending = app.notifications_of(&event_id).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["status"], "pending");
    let jobs = delivery_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["notification_id"], pending[0]["id"]);
    herald_worker::consumer::work_off(&ctx).await;
    assert!(app.provider.received_requests().await.unwrap().is_empty());
}
