//! One try of one notification (contract §6), executed. Core's delivery module decides
//! every step (`herald_core::delivery`); this file loads the facts it asks for (the
//! row, the host's circuit), runs the step it returns (a POST, store writes, a Redis
//! schedule) and records what core says a try means.
//!
//! A short Redis lock keeps two workers from delivering the same notification at once
//! (a reclaimed job and a sweep can overlap); the notification's status in Postgres
//! makes a late duplicate a no-op. Every try writes a `delivery_attempts` row together
//! with the notification's new state in one statement. A retry's due time goes to
//! Postgres first and then to the delayed set, so losing Redis loses no retry.

use crate::context::Context;
use crate::host_slots::HostSlot;
use chrono::{DateTime, Utc};
use herald_core::channels::ChannelKind;
use herald_core::circuit::CircuitPolicy;
use herald_core::delivery::Target;
use herald_core::delivery::{
    self, AttemptVerdict, CircuitEffect, DeliveryFacts, DeliveryStep, HttpTry, Outbound,
};
use herald_core::payload::{build_payload, PayloadInput};
use herald_core::provider_request::TemplateInput;
use herald_core::retry::AttemptOutcome;
use herald_core::signing::{EndpointSecrets, WebhookSecret};
use herald_queue::{Job, Lane};
use herald_store::notifications::{self, AttemptRecord, DeliveryRow};
use serde_json::Value;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Margin added to the channel timeout for the delivery lock's lifetime.
const LOCK_MARGIN: Duration = Duration::from_secs(10);

/// Delivers notification `id`, whose job came on `lane` (where it goes back to when
/// another worker holds its lock). `row` is its stored row when the caller already
/// holds it (a hand-off from routing, `crate::hand_off`); else it is loaded.
pub async fn deliver(
    ctx: &Context,
    id: Uuid,
    lane: Lane,
    row: Option<DeliveryRow>,
) -> anyhow::Result<()> {
    let lock = format!("deliver:{id}");
    let token = Uuid::new_v4().to_string();
    let ttl = ctx.config.channels.max_timeout() + LOCK_MARGIN;
    if !ctx.locks.try_lock(&lock, &token, ttl).await? {
        // Another worker is delivering it, or died doing so: look again once the lock
        // has expired. A live holder will have finished and the job is then a no-op.
        let lane = Lane::new(lane.partition, herald_queue::QueueName::Default);
        return schedule_job(ctx, lane, id, due_in(ttl)).await;
    }
    let result = deliver_locked(ctx, id, row).await;
    if let Ok(Some(changed)) = &result {
        if changed.bundle_id.is_some() {
            settle_bundle(ctx, id).await?;
        }
        if let Some(user_id) = &changed.user_id {
            ctx.changes.announce(&[user_id.as_str()]);
        }
    }
    if let Err(e) = ctx.locks.unlock(&lock, &token).await {
        tracing::debug!(error = %e, "unlock failed; the lock expires by itself");
    }
    result.map(|_| ())
}

/// What a delivery changed: whose notification, and which bundle it carries.
pub struct Changed {
    pub user_id: Option<String>,
    pub bundle_id: Option<Uuid>,
}

/// A bundle's carrier reached a final state: its items take it over (contract §7).
async fn settle_bundle(ctx: &Context, carrier: Uuid) -> anyhow::Result<()> {
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    herald_store::bundles::settle_items(&mut conn, carrier).await?;
    Ok(())
}

/// Delivers; returns the recipient when the notification's state changed.
async fn deliver_locked(
    ctx: &Context,
    id: Uuid,
    row: Option<DeliveryRow>,
) -> anyhow::Result<Option<Changed>> {
    let row = match row {
        Some(row) => Some(row),
        None => ctx.statements.delivery_row(id).await?,
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let facts = facts_of(&row);
    if let Some(step) = delivery::check_due(&facts, Utc::now()) {
        return execute(ctx, &row, step).await;
    }
    if let Some(why) = recheck_failure(ctx, &row).await? {
        let reason = delivery::recheck_reason(&row.notification_type, &why);
        notifications::mark_suppressed(&mut db(ctx).await?, id, &reason).await?;
        ctx.metrics.notification(&row.channel, "suppressed");
        return Ok(Some(changed(&row)));
    }
    let step = match delivery::choose(&facts, ctx.config.channels.get(&row.channel)) {
        DeliveryStep::Send(outbound) => gate(ctx, &facts, outbound).await?,
        other => other,
    };
    // The host's slot is held until the try is recorded.
    let (step, _slot) = match step {
        DeliveryStep::Send(outbound) => throttle(ctx, outbound).await?,
        other => (other, None),
    };
    execute(ctx, &row, step).await
}

/// The row as core's delivery decisions read it.
fn facts_of(row: &DeliveryRow) -> DeliveryFacts<'_> {
    DeliveryFacts {
        status: &row.status,
        channel: &row.channel,
        attempts: row.attempts,
        due_at: row.due_at,
        created_at: row.created_at,
        held_since: row.held_at,
        email: row.email.as_deref(),
        phone: row.phone.as_deref(),
        traits: row.traits.as_ref().unwrap_or(&Value::Null),
        event_traits: &row.event_traits,
        webhook_url: row.webhook_url.as_deref(),
        webhook_disabled: row.webhook_disabled,
    }
}

fn changed(row: &DeliveryRow) -> Changed {
    Changed {
        user_id: row.user_id.clone(),
        bundle_id: row.bundle_id,
    }
}

/// Loads the target host's circuit (claiming the probe when core needs to know) and
/// asks core whether the try may go out now.
async fn gate<'c>(
    ctx: &Context,
    facts: &DeliveryFacts<'_>,
    outbound: Outbound<'c>,
) -> anyhow::Result<DeliveryStep<'c>> {
    let policy = CircuitPolicy::default();
    let host = outbound.target.host();
    let state = ctx.circuits.state(&host).await?;
    let probe_claimed = delivery::needs_probe_claim(&state)
        && ctx.circuits.try_probe(&host, policy.probe_every).await?;
    Ok(delivery::gate(
        &policy,
        &state,
        probe_claimed,
        facts,
        Utc::now(),
        outbound,
    ))
}

/// The host's in-flight limit (`max_in_flight`, waited for a moment in process), then
/// the channel's shared rate (`rate_limit_per_s`): over either, the job goes back to
/// the delayed set (until the next token, or for a moment when the host stays busy)
/// without spending an attempt.
/// A send keeps the host's slot.
async fn throttle<'c>(
    ctx: &Context,
    outbound: Outbound<'c>,
) -> anyhow::Result<(DeliveryStep<'c>, Option<HostSlot>)> {
    let channel = outbound.channel;
    let later = |wait: Duration| (DeliveryStep::WaitUntil(due_in(wait)), None);
    let Some(slot) = ctx
        .host_slots
        .acquire(
            &outbound.target.host(),
            channel.max_in_flight,
            crate::host_slots::HOST_BUSY_WAIT,
        )
        .await
    else {
        return Ok(later(crate::host_slots::HOST_BUSY_WAIT));
    };
    if let Some(per_second) = channel.rate_limit_per_s {
        if let Some(wait) = ctx.rate_limits.take(&channel.name, per_second).await? {
            return Ok(later(wait));
        }
    }
    Ok((DeliveryStep::Send(outbound), Some(slot)))
}

/// Runs a step; returns the recipient when the notification's state changed.
async fn execute(
    ctx: &Context,
    row: &DeliveryRow,
    step: DeliveryStep<'_>,
) -> anyhow::Result<Option<Changed>> {
    match step {
        DeliveryStep::Skip => return Ok(None),
        DeliveryStep::WaitUntil(due) => {
            schedule(ctx, row, due).await?;
            return Ok(None);
        }
        DeliveryStep::HoldUntil(until) => {
            notifications::hold(&mut db(ctx).await?, row.id, until).await?;
            ctx.metrics.notification(&row.channel, "held");
            schedule(ctx, row, until).await?;
            return Ok(None);
        }
        DeliveryStep::MarkSent => {
            notifications::mark_sent(&mut db(ctx).await?, row.id).await?;
            ctx.metrics.notification(&row.channel, "sent");
        }
        DeliveryStep::Fail { reason } => fail_without_trying(ctx, row, &reason).await?,
        DeliveryStep::Send(outbound) => send(ctx, row, &outbound).await?,
    }
    Ok(Some(changed(row)))
}

/// Puts the notification's job back on its queue for `due`.
async fn schedule(ctx: &Context, row: &DeliveryRow, due: DateTime<Utc>) -> anyhow::Result<()> {
    let partition = ctx
        .queue
        .partitions()
        .of_recipient(row.user_id.as_deref(), row.id);
    let lane = Lane::new(
        partition,
        herald_core::queues::queue_for_stored(&row.severity),
    );
    schedule_job(ctx, lane, row.id, due).await
}

/// Puts notification `id`'s delivery job in `lane`'s delayed set for `due`: the one
/// way a delivery is tried again later (a retry, a busy lock, a failed hand-off).
pub async fn schedule_job(
    ctx: &Context,
    lane: Lane,
    id: Uuid,
    due: DateTime<Utc>,
) -> anyhow::Result<()> {
    let job = Job::Deliver {
        notification_id: id,
    };
    ctx.queue
        .schedule(&[(lane, job, due.timestamp_millis())])
        .await?;
    Ok(())
}

/// The instant `wait` from now (a minute from now if `wait` is beyond chrono's range).
pub fn due_in(wait: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(1))
}

/// A connection for the rarer steps; the common ones go through `ctx.statements`.
async fn db(ctx: &Context) -> Result<herald_store::Conn, herald_store::StoreError> {
    herald_store::pool::get(&ctx.pool).await
}

async fn fail_without_trying(ctx: &Context, row: &DeliveryRow, reason: &str) -> anyhow::Result<()> {
    tracing::error!(notification_id = %row.id, notification_type = %row.notification_type,
        reason, "delivery failed");
    notifications::mark_failed(&mut db(ctx).await?, row.id, reason).await?;
    ctx.metrics.notification(&row.channel, "failed");
    Ok(())
}

/// POSTs once and records what core makes of the result: the attempt (with the
/// notification's new state), the host's circuit, the 410 rule and the retry.
async fn send(ctx: &Context, row: &DeliveryRow, outbound: &Outbound<'_>) -> anyhow::Result<()> {
    let host = outbound.target.host();
    let started_at = Utc::now();
    let clock = Instant::now();
    let http = match outbound.channel.kind {
        ChannelKind::Smtp => mail(ctx, row, outbound).await,
        _ => post(ctx, row, outbound).await,
    };
    let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let verdict = delivery::after_attempt(outbound, &http, Utc::now());
    account_to_circuit(ctx, &host, row, verdict.circuit).await;
    // Before the attempt is recorded: once a reader sees the notification failed for a
    // 410, the person's webhook is already off (were it the other way round, a reader
    // could see the failure and still find the webhook on).
    if verdict.disable_webhook {
        if let Some(user_id) = &row.user_id {
            tracing::warn!(%user_id, "webhook answered 410 Gone: disabling it");
            herald_store::people::disable_webhook(&mut db(ctx).await?, user_id).await?;
        }
    }
    ctx.statements
        .record_attempt(attempt_record(
            row,
            started_at,
            duration_ms,
            &http,
            &verdict,
        ))
        .await?;
    ctx.metrics
        .attempt(&row.channel, &http, &verdict, row.received_at);
    match (verdict.outcome, verdict.next_due) {
        (AttemptOutcome::Retry, Some(due)) => schedule(ctx, row, due).await?,
        (AttemptOutcome::PermanentFailure, _) => {
            tracing::error!(notification_id = %row.id, notification_type = %row.notification_type,
                channel = %row.channel, attempts = outbound.attempt, error = ?http.error,
                "delivery failed permanently");
        }
        _ => {}
    }
    Ok(())
}

/// The HTTP request itself: the channel's shape (the envelope, or its body template),
/// its headers, the signature(s) and its timeout.
async fn post(ctx: &Context, row: &DeliveryRow, outbound: &Outbound<'_>) -> HttpTry {
    let channel = outbound.channel;
    let to = outbound.to.as_deref();
    let body = match &channel.request.body {
        None => payload_bytes(row, to),
        Some(template) => match template.render(&template_input(row, to).to_json()) {
            Ok(body) => body,
            // The same notification renders the same way on every try: permanent.
            Err(e) => {
                return HttpTry {
                    forbidden: true,
                    error: Some(format!("channel {} body: {e}", channel.name)),
                    ..HttpTry::default()
                }
            }
        },
    };
    let msg_id = row.id.to_string();
    let secrets = signing_secrets(ctx, row, outbound);
    let request = crate::http::Request {
        method: &channel.request.method,
        headers: &channel.request.headers,
        content_type: channel.request.content_type(),
        body,
        msg_id: &msg_id,
        secrets: &secrets,
        timeout: channel.timeout,
    };
    ctx.clients.send(&outbound.target, request).await.into()
}

/// A person's own webhook is signed with its own secret (and, for the overlap after
/// a rotation, the previous one too); anything else with the channel's secret.
fn signing_secrets(
    ctx: &Context,
    row: &DeliveryRow,
    outbound: &Outbound<'_>,
) -> Vec<WebhookSecret> {
    if let (Target::Personal(_), Some(current)) = (&outbound.target, &row.webhook_secret) {
        let stored = EndpointSecrets {
            current,
            previous: row.previous_webhook_secret.as_deref(),
            rotated_at: row.webhook_secret_rotated_at,
        };
        return stored.signing_at(ctx.settings.webhook_secret_overlap, Utc::now());
    }
    outbound.channel.secret.iter().cloned().collect()
}

/// One SMTP transaction: the rendered subject and text, with the template's `html`
/// and `List-Unsubscribe` when it has them.
async fn mail(ctx: &Context, row: &DeliveryRow, outbound: &Outbound<'_>) -> HttpTry {
    // Core sends a mail only with an address (`no address` fails before).
    let Some(to) = outbound.to.as_deref() else {
        return HttpTry {
            forbidden: true,
            error: Some(delivery::NO_ADDRESS.into()),
            ..HttpTry::default()
        };
    };
    let vars = mail_template_vars(row);
    let mail = crate::smtp::Mail {
        notification_id: row.id,
        to,
        subject: row.subject.as_deref().unwrap_or(&row.notification_type),
        text: &row.text,
        html: ctx
            .config
            .render_extra(&row.notification_type, "html", &vars),
        list_unsubscribe: ctx.config.render_extra(
            &row.notification_type,
            "list_unsubscribe",
            &vars,
        ),
    };
    ctx.mailers.send(&outbound.channel.name, &mail).await
}

/// What a template's `html` and `list_unsubscribe` see at delivery: the variables
/// its subject and text saw at routing, rebuilt from the stored rows.
fn mail_template_vars(row: &DeliveryRow) -> Value {
    serde_json::json!({
        "event_id": row.event_id,
        "event_type": row.event_type,
        "event_timestamp": row.event_timestamp.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "properties": row.properties,
        "user_traits": row.event_traits,
        "user": {"user_id": row.user_id, "email": row.email, "phone": row.phone,
                 "traits": row.traits},
    })
}

/// What a channel's body template sees.
fn template_input<'a>(row: &'a DeliveryRow, to: Option<&'a str>) -> TemplateInput<'a> {
    TemplateInput {
        notification_id: row.id,
        notification_type: &row.notification_type,
        severity: &row.severity,
        channel: &row.channel,
        to,
        subject: row.subject.as_deref(),
        text: &row.text,
        user_id: row.user_id.as_deref(),
        email: row.email.as_deref(),
        phone: row.phone.as_deref(),
        event_id: row.event_id,
        event_type: &row.event_type,
        event_timestamp: row.event_timestamp,
        data: &row.properties,
    }
}

fn attempt_record(
    row: &DeliveryRow,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    http: &HttpTry,
    verdict: &AttemptVerdict,
) -> AttemptRecord {
    AttemptRecord {
        notification_id: row.id,
        started_at,
        duration_ms,
        http_status: http.status.map(i32::from),
        error: http.error.clone(),
        outcome: verdict.outcome,
        next_due: verdict.next_due,
    }
}

/// Applies a try's effect on the host's circuit. Failing to do so only weakens the
/// breaker, so it is logged, not fatal.
async fn account_to_circuit(ctx: &Context, host: &str, row: &DeliveryRow, effect: CircuitEffect) {
    let result = match effect {
        CircuitEffect::Untouched => Ok(()),
        CircuitEffect::Reset => ctx.circuits.record_success(host).await,
        CircuitEffect::CountFailure => {
            let now_ms = Utc::now().timestamp_millis();
            let policy = CircuitPolicy::default();
            match ctx
                .circuits
                .record_failure(host, &row.id.to_string(), &policy, now_ms)
                .await
            {
                Ok(true) => {
                    tracing::warn!(%host, "circuit opened: the host keeps failing");
                    ctx.metrics.circuit_opened(&row.channel);
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(%host, error = %e, "could not update the circuit");
    }
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

/// The JSON body; `to` is the person's address on the channel, as core chose it.
fn payload_bytes(row: &DeliveryRow, to: Option<&str>) -> Vec<u8> {
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
