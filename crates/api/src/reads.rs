//! Where reads go. With `DATABASE_READ_URL` set, the reads that decide nothing — the
//! inbox, the audit trail, stats, lists and the operations summary (the console
//! reads through these routes) — go to a replica; every write, and every read that
//! decides something (ingestion, read marks, routing and delivery in the workers),
//! stays on the primary.
//!
//! Read-your-writes: after a person's read mark, the primary's WAL position is kept
//! in Redis for [`REMEMBER_WRITES_FOR`] ([`herald_queue::RecentWrites`]), so whichever
//! api process serves that person's next read sends it to the primary until the
//! replica has replayed that far. A replica that cannot be reached is skipped: the
//! read goes to the primary.

use crate::error::ApiError;
use herald_queue::RecentWrites;
use herald_store::{Conn, Pool};
use prometheus::Gauge;
use std::time::Duration;

/// How long a person's last write position is kept. A replica further behind than
/// this may show that person a write undone; the lag metric says how far behind it is.
pub const REMEMBER_WRITES_FOR: Duration = Duration::from_secs(300);

/// How often the replica's lag is sampled for the metrics.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Reads {
    primary: Pool,
    replica: Option<Pool>,
    recent: RecentWrites,
}

impl Reads {
    pub fn new(primary: Pool, replica: Option<Pool>, recent: RecentWrites) -> Reads {
        Reads {
            primary,
            replica,
            recent,
        }
    }

    /// A connection for a read about no one in particular: the replica's when there
    /// is one and it answers.
    pub async fn conn(&self) -> Result<Conn, ApiError> {
        if let Some(replica) = &self.replica {
            match herald_store::pool::get(replica).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::warn!(error = %e, "replica unavailable; reading from the primary")
                }
            }
        }
        Ok(herald_store::pool::get(&self.primary).await?)
    }

    /// A connection for reading what `user_id` sees: the replica's, unless the
    /// person wrote recently and the replica has not replayed that write yet.
    pub async fn conn_for(&self, user_id: &str) -> Result<Conn, ApiError> {
        let Some(replica) = &self.replica else {
            return Ok(herald_store::pool::get(&self.primary).await?);
        };
        let last_write = match self.recent.last(user_id).await {
            Ok(w) => w,
            Err(e) => {
                // Without the mark the replica may be behind the person's write.
                tracing::warn!(error = %e, "redis unavailable; reading from the primary");
                return Ok(herald_store::pool::get(&self.primary).await?);
            }
        };
        if let Ok(mut conn) = herald_store::pool::get(replica).await {
            let caught_up = match &last_write {
                None => true,
                Some(position) => herald_store::replication::has_reached(&mut conn, position)
                    .await
                    .unwrap_or(false),
            };
            if caught_up {
                return Ok(conn);
            }
        }
        Ok(herald_store::pool::get(&self.primary).await?)
    }

    /// Records that `user_id`'s data just changed on the primary (through `primary`,
    /// after the commit), so their next reads wait for the replica to catch up.
    /// Without a replica there is nothing to wait for.
    pub async fn wrote(&self, primary: &mut Conn, user_id: &str) {
        if self.replica.is_none() {
            return;
        }
        let remembered = match herald_store::replication::current_position(primary).await {
            Ok(position) => self
                .recent
                .remember(user_id, &position, REMEMBER_WRITES_FOR)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = remembered {
            tracing::warn!(error = %e, user_id, "could not keep the write position; the person may read a stale replica");
        }
    }

    /// Samples the replica's lag into the two gauges every few seconds, for as long
    /// as the runtime runs. Without a replica, nothing to sample.
    pub fn sample_lag(&self, bytes: Gauge, seconds: Gauge) {
        let Some(replica) = self.replica.clone() else {
            return;
        };
        let primary = self.primary.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LAG_SAMPLE_EVERY);
            loop {
                every.tick().await;
                match read_lag(&primary, &replica).await {
                    Ok(lag) => {
                        bytes.set(lag.bytes);
                        seconds.set(lag.seconds);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not read the replica's lag"),
                }
            }
        });
    }
}

async fn read_lag(
    primary: &Pool,
    replica: &Pool,
) -> Result<herald_store::replication::Lag, herald_store::StoreError> {
    let mut p = herald_store::pool::get(primary).await?;
    let mut r = herald_store::pool::get(replica).await?;
    herald_store::replication::lag(&mut p, &mut r).await
}
