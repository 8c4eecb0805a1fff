//! An event travels on the queue its rules' severity names, however the rule file
//! spells it: `severity: CRITICAL` puts the event's route job on the critical stream.
//! No worker runs, so the job is still on its stream when the test looks.

use crate::helpers::{config_copy_with, config_dir, redis_url, spawn_app_with_config, TestApp};
use herald_queue::QueueName;
use serde_json::{json, Value};
use std::time::Duration;

/// The shipped rules plus one rule per severity spelling under test, added at the end
/// of the `rules:` list (the file goes on with its `alerts:` section).
fn rules_with_capitalized_severities() -> String {
    let shipped = std::fs::read_to_string(config_dir().join("rules.yml")).expect("rules.yml");
    let end_of_rules = shipped
        .find("\nalerts:")
        .expect("rules.yml has an alerts section");
    let (rules, rest) = shipped.split_at(end_of_rules);
    format!(
        "{rules}
  - notification_type: LOUD_ALERT
    event_type: loud_thing
    recipients: subject
    channel: webhook
    template: SHOP_ALERT
    severity: CRITICAL

  - notification_type: QUIET_ALERT
    event_type: quiet_thing
    recipients: subject
    channel: webhook
    template: SHOP_ALERT
    severity: Standard
{rest}"
    )
}

/// The jobs on one queue's streams (every partition's) of the test's prefix, as JSON.
pub(crate) async fn jobs_on(app: &TestApp, queue: QueueName) -> Vec<Value> {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut entries: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for partition in app.queue.partitions().all() {
        let lane = herald_queue::Lane::new(partition, queue);
        let on_lane: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(app.queue.keys().stream(lane))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        entries.extend(on_lane);
    }
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(field, _)| field == "job")
        .map(|(_, job)| serde_json::from_str(&job).expect("job JSON"))
        .collect()
}

/// Whether `jobs` hold the route job of `event_id`.
fn routes(jobs: &[Value], event_id: &str) -> bool {
    jobs.iter()
        .any(|job| job["kind"] == "route" && job["event_id"] == event_id)
}

async fn post(app: &TestApp, event_type: &str) -> String {
    let event = json!({"user_id": "u_loud", "event_type": event_type,
                       "event_timestamp": "2025-10-31T10:00:00Z", "properties": {}});
    let (status, resp) = app.post("/api/v1/events", event).await;
    assert_eq!(status, 202, "{resp}");
    resp["event_id"]
        .as_str()
        .or_else(|| resp["event_ids"][0].as_str())
        .expect("event id")
        .to_string()
}

#[tokio::test]
async fn an_event_whose_rule_severity_is_written_critical_travels_on_the_critical_queue() {
    let dir = config_copy_with("rules.yml", &rules_with_capitalized_severities());
    let app = spawn_app_with_config(dir).await;

    let loud = post(&app, "loud_thing").await;
    let quiet = post(&app, "quiet_thing").await;

    // The api enqueues once the group commit is done; give it a moment.
    let (critical, default) = app
        .wait_for("both route jobs", Duration::from_secs(10), || async {
            let critical = jobs_on(&app, QueueName::Critical).await;
            let default = jobs_on(&app, QueueName::Default).await;
            let all: Vec<Value> = critical.iter().chain(&default).cloned().collect();
            (routes(&all, &loud) && routes(&all, &quiet)).then_some((critical, default))
        })
        .await;
    assert!(routes(&critical, &loud), "critical: {critical:?}");
    assert!(!routes(&default, &loud), "default: {default:?}");
    assert!(routes(&default, &quiet), "default: {default:?}");
    assert!(!routes(&critical, &quiet), "critical: {critical:?}");
}
