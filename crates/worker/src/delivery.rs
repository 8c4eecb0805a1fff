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
use herald_core::circuit::{CircuitPolicy, Gate};
use herald_core::payload::{build_payload, PayloadInput};
use herald_core::retry::{classify_status, with_cap, AttemptOutcome};
use herald_queue::Job;
use herald_store::notifications::{self, AttemptRecord, DeliveryRow};
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
        let due =
            Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(1));
        let job = Job::Deliver {
            notification_id: id,
        };
        ctx.queue
            .schedule(&[(
                herald_queue::QueueName::Default,
                job,
                due.timestamp_millis(),
            )])
            .await?;
        return Ok(());
    }
    let result = deliver_locked(ctx, id).await;
    if let Ok(Some(changed)) = &result {
        if changed.bundle_id.is_some() {
            settle_bundle(ctx, id).await?;
        }
        if let Some(user_id) = &changed.user_id {
            announce(ctx, &[user_id.as_str()]).await;
        }
    }
    if let Err(e) = ctx.queue.unlock(&lock, &token).await {
        tracing::debug!(error = %e, "unlock failed; the lock expires by itself");
    }
    result.map(|_| ())
}

/// What a delivery changed: whose notification, and which bundle it carries.
pub struct Changed {
    pub user_id: Option<String>,
    pub bundle_id: Option<Uuid>,
}

/// A bundle's carrier reached a final state: its items take it over (SPEC 7).
async fn settle_bundle(ctx: &Context, carrier: Uuid) -> anyhow::Result<()> {
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    herald_store::bundles::settle_items(&mut conn, carrier).await?;
    Ok(())
}

/// Tells live views (the console's stream) that a person's notifications changed.
pub async fn announce(ctx: &Context, user_ids: &[&str]) {
    if let Err(e) = ctx.queue.publish_changes(user_ids).await {
        tracing::debug!(error = %e, "could not announce changes");
    }
}

/// Delivers; returns the recipient when the notification's state changed.
async fn deliver_locked(ctx: &Context, id: Uuid) -> anyhow::Result<Option<Changed>> {
    let Some(row) = ctx.statements.delivery_row(id).await? else {
        return Ok(None);
    };
    if row.status != herald_core::status::NotificationStatus::Pending {
        return Ok(None);
    }
    let changed = Ok(Some(Changed {
        user_id: row.user_id.clone(),
        bundle_id: row.bundle_id,
    }));
    let queue = herald_core::queues::queue_for_stored(&row.severity);
    if row.due_at > Utc::now() + chrono::Duration::seconds(1) {
        // Early (a sweep or restart re-enqueued it): put it back until due.
        let job = Job::Deliver {
            notification_id: id,
        };
        ctx.queue
            .schedule(&[(queue, job, row.due_at.timestamp_millis())])
            .await?;
        return Ok(None);
    }
    if let Some(why) = recheck_failure(ctx, &row).await? {
        let reason = format!(
            "skipped {}: {why} (rechecked after the delay)",
            row.notification_type
        );
        notifications::mark_suppressed(&mut db(ctx).await?, id, &reason).await?;
        return changed;
    }
    let Some(channel) = ctx.config.channels.get(&row.channel) else {
        let reason = format!("unknown channel {:?}", row.channel);
        fail_without_trying(ctx, &row, &reason).await?;
        return changed;
    };
    let target = match target_of(&row, channel) {
        Ok(Some(target)) => target,
        Ok(None) => {
            notifications::mark_sent(&mut db(ctx).await?, id).await?;
            return changed;
        }
        Err(reason) => {
            fail_without_trying(ctx, &row, reason).await?;
            return changed;
        }
    };
    let host = herald_core::circuit::host_of(target.url()).unwrap_or_default();
    let (gate, streak) = circuit_gate(ctx, &host, &row).await?;
    match gate {
        Gate::Pass | Gate::Probe => {}
        Gate::Hold { until_ms } => {
            let until = chrono::DateTime::from_timestamp_millis(until_ms).unwrap_or_else(Utc::now);
            notifications::reschedule(&mut db(ctx).await?, id, until).await?;
            let job = Job::Deliver {
                notification_id: id,
            };
            ctx.queue.schedule(&[(queue, job, until_ms)]).await?;
            return Ok(None);
        }
        Gate::GiveUp => {
            fail_without_trying(ctx, &row, "circuit_open").await?;
            return changed;
        }
    }

    let attempt = row.attempts.saturating_add(1).max(1) as u32;
    let (http, record) = try_once(ctx, &row, channel, &target, attempt).await;
    account_to_circuit(ctx, &host, streak, &row, &http, record.outcome).await;
    let (outcome, next_due) = (record.outcome, record.next_due);
    ctx.statements.record_attempt(record).await?;
    if http.status == Some(410) {
        if let (Target::Personal(_), Some(user_id)) = (&target, &row.user_id) {
            tracing::warn!(%user_id, "webhook answered 410 Gone: disabling it");
            herald_store::people::disable_webhook(&mut db(ctx).await?, user_id).await?;
        }
    }
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
    changed
}

/// Where the notification goes: None for the inbox (no HTTP call), an error text when
/// it cannot go anywhere.
fn target_of(row: &DeliveryRow, channel: &Channel) -> Result<Option<Target>, &'static str> {
    match channel.kind {
        ChannelKind::InApp => Ok(None),
        ChannelKind::PersonalWebhook if row.webhook_disabled => {
            Err("the person's webhook is disabled: it answered 410 Gone")
        }
        ChannelKind::PersonalWebhook => row
            .webhook_url
            .clone()
            .map(Target::Personal)
            .or_else(|| channel.url.clone().map(Target::Channel))
            .map(Some)
            .ok_or("the person has no webhook_url and the channel no url"),
        ChannelKind::Provider => channel
            .url
            .clone()
            .map(|u| Some(Target::Channel(u)))
            .ok_or("the channel has no url"),
    }
}

/// A connection for the rarer steps; the common ones go through `ctx.statements`.
async fn db(ctx: &Context) -> Result<herald_store::Conn, herald_store::StoreError> {
    herald_store::pool::get(&ctx.pool).await
}

async fn fail_without_trying(ctx: &Context, row: &DeliveryRow, reason: &str) -> anyhow::Result<()> {
    tracing::error!(notification_id = %row.id, notification_type = %row.notification_type,
        reason, "delivery failed");
    notifications::mark_failed(&mut db(ctx).await?, row.id, reason).await?;
    Ok(())
}

/// Asks the host's circuit whether this delivery may go out now; also says whether
/// the host has a failure streak (only then does a success need to reset it).
async fn circuit_gate(
    ctx: &Context,
    host: &str,
    row: &DeliveryRow,
) -> anyhow::Result<(Gate, bool)> {
    let policy = CircuitPolicy::default();
    let state = ctx.queue.circuit_state(host).await?;
    let probe_due = match state.opened_at_ms {
        Some(_) => ctx.queue.try_probe(host, policy.probe_every).await?,
        None => false,
    };
    let now_ms = Utc::now().timestamp_millis();
    let gate = policy.gate(&state, row.created_at.timestamp_millis(), now_ms, probe_due);
    Ok((gate, state.failures > 0))
}

/// Feeds a try's result into the host's circuit. Failing to do so only weakens the
/// breaker, so it is logged, not fatal.
async fn account_to_circuit(
    ctx: &Context,
    host: &str,
    streak: bool,
    row: &DeliveryRow,
    http: &HttpResult,
    outcome: AttemptOutcome,
) {
    let result = match (outcome, classify_status(http.status)) {
        (AttemptOutcome::Success, _) if streak => ctx.queue.record_success(host).await,
        (AttemptOutcome::Success, _) => Ok(()),
        (_, AttemptOutcome::Retry) if !http.forbidden => {
            let now_ms = Utc::now().timestamp_millis();
            let policy = CircuitPolicy::default();
            match ctx
                .queue
                .record_failure(host, &row.id.to_string(), &policy, now_ms)
                .await
            {
                Ok(true) => {
                    tracing::warn!(%host, "circuit opened: the host keeps failing");
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(%host, error = %e, "could not update the circuit");
    }
}

/// POSTs once and turns the result into the attempt to record.
async fn try_once(
    ctx: &Context,
    row: &DeliveryRow,
    channel: &Channel,
    target: &Target,
    attempt: u32,
) -> (HttpResult, AttemptRecord) {
    let body = payload_bytes(row, channel);
    let started_at = Utc::now();
    let clock = Instant::now();
    let msg_id = row.id.to_string();
    let http = ctx
        .clients
        .post(
            target,
            body,
            &msg_id,
            channel.secret.as_ref(),
            channel.timeout,
        )
        .await;
    let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let outcome = outcome_of(&http, attempt, channel.max_attempts);
    let next_due = (outcome == AttemptOutcome::Retry).then(|| {
        let delay = channel
            .backoff
            .delay(attempt)
            .max(http.retry_after.unwrap_or_default());
        Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
    });
    let record = AttemptRecord {
        notification_id: row.id,
        started_at,
        duration_ms,
        http_status: http.status.map(i32::from),
        error: http.error.clone(),
        outcome,
        next_due,
    };
    (http, record)
}

/// For a rule with `recheck: true`, why its conditions no longer hold now that the
/// delay is over (e.g. the bank got linked meanwhile); None when they still hold.
async fn recheck_failure(ctx: &Context, row: &DeliveryRow) -> anyhow::Result<Option<String>> {
    let Some(rule) = ctx
        .config
        .rules
        .by_notification_type(&row.notification_type)
    else {
        return Ok(None);
    };
    if !rule.recheck {
        return Ok(None);
    }
    let conn = &mut db(ctx).await?;
    let event = herald_store::events::find(conn, row.event_id).await?;
    let person = match &event.user_id {
        Some(user_id) => herald_store::people::find(conn, user_id).await?,
        None => None,
    };
    let moment = crate::conditions::Moment::Send;
    Ok(crate::conditions::failure(conn, rule, &event, person.as_ref(), moment).await?)
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
