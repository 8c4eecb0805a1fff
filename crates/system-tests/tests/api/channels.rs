//! Reaching people for real (issue 13): mail over SMTP to the sink's receiver and to an
//! independent SMTP server (Debian's python3-aiosmtpd), SMTP reply codes, a secret per
//! webhook with its rotation, the shared channel rate, and webhook URLs kept out of
//! stored errors.

use crate::helpers::{config_copy_with, config_dir, spawn_app, TestApp, WorkerOptions};
use herald_core::signing::{verify, WebhookSecret};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// Seed 004's signup: the address comes only from the event's traits.
fn signup(user: &str) -> Value {
    json!([{"user_id": user, "event_type": "signup_completed",
            "event_timestamp": "2025-10-31T19:00:00Z", "properties": {"signup_method": "email"},
            "user_traits": {"email": "maria@example.com", "marketing_opt_in": true}}])
}

async fn post_events(app: &TestApp, events: Value) -> String {
    let (status, resp) = app.post("/api/v1/events", events).await;
    assert_eq!(status, 202, "{resp}");
    resp["event_ids"][0].as_str().expect("accepted").to_string()
}

/// The notification of `notification_type` for an event, once it is final.
async fn final_notification(app: &TestApp, event_id: &str, notification_type: &str) -> Value {
    app.wait_for(
        &format!("{notification_type} final"),
        Duration::from_secs(30),
        || async {
            app.notifications_of(event_id).await.into_iter().find(|n| {
                n["notification_type"] == notification_type
                    && matches!(n["status"].as_str(), Some("sent" | "failed"))
            })
        },
    )
    .await
}

async fn attempts_of(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["delivery_attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn ok_provider(app: &TestApp) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Debian's aiosmtpd (`apt-get install python3-aiosmtpd`), storing mails in a Maildir.
struct Aiosmtpd {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Aiosmtpd {
    fn start() -> Aiosmtpd {
        let port = free_port();
        let maildir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/test-maildir")
            .join(uuid::Uuid::new_v4().simple().to_string());
        // aiosmtpd's Mailbox creates the Maildir (and its new/, cur/, tmp/) itself,
        // but only when the directory does not exist yet.
        std::fs::create_dir_all(maildir.parent().expect("has a parent")).expect("maildir parent");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3-aiosmtpd is installed (apt-get install -y python3-aiosmtpd)");
        let server = Aiosmtpd {
            child,
            port,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The mails received so far, as raw text.
    fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// A header's value in a raw mail.
fn header(mail: &str, name: &str) -> Option<String> {
    mail.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_004_welcome_email_reaches_an_independent_smtp_server() {
    let server = Aiosmtpd::start();
    let mut app = spawn_app().await;
    ok_provider(&app).await;
    app.start_worker(WorkerOptions {
        config_env: vec![(
            "HERALD_SMTP_URL".into(),
            format!("smtp://127.0.0.1:{}", server.port),
        )],
        ..Default::default()
    });
    let event = post_events(&app, signup("u_maria")).await;
    let welcome = final_notification(&app, &event, "WELCOME_EMAIL").await;
    assert_eq!(welcome["status"], "sent", "{welcome}");
    let id = welcome["id"].as_str().unwrap();

    let mails = server.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(header(mail, "To").as_deref(), Some("maria@example.com"));
    assert_eq!(
        header(mail, "Subject").as_deref(),
        Some("Welcome to the family!")
    );
    assert_eq!(
        header(mail, "Message-ID"),
        Some(format!("<{id}@herald.localhost>"))
    );
    assert!(
        header(mail, "List-Unsubscribe").is_some_and(|v| v.contains("unsubscribe-u_maria")),
        "{mail}"
    );
    assert!(mail.contains("Thanks for signing up with email."), "{mail}");
    let attempts = attempts_of(&app, id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["http_status"], 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sinks_smtp_receives_the_mail_and_a_person_without_address_fails_untried() {
    let mut app = spawn_app().await;
    ok_provider(&app).await;
    app.start_worker(WorkerOptions::default());
    let event = post_events(&app, signup("u_1")).await;
    let welcome = final_notification(&app, &event, "WELCOME_EMAIL").await;
    assert_eq!(welcome["status"], "sent", "{welcome}");
    let mails = app.mail.records();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].path, "/smtp");
    assert_eq!(mails[0].body["rcpt_to"], json!(["maria@example.com"]));
    assert_eq!(mails[0].body["subject"], "Welcome to the family!");

    // No email anywhere: failed with `no address`, and no try was made.
    let event = post_events(
        &app,
        json!([{"user_id": "nobody", "event_type": "signup_completed",
                "event_timestamp": "2025-10-31T19:00:00Z",
                "user_traits": {"marketing_opt_in": true}}]),
    )
    .await;
    let welcome = final_notification(&app, &event, "WELCOME_EMAIL").await;
    assert_eq!(
        (welcome["status"].as_str(), welcome["last_error"].as_str()),
        (Some("failed"), Some("no address")),
        "{welcome}"
    );
    assert!(attempts_of(&app, welcome["id"].as_str().unwrap())
        .await
        .is_empty());
    assert_eq!(app.mail.records().len(), 1);
}

/// The shipped channels with a quick email backoff and two tries.
fn quick_mail_config() -> PathBuf {
    let shipped = std::fs::read_to_string(config_dir().join("channels.yml")).unwrap();
    let quick = shipped.replacen(
        "    timeout: 10s\n    max_attempts: 3\n    backoff: {initial: 3s, multiplier: 2, max: 1h}",
        "    timeout: 10s\n    max_attempts: 2\n    backoff: {initial: 200ms, multiplier: 1, max: 200ms}",
        1,
    );
    assert_ne!(quick, shipped, "the email channel's settings were found");
    config_copy_with("channels.yml", &quick)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_and_a_550_fails_at_once_with_one_attempt() {
    let mut app = spawn_app().await;
    ok_provider(&app).await;
    let dir = quick_mail_config();
    app.start_worker(WorkerOptions {
        config_dir: Some(dir),
        ..Default::default()
    });

    // 451 on the first try, then accepted: sent on the second try.
    app.mail.set_smtp_reply(Some(451));
    let event = post_events(&app, signup("u_grey")).await;
    let mail = app.mail.clone();
    app.wait_for("a first, refused try", Duration::from_secs(20), || {
        let mail = mail.clone();
        async move { (!mail.records().is_empty()).then_some(()) }
    })
    .await;
    app.mail.set_smtp_reply(None);
    let welcome = final_notification(&app, &event, "WELCOME_EMAIL").await;
    assert_eq!(welcome["status"], "sent", "{welcome}");
    let attempts = attempts_of(&app, welcome["id"].as_str().unwrap()).await;
    let codes: Vec<(&Value, &Value)> = attempts
        .iter()
        .map(|a| (&a["http_status"], &a["outcome"]))
        .collect();
    assert_eq!(
        codes,
        [
            (&json!(451), &json!("retry")),
            (&json!(250), &json!("success"))
        ]
    );

    // 550: failed after one try.
    app.mail.set_smtp_reply(Some(550));
    let event = post_events(&app, signup("u_refused")).await;
    let welcome = final_notification(&app, &event, "WELCOME_EMAIL").await;
    assert_eq!(welcome["status"], "failed", "{welcome}");
    let attempts = attempts_of(&app, welcome["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["http_status"], 550);
    assert_eq!(attempts[0]["outcome"], "permanent_failure");
}

/// Posts a theft at `shop` and returns the notification once final.
async fn theft_at(app: &TestApp, shop: &str) -> Value {
    let (status, resp) = app
        .post("/webhooks/alerts", crate::helpers::alert(shop, "theft"))
        .await;
    assert_eq!(status, 202, "{resp}");
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    items[0].clone()
}

/// Which of `secrets` verify the request delivering notification `id`.
async fn verifying(app: &TestApp, id: &str, secrets: &[&str]) -> Vec<bool> {
    let requests = app.provider.received_requests().await.unwrap();
    let req = requests
        .iter()
        .find(|r| r.headers.get("webhook-id").and_then(|v| v.to_str().ok()) == Some(id))
        .expect("the delivery arrived");
    let get = |name: &str| req.headers.get(name).unwrap().to_str().unwrap().to_string();
    let ts: i64 = get("webhook-timestamp").parse().unwrap();
    secrets
        .iter()
        .map(|s| {
            verify(
                &WebhookSecret::parse(s).unwrap(),
                id,
                ts,
                &req.body,
                &get("webhook-signature"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_webhook_secret_signs_beside_the_new_one_only_during_the_overlap() {
    let mut app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/hooks/ada"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    app.put("/api/v1/topics/Lidl", json!({})).await;
    let hook = format!("{}/hooks/ada", app.provider.uri());
    let (status, person) = app
        .put(
            "/api/v1/users/ada",
            json!({"topics": ["Lidl"], "webhook_url": hook}),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let first = person["webhook_secret"]
        .as_str()
        .expect("issued once")
        .to_string();
    assert!(first.starts_with("whsec_"));
    // Never shown again: not on a second PUT, not on GET.
    let (_, again) = app
        .put("/api/v1/users/ada", json!({"webhook_url": hook}))
        .await;
    assert!(again.get("webhook_secret").is_none(), "{again}");
    let (_, shown) = app.get("/api/v1/users/ada").await;
    assert!(shown.get("webhook_secret").is_none(), "{shown}");
    assert_eq!(
        shown["webhook_url"],
        hook.as_str(),
        "the admin sees the URL"
    );

    // A worker with the default 24 h overlap.
    app.start_worker(WorkerOptions::default());
    let before = theft_at(&app, "Lidl").await;
    let id = before["id"].as_str().unwrap();
    assert_eq!(verifying(&app, id, &[&first]).await, [true]);

    let (status, rotated) = app
        .post("/api/v1/users/ada/webhook/secret/rotate", json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["webhook_secret"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let during = theft_at(&app, "Lidl").await;
    let id = during["id"].as_str().unwrap();
    assert_eq!(verifying(&app, id, &[&first, &second]).await, [true, true]);

    // A worker whose overlap is over: the new secret only.
    app.stop_workers().await;
    app.start_worker(WorkerOptions {
        webhook_secret_overlap: Duration::ZERO,
        ..Default::default()
    });
    let after = theft_at(&app, "Lidl").await;
    let id = after["id"].as_str().unwrap();
    assert_eq!(verifying(&app, id, &[&first, &second]).await, [false, true]);

    let (status, _) = app
        .post("/api/v1/users/nobody/webhook/secret/rotate", json!({}))
        .await;
    assert_eq!(status, 404);
    app.put("/api/v1/users/nohook", json!({})).await;
    let (status, _) = app
        .post("/api/v1/users/nohook/webhook/secret/rotate", json!({}))
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_personal_webhook_leaves_its_url_out_of_the_stored_errors() {
    let mut app = spawn_app().await;
    app.put("/api/v1/topics/Aldi", json!({})).await;
    // Nothing listens on port 9 of loopback: the connection is refused.
    let hook = "http://127.0.0.1:9/hooks/capability-token-s3cr3t";
    app.put(
        "/api/v1/users/eve",
        json!({"topics": ["Aldi"], "webhook_url": hook}),
    )
    .await;
    app.start_worker(WorkerOptions::default());
    let (_, resp) = app
        .post("/webhooks/alerts", crate::helpers::alert("Aldi", "theft"))
        .await;
    let event = resp["event_id"].as_str().unwrap().to_string();
    let id = app
        .wait_for("a refused try", Duration::from_secs(20), || async {
            let items = app.notifications_of(&event).await;
            let n = items.first()?;
            (n["attempts"].as_i64()? >= 1).then(|| n["id"].as_str().unwrap().to_string())
        })
        .await;
    let (_, detail) = app.get(&format!("/api/v1/notifications/{id}")).await;
    let text = detail.to_string();
    assert!(
        detail["delivery_attempts"][0]["error"].is_string(),
        "{detail}"
    );
    assert!(!text.contains("capability-token-s3cr3t"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_rate_holds_across_two_workers_without_spending_attempts() {
    let mut app = spawn_app().await;
    ok_provider(&app).await;
    let shipped = std::fs::read_to_string(config_dir().join("channels.yml")).unwrap();
    let limited = shipped.replacen("/push\"\n", "/push\"\n    rate_limit_per_s: 5\n", 1);
    assert_ne!(limited, shipped);
    let dir = config_copy_with("channels.yml", &limited);
    let people: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    for p in &people {
        app.put(&format!("/api/v1/users/{p}"), json!({})).await;
    }
    for _ in 0..2 {
        app.start_worker(WorkerOptions {
            config_dir: Some(dir.clone()),
            ..Default::default()
        });
    }
    let started = Instant::now();
    let event = post_events(
        &app,
        json!([{"event_type": "broadcast", "event_timestamp": "2025-10-31T19:00:00Z",
                "properties": {"text": "hello"}}]),
    )
    .await;
    let items = app.wait_final(&event, 50, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    assert!(items.iter().all(|n| n["status"] == "sent"), "{items:?}");
    assert!(
        items.iter().all(|n| n["attempts"] == 1),
        "waiting for the rate spends no attempt"
    );
    // A full bucket gives 5 at once; the other 45 come at 5 per second.
    assert!(elapsed >= Duration::from_secs(9), "{elapsed:?}");
    assert_eq!(app.provider.received_requests().await.unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_gets_at_most_max_in_flight_deliveries_at_once() {
    let mut app = spawn_app().await;
    // Each answer takes 300 ms: six deliveries one at a time take 1.8 s at least,
    // six at once (the worker runs 8 jobs at a time) about 0.3 s.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&app.provider)
        .await;
    let shipped = std::fs::read_to_string(config_dir().join("channels.yml")).unwrap();
    let one_at_a_time = shipped.replacen("/push\"\n", "/push\"\n    max_in_flight: 1\n", 1);
    assert_ne!(one_at_a_time, shipped);
    let dir = config_copy_with("channels.yml", &one_at_a_time);
    for i in 0..6 {
        app.put(&format!("/api/v1/users/q{i}"), json!({})).await;
    }
    app.start_worker(WorkerOptions {
        config_dir: Some(dir),
        ..Default::default()
    });
    let started = Instant::now();
    let event = post_events(
        &app,
        json!([{"event_type": "broadcast", "event_timestamp": "2025-10-31T19:00:00Z",
                "properties": {"text": "one by one"}}]),
    )
    .await;
    let items = app.wait_final(&event, 6, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    assert!(items.iter().all(|n| n["status"] == "sent"), "{items:?}");
    assert!(
        items.iter().all(|n| n["attempts"] == 1),
        "waiting for a slot spends no attempt"
    );
    assert!(elapsed >= Duration::from_millis(1800), "{elapsed:?}");
}
