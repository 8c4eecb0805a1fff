//! `herald-sim sink`: a stand-in for the third-party providers Herald delivers to.
//!
//! Herald's shipped channels all live under one base URL (`HERALD_PROVIDER_URL`,
//! paths `/email`, `/sms`, `/push`, `/internal`, `/webhook/notifications/`), so pointing
//! that variable at the sink captures every delivery. Tests then read what arrived
//! over HTTP instead of mocking Herald's client.
//!
//! # Per-request behaviour
//! Every `POST` to a path that is not one of the sink's own routes is a delivery. The
//! sink first sleeps `latency_ms`, then picks the answer with [`decide`], in this order:
//! 1. a forced status (`--status`, or `status` set through `POST /control`);
//! 2. a `500` with probability `fail_rate` (drives Herald's retry path);
//! 3. a `400` when a `SHOP_ALERT` body lacks a top-level field of seed 002's alert
//!    contract (`target_user_uuid`, `url`, `alert_uuid`, `location`, `label`): a
//!    non-retryable 4xx, exactly what a real receiver would say;
//! 4. a `401` when a secret is configured and the Standard Webhooks signature does
//!    not verify ([`crate::signature`]);
//! 5. `200 {"ok": true}`.
//!
//! Failure injection comes before the content checks on purpose: a flaky provider
//! fails whatever it is sent, and tests that force a status want exactly that status.
//!
//! # Receipts (seed 001)
//! With a receipts URL (`--receipts-url`, or `receipts_url` through `POST /control`),
//! every delivery answered 2xx that names a `notification_id` is, with probability
//! `1 − loss`, reported `delivered` and then, with probability `open` of those,
//! `opened`, in batches posted to that URL ([`crate::receipts`]).
//!
//! # Records
//! Every delivery is recorded, whatever the answer, with the status the sink gave.
//! `seq` is assigned when the answer is decided (after the latency sleep) and keeps
//! growing across `DELETE /received`, so a record is never confused with an older one.
//! Records are kept in memory without bound: a long benchmark should clear them.
//!
//! # HTTP surface
//! | route | what |
//! |---|---|
//! | `POST`/`PUT`/`PATCH /<any other path>` | a delivery, answered and recorded as above, raw body and every header included (other methods: 405) |
//! | `GET /received[?path=/email][&status=200]` | the records, oldest first, filtered by exact path and status |
//! | `GET /received/count` | `{"total": n, "ok": n_2xx}` since the last clear |
//! | `DELETE /received` | forget all records |
//! | `GET /control`, `POST /control` | read or change `fail_rate`, `status`, `latency_ms`, `loss`, `open`, `smtp_reply`, `receipts_url` (and `api_key`, write-only) at run time |
//! | SMTP on `--smtp-port` (2525) | mails, recorded under the path `/smtp` ([`crate::smtp`]) |
//! | `GET /receipts` | receipts `queued`, `posted`, `dropped`, `failed_posts` |
//! | `GET /healthz` | `200` |

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::receipts::{self, Outbox, Target};
use crate::signature::{SignatureError, WebhookSecret};
use crate::smtp::{split_mail, MailSink, ReceivedMail};

/// Deliveries larger than this are refused by actix before they reach the handler
/// (and so are not recorded). Herald's envelopes are a few KiB; the margin is for
/// templates that inline large data.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The fields seed 002's alert receivers require at the top level of the body.
pub const ALERT_FIELDS: [&str; 5] = ["target_user_uuid", "url", "alert_uuid", "location", "label"];

/// The `notification_type` whose deliveries must honour [`ALERT_FIELDS`].
const ALERT_TYPE: &str = "SHOP_ALERT";

/// Settings of `herald-sim sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkConfig {
    /// Address to listen on; use 0.0.0.0 inside a container.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one, logged at start).
    #[arg(long)]
    pub port: u16,
    /// Probability (0..=1) of answering 500 to a delivery.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub fail_rate: f64,
    /// Milliseconds to wait before answering each delivery.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer every delivery with this status (200..=599), ignoring everything else.
    #[arg(long, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub status: Option<u16>,
    /// Standard Webhooks secret (`whsec_<base64>`, or any string used as raw bytes);
    /// when set, deliveries without a valid signature get 401.
    #[arg(long)]
    pub secret: Option<WebhookSecret>,
    /// Probability (0..=1) that an accepted message is lost: no receipt at all.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub loss: f64,
    /// Probability (0..=1) that a delivered message is also opened.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub open: f64,
    /// Where to post receipts, e.g. http://127.0.0.1:8000/webhooks/receipts; none
    /// are sent without it.
    #[arg(long)]
    pub receipts_url: Option<String>,
    /// Herald API key for the receipts.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Port of the SMTP receiver (mails are listed at `GET /received?path=/smtp`).
    #[arg(long, default_value_t = 2525)]
    pub smtp_port: u16,
    /// Answer the end of every mail's DATA with this code (e.g. 451, 550) instead of 250.
    #[arg(long, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub smtp_reply: Option<u16>,
}

impl SinkConfig {
    fn behaviour(&self) -> Behaviour {
        Behaviour {
            fail_rate: self.fail_rate,
            latency_ms: self.latency_ms,
            status: self.status,
            loss: self.loss,
            open: self.open,
            smtp_reply: self.smtp_reply,
        }
    }

    fn receipts_target(&self) -> Option<Target> {
        self.receipts_url.as_ref().map(|url| Target {
            url: url.clone(),
            api_key: self.api_key.clone(),
        })
    }
}

fn parse_fail_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    check_fail_rate(rate)
}

fn check_fail_rate(rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("fail rate must be within 0..=1, got {rate}"))
    }
}

fn check_status(status: u16) -> Result<u16, String> {
    if (200..=599).contains(&status) {
        Ok(status)
    } else {
        Err(format!("status must be within 200..=599, got {status}"))
    }
}

/// The knobs that can change while the sink runs (see `POST /control`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Behaviour {
    pub fail_rate: f64,
    pub latency_ms: u64,
    /// Serialized as `null` when unset, so `/control` always shows every knob.
    pub status: Option<u16>,
    /// Probability that an accepted message gets no receipt.
    pub loss: f64,
    /// Probability that a delivered message is reported opened.
    pub open: f64,
    /// The code that ends a mail's DATA; `null`: 250.
    pub smtp_reply: Option<u16>,
}

/// What the sink answers to one delivery, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Forced(u16),
    InjectedFailure,
    AlertContract { missing: Vec<&'static str> },
    BadSignature(SignatureError),
    Accepted,
}

impl Verdict {
    pub fn status(&self) -> StatusCode {
        match self {
            // `check_status`/clap keep forced codes within 200..=599, all valid.
            Self::Forced(code) => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::InjectedFailure => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AlertContract { .. } => StatusCode::BAD_REQUEST,
            Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Accepted => StatusCode::OK,
        }
    }

    fn body(&self) -> Value {
        match self {
            Self::Forced(_) if self.status().is_success() => json!({"ok": true}),
            Self::Forced(code) => json!({"ok": false, "error": format!("forced status {code}")}),
            Self::InjectedFailure => json!({"ok": false, "error": "injected failure"}),
            Self::AlertContract { missing } => json!({
                "ok": false,
                "error": format!("alert payload is missing top-level fields: {}", missing.join(", ")),
                "missing": missing,
            }),
            Self::BadSignature(e) => json!({"ok": false, "error": e.to_string()}),
            Self::Accepted => json!({"ok": true}),
        }
    }

    fn into_response(self) -> HttpResponse {
        let status = self.status();
        // 204 and 304 must not carry a body; clients may hang or choke on one.
        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return HttpResponse::build(status).finish();
        }
        HttpResponse::build(status).json(self.body())
    }
}

/// Chooses the answer to a delivery; pure, so every branch is unit-tested.
///
/// `roll` is a uniform sample from `[0, 1)`: a fail rate of 0 never fails and 1 always
/// does. `signature` is `None` when the sink has no secret.
pub fn decide(
    behaviour: &Behaviour,
    roll: f64,
    body: Option<&Value>,
    signature: Option<Result<(), SignatureError>>,
) -> Verdict {
    if let Some(code) = behaviour.status {
        return Verdict::Forced(code);
    }
    if roll < behaviour.fail_rate {
        return Verdict::InjectedFailure;
    }
    if let Some(body) = body {
        let missing = missing_alert_fields(body);
        if !missing.is_empty() {
            return Verdict::AlertContract { missing };
        }
    }
    match signature {
        Some(Err(e)) => Verdict::BadSignature(e),
        Some(Ok(())) | None => Verdict::Accepted,
    }
}

/// The [`ALERT_FIELDS`] a `SHOP_ALERT` body lacks; empty for any other body.
///
/// A field present as `null` counts as missing: a receiver cannot act on a null
/// `url` or `target_user_uuid` any more than on an absent one.
pub fn missing_alert_fields(body: &Value) -> Vec<&'static str> {
    let Some(object) = body.as_object() else {
        return Vec::new();
    };
    if object.get("notification_type").and_then(Value::as_str) != Some(ALERT_TYPE) {
        return Vec::new();
    }
    ALERT_FIELDS
        .into_iter()
        .filter(|field| object.get(*field).is_none_or(Value::is_null))
        .collect()
}

/// The Standard Webhooks headers of a delivery, kept only when present.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordedHeaders {
    #[serde(rename = "webhook-id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "webhook-timestamp", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(rename = "webhook-signature", skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl RecordedHeaders {
    fn from_request(req: &HttpRequest) -> Self {
        // Lossy rather than dropped: a mangled header is exactly what a test
        // inspecting the records wants to see.
        let get = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Self {
            id: get("webhook-id"),
            timestamp: get("webhook-timestamp"),
            signature: get("webhook-signature"),
        }
    }
}

/// One delivery as the sink saw and answered it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seq: u64,
    /// The request's path; `/smtp` for a mail.
    pub path: String,
    /// `POST`, `PUT`, ...; `SMTP` for a mail.
    pub method: String,
    /// The status answered; a mail's final SMTP reply code.
    pub status: u16,
    /// When the request arrived (before the latency sleep), RFC 3339 in UTC.
    pub received_at: String,
    pub headers: RecordedHeaders,
    /// Every request header, names lowercase (a repeated header's values joined by `, `).
    pub all_headers: std::collections::BTreeMap<String, String>,
    /// The body exactly as received (lossy UTF-8); a mail's whole message.
    pub raw: String,
    /// The parsed JSON body, or `null` when it was empty or not JSON; for a mail, its
    /// envelope, main headers and body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct Journal {
    // `Arc` so `GET /received` clones pointers under the lock and serializes after
    // releasing it; a large listing then never stalls deliveries.
    records: Vec<Arc<Record>>,
    next_seq: u64,
    total: u64,
    ok: u64,
}

/// Shared by all actix workers.
///
/// Both locks are `std::sync::Mutex`, not tokio's: every critical section is a few
/// pushes or copies and never spans an `.await`, so a blocking lock is cheaper and
/// cannot deadlock the runtime (the reasoning of mini-redis's `db.rs`). A poisoned lock
/// only means another handler panicked mid-push; the data is still consistent enough
/// for a test tool, so it is recovered rather than propagated.
#[derive(Debug)]
pub struct SinkState {
    behaviour: Mutex<Behaviour>,
    journal: Mutex<Journal>,
    secret: Option<WebhookSecret>,
    outbox: Arc<Outbox>,
}

impl SinkState {
    pub fn new(behaviour: Behaviour, secret: Option<WebhookSecret>) -> Self {
        Self {
            behaviour: Mutex::new(behaviour),
            journal: Mutex::new(Journal {
                next_seq: 1,
                ..Journal::default()
            }),
            secret,
            outbox: Arc::new(Outbox::new(None)),
        }
    }

    /// The receipts waiting to be posted.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        self.behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forces the code that ends a mail's DATA (`None`: 250).
    pub fn set_smtp_reply(&self, code: Option<u16>) {
        self.behaviour().smtp_reply = code;
    }

    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<Record> {
        self.journal()
            .records
            .iter()
            .map(|r| Record::clone(r))
            .collect()
    }

    fn record(&self, mut record: Record) {
        let mut journal = self.journal();
        record.seq = journal.next_seq;
        journal.next_seq += 1;
        journal.total += 1;
        if (200..300).contains(&record.status) {
            journal.ok += 1;
        }
        journal.records.push(Arc::new(record));
    }
}

impl MailSink for SinkState {
    fn smtp_reply(&self) -> Option<u16> {
        self.behaviour().smtp_reply
    }

    /// A mail is recorded beside the HTTP deliveries, under the path `/smtp`.
    fn record_mail(&self, mail: ReceivedMail) {
        let (headers, text) = split_mail(&mail.data);
        let header = |name: &str| {
            headers
                .get(name)
                .cloned()
                .map_or(Value::Null, Value::String)
        };
        let body = json!({
            "mail_from": mail.mail_from,
            "rcpt_to": mail.rcpt_to,
            "from": header("from"),
            "to": header("to"),
            "reply_to": header("reply-to"),
            "subject": header("subject"),
            "message_id": header("message-id"),
            "list_unsubscribe": header("list-unsubscribe"),
            "content_type": header("content-type"),
            "headers": headers,
            "text": text,
        });
        self.record(Record {
            seq: 0,
            path: "/smtp".into(),
            method: "SMTP".into(),
            status: mail.code,
            received_at: chrono::Utc::now().to_rfc3339(),
            headers: RecordedHeaders::default(),
            all_headers: std::collections::BTreeMap::new(),
            raw: mail.data,
            body,
        });
    }
}

/// Registers the sink's routes; shared by [`run`] and the tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .app_data(web::JsonConfig::default().error_handler(|err, _req| {
            let detail = err.to_string();
            actix_web::error::InternalError::from_response(
                err,
                HttpResponse::BadRequest().json(json!({"ok": false, "error": detail})),
            )
            .into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|err, _req| {
            let detail = err.to_string();
            actix_web::error::InternalError::from_response(
                err,
                HttpResponse::BadRequest().json(json!({"ok": false, "error": detail})),
            )
            .into()
        }))
        .route("/healthz", web::get().to(healthz))
        .route("/received", web::get().to(list_received))
        .route("/received", web::delete().to(clear_received))
        .route("/received/count", web::get().to(count_received))
        .route("/control", web::get().to(get_control))
        .route("/control", web::post().to(set_control))
        .route("/receipts", web::get().to(receipts_counters))
        // Registered last so the sink's own routes win; any other path is a delivery.
        // A non-POST to such a path gets 405 from the resource.
        .service(
            web::resource("/{path:.*}")
                .route(web::post().to(deliver))
                .route(web::put().to(deliver))
                .route(web::patch().to(deliver)),
        );
}

/// Serves the sink until SIGINT/SIGTERM.
///
/// # Errors
/// When the address cannot be bound or the server fails.
pub async fn run(config: SinkConfig) -> anyhow::Result<()> {
    let state = web::Data::new(SinkState::new(config.behaviour(), config.secret.clone()));
    state.outbox.set_target(config.receipts_target());
    let outbox = Arc::clone(&state.outbox);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the receipts client")?;
    actix_web::rt::spawn(async move { outbox.flush_forever(client).await });
    let smtp = tokio::net::TcpListener::bind((config.host.as_str(), config.smtp_port))
        .await
        .with_context(|| {
            format!(
                "binding the sink's SMTP to {}:{}",
                config.host, config.smtp_port
            )
        })?;
    tracing::info!(addr = %smtp.local_addr()?, smtp_reply = ?config.smtp_reply, "sink SMTP listening");
    actix_web::rt::spawn(crate::smtp::serve(smtp, state.clone().into_inner()));
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(configure))
        // Long enough for latency-delayed answers to finish, short enough to beat the
        // 10 s TERM→KILL window of scripts/down-local.sh.
        .shutdown_timeout(5)
        .bind((config.host.as_str(), config.port))
        .with_context(|| format!("binding the sink to {}:{}", config.host, config.port))?;
    for addr in server.addrs() {
        tracing::info!(
            %addr,
            fail_rate = config.fail_rate,
            latency_ms = config.latency_ms,
            status = ?config.status,
            verifies_signatures = config.secret.is_some(),
            loss = config.loss,
            open = config.open,
            receipts_url = ?config.receipts_url,
            "sink listening"
        );
    }
    server.run().await.context("running the sink")
}

/// Liveness probe.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// Answer and record a delivery.
async fn deliver(req: HttpRequest, body: web::Bytes, state: web::Data<SinkState>) -> HttpResponse {
    let received_at = chrono::Utc::now().to_rfc3339();
    let behaviour = *state.behaviour();
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }

    let headers = RecordedHeaders::from_request(&req);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let signature = state.secret.as_ref().map(|secret| {
        secret.verify(
            headers.id.as_deref(),
            headers.timestamp.as_deref(),
            headers.signature.as_deref(),
            &body,
        )
    });
    let verdict = decide(&behaviour, rand::random(), parsed.as_ref(), signature);
    let status = verdict.status();
    tracing::debug!(
        path = req.path(),
        status = status.as_u16(),
        ?verdict,
        "delivery"
    );

    if status.is_success() {
        if let Some(id) = parsed
            .as_ref()
            .and_then(|b| b.get("notification_id"))
            .and_then(Value::as_str)
        {
            let plan = receipts::plan(
                behaviour.loss,
                behaviour.open,
                rand::random(),
                rand::random(),
            );
            state
                .outbox
                .record(id, plan, &chrono::Utc::now().to_rfc3339());
        }
    }

    let mut all_headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        all_headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    state.record(Record {
        seq: 0, // assigned under the journal lock
        path: req.path().to_owned(),
        method: req.method().as_str().to_owned(),
        status: status.as_u16(),
        received_at,
        headers,
        all_headers,
        raw: String::from_utf8_lossy(&body).into_owned(),
        body: parsed.unwrap_or(Value::Null),
    });
    verdict.into_response()
}

#[derive(Debug, Deserialize)]
struct ReceivedFilter {
    path: Option<String>,
    status: Option<u16>,
}

/// All records, oldest first, optionally filtered by exact `path` and `status`.
async fn list_received(
    filter: web::Query<ReceivedFilter>,
    state: web::Data<SinkState>,
) -> HttpResponse {
    let matching: Vec<Arc<Record>> = state
        .journal()
        .records
        .iter()
        .filter(|r| filter.path.as_deref().is_none_or(|p| r.path == p))
        .filter(|r| filter.status.is_none_or(|s| r.status == s))
        .cloned()
        .collect();
    // serde's `rc` feature is off workspace-wide, so serialize through references.
    let matching: Vec<&Record> = matching.iter().map(Arc::as_ref).collect();
    HttpResponse::Ok().json(matching)
}

/// `{"total": n, "ok": n_2xx}` since the last clear.
async fn count_received(state: web::Data<SinkState>) -> HttpResponse {
    let journal = state.journal();
    HttpResponse::Ok().json(json!({"total": journal.total, "ok": journal.ok}))
}

/// Forget every record (sequence numbers keep growing).
async fn clear_received(state: web::Data<SinkState>) -> HttpResponse {
    let mut journal = state.journal();
    journal.records.clear();
    journal.total = 0;
    journal.ok = 0;
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// A partial update of [`Behaviour`]; absent fields are left alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlIn {
    fail_rate: Option<f64>,
    latency_ms: Option<u64>,
    /// Absent: unchanged; `null`: clear the forced status; a number: force it.
    #[serde(default, deserialize_with = "present")]
    status: Option<Option<u16>>,
    loss: Option<f64>,
    open: Option<f64>,
    /// Absent: unchanged; `null`: answer 250 to mails; a code: answer it.
    #[serde(default, deserialize_with = "present")]
    smtp_reply: Option<Option<u16>>,
    /// Absent: unchanged; `null`: stop sending receipts; a URL: send them there.
    #[serde(default, deserialize_with = "present")]
    receipts_url: Option<Option<String>>,
    /// Absent: unchanged; `null`: no key.
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
}

/// Lets `Option<Option<T>>` tell an absent field (outer `None`, via `default`) from an
/// explicit `null` (`Some(None)`), which plain serde folds together.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl ControlIn {
    fn apply(&self, current: Behaviour) -> Result<Behaviour, String> {
        let mut next = current;
        if let Some(rate) = self.fail_rate {
            next.fail_rate = check_fail_rate(rate)?;
        }
        if let Some(latency) = self.latency_ms {
            next.latency_ms = latency;
        }
        if let Some(status) = self.status {
            next.status = status.map(check_status).transpose()?;
        }
        if let Some(loss) = self.loss {
            next.loss = check_probability("loss", loss)?;
        }
        if let Some(open) = self.open {
            next.open = check_probability("open", open)?;
        }
        if let Some(reply) = self.smtp_reply {
            next.smtp_reply = reply.map(check_status).transpose()?;
        }
        Ok(next)
    }

    /// The receipts target after this update.
    fn apply_target(&self, current: Option<Target>) -> Result<Option<Target>, String> {
        let url = match &self.receipts_url {
            None => current.as_ref().map(|t| t.url.clone()),
            Some(None) => None,
            Some(Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.clone())
            }
            Some(Some(url)) => {
                return Err(format!("receipts_url must be an http(s) URL, got {url:?}"))
            }
        };
        let api_key = match &self.api_key {
            None => current.and_then(|t| t.api_key),
            Some(key) => key.clone(),
        };
        Ok(url.map(|url| Target { url, api_key }))
    }
}

fn check_probability(name: &str, p: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{name} must be within 0..=1, got {p}"))
    }
}

/// What `/control` shows: every knob, and where receipts go (never the key).
#[derive(Debug, Serialize)]
struct ControlView {
    #[serde(flatten)]
    behaviour: Behaviour,
    receipts_url: Option<String>,
}

impl ControlView {
    fn of(state: &SinkState) -> Self {
        ControlView {
            behaviour: *state.behaviour(),
            receipts_url: state.outbox.target().map(|t| t.url),
        }
    }
}

/// Receipt counters: queued, posted, dropped, failed posts.
async fn receipts_counters(state: web::Data<SinkState>) -> HttpResponse {
    HttpResponse::Ok().json(state.outbox.counters())
}

/// The current behaviour.
async fn get_control(state: web::Data<SinkState>) -> HttpResponse {
    HttpResponse::Ok().json(ControlView::of(&state))
}

/// Change the knobs without a restart; answers the result.
async fn set_control(update: web::Json<ControlIn>, state: web::Data<SinkState>) -> HttpResponse {
    let applied = {
        let mut behaviour = state.behaviour();
        update
            .apply(*behaviour)
            .and_then(|next| Ok((next, update.apply_target(state.outbox.target())?)))
            .map(|(next, target)| {
                *behaviour = next;
                state.outbox.set_target(target);
                next
            })
    };
    match applied {
        Ok(next) => {
            tracing::info!(?next, "sink behaviour changed");
            HttpResponse::Ok().json(ControlView::of(&state))
        }
        // Nothing is applied when any field is invalid, so a bad request never leaves
        // the sink half-reconfigured.
        Err(detail) => {
            HttpResponse::UnprocessableEntity().json(json!({"ok": false, "error": detail}))
        }
    }
}

#[cfg(test)]
mod tests {
    // Renamed so it does not shadow the built-in `#[test]` attribute.
    use actix_web::test as actix_test;

    use super::*;

    fn calm() -> Behaviour {
        Behaviour {
            fail_rate: 0.0,
            latency_ms: 0,
            status: None,
            loss: 0.0,
            open: 0.0,
            smtp_reply: None,
        }
    }

    fn alert(omit: &[&str]) -> Value {
        let mut body = json!({
            "notification_id": "n1", "notification_type": "SHOP_ALERT", "channel": "webhook",
            "user_id": "u1", "to": null, "severity": "critical", "subject": null, "text": "theft",
            "event": {}, "data": {},
            "target_user_uuid": "u1", "url": "https://media.example/x.mp4",
            "alert_uuid": "33cbb18c-3e9d-4acc-9667-2fbe7bf29137", "location": "Carrefour",
            "label": "theft",
        });
        if let Some(object) = body.as_object_mut() {
            for field in omit {
                object.remove(*field);
            }
        }
        body
    }

    // ---- decide: one table, in the documented order of precedence -------------

    #[test]
    fn decide_follows_the_documented_precedence() {
        let forced = Behaviour {
            status: Some(503),
            ..calm()
        };
        let flaky = Behaviour {
            fail_rate: 0.5,
            ..calm()
        };
        let always_fail = Behaviour {
            fail_rate: 1.0,
            ..calm()
        };
        let broken = alert(&["url"]);
        let good = alert(&[]);
        let bad_sig = Some(Err(SignatureError::NoMatch));

        let cases: Vec<(&str, Verdict, Verdict)> = vec![
            (
                "a forced status beats everything",
                decide(&forced, 0.0, Some(&broken), bad_sig.clone()),
                Verdict::Forced(503),
            ),
            (
                "a roll under the fail rate fails",
                decide(&flaky, 0.49, Some(&good), None),
                Verdict::InjectedFailure,
            ),
            (
                "a roll at the fail rate passes",
                decide(&flaky, 0.5, Some(&good), None),
                Verdict::Accepted,
            ),
            (
                "fail rate 1 fails even the highest roll",
                decide(&always_fail, 0.999_999, Some(&good), None),
                Verdict::InjectedFailure,
            ),
            (
                "fail rate 0 never fails",
                decide(&calm(), 0.0, Some(&good), None),
                Verdict::Accepted,
            ),
            (
                "the alert contract is checked before the signature",
                decide(&calm(), 0.0, Some(&broken), bad_sig.clone()),
                Verdict::AlertContract {
                    missing: vec!["url"],
                },
            ),
            (
                "a bad signature on a good body is refused",
                decide(&calm(), 0.0, Some(&good), bad_sig),
                Verdict::BadSignature(SignatureError::NoMatch),
            ),
            (
                "a verified signature is accepted",
                decide(&calm(), 0.0, Some(&good), Some(Ok(()))),
                Verdict::Accepted,
            ),
            (
                "a body that is not JSON is accepted",
                decide(&calm(), 0.0, None, None),
                Verdict::Accepted,
            ),
        ];
        for (why, got, want) in cases {
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn verdict_statuses_match_the_contract() {
        assert_eq!(Verdict::Forced(429).status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            Verdict::InjectedFailure.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            Verdict::AlertContract { missing: vec![] }.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Verdict::BadSignature(SignatureError::NoMatch).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(Verdict::Accepted.status(), StatusCode::OK);
    }

    // ---- alert contract --------------------------------------------------------

    #[test]
    fn a_complete_alert_has_no_missing_fields() {
        assert!(missing_alert_fields(&alert(&[])).is_empty());
    }

    #[test]
    fn missing_alert_fields_names_every_absent_field_in_contract_order() {
        assert_eq!(
            missing_alert_fields(&alert(&["label", "target_user_uuid"])),
            vec!["target_user_uuid", "label"]
        );
        assert_eq!(
            missing_alert_fields(&alert(&ALERT_FIELDS)),
            ALERT_FIELDS.to_vec()
        );
    }

    #[test]
    fn a_null_alert_field_counts_as_missing() {
        let mut body = alert(&[]);
        body["url"] = Value::Null;
        assert_eq!(missing_alert_fields(&body), vec!["url"]);
    }

    #[test]
    fn only_shop_alerts_are_held_to_the_alert_contract() {
        let mut other = alert(&ALERT_FIELDS);
        other["notification_type"] = json!("broadcast");
        assert!(missing_alert_fields(&other).is_empty());
        assert!(missing_alert_fields(&json!([1, 2])).is_empty());
        assert!(missing_alert_fields(&json!({"notification_type": 7})).is_empty());
    }

    // ---- control ---------------------------------------------------------------

    fn control(body: Value) -> ControlIn {
        serde_json::from_value(body).expect("valid control body")
    }

    #[test]
    fn control_changes_only_the_fields_it_names() {
        let start = Behaviour {
            status: Some(500),
            ..calm()
        };
        let next = control(json!({"fail_rate": 0.25})).apply(start);
        assert_eq!(
            next,
            Ok(Behaviour {
                fail_rate: 0.25,
                ..start
            })
        );
    }

    #[test]
    fn control_status_null_clears_and_absent_keeps() {
        let start = Behaviour {
            status: Some(500),
            ..calm()
        };
        assert_eq!(control(json!({"status": null})).apply(start), Ok(calm()));
        assert_eq!(control(json!({"latency_ms": 0})).apply(start), Ok(start));
    }

    #[test]
    fn control_refuses_out_of_range_values() {
        assert!(control(json!({"fail_rate": 1.5})).apply(calm()).is_err());
        assert!(control(json!({"status": 99})).apply(calm()).is_err());
        assert!(serde_json::from_value::<ControlIn>(json!({"fail": 1})).is_err());
    }

    // ---- HTTP ------------------------------------------------------------------

    macro_rules! sink_app {
        ($state:expr) => {
            actix_test::init_service(App::new().app_data($state.clone()).configure(configure)).await
        };
    }

    #[actix_web::test]
    async fn every_delivery_is_recorded_with_the_status_it_got() {
        // Arrange
        let state = web::Data::new(SinkState::new(calm(), None));
        let app = sink_app!(state);

        // Act
        let ok = actix_test::TestRequest::post()
            .uri("/email")
            .insert_header(("webhook-id", "n1"))
            .set_json(json!({"notification_type": "broadcast", "text": "hi"}))
            .send_request(&app)
            .await;
        let refused = actix_test::TestRequest::post()
            .uri("/webhook/notifications/")
            .set_json(alert(&["url", "label"]))
            .send_request(&app)
            .await;
        let not_json = actix_test::TestRequest::post()
            .uri("/anything")
            .set_payload("plain text")
            .send_request(&app)
            .await;

        // Assert
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let refusal: Value = actix_test::read_body_json(refused).await;
        assert_eq!(refusal["missing"], json!(["url", "label"]));
        assert_eq!(not_json.status(), StatusCode::OK);

        let records: Value = actix_test::call_and_read_body_json(
            &app,
            actix_test::TestRequest::get().uri("/received").to_request(),
        )
        .await;
        let records = records.as_array().expect("an array");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["seq"], 1);
        assert_eq!(records[0]["path"], "/email");
        assert_eq!(records[0]["status"], 200);
        assert_eq!(records[0]["headers"], json!({"webhook-id": "n1"}));
        assert_eq!(records[0]["body"]["text"], "hi");
        assert!(chrono::DateTime::parse_from_rfc3339(
            records[0]["received_at"].as_str().unwrap_or("")
        )
        .is_ok());
        assert_eq!(records[1]["status"], 400);
        assert_eq!(records[1]["path"], "/webhook/notifications/");
        assert_eq!(records[2]["body"], Value::Null);

        let count: Value = actix_test::call_and_read_body_json(
            &app,
            actix_test::TestRequest::get()
                .uri("/received/count")
                .to_request(),
        )
        .await;
        assert_eq!(count, json!({"total": 3, "ok": 2}));
    }

    #[actix_web::test]
    async fn received_filters_by_path_and_status_and_clears() {
        let state = web::Data::new(SinkState::new(calm(), None));
        let app = sink_app!(state);
        for path in ["/email", "/sms", "/email"] {
            actix_test::TestRequest::post()
                .uri(path)
                .set_json(json!({}))
                .send_request(&app)
                .await;
        }
        actix_test::TestRequest::post()
            .uri("/email")
            .set_json(alert(&["url"]))
            .send_request(&app)
            .await;

        let get = |uri: &'static str| actix_test::TestRequest::get().uri(uri).to_request();
        let emails: Vec<Value> =
            actix_test::call_and_read_body_json(&app, get("/received?path=/email")).await;
        assert_eq!(emails.len(), 3);
        let ok_emails: Vec<Value> =
            actix_test::call_and_read_body_json(&app, get("/received?path=/email&status=200"))
                .await;
        assert_eq!(ok_emails.len(), 2);
        let bad: Vec<Value> =
            actix_test::call_and_read_body_json(&app, get("/received?status=400")).await;
        assert_eq!(bad.len(), 1);
        let invalid = actix_test::call_service(&app, get("/received?status=abc")).await;
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);

        let cleared = actix_test::call_service(
            &app,
            actix_test::TestRequest::delete()
                .uri("/received")
                .to_request(),
        )
        .await;
        assert_eq!(cleared.status(), StatusCode::OK);
        let count: Value = actix_test::call_and_read_body_json(&app, get("/received/count")).await;
        assert_eq!(count, json!({"total": 0, "ok": 0}));

        actix_test::TestRequest::post()
            .uri("/push")
            .set_json(json!({}))
            .send_request(&app)
            .await;
        let after: Vec<Value> = actix_test::call_and_read_body_json(&app, get("/received")).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0]["seq"], 5, "seq keeps growing across clears");
    }

    #[actix_web::test]
    async fn control_changes_behaviour_without_a_restart() {
        let state = web::Data::new(SinkState::new(calm(), None));
        let app = sink_app!(state);
        let post = |uri: &'static str, body: Value| {
            actix_test::TestRequest::post()
                .uri(uri)
                .set_json(body)
                .to_request()
        };

        let set: Value =
            actix_test::call_and_read_body_json(&app, post("/control", json!({"status": 503})))
                .await;
        assert_eq!(
            set,
            json!({"fail_rate": 0.0, "latency_ms": 0, "status": 503, "loss": 0.0, "open": 0.0,
                   "smtp_reply": null, "receipts_url": null})
        );
        let forced = actix_test::call_service(&app, post("/sms", json!({}))).await;
        assert_eq!(forced.status(), StatusCode::SERVICE_UNAVAILABLE);

        let set: Value =
            actix_test::call_and_read_body_json(&app, post("/control", json!({"status": null})))
                .await;
        assert_eq!(set["status"], Value::Null);
        let normal = actix_test::call_service(&app, post("/sms", json!({}))).await;
        assert_eq!(normal.status(), StatusCode::OK);

        let refused =
            actix_test::call_service(&app, post("/control", json!({"fail_rate": 2}))).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let typo = actix_test::call_service(&app, post("/control", json!({"failrate": 1}))).await;
        assert_eq!(typo.status(), StatusCode::BAD_REQUEST);

        let statuses: Vec<Value> = actix_test::call_and_read_body_json(
            &app,
            actix_test::TestRequest::get().uri("/received").to_request(),
        )
        .await;
        let statuses: Vec<&Value> = statuses.iter().map(|r| &r["status"]).collect();
        assert_eq!(
            statuses,
            [&json!(503), &json!(200)],
            "/control is not a delivery"
        );
    }

    #[actix_web::test]
    async fn with_a_secret_only_correctly_signed_deliveries_pass() {
        let secret: WebhookSecret = "whsec_c2luay10ZXN0LWtleQ==".parse().expect("valid secret");
        let state = web::Data::new(SinkState::new(calm(), Some(secret.clone())));
        let app = sink_app!(state);
        let body = br#"{"notification_id":"n9","notification_type":"broadcast"}"#;
        let signed = |signature: String| {
            actix_test::TestRequest::post()
                .uri("/push")
                .insert_header(("webhook-id", "n9"))
                .insert_header(("webhook-timestamp", "1700000000"))
                .insert_header(("webhook-signature", signature))
                .set_payload(body.as_slice())
                .to_request()
        };

        let good =
            actix_test::call_service(&app, signed(secret.sign("n9", "1700000000", body))).await;
        assert_eq!(good.status(), StatusCode::OK);
        let wrong =
            actix_test::call_service(&app, signed(secret.sign("n9", "1700000001", body))).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let unsigned = actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/push")
                .set_payload(body.as_slice())
                .to_request(),
        )
        .await;
        assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
        let reason: Value = actix_test::read_body_json(unsigned).await;
        assert_eq!(reason["error"], "missing header webhook-id");
    }

    #[actix_web::test]
    async fn accepted_deliveries_queue_receipts_once_control_names_a_receiver() {
        let state = web::Data::new(SinkState::new(calm(), None));
        let app = sink_app!(state);
        let deliver = |id: &'static str| {
            actix_test::TestRequest::post()
                .uri("/push")
                .set_json(json!({"notification_id": id, "notification_type": "BROADCAST"}))
                .to_request()
        };
        actix_test::call_service(&app, deliver("before")).await;
        assert!(
            state.outbox().queued().is_empty(),
            "no receiver, no receipts"
        );

        let set: Value = actix_test::call_and_read_body_json(
            &app,
            actix_test::TestRequest::post()
                .uri("/control")
                .set_json(json!({"loss": 0.0, "open": 1.0, "api_key": "k",
                                 "receipts_url": "http://127.0.0.1:9/webhooks/receipts"}))
                .to_request(),
        )
        .await;
        assert_eq!(set["receipts_url"], "http://127.0.0.1:9/webhooks/receipts");
        assert_eq!(
            (set["loss"].as_f64(), set["open"].as_f64()),
            (Some(0.0), Some(1.0))
        );
        assert!(set.get("api_key").is_none(), "the key is never shown");

        actix_test::call_service(&app, deliver("n1")).await;
        let queued: Vec<(Value, Value)> = state
            .outbox()
            .queued()
            .iter()
            .map(|r| (r["notification_id"].clone(), r["status"].clone()))
            .collect();
        assert_eq!(
            queued,
            [
                (json!("n1"), json!("delivered")),
                (json!("n1"), json!("opened"))
            ]
        );

        // A failed delivery gets no receipt; nor does a lost one.
        actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/control")
                .set_json(json!({"status": 500}))
                .to_request(),
        )
        .await;
        actix_test::call_service(&app, deliver("n2")).await;
        actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/control")
                .set_json(json!({"status": null, "loss": 1.0}))
                .to_request(),
        )
        .await;
        actix_test::call_service(&app, deliver("n3")).await;
        assert_eq!(state.outbox().queued().len(), 2);

        let refused = actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/control")
                .set_json(json!({"open": 2.0}))
                .to_request(),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bad_url = actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/control")
                .set_json(json!({"receipts_url": "ftp://x"}))
                .to_request(),
        )
        .await;
        assert_eq!(bad_url.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[actix_web::test]
    async fn healthz_answers_and_other_methods_are_not_deliveries() {
        let state = web::Data::new(SinkState::new(calm(), None));
        let app = sink_app!(state);
        let health = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/healthz").to_request(),
        )
        .await;
        assert_eq!(health.status(), StatusCode::OK);
        let get = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/email").to_request(),
        )
        .await;
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(state.journal().total, 0);
    }
}
