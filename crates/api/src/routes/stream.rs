//! `GET /api/v1/users/{user_id}/stream`: a person's notification changes as
//! Server-Sent Events (issue 8), for the console and any other live view.
//!
//! How it works, and why it works with any number of api processes:
//! * Postgres keeps each person's change log, numbered per person by triggers
//!   (`herald_store::changes`). Every event's `id:` is that number, so a client that
//!   reconnects with `Last-Event-ID: n` (browsers do it by themselves) gets exactly
//!   what it missed; without one it gets only what happens from now on.
//! * Redis pub/sub only wakes the stream up: whoever changes a notification (worker or
//!   api, in any process) announces it on the person's channel. Each api process hears
//!   every announcement through its one subscription (`herald_queue::ChangeHub`,
//!   whatever the number of streams), which wakes this process's streams of that
//!   person in memory; each reads the log after its last number, once per wake-up.
//!   An idle stream sends no query.
//! * A slow re-check (`HERALD_STREAM_RECHECK`, 30 s) backs the signal up: an
//!   announcement is sent after the commit and at most once, so one is lost when its
//!   publisher dies in between or Redis fails over, and a change made outside Herald
//!   (psql) is announced by nobody. While the hub has no subscription (Redis down) the
//!   stream polls every few seconds instead, and reads once when it is back.
//! * Nothing lives in process memory but the stream's own position, its place in the
//!   hub and its slot in the per-key limit (`crate::stream_slots`); nothing is held
//!   between reads, not even a database connection. A client that disconnects drops
//!   the response body, which gives all three back.

use crate::caller::CallerKey;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{unknown_user, PathUserId};
use crate::state::AppState;
use crate::stream_slots::Slot;
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use herald_queue::PersonWatch;
use herald_store::changes::{self, Change};
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::IntoParams;

/// The poll while the hub has no subscription (Redis down): announcements are not
/// heard then, and changes still happen (read marks go through the api).
const POLL_WHILE_UNSUBSCRIBED: Duration = Duration::from_secs(5);
/// How soon a read that failed (database unavailable) is tried again.
const RETRY_READ_AFTER: Duration = Duration::from_secs(2);
/// The shortest re-check, whatever the settings say: a guard against a busy loop.
const MIN_RECHECK: Duration = Duration::from_millis(100);
/// A comment line this often keeps proxies and load balancers from closing an idle
/// stream, and lets a dead client be noticed (the write fails).
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// Changes read per query; a longer backlog is read in several.
const BATCH: i64 = 200;
/// How long browsers wait before reconnecting (the SSE `retry:` field).
const RECONNECT_MS: u64 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this change number, for clients that cannot send the
    /// `Last-Event-ID` header (which wins when both are given).
    last_event_id: Option<String>,
    /// The API key, for clients that cannot send headers (browsers' EventSource).
    #[allow(dead_code)] // read by the auth middleware
    access_token: Option<String>,
}

/// A person's notification changes, live (Server-Sent Events).
///
/// Each event is `id: <the person's change number>`, `event: notification`, `data:` a
/// JSON object: `seq`, `kind` (created, status, read, delivered, opened), `at`, and the
/// notification (`id`, `notification_type`, `channel`, `status` and `read_at` as the
/// change left them, `subject`, `text`, `created_at`, `suppression_reason`,
/// `bundle_id`). Private (operators') notifications are not streamed. With
/// `Last-Event-ID` (or `?last_event_id=`) the changes after that number are replayed
/// first; without, only new changes are sent. `event: reset` means changes were lost
/// (pruned, or the person was deleted and created again): reload what you show. A
/// comment line every 15 s keeps the connection alive. Browsers may pass the key as
/// `?access_token=`. One API key may hold `HERALD_MAX_STREAMS_PER_KEY` (100) streams
/// open in each api process; beyond, 429.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/stream", tag = "inbox",
    params(
        ("user_id" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this change number"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "an endless `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "a malformed Last-Event-ID", body = ErrorBody),
        (status = 401, description = "missing or wrong key", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
        (status = 429, description = "the key holds as many open streams as allowed", body = ErrorBody),
    ))]
pub async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    // An id no person can have (too long, control characters) names nobody: the
    // extractor answers 404 before a slot is taken.
    PathUserId(user_id): PathUserId,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?"));
    let resume = parse_resume(header.or(query.last_event_id.as_deref()))?;

    let key = req.extensions().get::<CallerKey>().copied();
    let slot = state.stream_slots.take(key)?;
    // Watch before reading where the log stands: a change committed in between is
    // then both signalled and read, never lost between the two.
    let watch = state.hub.watch(&user_id);
    // The connection is taken here, not by an extractor: it is not held by the stream.
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let position = changes::position(&mut conn, &user_id)
        .await?
        .ok_or_else(|| unknown_user(&user_id))?;
    drop(conn);

    let mut feed = Feed::new(state.get_ref().clone(), user_id, watch, slot);
    feed.out.push_back(Bytes::from(format!(
        "retry: {RECONNECT_MS}\n: herald stream\n\n"
    )));
    match resume {
        Some(n) if n <= position => feed.last = n,
        // A number this person never reached: from before they were deleted and
        // created again. Start afresh and say so.
        Some(_) => {
            feed.last = position;
            feed.out
                .push_back(reset_event(position, "the change log was reset"));
        }
        None => feed.last = position,
    }
    let body = futures::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // nginx would otherwise buffer the stream
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The change number to resume after; an empty value means none (EventSource sends
/// none before its first event with an id).
fn parse_resume(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Last-Event-ID must be a change number (a non-negative integer), got {s:?}"
                ))
            }),
    }
}

/// One SSE event for a change.
fn change_event(change: &Change) -> Bytes {
    // serde_json writes one line (newlines inside strings are escaped), as SSE needs.
    let data = serde_json::to_string(change).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "id: {}\nevent: notification\ndata: {data}\n\n",
        change.seq
    ))
}

/// Tells the client that changes before `seq` are gone: it should reload.
fn reset_event(seq: i64, reason: &str) -> Bytes {
    let data = json!({"seq": seq, "reason": reason});
    Bytes::from(format!("id: {seq}\nevent: reset\ndata: {data}\n\n"))
}

/// One client's stream: where it stands and what wakes it.
struct Feed {
    state: AppState,
    user_id: String,
    /// The last change number sent (or the starting point).
    last: i64,
    /// Woken by announcements of this person's changes.
    watch: PersonWatch,
    /// When to read although nothing woke the stream (see the module docs).
    recheck_at: Instant,
    keep_alive_at: Instant,
    /// Chunks ready to send.
    out: VecDeque<Bytes>,
    /// Read at once, without waiting: at the start (replay) and after a full batch.
    read_now: bool,
    /// Whether the last read failed, so a database outage is logged once per stream.
    failing: bool,
    _open: OpenStream,
    _slot: Slot,
}

impl Feed {
    fn new(state: AppState, user_id: String, watch: PersonWatch, slot: Slot) -> Feed {
        let now = Instant::now();
        Feed {
            _open: OpenStream::new(&state),
            _slot: slot,
            state,
            user_id,
            last: 0,
            watch,
            recheck_at: now,
            keep_alive_at: now + KEEP_ALIVE_EVERY,
            out: VecDeque::new(),
            read_now: true,
            failing: false,
        }
    }

    /// The next bytes to send; waits for changes (or the keep-alive) when there are none.
    async fn next_chunk(&mut self) -> Bytes {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                self.keep_alive_at = Instant::now() + KEEP_ALIVE_EVERY;
                return chunk;
            }
            if !self.read_now && !self.wait().await {
                self.keep_alive_at = Instant::now() + KEEP_ALIVE_EVERY;
                return Bytes::from_static(b": keep-alive\n\n");
            }
            self.read().await;
        }
    }

    /// Waits for a wake-up or the re-check (true: read the log) or the keep-alive
    /// deadline (false). A burst of announcements wakes it once.
    async fn wait(&mut self) -> bool {
        tokio::select! {
            _ = self.watch.changed() => true,
            _ = tokio::time::sleep_until(self.recheck_at) => true,
            _ = tokio::time::sleep_until(self.keep_alive_at) => false,
        }
    }

    /// How long until the next read that nothing woke: the re-check while the hub is
    /// subscribed, spread a little so that streams opened together do not read
    /// together; a short poll while it is not (the hub wakes every stream when that
    /// changes, so this is chosen afresh).
    fn next_recheck(&self) -> Duration {
        let recheck = self.state.stream_recheck.max(MIN_RECHECK);
        if self.watch.is_live() {
            recheck.mul_f64(rand::random_range(0.9..1.1))
        } else {
            recheck.min(POLL_WHILE_UNSUBSCRIBED)
        }
    }

    /// Reads the changes after `last` and queues their events.
    async fn read(&mut self) {
        self.read_now = false;
        // Counted from the last read: while announcements keep coming, the re-check
        // never adds a query of its own.
        self.recheck_at = Instant::now() + self.next_recheck();
        self.state
            .stream_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows = match self.read_rows().await {
            Ok(rows) => {
                self.failing = false;
                rows
            }
            Err(e) => {
                // Tried again soon; the client just waits a little longer.
                if !self.failing {
                    tracing::warn!(error = %e, "stream cannot read the change log");
                }
                self.failing = true;
                self.recheck_at = Instant::now() + RETRY_READ_AFTER;
                return;
            }
        };
        self.read_now = rows.len() as i64 == BATCH;
        if let Some(first) = rows.first() {
            if first.seq != self.last + 1 {
                // Numbers are dense, so a hole means pruned changes.
                self.out.push_back(reset_event(
                    first.seq - 1,
                    "older changes are no longer kept",
                ));
            }
        }
        for change in &rows {
            self.out.push_back(change_event(change));
            self.last = change.seq;
        }
    }

    async fn read_rows(&self) -> Result<Vec<Change>, ApiError> {
        let mut conn = herald_store::pool::get(&self.state.pool).await?;
        Ok(changes::after(&mut conn, &self.user_id, self.last, BATCH).await?)
    }
}

/// Counts the open streams in the `herald_sse_streams` gauge while alive.
struct OpenStream(prometheus::IntGauge);

impl OpenStream {
    fn new(state: &AppState) -> OpenStream {
        state.metrics.sse_streams.inc();
        OpenStream(state.metrics.sse_streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_is_a_non_negative_integer_or_nothing() {
        assert_eq!(parse_resume(None).ok(), Some(None));
        assert_eq!(parse_resume(Some("")).ok(), Some(None));
        assert_eq!(parse_resume(Some(" 42 ")).ok(), Some(Some(42)));
        assert_eq!(parse_resume(Some("0")).ok(), Some(Some(0)));
        for bad in ["-1", "abc", "1.5", "99999999999999999999"] {
            assert!(parse_resume(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_are_one_data_line_with_the_change_number_as_id() {
        let change = Change {
            seq: 7,
            kind: "created".into(),
            at: chrono::Utc::now(),
            id: uuid::Uuid::now_v7(),
            status: "sent".into(),
            read_at: None,
            notification_type: "T".into(),
            channel: "in_app".into(),
            subject: None,
            text: "two\nlines".into(),
            created_at: chrono::Utc::now(),
            suppression_reason: None,
            bundle_id: None,
        };
        let text = String::from_utf8(change_event(&change).to_vec()).unwrap_or_default();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: notification");
        assert!(lines[2].starts_with("data: {"), "{text}");
        assert_eq!(&lines[3..], ["", ""], "{text}");
        let reset = String::from_utf8(reset_event(3, "why").to_vec()).unwrap_or_default();
        assert!(reset.starts_with("id: 3\nevent: reset\ndata: {"), "{reset}");
    }
}
