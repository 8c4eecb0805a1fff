//! Online bundling (SPEC 8): the same state machine and ranker as the offline replay
//! (`herald_core::bundle`), fed by the wall clock and persisted in Postgres.
//!
//! * A notification of a rule with `bundle:` becomes an item (`bundled`) of the
//!   person's pending bundle. Under the person's advisory lock the state is rebuilt
//!   from Postgres (the pending bundle and today's counters), the tour is added, and
//!   the instant the bundle becomes ready if nothing else arrives is stored and
//!   scheduled in the delayed set: no polling.
//! * When that instant comes, the flush re-checks under the same lock (a later tour
//!   may have moved it), then sends: the cap is enforced by `BundleState::take`, so it
//!   holds under any number of workers. The bundle's oldest item carries the message
//!   through the normal delivery path.
//! * Days are the person's local calendar days: instants are fed to the state machine
//!   as local wall-clock seconds, so its day boundaries fall on local midnights.
//! * The ranker's forecast also reads which friends the person's tours came from today
//!   (`herald_core::bundle::FriendSignal`): per person and local day, Redis counts the
//!   tours each friend told them (`FriendCounts::count_tour`, keyed by the event's
//!   `friend_id`, else its `friend_name`). A tour counts itself before its bundle is
//!   scheduled; the flush reads the same counts back, so both compute the same ready
//!   instant. When Redis fails the ranker goes without (every tour then counts once).
//! * Nothing else lives only in Redis: a lost flush job is found by the recovery sweep
//!   (pending bundles whose ready instant passed), and lost friend counters only make
//!   the forecast count a friend's repeats as new friends.

use crate::context::Context;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use herald_core::bundle::ranker::LogisticRanker;
use herald_core::bundle::{
    day_of, BundleState, BundlingConfig, FriendSignal, Pending, Ranker, TakeError, UnixSecs, DAY,
};
use herald_core::debounce::timezone;
use herald_core::rules::{BundleSpec, Rule};
use herald_queue::{FriendCounts, Job, QueueName};
use herald_store::bundles::{self, BundleRow};
use herald_store::events::EventRow;
use herald_store::history;
use herald_store::notifications::{self, status, Inserted, NewNotification};
use uuid::Uuid;

/// The ranker and its settings, loaded once at start.
pub struct Bundler {
    pub config: BundlingConfig,
    ranker: Box<dyn Ranker + Send + Sync>,
}

impl Bundler {
    /// Builds the ranker from the validated settings of `bundling.yml`, which the
    /// config loader read with the other files (`Config::bundling`).
    pub fn new(config: &BundlingConfig) -> Bundler {
        let ranker = Box::new(LogisticRanker::new(config));
        Bundler {
            config: config.clone(),
            ranker,
        }
    }

    fn cap(&self, spec: &BundleSpec) -> u32 {
        spec.max_per_day.unwrap_or(self.config.max_per_day)
    }
}

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

/// Rebuilds a person's state: the pending bundle and today's counters.
async fn load_state(
    tx: &mut AsyncPgConnection,
    user_id: &str,
    notification_type: &str,
    pending: Option<&BundleRow>,
    now_local: UnixSecs,
    tz: Tz,
) -> Result<BundleState, herald_store::StoreError> {
    let day = day_of(now_local);
    let (from, to) = (from_local(day * DAY, tz), from_local((day + 1) * DAY, tz));
    let (sent, items) = bundles::day_counts(tx, user_id, notification_type, from, to).await?;
    let pending = pending.map(|b| Pending {
        first_at: to_local(b.first_at, tz),
        last_at: to_local(b.last_at, tz),
        tours: b.tours.max(0) as u32,
        first_friend: b.first_friend.clone(),
    });
    Ok(BundleState::from_parts(
        pending,
        day,
        sent as u32,
        items as u32,
    ))
}

/// Adds a rule's rows to their recipients' bundles (suppressed rows are stored as they
/// are) and schedules each bundle's flush.
pub async fn add_items(
    ctx: &Context,
    conn: &mut AsyncPgConnection,
    event: &EventRow,
    rule: &Rule,
    timezones: &std::collections::HashMap<String, String>,
    rows: Vec<NewNotification>,
) -> anyhow::Result<Vec<Inserted>> {
    let (items, others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| r.status != status::SUPPRESSED && r.user_id.is_some());
    let mut inserted = notifications::insert_batch(conn, &others).await?;
    let friend = event
        .properties
        .get("friend_name")
        .and_then(|v| v.as_str())
        .unwrap_or("A friend")
        .to_string();
    let friend_id = friend_key(&event.properties);
    let mut flushes = Vec::new();
    for mut row in items {
        let user_id = row.user_id.clone().unwrap_or_default();
        let tz = timezone(timezones.get(&user_id).map(String::as_str).unwrap_or("UTC"));
        let (nt, friend) = (rule.notification_type.clone(), friend.clone());
        let friend_id = friend_id.clone();
        let bundler = &ctx.bundler;
        let queue = &ctx.friends;
        let tour_at = event.received_at;
        let (new, due) = conn
            .transaction(async move |tx| {
                history::lock_people(tx, &[user_id.as_str()]).await?;
                let existing = bundles::pending(tx, &user_id, &nt).await?;
                let now = Utc::now();
                let now_local = to_local(now, tz);
                let mut state =
                    load_state(tx, &user_id, &nt, existing.as_ref(), now_local, tz).await?;
                let signal = friend_signal(
                    queue,
                    &*bundler.ranker,
                    &nt,
                    day_of(now_local),
                    &user_id,
                    Some(&friend_id),
                )
                .await;
                state.set_friends(now_local, signal);
                let schedule = state.on_tour(
                    now_local,
                    to_local(tour_at, tz).min(now_local),
                    &friend,
                    &*bundler.ranker,
                );
                let ready_local = match schedule {
                    herald_core::bundle::Schedule::At(t) => t,
                    herald_core::bundle::Schedule::Idle => now_local,
                };
                let p = state.pending().cloned().unwrap_or(Pending {
                    first_at: now_local,
                    last_at: now_local,
                    tours: 1,
                    first_friend: friend.clone(),
                });
                let bundle = BundleRow {
                    id: existing.as_ref().map_or_else(Uuid::now_v7, |b| b.id),
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
                };
                bundles::save_pending(tx, &bundle).await?;
                row.status = status::BUNDLED;
                row.sent_at = None;
                row.bundle_id = Some(bundle.id);
                let new = notifications::insert_batch(tx, std::slice::from_ref(&row)).await?;
                Ok::<_, herald_store::StoreError>((new, (bundle.id, bundle.ready_at)))
            })
            .await?;
        inserted.extend(new);
        flushes.push(due);
    }
    schedule_flushes(ctx, &flushes).await?;
    Ok(inserted)
}

async fn schedule_flushes(ctx: &Context, flushes: &[(Uuid, DateTime<Utc>)]) -> anyhow::Result<()> {
    let jobs: Vec<_> = flushes
        .iter()
        .map(|(id, at)| {
            (
                QueueName::Default,
                Job::FlushBundle { bundle_id: *id },
                at.timestamp_millis(),
            )
        })
        .collect();
    ctx.queue.schedule(&jobs).await?;
    Ok(())
}

/// What a flush decided.
enum Flushed {
    /// Nothing to do (already sent, or gone).
    Nothing,
    /// Not ready yet, or the day's cap is spent: look again then.
    Later(DateTime<Utc>),
    /// Sent: deliver the carrier notification.
    Sent {
        carrier: Uuid,
        severity: String,
        user_id: String,
    },
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
    let cap = ctx
        .config
        .rules
        .by_notification_type(&first_look.notification_type)
        .and_then(|r| r.bundle)
        .map(|b| ctx.bundler.cap(&b))
        .unwrap_or(ctx.bundler.config.max_per_day);
    let person = herald_store::people::find(&mut conn, &first_look.user_id).await?;
    let tz = timezone(person.as_ref().map_or("UTC", |p| p.timezone.as_str()));
    let bundler = &ctx.bundler;
    let queue = &ctx.friends;
    let outcome = conn
        .transaction(async move |tx| {
            history::lock_people(tx, &[first_look.user_id.as_str()]).await?;
            // Re-read under the lock: another worker may have sent or grown it.
            let Some(b) = bundles::find(tx, bundle_id)
                .await?
                .filter(|b| b.status == "pending")
            else {
                return Ok(Flushed::Nothing);
            };
            let now = Utc::now();
            let now_local = to_local(now, tz);
            let mut state = load_state(
                tx,
                &b.user_id,
                &b.notification_type,
                Some(&b),
                now_local,
                tz,
            )
            .await?;
            let signal = friend_signal(
                queue,
                &*bundler.ranker,
                &b.notification_type,
                day_of(now_local),
                &b.user_id,
                None,
            )
            .await;
            state.set_friends(now_local, signal);
            let ready = state
                .ready_at(now_local, &*bundler.ranker)
                .unwrap_or(now_local);
            if ready > now_local {
                return Ok(Flushed::Later(from_local(ready, tz)));
            }
            match state.take(now_local, cap) {
                Ok(sent) => {
                    let text = sent.message();
                    match bundles::send(tx, b.id, now, None, &text).await? {
                        Some((carrier, severity)) => Ok(Flushed::Sent {
                            carrier,
                            severity,
                            user_id: b.user_id,
                        }),
                        None => Ok(Flushed::Nothing),
                    }
                }
                Err(TakeError::CapReached(_)) => Ok(Flushed::Later(from_local(
                    (day_of(now_local) + 1) * DAY,
                    tz,
                ))),
                Err(TakeError::Empty) => Ok(Flushed::Nothing),
            }
        })
        .await
        .map_err(|e: herald_store::StoreError| anyhow::Error::from(e))?;
    match outcome {
        Flushed::Nothing => Ok(None),
        Flushed::Later(at) => {
            schedule_flushes(ctx, &[(bundle_id, at)]).await?;
            Ok(None)
        }
        Flushed::Sent {
            carrier,
            severity,
            user_id,
        } => {
            let job = Job::Deliver {
                notification_id: carrier,
            };
            ctx.queue
                .enqueue(&[(herald_core::queues::queue_for_stored(&severity), job)])
                .await?;
            Ok(Some(user_id))
        }
    }
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
