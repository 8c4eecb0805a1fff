//! Online bundling (contract §8): the same state machine and ranker as the offline replay
//! (`herald_core::bundle`), fed by the wall clock and persisted in Postgres.
//!
//! * A notification of a rule with `bundle:` becomes an item (`bundled`) of the
//!   person's pending bundle of its key (the rule's `bundle.key` value, e.g. the post
//!   a comment is on). Under the person's advisory lock the state is rebuilt
//!   from Postgres (the pending bundle and today's counters), the tour is added, and
//!   the instant the bundle becomes ready if nothing else arrives is stored and
//!   scheduled in the delayed set: no polling.
//!   The transactions themselves are the store's (`herald_store::bundles::add_item`,
//!   `flush`); this module gives them the pure decision to make under the lock.
//! * When that instant comes, the flush re-checks under the same lock (a later tour
//!   may have moved it), then sends: the cap is enforced by `BundleState::take`, so it
//!   holds under any number of workers. The bundle's oldest item carries the message
//!   (the rule's `bundle.template` over the items, `herald_core::bundle::digest`)
//!   through the normal delivery path, due at once or when the person's quiet hours
//!   or the rule's send window allow (`herald_core::schedule`).
//! * Days are the person's local calendar days: instants are fed to the state machine
//!   as local wall-clock seconds, so its day boundaries fall on local midnights.
//! * The ranker's forecast also reads which friends the person's tours came from today
//!   (`herald_core::bundle::FriendSignal`): per person and local day, Redis counts the
//!   tours each friend told them (`FriendCounts::count_tour`, keyed by the rule's
//!   `bundle.actor` value, else the event's `friend_id`, else its `friend_name`). A tour counts itself before its bundle is
//!   scheduled; the flush reads the same counts back, so both compute the same ready
//!   instant. When Redis fails the ranker goes without (every tour then counts once).
//!   The counters are read before the Postgres transaction: no Redis call is made
//!   while the person's lock is held.
//! * Nothing else lives only in Redis: a lost flush job is found by the recovery sweep
//!   (pending bundles whose ready instant passed), and lost friend counters only make
//!   the forecast count a friend's repeats as new friends.

use crate::context::Context;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use herald_core::bundle::digest::{self, DigestItem};
use herald_core::bundle::{
    day_of, BundleState, FriendSignal, Pending, Ranker, TakeError, UnixSecs, DAY,
};
use herald_core::debounce::timezone;
use herald_core::routing::PlannedNotification;
use herald_core::rules::{BundleSpec, Rule};
use herald_core::schedule::{self, QuietHours, Timing};
use herald_core::status::NotificationStatus;
use herald_queue::{FriendCounts, Job, Lane, QueueName};
use herald_store::bundles::{self, BundleRow, DayCounts, FlushStep, Flushed, ItemFacts};
use herald_store::events::EventRow;
use herald_store::notifications::{self, Inserted, NewNotification};
use herald_store::Conn;
use uuid::Uuid;

/// Instants as local wall-clock seconds (what the state machine's days are made of).
fn to_local(t: DateTime<Utc>, tz: Tz) -> UnixSecs {
    t.with_timezone(&tz).naive_local().and_utc().timestamp()
}

/// Back from local wall-clock seconds to an instant (earliest reading at a DST fold).
fn from_local(secs: UnixSecs, tz: Tz) -> DateTime<Utc> {
    let naive = DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .naive_utc();
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc())
}

/// The friend behind a tour event: `properties.friend_id` (a string or a number),
/// else `properties.friend_name`, else "" (all unnamed friends count as one).
fn friend_key(properties: &serde_json::Value) -> String {
    match properties.get("friend_id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => properties
            .get("friend_name")
            .and_then(|v| v.as_str())
            .map(|s| format!("name:{s}"))
            .unwrap_or_default(),
    }
}

/// The person's friend signal for local day `day`: counts a tour of `friend` first
/// when given. A Redis failure is logged and the ranker goes without the signal.
async fn friend_signal(
    queue: &FriendCounts,
    ranker: &(dyn Ranker + Send + Sync),
    notification_type: &str,
    day: i64,
    user_id: &str,
    friend: Option<&str>,
) -> FriendSignal {
    let counts = match friend {
        Some(f) => queue.count_tour(notification_type, day, user_id, f).await,
        None => queue.tours(notification_type, day, user_id).await,
    };
    match counts {
        Ok(counts) => ranker.friend_signal(&mut counts.into_iter()),
        Err(e) => {
            tracing::warn!(error = %e, user_id, "friend counters unavailable; bundling without them");
            FriendSignal::default()
        }
    }
}

/// Local day `day` as an instant range: the window of its counters.
fn day_window(day: i64, tz: Tz) -> bundles::Day {
    (from_local(day * DAY, tz), from_local((day + 1) * DAY, tz))
}

/// Rebuilds a person's state for local day `day`: the pending bundle (with `items`
/// when they were read, which then count rather than the stored tally) and the day's
/// counters, as read under their lock.
fn state_of(
    pending: Option<&BundleRow>,
    items: Option<usize>,
    counts: DayCounts,
    day: i64,
    tz: Tz,
) -> BundleState {
    let pending = pending.map(|b| Pending {
        first_at: to_local(b.first_at, tz),
        last_at: to_local(b.last_at, tz),
        tours: items.map_or(b.tours.max(0) as u32, |n| n as u32),
        first_friend: b.first_friend.clone(),
    });
    BundleState::from_parts(pending, day, counts.sent as u32, counts.items as u32)
}

/// Adds a rule's rows to their recipients' bundles (the `bundled` ones; the rest are
/// stored as they are) and schedules each bundle's flush.
pub async fn add_items(
    ctx: &Context,
    conn: &mut Conn,
    event: &EventRow,
    rule: &Rule,
    rows: Vec<PlannedNotification>,
) -> anyhow::Result<Vec<Inserted>> {
    let (items, others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| r.status == NotificationStatus::Bundled && r.user_id.is_some());
    let others: Vec<NewNotification> = others.into_iter().map(NewNotification::from).collect();
    let mut inserted = notifications::insert_batch(conn, &others).await?;
    let spec = rule.bundle.clone().unwrap_or_default();
    let facts = DigestItem {
        properties: &event.properties,
        user_traits: &event.user_traits,
    };
    let actor = digest::actor_of(spec.actor.as_deref(), &facts);
    let tour = Tour {
        friend: actor.clone().unwrap_or_else(|| {
            event
                .properties
                .get("friend_name")
                .and_then(|v| v.as_str())
                .unwrap_or("A friend")
                .to_string()
        }),
        friend_id: actor.unwrap_or_else(|| friend_key(&event.properties)),
        key: digest::bundle_key(spec.key.as_deref(), &facts),
        at: event.received_at,
    };
    let mut flushes = Vec::new();
    for row in items {
        let (new, bundle) = add_item(ctx, conn, rule, &tour, row).await?;
        inserted.extend(new);
        // None: the item existed (the event was routed before); its bundle is
        // already scheduled and must not count it again.
        if let Some(bundle) = bundle {
            flushes.push((bundle.id, bundle.user_id, bundle.ready_at));
        }
    }
    schedule_flushes(ctx, &flushes).await?;
    Ok(inserted)
}

/// The item an event adds: who (the actor, or the tour's friend), which bundle
/// (the rule's key value), and when it arrived.
struct Tour {
    friend: String,
    friend_id: String,
    key: String,
    at: DateTime<Utc>,
}

/// Adds one person's row to their pending bundle. The friend counters are counted in
/// Redis first; the store's transaction then rebuilds the state under the person's
/// lock and saves the bundle the state machine computes.
async fn add_item(
    ctx: &Context,
    conn: &mut Conn,
    rule: &Rule,
    tour: &Tour,
    row: PlannedNotification,
) -> anyhow::Result<(Vec<Inserted>, Option<BundleRow>)> {
    let tz = row.timezone;
    let user_id = row.user_id.clone().unwrap_or_default();
    let nt = rule.notification_type.clone();
    let ranker = &*ctx.bundler.for_rule(&nt).ranker;
    let now_local = to_local(Utc::now(), tz);
    let day = day_of(now_local);
    let signal = friend_signal(
        &ctx.friends,
        ranker,
        &nt,
        day,
        &user_id,
        Some(&tour.friend_id),
    )
    .await;
    let decide = |existing: Option<&BundleRow>, counts: DayCounts| {
        let mut state = state_of(existing, None, counts, day, tz);
        state.set_friends(now_local, signal);
        let schedule = state.on_tour(
            now_local,
            to_local(tour.at, tz).min(now_local),
            &tour.friend,
            ranker,
        );
        let ready_local = match schedule {
            herald_core::bundle::Schedule::At(t) => t,
            herald_core::bundle::Schedule::Idle => now_local,
        };
        let p = state.pending().cloned().unwrap_or(Pending {
            first_at: now_local,
            last_at: now_local,
            tours: 1,
            first_friend: tour.friend.clone(),
        });
        BundleRow {
            id: existing.map_or_else(Uuid::now_v7, |b| b.id),
            user_id: user_id.clone(),
            notification_type: nt.clone(),
            status: "pending".into(),
            first_at: from_local(p.first_at, tz),
            last_at: from_local(p.last_at, tz),
            tours: p.tours as i32,
            first_friend: p.first_friend,
            ready_at: from_local(ready_local, tz),
            sent_at: None,
            notification_id: None,
            bundle_key: tour.key.clone(),
        }
    };
    let row = NewNotification::from(row);
    Ok(bundles::add_item(conn, row, &tour.key, day_window(day, tz), decide).await?)
}

/// Schedules bundles' flushes: (bundle, its person, when) triples.
async fn schedule_flushes(
    ctx: &Context,
    flushes: &[(Uuid, String, DateTime<Utc>)],
) -> anyhow::Result<()> {
    let partitions = ctx.queue.partitions();
    let jobs: Vec<_> = flushes
        .iter()
        .map(|(id, user_id, at)| {
            (
                Lane::new(partitions.of_person(user_id), QueueName::Default),
                Job::FlushBundle { bundle_id: *id },
                at.timestamp_millis(),
            )
        })
        .collect();
    ctx.queue.schedule(&jobs).await?;
    Ok(())
}

/// Handles a flush job; returns the person whose inbox changed.
pub async fn flush(ctx: &Context, bundle_id: Uuid) -> anyhow::Result<Option<String>> {
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    let Some(first_look) = bundles::find(&mut conn, bundle_id).await? else {
        return Ok(None);
    };
    if first_look.status != "pending" {
        return Ok(None);
    }
    let nt = first_look.notification_type.as_str();
    let rule = ctx.config.rules.by_notification_type(nt);
    let spec = rule.and_then(|r| r.bundle.as_ref());
    let cap = ctx.bundler.cap(nt, spec);
    let person = herald_store::people::find(&mut conn, &first_look.user_id).await?;
    let tz = timezone(person.as_ref().map_or("UTC", |p| p.timezone.as_str()));
    let quiet = QuietHours::from_stored(person.as_ref().and_then(|p| p.quiet_hours.as_ref()));
    let user = herald_core::routing::person_json(person.as_ref().map(|p| p.facts()).as_ref());
    let ranker = &*ctx.bundler.for_rule(nt).ranker;
    let now = Utc::now();
    let now_local = to_local(now, tz);
    let day = day_of(now_local);
    let signal = friend_signal(
        &ctx.friends,
        ranker,
        &first_look.notification_type,
        day,
        &first_look.user_id,
        None,
    )
    .await;
    let decide = |b: &BundleRow, counts: DayCounts, items: &[ItemFacts]| {
        let mut state = state_of(Some(b), Some(items.len()), counts, day, tz);
        state.set_friends(now_local, signal);
        let ready = state.ready_at(now_local, ranker).unwrap_or(now_local);
        if ready > now_local {
            return FlushStep::Later(from_local(ready, tz));
        }
        match state.take(now_local, cap) {
            Ok(_) => {
                let (subject, text) = digest_message(ctx, rule, b, items, &user);
                let due = carrier_due(rule, items, quiet.as_ref(), tz, now);
                FlushStep::Send {
                    subject,
                    text,
                    due_at: due.at,
                    hold_reason: due.reason,
                }
            }
            Err(TakeError::CapReached(_)) => FlushStep::Later(from_local((day + 1) * DAY, tz)),
            Err(TakeError::Empty) => FlushStep::Nothing,
        }
    };
    let window = day_window(day, tz);
    let outcome = bundles::flush(
        &mut conn,
        bundle_id,
        &first_look.user_id,
        window,
        now,
        decide,
    )
    .await?;
    match outcome {
        Flushed::Nothing => Ok(None),
        Flushed::Later(at) => {
            schedule_flushes(ctx, &[(bundle_id, first_look.user_id.clone(), at)]).await?;
            Ok(None)
        }
        Flushed::Sent {
            carrier,
            severity,
            user_id,
            due_at,
        } => {
            let job = Job::Deliver {
                notification_id: carrier,
            };
            if let Some(rule) = rule {
                ctx.metrics.notification(&rule.channel, "pending");
            }
            let lane = Lane::new(
                ctx.queue.partitions().of_person(&user_id),
                herald_core::queues::queue_for_stored(&severity),
            );
            if due_at > now {
                ctx.queue
                    .schedule(&[(lane, job, due_at.timestamp_millis())])
                    .await?;
            } else {
                ctx.queue.enqueue(&[(lane, job)]).await?;
            }
            Ok(Some(user_id))
        }
    }
}

/// The digest's subject and text: the rule's `bundle.template` over the items, or the
/// first item's text with how many more (also when the template fails, which is
/// logged).
fn digest_message(
    ctx: &Context,
    rule: Option<&Rule>,
    bundle: &BundleRow,
    items: &[ItemFacts],
    user: &serde_json::Value,
) -> (Option<String>, String) {
    let spec: Option<&BundleSpec> = rule.and_then(|r| r.bundle.as_ref());
    let fallback = || {
        let first = items.first().map_or("", |i| i.text.as_str());
        (None, digest::fallback_text(first, items.len()))
    };
    let Some(template) = spec.and_then(|s| s.template.as_deref()) else {
        return fallback();
    };
    let facts: Vec<DigestItem<'_>> = items
        .iter()
        .map(|i| DigestItem {
            properties: &i.properties,
            user_traits: &i.user_traits,
        })
        .collect();
    let vars = digest::digest_vars(
        &facts,
        spec.and_then(|s| s.actor.as_deref()),
        &bundle.bundle_key,
        &bundle.notification_type,
        user,
    );
    match ctx.config.templates.render(template, &vars) {
        Ok(r) => (r.subject, r.text),
        Err(error) => {
            tracing::error!(template, bundle_id = %bundle.id, %error, "digest template failed to render");
            fallback()
        }
    }
}

/// When a digest sent at `now` is due: at once, unless the person's quiet hours or
/// the rule's send window hold it.
fn carrier_due(
    rule: Option<&Rule>,
    items: &[ItemFacts],
    quiet: Option<&QuietHours>,
    tz: Tz,
    now: DateTime<Utc>,
) -> schedule::Due {
    let properties = items.first().map(|i| &i.properties);
    schedule::due(&Timing {
        base: now,
        deliver_at: None,
        send_window: rule.and_then(|r| r.send_window.as_ref()),
        quiet_hours: quiet,
        tz,
        channel: rule.map_or("", |r| r.channel.as_str()),
        severity: match (rule, properties) {
            (Some(r), Some(p)) => r.severity_for(p),
            _ => Default::default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_friend_is_keyed_by_id_then_by_name() {
        assert_eq!(
            friend_key(&json!({"friend_id": "F1", "friend_name": "Matthew"})),
            "F1"
        );
        assert_eq!(
            friend_key(&json!({"friend_id": 42, "friend_name": "Matthew"})),
            "42"
        );
        assert_eq!(
            friend_key(&json!({"friend_id": "", "friend_name": "Matthew"})),
            "name:Matthew"
        );
        assert_eq!(friend_key(&json!({"friend_name": "Zoë"})), "name:Zoë");
        assert_eq!(friend_key(&json!({"friend_id": null})), "");
        assert_eq!(friend_key(&json!([1, 2])), "");
    }
}
