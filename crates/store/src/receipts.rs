//! Provider receipts (contract §3.3): a provider reports what became of a delivery it
//! accepted. `delivered` sets `delivered_at`, `opened` sets `opened_at` (and
//! `delivered_at`: an opened message was delivered), `bounced` turns the notification
//! `failed` with the reason in `last_error` while keeping its `sent_at` (it was sent;
//! stats count it among `sent`), and with it the items of the bundle it carried.
//!
//! Which statuses a receipt may change is core's decision
//! ([`herald_core::receipt::effect`]): each statement updates only rows in the
//! statuses its kind applies to, and the others are reported as ignored with core's
//! reason. The earliest time reported wins, so receipts commute: a provider repeating
//! one, or sending `opened` before `delivered`, leaves the same times.
//!
//! A batch costs one statement per kind of receipt, each over all of its ids at once.
//! Each statement first locks its rows in id order ([`crate::locking`]), as every
//! batched statement on `notifications` does, so a receipt batch and the worker's
//! attempts batch over the same rows cannot deadlock.

use crate::pool::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use herald_core::receipt::{effect, Effect};
use herald_core::status::NotificationStatus;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

pub use herald_core::receipt::{Receipt, ReceiptKind};

/// The rows a receipt batch of one kind targets, `targets(id, at)`: the named ones
/// and, for a bounce, the items of the bundle a named row carried (a bundle's
/// carrier is its `notification_id`; its items share its fate).
fn targets(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Delivered | ReceiptKind::Opened => "SELECT id, at FROM r",
        ReceiptKind::Bounced => {
            "SELECT DISTINCT ON (id) id, at FROM (
               SELECT id, at FROM r
               UNION ALL
               SELECT item.id, r.at FROM r
                 JOIN notifications AS carrier ON carrier.id = r.id
                 JOIN bundles AS b ON b.id = carrier.bundle_id AND b.notification_id = carrier.id
                 JOIN notifications AS item ON item.bundle_id = b.id AND item.id <> carrier.id
             ) AS all_targets ORDER BY id, at"
        }
    }
}

/// What one kind of receipt sets.
fn set(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Delivered => "delivered_at = LEAST(n.delivered_at, t.at)",
        ReceiptKind::Opened => {
            "opened_at = LEAST(n.opened_at, t.at), delivered_at = LEAST(n.delivered_at, t.at)"
        }
        ReceiptKind::Bounced => {
            "status = 'failed',
             last_error = 'bounced: the provider reported the message undeliverable at '
                          || to_char(t.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        }
    }
}

/// The statement applying one kind of receipt: `$1` ids, `$2` times, `$3` the
/// statuses this kind applies to. It locks every target in id order before the
/// UPDATE touches any ([`crate::locking`]), then answers one row per target that
/// exists: its status when locked, whether it was named (not a bundle item), and
/// whether the receipt changed it.
pub fn statement(kind: ReceiptKind) -> String {
    format!(
        "WITH r AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, at)),
         t AS ({targets}),
         locked AS MATERIALIZED (
           SELECT n.id, n.status, n.user_id FROM notifications AS n
           WHERE n.id IN (SELECT id FROM t) ORDER BY n.id FOR UPDATE),
         changed AS (
           UPDATE notifications AS n SET {set}
           FROM t
           WHERE n.id = t.id AND n.status = ANY($3::text[]) AND {locked_first}
           RETURNING n.id)
         SELECT l.id, l.status, l.user_id, l.id = ANY($1::uuid[]) AS named,
                c.id IS NOT NULL AS applied
         FROM locked AS l LEFT JOIN changed AS c ON c.id = l.id",
        targets = targets(kind),
        set = set(kind),
        locked_first = crate::locking::LOCKED_FIRST,
    )
}

/// A receipt left unapplied because of its notification's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub notification_id: Uuid,
    pub kind: ReceiptKind,
    /// Core's reason, naming the status (`suppressed: it was never sent`).
    pub reason: &'static str,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Receipts applied to their notification.
    pub updated: usize,
    /// Ids that name no notification, in first-seen order, each once.
    pub unknown: Vec<Uuid>,
    /// Receipts whose notification's status they may not change, one per id and kind.
    pub ignored: Vec<Ignored>,
    /// The people whose notifications the batch changed, each once (their live
    /// streams are told).
    pub people: Vec<String>,
}

#[derive(QueryableByName)]
struct Target {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    user_id: Option<String>,
    #[diesel(sql_type = Bool)]
    named: bool,
    #[diesel(sql_type = Bool)]
    applied: bool,
}

/// Why a named row was left alone: core's reason for its status.
fn reason(kind: ReceiptKind, status: &str) -> &'static str {
    match status
        .parse::<NotificationStatus>()
        .map(|s| effect(kind, s))
    {
        Ok(Effect::Ignore(reason)) => reason,
        // Not reachable: the row was locked and the statement applies exactly the
        // statuses core applies; said plainly should it ever happen.
        _ => "its status changed while the receipt was applied",
    }
}

/// Applies a batch: one statement per kind present. Within a kind, the earliest time
/// reported for an id is used.
pub async fn apply(conn: &mut Conn, receipts: &[Receipt]) -> Result<Applied, StoreError> {
    let mut by_kind: BTreeMap<ReceiptKind, BTreeMap<Uuid, DateTime<Utc>>> = BTreeMap::new();
    for r in receipts {
        by_kind
            .entry(r.kind)
            .or_default()
            .entry(r.notification_id)
            .and_modify(|at| *at = (*at).min(r.at))
            .or_insert(r.at);
    }
    let mut known: HashSet<Uuid> = HashSet::new();
    let mut applied: HashSet<(Uuid, ReceiptKind)> = HashSet::new();
    let mut reasons: BTreeMap<(Uuid, ReceiptKind), &'static str> = BTreeMap::new();
    let mut people: BTreeSet<String> = BTreeSet::new();
    for (kind, items) in by_kind {
        let (ids, ats): (Vec<Uuid>, Vec<DateTime<Utc>>) = items.into_iter().unzip();
        let statuses: Vec<&str> = kind.applies_to().into_iter().map(|s| s.as_str()).collect();
        let found: Vec<Target> = diesel::sql_query(statement(kind))
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Timestamptz>, _>(ats)
            .bind::<Array<Text>, _>(statuses)
            .load(conn)
            .await?;
        for t in found {
            if t.applied {
                people.extend(t.user_id);
            }
            if !t.named {
                continue;
            }
            known.insert(t.id);
            if t.applied {
                applied.insert((t.id, kind));
            } else {
                reasons.insert((t.id, kind), reason(kind, &t.status));
            }
        }
    }
    Ok(summarize(receipts, &known, &applied, &reasons, people))
}

/// The batch's answer, in the order the receipts came.
fn summarize(
    receipts: &[Receipt],
    known: &HashSet<Uuid>,
    applied: &HashSet<(Uuid, ReceiptKind)>,
    reasons: &BTreeMap<(Uuid, ReceiptKind), &'static str>,
    people: BTreeSet<String>,
) -> Applied {
    let mut seen = HashSet::new();
    let unknown = receipts
        .iter()
        .map(|r| r.notification_id)
        .filter(|id| !known.contains(id) && seen.insert(*id))
        .collect();
    let mut seen = HashSet::new();
    let ignored = receipts
        .iter()
        .filter_map(|r| {
            let key = (r.notification_id, r.kind);
            let reason = reasons.get(&key)?;
            seen.insert(key).then_some(Ignored {
                notification_id: r.notification_id,
                kind: r.kind,
                reason,
            })
        })
        .collect();
    Applied {
        updated: receipts
            .iter()
            .filter(|r| applied.contains(&(r.notification_id, r.kind)))
            .count(),
        unknown,
        ignored,
        people: people.into_iter().collect(),
    }
}
