//! The one Redis handle every part of this crate is built from: the job queue and
//! each helper take a [`Redis`] in `new`, so a process connects once and all of them
//! share the same connections, key prefix and partitions.
//!
//! Two deployments, chosen by the URL:
//! * `redis://host:port[/db]`: one Redis, as always;
//! * `redis+cluster://host:port,host:port,...`: a Redis Cluster, named by any of its
//!   nodes (the client learns the rest and follows slot moves and failovers). Every
//!   multi-key command Herald sends stays within one hash slot (see `keys`), which a
//!   cluster requires.
//!
//! Three kinds of connection, because Redis commands differ in how they hold one:
//! * one multiplexed connection ([`Conn`]) for every command that answers at once:
//!   concurrent callers' commands are pipelined on it, and taking it costs nothing. It
//!   reconnects by itself after Redis restarts (a cluster connection also after a
//!   failover, and is replaced when it stops answering: `cluster_connection`);
//! * a connection of its own per blocking reader ([`Redis::blocking_conn`]): a blocking
//!   read would stall every command queued behind it on the shared one;
//! * a pub/sub connection for the change hub (a subscribed connection can do nothing
//!   else); in a cluster, a publish reaches the subscribers of every node, so the hub
//!   subscribes on whichever node answers first.

use crate::cluster_connection::{self, SharedClusterConnection};
use crate::error::QueueError;
use crate::keys::Keys;
use herald_core::partitions::Partitions;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use std::sync::Arc;
use std::time::Duration;

/// The URL scheme naming a Redis Cluster by its seed nodes.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Commands answer within this, blocking reads included (they block for 1 s at most).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A shared handle on Redis; cheap to clone (one reference count).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    keys: Keys,
    partitions: Partitions,
}

enum Backend {
    Single {
        shared: ConnectionManager,
        client: redis::Client,
    },
    Cluster {
        /// Opened on first use, so that a cluster that is down turns into errors on
        /// use. Shared with every [`Conn`] taken from it, which reports back.
        shared: Arc<SharedClusterConnection>,
        /// The seed nodes, for the change hub's pub/sub connection.
        seeds: Vec<redis::Client>,
    },
}

impl Redis {
    /// Connects lazily: a Redis that is down turns into errors on use, not here. Every
    /// key lives under `prefix`; work is split into `partitions`.
    pub fn connect(
        redis_url: &str,
        prefix: &str,
        partitions: Partitions,
    ) -> Result<Redis, QueueError> {
        let backend = match cluster_seeds(redis_url)? {
            Some(seeds) => Backend::Cluster {
                shared: Arc::new(SharedClusterConnection::new(cluster_client(&seeds)?)),
                seeds: seeds
                    .iter()
                    .map(|s| redis::Client::open(s.as_str()))
                    .collect::<Result<_, _>>()?,
            },
            None => {
                let client = redis::Client::open(redis_url)?;
                Backend::Single {
                    shared: shared_connection(client.clone())?,
                    client,
                }
            }
        };
        Ok(Redis {
            inner: Arc::new(Inner {
                backend,
                keys: Keys::new(prefix),
                partitions,
            }),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn partitions(&self) -> Partitions {
        self.inner.partitions
    }

    /// Whether this handle speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster { .. })
    }

    /// The shared connection, for any command that does not block.
    pub(crate) async fn conn(&self) -> Result<Conn, QueueError> {
        match &self.inner.backend {
            Backend::Single { shared, .. } => Ok(Conn::Single(shared.clone())),
            Backend::Cluster { shared, .. } => {
                let (generation, conn) = shared.get().await?;
                Ok(Conn::SharedCluster {
                    conn,
                    generation,
                    shared: shared.clone(),
                })
            }
        }
    }

    /// A connection of its own, for a blocking reader to keep.
    pub(crate) async fn blocking_conn(&self) -> Result<Conn, QueueError> {
        match &self.inner.backend {
            Backend::Single { client, .. } => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Dedicated(conn))
            }
            Backend::Cluster { shared, .. } => Ok(Conn::Cluster(
                cluster_connection::open(shared.client()).await?,
            )),
        }
    }

    /// A pub/sub connection: to the one Redis, or to the first cluster node answering.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, QueueError> {
        match &self.inner.backend {
            Backend::Single { client, .. } => Ok(client.get_async_pubsub().await?),
            Backend::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match seed.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.map_or_else(
                    || QueueError::Config("the cluster URL names no node".into()),
                    QueueError::from,
                ))
            }
        }
    }
}

/// A connection of either deployment; commands and scripts run on it alike.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Dedicated(redis::aio::MultiplexedConnection),
    /// A blocking reader's own.
    Cluster(ClusterConnection),
    /// The shared one, which hears how each command ended.
    SharedCluster {
        conn: ClusterConnection,
        generation: u64,
        shared: Arc<SharedClusterConnection>,
    },
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Dedicated(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::SharedCluster {
                conn,
                generation,
                shared,
            } => observed(shared, *generation, conn.req_packed_command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Dedicated(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::SharedCluster {
                conn,
                generation,
                shared,
            } => observed(
                shared,
                *generation,
                conn.req_packed_commands(cmd, offset, count),
            ),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Dedicated(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::SharedCluster { conn, .. } => conn.get_db(),
        }
    }
}

/// A command on the shared cluster connection of `generation`, whose outcome that
/// connection hears when it ends (`SharedClusterConnection::observe`).
fn observed<'a, T: Send + 'a>(
    shared: &'a SharedClusterConnection,
    generation: u64,
    command: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let reply = command.await;
        shared.observe(generation, &reply);
        reply
    })
}

/// The seed nodes of a `redis+cluster://[user:password@]host:port,host:port` URL as
/// `redis://` URLs (the credentials go to each), or None for any other URL.
pub fn cluster_seeds(url: &str) -> Result<Option<Vec<String>>, QueueError> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return Ok(None);
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{auth}{h}"))
        .collect();
    if seeds.is_empty() || hosts.contains('/') {
        return Err(QueueError::Config(format!(
            "a cluster URL lists its nodes as {CLUSTER_SCHEME}host:port,host:port (a cluster has no database number)"
        )));
    }
    Ok(Some(seeds))
}

/// Few, short retries: while a failover runs, callers get an error soon and retry on
/// their own schedule (every loop of the worker does), instead of queueing behind the
/// client's default of 16 retries.
fn cluster_client(seeds: &[String]) -> Result<ClusterClient, QueueError> {
    Ok(ClusterClientBuilder::new(seeds.to_vec())
        .retries(3)
        .min_retry_wait(100)
        .max_retry_wait(1000)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .build()?)
}

/// One reconnect try per failed command: while Redis is down, callers get an error
/// quickly (and retry on their own schedule) instead of queueing behind a long
/// reconnect loop.
fn shared_connection(client: redis::Client) -> Result<ConnectionManager, QueueError> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        let cases: [(&str, Option<Vec<&str>>); 4] = [
            ("redis://127.0.0.1:6379", None),
            (
                "redis+cluster://127.0.0.1:7001,127.0.0.1:7002",
                Some(vec!["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]),
            ),
            (
                "redis+cluster://:secret@a:1, b:2/",
                Some(vec!["redis://:secret@a:1", "redis://:secret@b:2"]),
            ),
            ("redis+cluster://a:1", Some(vec!["redis://a:1"])),
        ];
        for (url, want) in cases {
            let got = cluster_seeds(url).expect("valid");
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{url}");
        }
        for bad in ["redis+cluster://", "redis+cluster://a:1/0"] {
            assert!(cluster_seeds(bad).is_err(), "{bad}");
        }
    }
}
