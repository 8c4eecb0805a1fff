//! The one Redis handle every part of this crate is built from: the job queue and
//! each helper take a [`Redis`] in `new`, so a process connects once and all of them
//! share the same connections and key prefix.
//!
//! Three kinds of connection, because Redis commands differ in how they hold one:
//! * one multiplexed connection for every command that answers at once: concurrent
//!   callers' commands are pipelined on it, and taking it costs nothing (a pool
//!   checkout costs an UNWATCH + PING round trip, as much as the command itself). It
//!   reconnects by itself after Redis restarts;
//! * a small pool for blocking reads, which would stall the multiplexed connection;
//! * the client, to open the change hub's pub/sub connection (a subscribed
//!   connection can do nothing else).

use crate::error::QueueError;
use crate::keys::Keys;
use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncConnectionConfig;
use std::sync::Arc;
use std::time::Duration;

/// A shared handle on Redis; cheap to clone (one reference count).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    shared: ConnectionManager,
    pool: Pool,
    client: redis::Client,
    keys: Keys,
}

impl Redis {
    /// Connects lazily: a Redis that is down turns into errors on use, not here.
    /// Every key lives under `prefix`. `pool_size` bounds the connections for
    /// blocking reads; each read holds one.
    pub fn connect(redis_url: &str, prefix: &str, pool_size: usize) -> Result<Redis, QueueError> {
        let client = redis::Client::open(redis_url)?;
        Ok(Redis {
            inner: Arc::new(Inner {
                shared: shared_connection(client.clone())?,
                pool: blocking_pool(redis_url, pool_size)?,
                client,
                keys: Keys::new(prefix),
            }),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The shared connection, for any command that does not block.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.shared.clone()
    }

    /// A connection of its own, for a blocking read.
    pub(crate) async fn blocking_conn(&self) -> Result<deadpool_redis::Connection, QueueError> {
        Ok(self.inner.pool.get().await?)
    }

    /// The client, for connections that cannot be shared (pub/sub).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }
}

/// One reconnect try per failed command: while Redis is down, callers get an error
/// quickly (and retry on their own schedule) instead of queueing behind a long
/// reconnect loop.
fn shared_connection(client: redis::Client) -> Result<ConnectionManager, QueueError> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Blocking reads wait up to a second; the default 500 ms response timeout would cut
/// them off.
fn blocking_pool(redis_url: &str, pool_size: usize) -> Result<Pool, QueueError> {
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let manager = Manager::new_with_config(redis_url, config)?;
    Pool::builder(manager)
        .max_size(pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(2)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| QueueError::Unavailable(e.to_string()))
}
