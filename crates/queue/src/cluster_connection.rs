//! The Redis Cluster connection that every non-blocking command shares, replaced when
//! it stops answering.
//!
//! The `redis` crate's cluster connection runs a task of its own that routes commands,
//! follows failovers and repairs node connections. Through a master failover that task
//! has been seen to wedge (`make cluster`): it lived on, but every command through it
//! timed out for minutes while each node of the cluster answered `redis-cli` at once.
//! A fresh connection learns the topology anew, so after [`WEDGED_AFTER`] timeouts in
//! a row on one connection, with no answer in between, the next command opens another.
//! A timeout proves nothing alone (a node may be failing over), an answer proves the
//! connection alive.
//!
//! Blocking readers need none of this: each drops its connection on any error that is
//! not Redis's own answer and opens another (`queue::Reader`).

use crate::error::QueueError;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::RedisResult;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Timeouts in a row, on the same connection, after which it is replaced.
const WEDGED_AFTER: u32 = 3;

/// Opening a cluster connection (every seed tried, the topology read, every node
/// connected) takes at most this; the crate sets no bound of its own.
const CONNECT_BUDGET: Duration = Duration::from_secs(10);

/// The shared connection and its health.
pub(crate) struct SharedClusterConnection {
    client: ClusterClient,
    /// The connection in use and its generation; `None` until first use and after a
    /// replacement.
    current: Mutex<Option<(u64, ClusterConnection)>>,
    /// One connection is opened at a time; callers arriving meanwhile wait for it.
    opening: tokio::sync::Mutex<()>,
    health: Health,
}

impl SharedClusterConnection {
    pub(crate) fn new(client: ClusterClient) -> Self {
        SharedClusterConnection {
            client,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            health: Health::default(),
        }
    }

    /// The connection in use with its generation, opened first when there is none.
    pub(crate) async fn get(&self) -> Result<(u64, ClusterConnection), QueueError> {
        if let Some(current) = self.current().clone() {
            return Ok(current);
        }
        let _opening = self.opening.lock().await;
        if let Some(current) = self.current().clone() {
            return Ok(current);
        }
        let conn = open(&self.client).await?;
        let generation = self.health.generation();
        *self.current() = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Notes how a command on the connection of `generation` ended; drops that
    /// connection when it is wedged, so that the next command opens another.
    pub(crate) fn observe<T>(&self, generation: u64, reply: &RedisResult<T>) {
        let timed_out = reply.as_ref().is_err_and(|e| e.is_timeout());
        if self.health.observe(generation, timed_out) == Verdict::Replace {
            // The connection in use is this generation's: `get` stores a new one only
            // when there is none, and only this call moved the generation on.
            self.current().take();
            tracing::warn!(
                timeouts = WEDGED_AFTER,
                "redis cluster connection stopped answering: the next command opens another"
            );
        }
    }

    /// The client, for connections of their own (blocking readers).
    pub(crate) fn client(&self) -> &ClusterClient {
        &self.client
    }

    fn current(&self) -> MutexGuard<'_, Option<(u64, ClusterConnection)>> {
        // Nothing panics while holding it (a clone or an assignment), so a poisoned
        // lock still holds a consistent value.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cluster connection of its own, within [`CONNECT_BUDGET`].
pub(crate) async fn open(client: &ClusterClient) -> Result<ClusterConnection, QueueError> {
    match tokio::time::timeout(CONNECT_BUDGET, client.get_async_connection()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(QueueError::Unavailable(format!(
            "no cluster connection within {} s",
            CONNECT_BUDGET.as_secs()
        ))),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Replace,
}

/// The policy, apart from the connection: timeouts in a row per generation.
#[derive(Default)]
struct Health {
    /// The generation in use; each replacement starts the next.
    generation: AtomicU64,
    timeouts_in_a_row: AtomicU32,
}

impl Health {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Counts one command's outcome on `generation`. Outcomes of a connection already
    /// replaced count for nothing: its commands in flight time out after it is gone.
    fn observe(&self, generation: u64, timed_out: bool) -> Verdict {
        if generation != self.generation() {
            return Verdict::Keep;
        }
        if !timed_out {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return Verdict::Keep;
        }
        let in_a_row = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        // Only the command that reaches the threshold on this generation replaces it.
        if in_a_row >= WEDGED_AFTER
            && self
                .generation
                .compare_exchange(
                    generation,
                    generation + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return Verdict::Replace;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generation a command ran on, whether it timed out, and the verdict wanted.
    type Step = (u64, bool, Verdict);

    /// Steps in order on one Health, then the generation in use.
    #[test]
    fn a_connection_is_replaced_after_timeouts_in_a_row_on_it() {
        let cases: [(&str, &[Step], u64); 5] = [
            (
                "three timeouts in a row",
                &[
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Replace),
                ],
                1,
            ),
            (
                "an answer in between resets the count",
                &[
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, false, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                ],
                0,
            ),
            (
                "late timeouts of the replaced connection count for nothing",
                &[
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Replace),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                ],
                1,
            ),
            (
                "the new connection is judged afresh",
                &[
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Keep),
                    (0, true, Verdict::Replace),
                    (1, true, Verdict::Keep),
                    (0, false, Verdict::Keep),
                    (1, true, Verdict::Keep),
                    (1, true, Verdict::Replace),
                ],
                2,
            ),
            (
                "answers alone never replace",
                &[(0, false, Verdict::Keep), (0, false, Verdict::Keep)],
                0,
            ),
        ];
        for (name, steps, generation) in cases {
            let health = Health::default();
            for (i, (on, timed_out, want)) in steps.iter().enumerate() {
                assert_eq!(&health.observe(*on, *timed_out), want, "{name}: step {i}");
            }
            assert_eq!(health.generation(), generation, "{name}");
        }
    }
}
