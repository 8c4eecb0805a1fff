//! Provider receipts (seed 001, contract §3.3): a provider reports what became of a
//! delivery it accepted. `delivered` sets `delivered_at`, `opened` sets `opened_at`
//! (and `delivered_at` when still unset: an opened message was delivered), `bounced`
//! turns the notification `failed` with the reason in `last_error` while keeping its
//! `sent_at` (it was sent; stats count it among `sent`).
//!
//! The first time reported wins, so a provider repeating a receipt changes nothing.
//! A batch costs one UPDATE per kind of receipt, each over all of its ids at once.

use crate::pool::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

pub use herald_core::receipt::{Receipt, ReceiptKind};

/// The UPDATE that applies one kind of receipt (the kind itself is core's).
trait Sql {
    fn sql(self) -> &'static str;
}

impl Sql for ReceiptKind {
    fn sql(self) -> &'static str {
        match self {
            ReceiptKind::Delivered => {
                "UPDATE notifications AS n SET delivered_at = COALESCE(n.delivered_at, r.at)
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, at)
                 WHERE n.id = r.id RETURNING n.id, n.user_id"
            }
            ReceiptKind::Opened => {
                "UPDATE notifications AS n SET opened_at = COALESCE(n.opened_at, r.at),
                   delivered_at = COALESCE(n.delivered_at, r.at)
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, at)
                 WHERE n.id = r.id RETURNING n.id, n.user_id"
            }
            ReceiptKind::Bounced => {
                "UPDATE notifications AS n SET status = 'failed',
                   last_error = 'bounced: the provider reported the message undeliverable at '
                                || to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, at)
                 WHERE n.id = r.id RETURNING n.id, n.user_id"
            }
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Receipts that named an existing notification.
    pub updated: usize,
    /// Ids that name no notification, in first-seen order, each once.
    pub unknown: Vec<Uuid>,
    /// The people whose notifications the batch touched, each once (their live
    /// streams are told).
    pub people: Vec<String>,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    user_id: Option<String>,
}

/// Applies a batch: one UPDATE per kind present. Within a kind, the earliest time
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
    let mut people: BTreeSet<String> = BTreeSet::new();
    for (kind, items) in by_kind {
        let (ids, ats): (Vec<Uuid>, Vec<DateTime<Utc>>) = items.into_iter().unzip();
        let found: Vec<Id> = diesel::sql_query(kind.sql())
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Timestamptz>, _>(ats)
            .load(conn)
            .await?;
        for f in found {
            known.insert(f.id);
            people.extend(f.user_id);
        }
    }
    let mut seen = HashSet::new();
    let unknown = receipts
        .iter()
        .map(|r| r.notification_id)
        .filter(|id| !known.contains(id) && seen.insert(*id))
        .collect();
    Ok(Applied {
        updated: receipts
            .iter()
            .filter(|r| known.contains(&r.notification_id))
            .count(),
        unknown,
        people: people.into_iter().collect(),
    })
}
