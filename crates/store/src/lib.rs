//! Herald's Postgres adapter. All diesel code lives here; the binaries call named
//! queries and never build SQL themselves.
//!
//! | module | owns |
//! |---|---|
//! | [`schema`] | diesel's table definitions |
//! | [`pool`] | the connection pool and error classification |
//! | [`migrate`] | embedded migrations, applied under an advisory lock |
//! | [`events`] | storing accepted events (one multi-row insert), the outbox scan |
//! | [`people`] | users, preference levels, topics and memberships |
//! | [`stats`] | aggregates for health and metrics |
//! | [`notifications`] | notification rows: fan-out inserts, delivery state, attempts |
//! | [`testing`] | a throw-away database per test (feature `testing`) |

pub mod events;
pub mod migrate;
pub mod notifications;
pub mod people;
pub mod pool;
pub mod schema;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use pool::{connect, Conn, Pool, StoreError};
