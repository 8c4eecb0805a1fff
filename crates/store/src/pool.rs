//! The connection pool (diesel-async over tokio-postgres: no libpq) and the one place
//! database errors are classified, so the api can answer 503 when Postgres is down
//! rather than 500.

use diesel_async::pooled_connection::deadpool::{self, Object};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;

pub type Pool = deadpool::Pool<AsyncPgConnection>;
pub type Conn = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres does not answer (refused, reset, pool timed out): retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::DatabaseErrorKind as K;
        use diesel::result::Error as E;
        match e {
            E::NotFound => StoreError::NotFound,
            E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, info) => {
                StoreError::Unavailable(info.message().to_string())
            }
            E::DatabaseError(K::Unknown, info) if is_shutdown_message(info.message()) => {
                StoreError::Unavailable(info.message().to_string())
            }
            E::BrokenTransactionManager => StoreError::Unavailable(e.to_string()),
            other => StoreError::Query(other),
        }
    }
}

/// Messages Postgres sends while it restarts (SQLSTATE 57P01, 57P03 and friends).
fn is_shutdown_message(message: &str) -> bool {
    [
        "terminating connection",
        "shutting down",
        "starting up",
        "in recovery mode",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<deadpool::PoolError> for StoreError {
    fn from(e: deadpool::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Builds a pool of at most `max_size` connections. Connections are opened lazily;
/// a wait for a free one is bounded so a dead database turns into errors, not hangs.
pub fn connect(database_url: &str, max_size: usize) -> Result<Pool, StoreError> {
    build(database_url, max_size, manager_config(&[]))
}

/// What every session sets. `jit = off`: Herald's statements are short, but a plan
/// that reads every partition of a month of daily ones (a lookup's fallback) is costed
/// above `jit_above_cost`, and Postgres then compiles it with LLVM on each run (the
/// delivery rows' statement over 36 partitions: 24 functions), milliseconds of
/// compiling for a statement that runs in a fraction of one.
const SESSION: &str = "SET jit = off";

/// How a batch session's commits treat the WAL (see [`connect_for_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// `synchronous_commit = off`: a commit does not wait for the WAL flush.
    Lazy,
    /// The default: a commit returns once its WAL is on disk.
    Durable,
}

/// How a batch session plans its prepared statements (see [`connect_for_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// `plan_cache_mode = force_custom_plan`: each run is planned for its own arrays.
    /// Postgres otherwise settles on a generic plan after five runs and keeps it:
    /// planned while a table was small (a new database), it went on scanning
    /// `notifications` whole for every batch as the table grew, and Postgres burned a
    /// core at 100 events/s. (Measured again on 2026-12-03: plans made on a new
    /// database read the delivery rows in 450 ms a batch, even with sequential scans
    /// priced out; the attempts' generic plan scans the primary key over its whole
    /// time window, because a window given by parameters looks narrow to it;
    /// BENCHMARKS.md.) Planning costs a fraction of a millisecond per batch, which
    /// large batches share.
    EachRun,
    /// `plan_cache_mode = force_generic_plan` and `enable_seqscan = off`: planned once
    /// per session, and never by scanning a table whole. A generic plan is made from
    /// the tables' sizes when the session first runs the statement, and kept as they
    /// grow: a partition that was empty then (a new day's) would be scanned whole by
    /// every run until the next `ANALYZE` of it. With sequential scans priced out a
    /// lookup by key always takes its index. So this is only for statements whose every
    /// read is a lookup by key, checked on an empty, an analysed-empty and a grown
    /// database by `tests/generic_plans.rs`. It pays beyond the statement's own planning
    /// (0.05–0.3 ms a run): the session's setting also governs the foreign-key checks
    /// Postgres runs inside it, one per inserted row, which custom plans plan again each
    /// time (measured on 2026-12-04: 32 µs per notification inserted, more than the
    /// check itself).
    Once,
}

impl Commits {
    /// What a session of this kind sets (None: the server's own setting).
    fn setting(self) -> Option<&'static str> {
        match self {
            Commits::Lazy => Some("SET synchronous_commit = off"),
            Commits::Durable => None,
        }
    }
}

impl Plans {
    fn setting(self) -> &'static str {
        match self {
            Plans::EachRun => "SET plan_cache_mode = force_custom_plan",
            Plans::Once => "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off",
        }
    }
}

/// A pool for the worker's batched statements, whose sessions differ in how they
/// plan ([`Plans`]) and in how they commit.
///
/// [`Commits::Lazy`]: commits do not wait for the WAL flush. Postgres stays
/// consistent; a crash of Postgres itself may forget the last fraction of a second of
/// these commits, and each such write is redone: an event whose `routed` mark was
/// forgotten is routed again (its notifications exist: nothing new is inserted), a
/// forgotten attempt leaves its notification `pending` and it is delivered again under
/// the same id (at least once, as always). Events are stored by the api with
/// synchronous commits: none is lost. What may be sent right after its commit must
/// use [`Commits::Durable`]: a notification row forgotten after its delivery would be
/// routed again under a new id, which its receiver cannot recognise as the same.
pub fn connect_for_batches(
    database_url: &str,
    max_size: usize,
    commits: Commits,
    plans: Plans,
) -> Result<Pool, StoreError> {
    let settings: Vec<&str> = std::iter::once(plans.setting())
        .chain(commits.setting())
        .collect();
    build(database_url, max_size, manager_config(&settings))
}

/// Sessions that run [`SESSION`] and then `extra` (`SET` commands) once when they open.
fn manager_config(extra: &[&str]) -> ManagerConfig<AsyncPgConnection> {
    let setup: std::sync::Arc<str> = std::iter::once(SESSION)
        .chain(extra.iter().copied())
        .collect::<Vec<_>>()
        .join("; ")
        .into();
    // `Fast`: a checkout costs no `SELECT 1` round trip (the default `Verified` sent
    // one per checkout, several per event routed and delivered). A connection whose
    // socket closed (Postgres restarted) is still discarded: recycling checks
    // `is_closed`. One that dies unnoticed fails its next query, which callers already
    // treat as "unavailable, try again".
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let setup = setup.clone();
        Box::pin(async move {
            use diesel_async::{AsyncConnection, SimpleAsyncConnection};
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.batch_execute(&setup)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    config
}

fn build(
    database_url: &str,
    max_size: usize,
    config: ManagerConfig<AsyncPgConnection>,
) -> Result<Pool, StoreError> {
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .recycle_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Takes a connection from the pool.
pub async fn get(pool: &Pool) -> Result<Conn, StoreError> {
    Ok(pool.get().await?)
}
