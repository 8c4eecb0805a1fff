//! `GET /api/v1/users/{user_id}/stream` (issue 8): a person's notification changes
//! as Server-Sent Events, numbered per person, resumable with `Last-Event-ID`.

use crate::fixtures;
use crate::helpers::{
    redis_url, spawn_app, spawn_app_with_settings, spawn_app_with_worker, TestApp, API_KEY,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// One parsed SSE event.
#[derive(Debug, Clone)]
struct Event {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// A stream being read, event by event.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next event (comments skipped), or None when nothing comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            match timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(e)) => panic!("the stream broke: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// The next event, which must come within `wait`.
    async fn expect(&mut self, wait: Duration, what: &str) -> Event {
        match self.next(wait).await {
            Some(e) => e,
            None => panic!("no event within {wait:?}: expected {what}"),
        }
    }
}

/// An event block without an `event:` field is a comment-only block (keep-alive).
fn parse_block(block: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    Some(Event {
        id,
        event: event?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

async fn open(app: &TestApp, user_id: &str, last_event_id: Option<i64>) -> Sse {
    let mut req = app
        .client
        .get(app.url(&format!("/api/v1/users/{user_id}/stream")))
        .bearer_auth(API_KEY);
    if let Some(n) = last_event_id {
        req = req.header("Last-Event-ID", n.to_string());
    }
    let resp = req.send().await.expect("stream opened");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    Sse {
        resp,
        buf: String::new(),
    }
}

/// Creates `user_id` following `test_scenario.created` in their inbox (in_app).
async fn follower(app: &TestApp, user_id: &str) {
    let (status, body) = app
        .put(&format!("/api/v1/users/{user_id}"), json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .put(
            &format!("/api/v1/users/{user_id}/subscriptions/test_scenario.created"),
            json!({"enabled": true}),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
}

async fn publish_scenario(app: &TestApp, n: u32) {
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([{"event_type": "test_scenario.created",
                    "event_timestamp": "2025-11-20T10:00:00Z",
                    "properties": {"test_scenario_id": n}}]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_notification_and_its_read_mark_arrive_on_the_stream() {
    // Arrange
    let app = spawn_app_with_worker().await;
    follower(&app, "ada").await;
    let mut sse = open(&app, "ada", None).await;

    // Act: an event routed by the worker to ada's inbox.
    publish_scenario(&app, 1).await;

    // Assert: created, already sent (in_app goes to the inbox at once), numbered 1.
    let created = sse.expect(WAIT, "the notification's creation").await;
    assert_eq!(created.event, "notification");
    assert_eq!(created.id, Some(1), "{created:?}");
    assert_eq!(created.data["seq"], 1);
    assert_eq!(created.data["kind"], "created");
    assert_eq!(created.data["status"], "sent");
    assert_eq!(created.data["notification_type"], "TEST_SCENARIO_CREATED");
    assert_eq!(created.data["channel"], "in_app");
    assert!(created.data["text"].is_string(), "{created:?}");
    assert!(created.data["read_at"].is_null(), "{created:?}");
    let id = created.data["id"]
        .as_str()
        .expect("notification id")
        .to_string();

    // Act: the person reads it.
    let started = Instant::now();
    let (status, body) = app
        .post(
            &format!("/api/v1/users/ada/notifications/{id}/read"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Assert: well within a second, thanks to the Redis signal.
    let read = sse.expect(WAIT, "the read mark").await;
    assert_eq!((read.id, &read.data["kind"]), (Some(2), &json!("read")));
    assert_eq!(read.data["id"], json!(id));
    assert!(read.data["read_at"].is_string(), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn resuming_with_last_event_id_replays_what_was_missed() {
    // Arrange: three notifications (three changes) before anyone listens.
    let app = spawn_app().await;
    fixtures::people(&app, &["bea"]).await;
    let event = fixtures::event(&app, "x", Some("bea")).await;
    let ids = fixtures::insert(
        &app,
        &[
            fixtures::row(event, "bea", "ONE"),
            fixtures::row(event, "bea", "TWO"),
            fixtures::row(event, "bea", "THREE"),
        ],
    )
    .await;

    // Act + Assert: without Last-Event-ID, only new changes come.
    let mut fresh = open(&app, "bea", None).await;
    assert!(fresh.next(Duration::from_millis(1500)).await.is_none());
    drop(fresh);

    // From 0: all three, in order.
    let mut from_zero = open(&app, "bea", Some(0)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(from_zero.expect(WAIT, "a replayed change").await);
    }
    let numbers: Vec<Option<i64>> = seen.iter().map(|e| e.id).collect();
    assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
    let types: Vec<&Value> = seen.iter().map(|e| &e.data["notification_type"]).collect();
    assert_eq!(types, [&json!("ONE"), &json!("TWO"), &json!("THREE")]);
    drop(from_zero);

    // While disconnected: read-all marks the three (changes 4, 5, 6).
    let (status, body) = app
        .post("/api/v1/users/bea/notifications/read-all", json!({}))
        .await;
    assert_eq!((status, &body["marked"]), (200, &json!(3)), "{body}");

    // Resume after 3 (header), then after 5 (query parameter).
    let mut resumed = open(&app, "bea", Some(3)).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(resumed.expect(WAIT, "a missed change").await);
    }
    assert_eq!(
        replayed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [Some(4), Some(5), Some(6)]
    );
    assert!(replayed.iter().all(|e| e.data["kind"] == "read"));
    let mut marked: Vec<String> = replayed
        .iter()
        .filter_map(|e| e.data["id"].as_str().map(String::from))
        .collect();
    marked.sort();
    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(marked, expected);
    drop(resumed);

    let resp = app
        .client
        .get(app.url("/api/v1/users/bea/stream?last_event_id=5"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent");
    let mut by_query = Sse {
        resp,
        buf: String::new(),
    };
    let only = by_query.expect(WAIT, "change 6").await;
    assert_eq!(only.id, Some(6));
}

#[tokio::test]
async fn a_number_the_person_never_reached_resets_and_a_bad_one_is_refused() {
    let app = spawn_app().await;
    fixtures::people(&app, &["cy"]).await;

    let mut sse = open(&app, "cy", Some(40)).await;
    let reset = sse.expect(WAIT, "a reset").await;
    assert_eq!((reset.event.as_str(), reset.id), ("reset", Some(0)));

    for bad in ["-1", "abc"] {
        let resp = app
            .client
            .get(app.url("/api/v1/users/cy/stream"))
            .bearer_auth(API_KEY)
            .header("Last-Event-ID", bad)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }
    let (status, body) = app.get("/api/v1/users/nobody/stream").await;
    assert_eq!(status, 404, "{body}");
    // Ids no person can have: refused (by the NUL guard or the stream) as a 4xx.
    let long = "x".repeat(129);
    for bad in ["a%00b", "%FF%FE", "tab%09here", long.as_str()] {
        let (status, body) = app.get(&format!("/api/v1/users/{bad}/stream")).await;
        assert!((400..500).contains(&status), "{bad}: {status} {body}");
    }
}

#[tokio::test]
async fn the_key_may_come_as_access_token_since_event_source_sends_no_headers() {
    let app = spawn_app().await;
    fixtures::people(&app, &["dee"]).await;
    let get = |path: String| {
        let client = app.client.clone();
        async move { client.get(path).send().await.expect("sent") }
    };

    let ok = get(app.url(&format!("/api/v1/users/dee/stream?access_token={API_KEY}"))).await;
    assert_eq!(ok.status().as_u16(), 200);
    drop(ok);
    let wrong = get(app.url("/api/v1/users/dee/stream?access_token=nope")).await;
    assert_eq!(wrong.status().as_u16(), 401);
    let none = get(app.url("/api/v1/users/dee/stream")).await;
    assert_eq!(none.status().as_u16(), 401);
    // Only the stream takes a key in its URL.
    let elsewhere = get(app.url(&format!("/api/v1/users/dee?access_token={API_KEY}"))).await;
    assert_eq!(elsewhere.status().as_u16(), 401);
}

#[tokio::test]
async fn another_persons_changes_do_not_leak_and_private_ones_are_not_streamed() {
    // Arrange
    let app = spawn_app().await;
    fixtures::people(&app, &["eve", "fay"]).await;
    let mut eve = open(&app, "eve", None).await;
    let mut fay = open(&app, "fay", None).await;

    // Act: a notification for fay, and a private (operators') one about eve.
    let event = fixtures::event(&app, "x", Some("fay")).await;
    let mut private = fixtures::row(event, "eve", "HIGH_RISK_ALERT");
    private.private = true;
    fixtures::insert(&app, &[fixtures::row(event, "fay", "FOR_FAY"), private]).await;
    app.changes.announce(&["eve", "fay"]);

    // Assert
    let got = fay.expect(WAIT, "fay's notification").await;
    assert_eq!(got.data["notification_type"], "FOR_FAY");
    assert!(
        eve.next(Duration::from_millis(2500)).await.is_none(),
        "eve's stream shows nothing of fay's and nothing private"
    );
}

#[tokio::test]
async fn changes_made_behind_the_apis_back_arrive_by_the_slow_recheck() {
    // No announcement at all (a psql session, or one lost while Redis restarted): the
    // stream's re-check (30 s by default, 1 s here) still finds the change.
    let app = spawn_app_with_settings(|s| s.streams.recheck = Duration::from_secs(1)).await;
    fixtures::people(&app, &["gus"]).await;
    let mut sse = open(&app, "gus", None).await;
    let event = fixtures::event(&app, "x", Some("gus")).await;
    fixtures::insert(&app, &[fixtures::row(event, "gus", "QUIET")]).await;
    let got = sse
        .expect(Duration::from_secs(3), "the unannounced change")
        .await;
    assert_eq!(got.data["notification_type"], "QUIET");
}

/// Waits until the api's change hub has its Redis subscription.
async fn hub_live(app: &TestApp) {
    app.wait_for("the change hub subscribed", WAIT, || async {
        app.state.hub.is_live().then_some(())
    })
    .await;
}

fn stream_reads(app: &TestApp) -> u64 {
    app.state
        .stream_reads
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_subscription_and_idle_streams_send_no_query() {
    // Arrange: ten streams, six of kim's and four of lou's, on one api process.
    let app = spawn_app().await;
    fixtures::people(&app, &["kim", "lou"]).await;
    let event = fixtures::event(&app, "x", Some("kim")).await;
    hub_live(&app).await;
    let mut kims = Vec::new();
    for _ in 0..6 {
        kims.push(open(&app, "kim", None).await);
    }
    let mut lous = Vec::new();
    for _ in 0..4 {
        lous.push(open(&app, "lou", None).await);
    }
    // Each stream reads the log once as it starts.
    app.wait_for("the first reads", WAIT, || async {
        (stream_reads(&app) == 10).then_some(())
    })
    .await;

    // Assert: one subscription serves them all. PUBLISH answers how many connections
    // received the message: the api's one hub (one per stream before issue 15), and
    // nobody subscribes to the person's own channel.
    let mut redis = redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(app.changes.channel("nobody-watches"))
        .arg("1")
        .query_async(&mut redis)
        .await
        .expect("PUBLISH");
    assert_eq!(receivers, 1, "one pub/sub connection for ten streams");
    let (_, per_channel): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(app.changes.channel("kim"))
        .query_async(&mut redis)
        .await
        .expect("NUMSUB");
    assert_eq!(per_channel, 0);
    assert_eq!(app.state.hub.watched_people(), 2);

    // Assert: idle streams send no query (the re-check is 30 s away).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stream_reads(&app), 10, "idle streams read nothing");

    // Act: a notification written behind the api's back (not announced), then read
    // through the api (announced).
    let ids = fixtures::insert(&app, &[fixtures::row(event, "kim", "FOR_KIM")]).await;
    let started = tokio::time::Instant::now();
    let (status, body) = app
        .post(
            &format!("/api/v1/users/kim/notifications/{}/read", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Assert: every stream of kim's gets both changes at once, by one read each; lou's
    // streams read nothing.
    for sse in &mut kims {
        let created = sse.expect(WAIT, "the creation").await;
        let read = sse.expect(WAIT, "the read mark").await;
        assert_eq!((created.id, read.id), (Some(1), Some(2)));
        assert_eq!(read.data["kind"], "read");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for sse in &mut lous {
        assert!(sse.next(Duration::from_millis(200)).await.is_none());
    }
    assert_eq!(stream_reads(&app), 16, "one read per stream of kim's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_may_hold_a_hundred_streams_and_the_next_gets_429() {
    // Arrange: the default limit; a second key with the read scope.
    let other_key = "other-read-key";
    let app = spawn_app_with_settings(|s| s.api_keys.push(format!("read:{other_key}"))).await;
    fixtures::people(&app, &["max"]).await;
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(open(&app, "max", None).await);
    }
    let try_open = |key: &'static str| {
        let req = app
            .client
            .get(app.url("/api/v1/users/max/stream"))
            .bearer_auth(key);
        async move { req.send().await.expect("sent") }
    };

    // Act + Assert: the 101st of this key is refused, naming the limit.
    let refused = try_open(API_KEY).await;
    assert_eq!(refused.status().as_u16(), 429);
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("100") && message.contains("HERALD_MAX_STREAMS_PER_KEY"),
        "{message}"
    );

    // Another key has slots of its own.
    let other = try_open(other_key).await;
    assert_eq!(other.status().as_u16(), 200);
    drop(other);

    // A stream that closes gives its slot back.
    held.pop();
    app.wait_for("the slot given back", WAIT, || async {
        (app.state.stream_slots.open_streams() == 99).then_some(())
    })
    .await;
    let again = try_open(API_KEY).await;
    assert_eq!(again.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_api_process_streams_what_the_first_one_changed() {
    // Arrange: another api on the same Postgres and Redis prefix (another process
    // behind the load balancer, as far as the stream can tell).
    let app = spawn_app().await;
    fixtures::people(&app, &["hal"]).await;
    let event = fixtures::event(&app, "x", Some("hal")).await;
    let ids = fixtures::insert(&app, &[fixtures::row(event, "hal", "SHARED")]).await;
    let settings = herald_api::Settings {
        database_url: app.db.url.clone(),
        database_read_url: None,
        redis_url: redis_url(),
        redis_prefix: app.queue.keys().prefix().to_string(),
        partitions: Default::default(),
        config_dir: crate::helpers::config_dir(),
        api_keys: vec![API_KEY.to_string()],
        allowed_targets: herald_core::targets::AllowedTargets::parse("127.0.0.0/8")
            .expect("valid CIDR"),
        db_pool_size: 2,
        rate_limit_per_s: None,
        receipts_secret: None,
        client_ip_header: None,
        streams: Default::default(),
        metrics_key: None,
    };
    let state = herald_api::build_state(&settings).await.expect("state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let other = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(herald_api::run(state, listener).expect("server"));
    let resp = app
        .client
        .get(format!("{other}/api/v1/users/hal/stream"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("stream");
    let mut sse = Sse {
        resp,
        buf: String::new(),
    };

    // Act: read through the first api.
    let (status, _) = app
        .post(
            &format!("/api/v1/users/hal/notifications/{}/read", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // Assert
    let got = sse.expect(WAIT, "the read mark, via the other api").await;
    assert_eq!((&got.data["kind"], got.id), (&json!("read"), Some(2)));
}

#[tokio::test]
async fn a_client_that_disconnects_releases_its_watch_and_slot() {
    let app = spawn_app().await;
    fixtures::people(&app, &["ivy"]).await;

    let sse = open(&app, "ivy", None).await;
    assert_eq!(app.state.hub.watched_people(), 1);
    assert_eq!(app.state.stream_slots.open_streams(), 1);
    let metrics = metrics_text(&app).await;
    assert!(metrics.contains("herald_sse_streams 1"), "{metrics}");

    drop(sse);
    app.wait_for("the stream released", Duration::from_secs(20), || async {
        let released =
            app.state.hub.watched_people() == 0 && app.state.stream_slots.open_streams() == 0;
        released.then_some(())
    })
    .await;
    let metrics = metrics_text(&app).await;
    assert!(metrics.contains("herald_sse_streams 0"), "{metrics}");
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}

/// The log's numbers stay dense and ordered per person under concurrent writers, and
/// statements touching the same people in opposite orders do not deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_numbers_are_dense_and_ordered_under_concurrent_writers() {
    let app = spawn_app().await;
    let people = ["p_a", "p_b", "p_c", "p_d"];
    fixtures::people(&app, &people).await;
    let event = fixtures::event(&app, "x", None).await;
    let pool = herald_store::connect(&app.db.url, 8).expect("pool");

    // 8 writers x 10 statements, each inserting one row for every person, in an order
    // that differs per writer; then the same rows updated in the reverse order.
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = herald_store::pool::get(&pool).await.expect("conn");
            let mut ids = Vec::new();
            for s in 0..10 {
                let mut order = people.to_vec();
                order.rotate_left((w + s) % people.len());
                if w % 2 == 1 {
                    order.reverse();
                }
                let rows: Vec<_> = order
                    .iter()
                    .map(|p| fixtures::row(event, p, &format!("T_{w}_{s}")))
                    .collect();
                ids.extend(rows.iter().map(|r| r.id));
                herald_store::notifications::insert_batch(&mut conn, &rows)
                    .await
                    .expect("insert");
            }
            ids.reverse();
            let receipts: Vec<_> = ids
                .iter()
                .map(|id| herald_store::receipts::Receipt {
                    notification_id: *id,
                    kind: herald_store::receipts::ReceiptKind::Delivered,
                    at: chrono::Utc::now(),
                })
                .collect();
            for chunk in receipts.chunks(7) {
                herald_store::receipts::apply(&mut conn, chunk)
                    .await
                    .expect("receipts applied without deadlock");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }

    let mut conn = fixtures::conn(&app).await;
    for p in people {
        let all = herald_store::changes::after(&mut conn, p, 0, 1000)
            .await
            .expect("log");
        // 80 notifications per person: created and delivered each.
        let numbers: Vec<i64> = all.iter().map(|c| c.seq).collect();
        assert_eq!(numbers, (1..=160).collect::<Vec<i64>>(), "{p}");
        let position = herald_store::changes::position(&mut conn, p)
            .await
            .expect("position");
        assert_eq!(position, Some(160));
        // Each notification's delivery comes after its creation.
        for c in all.iter().filter(|c| c.kind == "delivered") {
            let created = all
                .iter()
                .find(|x| x.id == c.id && x.kind == "created")
                .expect("created first");
            assert!(created.seq < c.seq);
        }
    }

    // Deleting a person takes their log along.
    let (status, _) = app
        .send(reqwest::Method::DELETE, "/api/v1/users/p_a", None)
        .await;
    assert_eq!(status, 204);
    let left = herald_store::changes::after(&mut conn, "p_a", 0, 10)
        .await
        .expect("log");
    assert!(left.is_empty());
    assert_eq!(
        herald_store::changes::position(&mut conn, "p_a")
            .await
            .expect("position"),
        None
    );
}

#[tokio::test]
async fn resuming_from_pruned_changes_says_reset_then_streams_what_is_kept() {
    // Arrange: changes 1-3, pruned (as the retention job does), then change 4.
    let app = spawn_app().await;
    fixtures::people(&app, &["jo"]).await;
    let event = fixtures::event(&app, "x", Some("jo")).await;
    fixtures::insert(
        &app,
        &[
            fixtures::row(event, "jo", "OLD_1"),
            fixtures::row(event, "jo", "OLD_2"),
            fixtures::row(event, "jo", "OLD_3"),
        ],
    )
    .await;
    let mut conn = fixtures::conn(&app).await;
    let cutoff = chrono::Utc::now() + chrono::Duration::seconds(1);
    let pruned = herald_store::changes::prune(&mut conn, cutoff, 2)
        .await
        .expect("prune");
    assert_eq!(pruned, 2, "one batch at a time");
    let pruned = herald_store::changes::prune(&mut conn, cutoff, 2)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    fixtures::insert(&app, &[fixtures::row(event, "jo", "NEW_4")]).await;

    // Act: a client last saw change 1.
    let mut sse = open(&app, "jo", Some(1)).await;

    // Assert: told to reload (its id moves the client past the hole), then change 4.
    let reset = sse.expect(WAIT, "a reset").await;
    assert_eq!(
        (reset.event.as_str(), reset.id),
        ("reset", Some(3)),
        "{reset:?}"
    );
    let next = sse.expect(WAIT, "change 4").await;
    assert_eq!(
        (next.id, &next.data["notification_type"]),
        (Some(4), &json!("NEW_4"))
    );
}
