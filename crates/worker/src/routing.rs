//! Routing: an event becomes notification rows, one per (recipient, rule).
//!
//! For each rule the event triggers, the recipients are resolved (SPEC 5.1), each is
//! checked against their preferences (a `suppressed` row with a reason when filtered
//! out), the template is rendered, and the rows are inserted with one statement. Large
//! recipient sets are paged by user id: a job handles at most [`FAN_OUT_CHUNK`]
//! people and enqueues its continuation. The unique key on notifications makes every
//! step safe to repeat.

use crate::conditions::{self, person_json, Moment};
use crate::context::Context;
use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::AsyncConnection;
use herald_core::channels::IN_APP;
use herald_core::debounce::{timezone, Debounce};
use herald_core::queues::{queue_for, queue_for_stored};
use herald_core::preferences::{decide, Decision, RecipientFacts};
use herald_core::rules::{Recipients, Rule};
use herald_core::severity::{Level, Severity};
use herald_queue::Job;
use herald_store::events::EventRow;
use herald_store::history::{self, DebounceWindow};
use herald_store::notifications::{self, status, Inserted, NewNotification};
use herald_store::people::TopicPage;
use herald_store::people::{self, Person};
use herald_store::Conn;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Recipients handled by one job (SPEC 5.1: fan-out jobs of at most 500).
pub const FAN_OUT_CHUNK: i64 = 500;

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
            ctx.queue.enqueue(&[(queue, next)]).await?;
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
    let severity = rule.severity_for(&event.properties);
    let rows = if rule.recipients == Recipients::Internal {
        vec![internal_row(ctx, event, subject, rule, severity)]
    } else {
        page.iter()
            .map(|person| {
                let facts = RecipientFacts {
                    user_id: &person.user_id,
                    level: person.level.parse().unwrap_or(Level::Standard),
                    channel_enabled: person.channel_enabled(&rule.channel),
                    subscription_disabled: unsubscribed.contains(&person.user_id),
                };
                let decision = decide(
                    &rule.notification_type,
                    &event.event_type,
                    &rule.channel,
                    severity,
                    &facts,
                );
                person_row(ctx, event, person, rule, severity, decision)
            })
            .collect()
    };
    let announced: Vec<String> = rows.iter().filter_map(|r| r.user_id.clone()).collect();
    let inserted = match (rule.bundle, rule.debounce) {
        (Some(_), _) => {
            let timezones = page
                .iter()
                .map(|p| (p.user_id.clone(), p.timezone.clone()))
                .collect();
            crate::bundling::add_items(ctx, conn, event, rule, &timezones, rows).await?
        }
        (None, Some(debounce)) => {
            insert_debounced(conn, event, &page, rule, debounce, rows).await?
        }
        (None, None) => ctx.statements.insert_notifications(rows).await?,
    };
    dispatch(ctx, &inserted).await?;
    let people: Vec<&str> = announced.iter().map(String::as_str).collect();
    ctx.changes.announce(&people);
    let full = rule.recipients.is_fan_out() && page.len() as i64 == FAN_OUT_CHUNK;
    Ok(full
        .then(|| page.last().map(|p| p.user_id.clone()))
        .flatten())
}

/// Inserts rows of a debounced rule. Within one transaction it locks each recipient,
/// counts what they already got in the debounce window, and suppresses the rows over
/// the limit, so concurrent workers cannot both see room for one more.
async fn insert_debounced(
    conn: &mut Conn,
    event: &EventRow,
    page: &[Person],
    rule: &Rule,
    debounce: Debounce,
    mut rows: Vec<NewNotification>,
) -> anyhow::Result<Vec<Inserted>> {
    let timezones: HashMap<&str, &str> = page
        .iter()
        .map(|p| (p.user_id.as_str(), p.timezone.as_str()))
        .collect();
    let windows: Vec<DebounceWindow> = rows
        .iter()
        .filter(|r| r.status != status::SUPPRESSED)
        .filter_map(|r| r.user_id.as_deref())
        .map(|user_id| {
            let tz = timezone(timezones.get(user_id).copied().unwrap_or("UTC"));
            let (from, to) = debounce.window(event.event_timestamp, tz);
            DebounceWindow {
                user_id: user_id.to_string(),
                from,
                to,
            }
        })
        .collect();
    let (event_id, notification_type) = (event.id, rule.notification_type.clone());
    let inserted = conn
        .transaction(async move |tx| {
            let ids: Vec<&str> = windows.iter().map(|w| w.user_id.as_str()).collect();
            history::lock_people(tx, &ids).await?;
            let counts =
                history::debounce_counts(tx, &notification_type, &windows, event_id).await?;
            for row in rows.iter_mut().filter(|r| r.status != status::SUPPRESSED) {
                let already = row
                    .user_id
                    .as_deref()
                    .and_then(|u| counts.get(u))
                    .copied()
                    .unwrap_or(0);
                if !debounce.allows(already) {
                    row.status = status::SUPPRESSED;
                    row.sent_at = None;
                    row.suppression_reason = Some(debounce.reason(&notification_type, already));
                }
            }
            notifications::insert_batch(tx, &rows).await
        })
        .await?;
    Ok(inserted)
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

fn person_row(
    ctx: &Context,
    event: &EventRow,
    person: &Person,
    rule: &Rule,
    severity: Severity,
    decision: Decision,
) -> NewNotification {
    let private = ctx
        .config
        .template_meta
        .get(&rule.template)
        .is_some_and(|m| m.private);
    let mut row = new_row(ctx, event, Some(person), rule, severity, private);
    if let Decision::Suppress(reason) = decision {
        row.status = status::SUPPRESSED;
        row.suppression_reason = Some(reason);
        row.sent_at = None;
    }
    row
}

/// Internal rules notify the operators about the subject: one private row, which
/// ignores the subject's preferences.
fn internal_row(
    ctx: &Context,
    event: &EventRow,
    subject: Option<&Person>,
    rule: &Rule,
    severity: Severity,
) -> NewNotification {
    new_row(ctx, event, subject, rule, severity, true)
}

fn new_row(
    ctx: &Context,
    event: &EventRow,
    person: Option<&Person>,
    rule: &Rule,
    severity: Severity,
    private: bool,
) -> NewNotification {
    let (subject, text) = render(ctx, event, person, rule);
    let due_at = event.received_at + rule.delay;
    let now = Utc::now();
    // The inbox channel needs no HTTP call: a notification due now is sent at once.
    // Bundled rules hold their rows instead (see `bundling`).
    let sent_now = rule.channel == IN_APP && due_at <= now && rule.bundle.is_none();
    NewNotification {
        id: Uuid::now_v7(),
        event_id: event.id,
        user_id: person
            .map(|p| p.user_id.clone())
            .or_else(|| event.user_id.clone()),
        notification_type: rule.notification_type.clone(),
        channel: rule.channel.clone(),
        status: if sent_now {
            status::SENT
        } else {
            status::PENDING
        },
        suppression_reason: None,
        severity: if severity == Severity::Critical {
            "critical"
        } else {
            "standard"
        },
        private,
        subject,
        text,
        due_at,
        sent_at: sent_now.then_some(now),
        bundle_id: None,
    }
}

/// Renders the rule's template; a broken render is logged and leaves the text empty
/// rather than losing the notification.
fn render(
    ctx: &Context,
    event: &EventRow,
    person: Option<&Person>,
    rule: &Rule,
) -> (Option<String>, String) {
    let vars = template_vars(event, person);
    match ctx.config.templates.render(&rule.template, &vars) {
        Ok(r) => (r.subject, r.text),
        Err(e) => {
            tracing::error!(template = %rule.template, event_id = %event.id, error = %e, "template failed to render");
            (None, String::new())
        }
    }
}

/// What templates see (SPEC 5.2): the event and the stored person.
pub fn template_vars(event: &EventRow, person: Option<&Person>) -> Value {
    json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "event_timestamp": event.event_timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "topic": event.topic,
        "properties": event.properties,
        "user_traits": event.user_traits,
        "user": person_json(person),
    })
}

/// Sends new pending rows on their way: due ones to the stream, later ones to the
/// delayed set.
pub async fn dispatch(ctx: &Context, inserted: &[Inserted]) -> anyhow::Result<()> {
    let now: DateTime<Utc> = Utc::now();
    let mut ready = Vec::new();
    let mut later = Vec::new();
    for n in inserted.iter().filter(|n| n.status == status::PENDING) {
        let job = Job::Deliver {
            notification_id: n.id,
        };
        let queue = queue_for_stored(&n.severity);
        if n.due_at <= now {
            ready.push((queue, job));
        } else {
            later.push((queue, job, n.due_at.timestamp_millis()));
        }
    }
    ctx.queue.enqueue(&ready).await?;
    ctx.queue.schedule(&later).await?;
    Ok(())
}
