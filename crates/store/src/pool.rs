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

/// What every batch session sets on top of [`SESSION`] (see [`connect_for_batches`]).
const BATCH_SESSION: &str = "SET plan_cache_mode = force_custom_plan";

/// A pool for the worker's batched statements, whose sessions differ in two ways.
///
/// `plan_cache_mode = force_custom_plan`: each run is planned for its own arrays.
/// Postgres otherwise settles on a generic plan after five runs and keeps it: planned
/// while a table was small (a new database), it went on scanning `notifications`
/// whole for every batch as the table grew, and Postgres burned a core at 100 events/s.
/// Planning costs a fraction of a millisecond per batch, which large batches share.
/// (Measured again on 2026-12-03: forcing generic plans saved that planning, about
/// 1.5 ms per event at 300 events/s where batches hold one row, but plans made on a new
/// database read the delivery rows in 450 ms a batch, even with sequential scans
/// priced out; BENCHMARKS.md.)
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
) -> Result<Pool, StoreError> {
    let config = match commits {
        Commits::Lazy => manager_config(&[BATCH_SESSION, "SET synchronous_commit = off"]),
        Commits::Durable => manager_config(&[BATCH_SESSION]),
    };
    build(database_url, max_size, config)
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
