//! Strict input with helpful errors: unknown fields are refused (with the closest
//! known name) on every body, events no rule handles are accepted but listed as
//! `unrouted`, the single-membership route says which of topic or person is unknown,
//! a bad level names `level`, a non-JSON Content-Type is a 415, and a person's fields
//! and an event's free-form JSON stay within their limits.

use crate::helpers::{spawn_app, API_KEY};
use serde_json::{json, Value};

fn event(extra: Value) -> Value {
    let mut e = json!({"event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z",
                       "user_id": "u_1"});
    if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
        e.extend(extra);
    }
    e
}

#[tokio::test]
async fn an_event_with_an_unknown_field_is_rejected_with_the_field_it_probably_meant() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([
                {"user_Id": "u_1", "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z"},
                event(json!({"propertys": {"a": 1}})),
                event(json!({"event_id": "alert:33cbb18c-3e9d-4acc-9667-2fbe7bf29137"})),
                event(json!({})),
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    let rejected = &body["rejected"];
    assert_eq!(
        rejected[0],
        json!({"index": 0, "field": "user_Id",
               "error": "unknown field \"user_Id\"; did you mean \"user_id\"?"})
    );
    assert_eq!(
        rejected[1]["error"],
        "unknown field \"propertys\"; did you mean \"properties\"?"
    );
    assert_eq!(rejected[2]["field"], "event_id", "{body}");
}

#[tokio::test]
async fn every_body_refuses_unknown_fields_the_same_way() {
    let app = spawn_app().await;
    assert_eq!(app.put("/api/v1/users/ana", json!({})).await.0, 201);
    assert_eq!(app.put("/api/v1/topics/shop", json!({})).await.0, 201);
    for (path, body, field, meant) in [
        (
            "/api/v1/users/ana",
            json!({"emial": "a@example.com"}),
            "emial",
            "email",
        ),
        (
            "/api/v1/users/ana/preferences",
            json!({"levle": "critical"}),
            "levle",
            "level",
        ),
        (
            "/preferences",
            json!({"user_id": "ana", "Level": "CRITICAL"}),
            "Level",
            "level",
        ),
        (
            "/api/v1/users/ana/subscriptions/x.y",
            json!({"enable": true}),
            "enable",
            "enabled",
        ),
        (
            "/api/v1/topics/shop/members",
            json!({"user_id": ["ana"]}),
            "user_id",
            "user_ids",
        ),
    ] {
        let (status, answer) = app.put(path, body).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], field,
            "{path}: {answer}"
        );
        assert_eq!(
            answer["error"]["message"],
            format!("unknown field \"{field}\"; did you mean \"{meant}\"?"),
            "{path}"
        );
    }
    let (status, answer) = app
        .post(
            "/webhooks/receipts",
            json!([{"notification_id": uuid::Uuid::new_v4(), "satus": "opened"}]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rejected"][0]["error"],
        "unknown field \"satus\"; did you mean \"status\"?"
    );
}

#[tokio::test]
async fn events_no_rule_handles_are_accepted_and_listed_as_unrouted() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([
                event(json!({})),
                event(json!({"event_type": "signup_complete"})),
                event(json!({"event_type": "bad type"})),
                event(json!({"event_type": "nobody.listens"})),
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 3, "{body}");
    assert_eq!(body["unrouted"], json!([1, 3]), "{body}");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("herald_events_unrouted_total 2"),
        "{metrics}"
    );
}

async fn metrics_text(app: &crate::helpers::TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_membership_names_which_of_topic_and_person_is_unknown() {
    let app = spawn_app().await;
    assert_eq!(app.put("/api/v1/users/ana", json!({})).await.0, 201);
    assert_eq!(app.put("/api/v1/topics/shop", json!({})).await.0, 201);
    for (path, says) in [
        (
            "/api/v1/topics/nowhere/members/ana",
            "unknown topic \"nowhere\": create it first",
        ),
        (
            "/api/v1/topics/shop/members/nobody",
            "unknown user \"nobody\": create them first",
        ),
        (
            "/api/v1/topics/nowhere/members/nobody",
            "unknown topic \"nowhere\" and unknown user \"nobody\"",
        ),
    ] {
        let (status, body) = app.put(path, json!({})).await;
        assert_eq!(status, 404, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(says), "{path}: {message}");
    }
    assert_eq!(
        app.put("/api/v1/topics/shop/members/ana", json!({}))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn a_bad_level_is_a_400_naming_the_level_field() {
    let app = spawn_app().await;
    assert_eq!(app.put("/api/v1/users/ana", json!({})).await.0, 201);
    for (path, body) in [
        ("/preferences", json!({"user_id": "ana", "level": "URGENT"})),
        ("/api/v1/users/ana/preferences", json!({"level": "urgent"})),
        ("/api/v1/users/ana", json!({"level": "loud"})),
    ] {
        let (status, answer) = app.put(path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], "level",
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_body_sent_as_anything_but_json_is_a_415_naming_application_json() {
    let app = spawn_app().await;
    let body = serde_json::to_string(&event(json!({}))).expect("JSON");
    for (content_type, want) in [
        (Some("text/plain"), 415),
        (Some("application/x-www-form-urlencoded"), 415),
        (Some("application/json; charset=utf-8"), 202),
        (Some("application/vnd.api+json"), 202),
        (None, 202),
    ] {
        let mut req = app
            .client
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_KEY)
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("answer");
        assert_eq!(resp.status().as_u16(), want, "{content_type:?}");
        if want == 415 {
            let err: Value = resp.json().await.expect("JSON");
            assert_eq!(err["error"]["code"], "unsupported_media_type");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("application/json"), "{message}");
        }
    }
}

#[tokio::test]
async fn person_fields_and_free_form_json_stay_within_their_limits() {
    let app = spawn_app().await;
    let deep = (0..40).fold(json!(1), |inner, _| json!({ "a": inner }));
    let long_url = format!("https://hooks.example.com/{}", "a".repeat(2048));
    for (body, field) in [
        (json!({"email": "not-an-address"}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(250))}),
            "email",
        ),
        (json!({"phone": "0151 1234567"}), "phone"),
        (json!({"webhook_url": long_url}), "webhook_url"),
        (
            json!({"webhook_url": "https://user:pw@hooks.example.com/"}),
            "webhook_url",
        ),
        (
            json!({"webhook_url": "ftp://hooks.example.com/"}),
            "webhook_url",
        ),
        (json!({"timezone": "Europe/Atlantis"}), "timezone"),
        (json!({"traits": {"bio": "x".repeat(70_000)}}), "traits"),
        (json!({"traits": {"deep": deep.clone()}}), "traits"),
    ] {
        let (status, answer) = app.put("/api/v1/users/ana", body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["details"][0]["field"], field, "{answer}");
    }
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([
                event(json!({"properties": {"deep": deep}})),
                event(json!({"user_traits": {"bio": "x".repeat(70_000)}}))
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["rejected"][0]["field"], "properties");
    assert_eq!(body["rejected"][1]["field"], "user_traits");
    let (status, _) = app
        .put(
            "/api/v1/users/ana",
            json!({"email": "ana@example.com", "phone": "+4915112345678", "timezone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(status, 201);
}
