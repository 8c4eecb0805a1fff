//! One try of one notification (SPEC 6).
//!
//! A short Redis lock keeps two workers from delivering the same notification at once
//! (a reclaimed job and a sweep can overlap); the notification's status in Postgres
//! makes a late duplicate a no-op. Every try writes a `delivery_attempts` row together
//! with the notification's new state in one statement. A retry's due time goes to
//! Postgres first and then to the delayed set, so losing Redis loses no retry.

use crate::context::Context;
use crate::http::{HttpResult, Target};
use chrono::Utc;
use herald_core::channels::{Channel, ChannelKind};
use herald_core::payload::{build_payload, PayloadInput};
use herald_core::retry::{classify_status, with_cap, AttemptOutcome};
use herald_queue::Job;
use herald_store::notifications::{self, status, AttemptRecord, DeliveryRow};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Margin added to the channel timeout for the delivery lock's lifetime.
const LOCK_MARGIN: Duration = Duration::from_secs(10);

pub async fn deliver(ctx: &Context, id: Uuid) -> anyhow::Result<()> {
    let lock = format!("deliver:{id}");
    let token = Uuid::new_v4().to_string();
    let ttl = ctx.config.channels.max_timeout() + LOCK_MARGIN;
    if !ctx.queue.try_lock(&lock, &token, ttl).await? {
        // Another worker is delivering it, or died doing so: look again once the lock
        // has expired. A live holder will have finished and the job is then a no-op.
        let due = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(1));
        let job = Job::Deliver { notification_id: id };
        ctx.queue.schedule(&[(herald_queue::QueueName::Default, job, due.timestamp_millis())]).await?;
        return Ok(());
    }
    let result = deliver_locked(ctx, id).await;
    if let Err(e) = ctx.queue.unlock(&lock, &token).await {
        tracing::debug!(error = %e, "unlock failed; the lock expires by itself");
    }
    result
}

async fn deliver_locked(ctx: &Context, id: Uuid) -> anyhow::Result<()> {
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    let Some(row) = notifications::for_delivery(&mut conn, id).await? else {
        return Ok(());
    };
    if row.status != status::PENDING {
        return Ok(());
    }
    let queue = Context::queue_for(&row.severity);
    if row.due_at > Utc::now() + chrono::Duration::seconds(1) {
        // Early (a sweep or restart re-enqueued it): put it back until due.
        let job = Job::Deliver {
            notification_id: id,
        };
        ctx.queue
            .schedule(&[(queue, job, row.due_at.timestamp_millis())])
            .await?;
        return Ok(());
    }
    let Some(channel) = ctx.config.channels.get(&row.channel) else {
        let reason = format!("unknown channel {:?}", row.channel);
        tracing::error!(notification_id = %id, %reason, "delivery failed");
        notifications::mark_failed(&mut conn, id, &reason).await?;
        return Ok(());
    };
    let target = match channel.kind {
        ChannelKind::InApp => {
            notifications::mark_sent(&mut conn, id).await?;
            return Ok(());
        }
        ChannelKind::PersonalWebhook => row
            .webhook_url
            .clone()
            .map(Target::Personal)
            .or_else(|| channel.url.clone().map(Target::Channel)),
        ChannelKind::Provider => channel.url.clone().map(Target::Channel),
    };
    let Some(target) = target else {
        let reason = "the person has no webhook_url and the channel no url";
        tracing::error!(notification_id = %id, reason, "delivery failed");
        notifications::mark_failed(&mut conn, id, reason).await?;
        return Ok(());
    };
    drop(conn); // do not hold a database connection across the HTTP call

    let body = payload_bytes(&row, channel);
    let started_at = Utc::now();
    let clock = Instant::now();
    let http = ctx
        .clients
        .post(
            &target,
            body,
            &id.to_string(),
            channel.secret.as_ref(),
            channel.timeout,
        )
        .await;
    let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;

    let attempt = row.attempts.saturating_add(1).max(1) as u32;
    let outcome = outcome_of(&http, attempt, channel.max_attempts);
    let next_due = (outcome == AttemptOutcome::Retry).then(|| {
        let delay = channel
            .backoff
            .delay(attempt)
            .max(http.retry_after.unwrap_or_default());
        Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
    });
    let record = AttemptRecord {
        notification_id: id,
        started_at,
        duration_ms,
        http_status: http.status.map(i32::from),
        error: http.error.clone(),
        outcome,
        next_due,
    };
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    notifications::record_attempt(&mut conn, &record).await?;
    match (outcome, next_due) {
        (AttemptOutcome::Retry, Some(due)) => {
            let job = Job::Deliver {
                notification_id: id,
            };
            ctx.queue
                .schedule(&[(queue, job, due.timestamp_millis())])
                .await?;
        }
        (AttemptOutcome::PermanentFailure, _) => {
            tracing::error!(notification_id = %id, notification_type = %row.notification_type,
                channel = %row.channel, attempts = attempt, error = ?http.error,
                "delivery failed permanently");
        }
        _ => {}
    }
    Ok(())
}

fn outcome_of(http: &HttpResult, attempt: u32, max_attempts: u32) -> AttemptOutcome {
    if http.forbidden {
        return AttemptOutcome::PermanentFailure;
    }
    with_cap(classify_status(http.status), attempt, max_attempts)
}

fn payload_bytes(row: &DeliveryRow, channel: &Channel) -> Vec<u8> {
    let to = match channel.name.as_str() {
        "email" => row.email.as_deref(),
        "sms" => row.phone.as_deref(),
        "webhook" => row.webhook_url.as_deref(),
        _ => None,
    };
    let body = build_payload(&PayloadInput {
        notification_id: row.id,
        notification_type: &row.notification_type,
        channel: &row.channel,
        user_id: row.user_id.as_deref(),
        to,
        severity: &row.severity,
        subject: row.subject.as_deref(),
        text: &row.text,
        event_id: row.event_id,
        event_type: &row.event_type,
        event_timestamp: row.event_timestamp,
        data: &row.properties,
    });
    // A serde_json::Value always serializes.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_target_fails_at_once_and_retries_stop_at_the_cap() {
        let forbidden = HttpResult {
            forbidden: true,
            ..Default::default()
        };
        assert_eq!(
            outcome_of(&forbidden, 1, 3),
            AttemptOutcome::PermanentFailure
        );
        let down = HttpResult::default();
        assert_eq!(outcome_of(&down, 2, 3), AttemptOutcome::Retry);
        assert_eq!(outcome_of(&down, 3, 3), AttemptOutcome::PermanentFailure);
        let bad_request = HttpResult {
            status: Some(400),
            ..Default::default()
        };
        assert_eq!(
            outcome_of(&bad_request, 1, 3),
            AttemptOutcome::PermanentFailure
        );
    }
}
