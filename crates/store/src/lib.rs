//! Herald's Postgres adapter. All diesel code lives here; the binaries call named
//! queries and never build SQL themselves.
//!
//! | module | owns |
//! |---|---|
//! | [`schema`] | diesel's table definitions |
//! | [`pool`] | the connection pool and error classification |
//! | [`batch`] | group commit: one statement for many concurrent callers |
//! | [`migrate`] | embedded migrations, applied under an advisory lock |
//! | [`partitions`] | time partitions of the history tables: created ahead, dropped past the retention |
//! | [`audit`] | a person's audit trail: recent events and notification history |
//! | [`bundles`] | pending and sent bundles (contract §8) |
//! | [`dead_letters`] | jobs given up on after too many deliveries, and what they settled |
//! | [`events`] | storing accepted events (one multi-row insert), the outbox scan |
//! | [`history`] | a person's other events and sent notifications, for conditions and debounce |
//! | [`people`] | users, preference levels, topics and memberships |
//! | [`stats`] | aggregates for health, metrics, ops and per-event stats |
//! | [`notifications`] | notification rows: fan-out inserts, delivery state, attempts, manual retry |
//! | [`subscriptions`] | per-event-type subscriptions (seed 003) |
//! | [`inbox`] | a person's inbox: pages, unread count, read marks |
//! | [`locking`] | the one order in which statements lock notification rows |
//! | [`retry`] | running a statement again after a deadlock or serialization failure |
//! | [`changes`] | each person's numbered change log, for the console's live stream |
//! | [`receipts`] | provider receipts: delivered, opened, bounced (seed 001) |
//! | [`replication`] | a replica's position and lag against its primary (read-your-writes) |
//! | [`testing`] | a throw-away database per test (feature `testing`) |

pub mod audit;
pub mod batch;
pub mod bundles;
pub mod changes;
pub mod dead_letters;
#[macro_use]
mod prepared;

pub mod events;
pub mod history;
pub mod inbox;
pub mod locking;
pub mod migrate;
pub mod notifications;
pub mod partitions;
pub mod people;
pub mod pool;
pub mod receipts;
pub mod replication;
pub mod retry;
pub mod schema;
pub mod stats;
pub mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook_secrets;

pub use pool::{connect, Conn, Pool, StoreError};
