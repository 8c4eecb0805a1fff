//! Routing: an event becomes notification rows, one per (recipient, rule).
//!
//! This module loads facts and carries out plans; what each row says is decided by
//! `herald_core::routing`. For each rule the event triggers, the rule's conditions are
//! checked, one page of recipients is loaded with their preferences and subscriptions
//! (contract §5.1), [`herald_core::routing::plan`] turns them into rows (status, reason,
//! severity, due time, rendered text), and the store inserts them: with one statement,
//! under the debounce lock (`notifications::insert_debounced`), or into the people's
//! bundles (`crate::bundling`). The new pending rows are then dispatched. Large
//! recipient sets are paged by user id: a job handles at most [`FAN_OUT_CHUNK`]
//! people and enqueues its continuation. The unique key on notifications makes every
//! step safe to repeat.

use crate::conditions::{self, Moment};
use crate::context::Context;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use herald_core::queues::{queue_for, queue_for_stored};
use herald_core::routing::FAN_OUT_CHUNK;
use herald_core::routing::{self as plan, PlannedNotification, Recipient, Templating};
use herald_core::rules::{Recipients, Rule};
use herald_core::status::NotificationStatus;
use herald_queue::{Job, Lane, Partition};
use herald_store::events::EventRow;
use herald_store::notifications::{self, DeliveryRow, Inserted, NewNotification};
use herald_store::people::TopicPage;
use herald_store::people::{self, Person};
use herald_store::Conn;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Handles a route job: the whole event (`rule` None) or one continuation page.
pub async fn route(
    ctx: &Context,
    event_id: Uuid,
    resume_rule: Option<&str>,
    after: Option<&str>,
) -> anyhow::Result<()> {
    let Some(event) = ctx.statements.event(event_id).await? else {
        tracing::warn!(%event_id, "route job for an unknown event dropped");
        return Ok(());
    };
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    let subject = match (&event.user_id, resume_rule) {
        (Some(user_id), None) => {
            Some(people::ensure_subject(&mut conn, user_id, &event.user_traits).await?)
        }
        (Some(user_id), Some(_)) => people::find(&mut conn, user_id).await?,
        (None, _) => None,
    };
    let rules: Vec<&Rule> = ctx.config.rules.matching(&event.event_type).collect();
    let start = match resume_rule {
        None => 0,
        Some(name) => match rules.iter().position(|r| r.notification_type == name) {
            Some(i) => i,
            None => {
                // The config changed under a running fan-out: start the event over;
                // rows that exist are not inserted twice.
                tracing::warn!(rule = name, "continuation for a rule no longer configured");
                0
            }
        },
    };
    for (i, rule) in rules.iter().enumerate().skip(start) {
        let resume_after = if i == start { after } else { None };
        if resume_after.is_none() {
            let failed =
                conditions::failure(&mut conn, rule, &event, subject.as_ref(), Moment::Routing)
                    .await?;
            if let Some(why) = failed {
                tracing::debug!(event_id = %event.id, rule = %rule.notification_type, %why,
                    "rule not triggered");
                continue;
            }
        }
        let full_page_ended_at =
            route_rule(ctx, &mut conn, &event, subject.as_ref(), rule, resume_after)
                .await
                .with_context(|| {
                    format!("routing {} for rule {}", event.id, rule.notification_type)
                })?;
        if let Some(last) = full_page_ended_at {
            // More recipients: the next job continues here. The event stays `received`
            // until the last page of the last rule, so if Redis loses the continuation
            // the recovery sweep routes the event again (idempotently).
            let next = Job::Route {
                event_id: event.id,
                rule: Some(rule.notification_type.clone()),
                after: Some(last),
            };
            let queue = queue_for(rule.severity_for(&event.properties));
            let lane = Lane::new(event_partition(ctx, &event), queue);
            ctx.queue.enqueue(&[(lane, next)]).await?;
            return Ok(());
        }
    }
    drop(conn);
    ctx.statements.mark_routed(event.id).await?;
    Ok(())
}

/// Routes one page of a rule's recipients. Returns the last recipient when the page
/// was full, i.e. when more may follow.
async fn route_rule(
    ctx: &Context,
    conn: &mut Conn,
    event: &EventRow,
    subject: Option<&Person>,
    rule: &Rule,
    after: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let (page, unsubscribed) = recipients(ctx, conn, event, subject, rule, after).await?;
    let rows = plan_rows(ctx, event, subject, rule, &page, &unsubscribed);
    let announced: Vec<String> = rows.iter().filter_map(|r| r.user_id.clone()).collect();
    let inserted = store(ctx, conn, event, rule, rows).await?;
    ctx.metrics.created(&rule.channel, &inserted);
    dispatch(ctx, event, &page, inserted).await?;
    let people: Vec<&str> = announced.iter().map(String::as_str).collect();
    ctx.changes.announce(&people);
    let full = rule.recipients.is_fan_out() && page.len() as i64 == FAN_OUT_CHUNK;
    Ok(full
        .then(|| page.last().map(|p| p.user_id.clone()))
        .flatten())
}

/// Asks the core for the rows of one page; reports the templates that failed.
fn plan_rows(
    ctx: &Context,
    event: &EventRow,
    subject: Option<&Person>,
    rule: &Rule,
    page: &[Person],
    unsubscribed: &HashSet<String>,
) -> Vec<PlannedNotification> {
    let recipients: Vec<Recipient<'_>> = page
        .iter()
        .map(|person| Recipient {
            person: person.facts(),
            channel_enabled: person.channel_enabled(&rule.channel),
            subscription_disabled: unsubscribed.contains(&person.user_id),
        })
        .collect();
    let subject = subject.map(Person::facts);
    let planned = plan::plan(
        &event.facts(),
        rule,
        subject.as_ref(),
        &recipients,
        &Templating::from(&ctx.config),
        Utc::now(),
    );
    for error in &planned.render_errors {
        tracing::error!(template = %rule.template, event_id = %event.id, %error,
            "template failed to render");
    }
    planned.notifications
}

/// Stores the planned rows the way their rule needs: into bundles, under the debounce
/// lock, or batched with other jobs' rows.
async fn store(
    ctx: &Context,
    conn: &mut Conn,
    event: &EventRow,
    rule: &Rule,
    rows: Vec<PlannedNotification>,
) -> anyhow::Result<Vec<Inserted>> {
    Ok(match (&rule.bundle, rule.debounce) {
        (Some(_), _) => crate::bundling::add_items(ctx, conn, event, rule, rows).await?,
        (None, Some(debounce)) => {
            notifications::insert_debounced(conn, debounce, event.event_timestamp, rows).await?
        }
        (None, None) => {
            let rows = rows.into_iter().map(NewNotification::from).collect();
            ctx.statements.insert_notifications(rows).await?
        }
    })
}

/// One page of the rule's recipients, ordered by user id, and those of them who
/// switched the event type off.
async fn recipients(
    ctx: &Context,
    conn: &mut Conn,
    event: &EventRow,
    subject: Option<&Person>,
    rule: &Rule,
    after: Option<&str>,
) -> anyhow::Result<(Vec<Person>, HashSet<String>)> {
    let page = match rule.recipients {
        Recipients::Subject => subject.cloned().into_iter().collect(),
        Recipients::Internal => Vec::new(),
        Recipients::Topic => {
            let Some(topic) = &event.topic else {
                return Ok(Default::default());
            };
            // The common case, batched across jobs: members and switches in one query.
            let page = TopicPage {
                topic: topic.clone(),
                after: after.unwrap_or_default().to_string(),
                event_type: event.event_type.clone(),
            };
            let members = ctx.statements.topic_page(page).await?;
            let unsubscribed = members
                .iter()
                .filter(|m| m.unsubscribed)
                .map(|m| m.person.user_id.clone())
                .collect();
            return Ok((
                members.into_iter().map(|m| m.person).collect(),
                unsubscribed,
            ));
        }
        Recipients::All => people::everyone(conn, after, FAN_OUT_CHUNK).await?,
        Recipients::Subscribers => {
            // Only enabled subscriptions are selected: nobody here switched it off.
            let page = people::subscribers(
                conn,
                &event.event_type,
                event.topic.as_deref(),
                after,
                FAN_OUT_CHUNK,
            )
            .await?;
            return Ok((page, HashSet::new()));
        }
    };
    let ids: Vec<&str> = page.iter().map(|p| p.user_id.as_str()).collect();
    let unsubscribed = people::disabled_subscriptions(conn, &event.event_type, &ids).await?;
    Ok((page, unsubscribed))
}

/// The partition of an event's route jobs, its continuations included: they follow
/// its person, or its topic.
fn event_partition(ctx: &Context, event: &herald_store::events::EventRow) -> Partition {
    ctx.queue
        .partitions()
        .of_event(event.user_id.as_deref(), event.topic.as_deref(), event.id)
}

/// Sends new pending rows on their way: due ones to this worker's free job slots (with
/// the row a delivery reads, built from what routing holds) or else the stream, later
/// ones to the delayed set.
pub async fn dispatch(
    ctx: &Context,
    event: &EventRow,
    people: &[Person],
    inserted: Vec<Inserted>,
) -> anyhow::Result<()> {
    let now: DateTime<Utc> = Utc::now();
    let mut ready = Vec::new();
    let mut later = Vec::new();
    for n in inserted
        .into_iter()
        .filter(|n| n.status == NotificationStatus::Pending)
    {
        let partition = ctx
            .queue
            .partitions()
            .of_recipient(n.user_id.as_deref(), n.id);
        let lane = Lane::new(partition, queue_for_stored(&n.severity));
        if n.due_at <= now {
            ready.push((lane, n.id, n));
        } else {
            let job = Job::Deliver {
                notification_id: n.id,
            };
            later.push((lane, job, n.due_at.timestamp_millis()));
        }
    }
    if !ready.is_empty() {
        let people: HashMap<&str, &Person> =
            people.iter().map(|p| (p.user_id.as_str(), p)).collect();
        let streamed = ctx
            .hand_off
            .start(ready, |n| delivery_row(event, &people, n));
        ctx.queue.enqueue(&streamed).await?;
    }
    ctx.queue.schedule(&later).await?;
    Ok(())
}

/// The row a delivery of `n` would load, from the event and the person routing read;
/// None where routing lacks part of it (a person's own webhook: its secrets).
fn delivery_row(
    event: &EventRow,
    people: &HashMap<&str, &Person>,
    n: Inserted,
) -> Option<DeliveryRow> {
    let person = match &n.user_id {
        Some(user_id) => Some(*people.get(user_id.as_str())?),
        None => None,
    };
    if person.is_some_and(|p| p.webhook_url.is_some()) {
        return None;
    }
    Some(DeliveryRow {
        id: n.id,
        event_id: event.id,
        user_id: n.user_id,
        notification_type: n.notification_type,
        channel: n.channel,
        status: n.status,
        severity: n.severity,
        subject: n.subject,
        text: n.text,
        attempts: 0,
        due_at: n.due_at,
        event_type: event.event_type.clone(),
        event_timestamp: event.event_timestamp,
        properties: event.properties.clone(),
        email: person.and_then(|p| p.email.clone()),
        phone: person.and_then(|p| p.phone.clone()),
        webhook_url: None,
        webhook_disabled: person.is_some_and(|p| p.webhook_disabled_at.is_some()),
        // A notification's created_at is its event's received_at (partitioning).
        created_at: event.received_at,
        bundle_id: None,
        held_at: None,
        traits: person.map(|p| p.traits.clone()),
        event_traits: event.user_traits.clone(),
        webhook_secret: None,
        previous_webhook_secret: None,
        webhook_secret_rotated_at: None,
        received_at: event.received_at,
    })
}
