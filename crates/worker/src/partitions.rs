//! Partition maintenance: keeps the history tables' time partitions created ahead and
//! drops those past the retention ([`herald_store::partitions`] does the SQL under an
//! advisory lock, so every worker may run this loop; they do not race).
//!
//! It runs at start (a database migrated days ago still gets today's partitions at
//! once) and then every [`Policy::tick`]. A failed run (Postgres down, a lock not
//! granted within its timeout) is logged and tried again on the next tick; partitions
//! exist several steps ahead, and the default partitions catch rows meanwhile.

use chrono::Utc;
use herald_store::Pool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many steps ahead partitions exist (three days with daily partitions).
const STEPS_AHEAD: u32 = 3;
/// The longest wait between runs.
const LONGEST_TICK: Duration = Duration::from_secs(15 * 60);
/// The wait after a failed run (e.g. the migrations are still being applied).
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The shortest partition step accepted (each step is a table per history table).
pub const SHORTEST_STEP: Duration = Duration::from_secs(3600);

/// `HERALD_PARTITION_INTERVAL` and `HERALD_RETENTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The span of one partition.
    pub step: Duration,
    /// Partitions whose whole range is older than this are dropped.
    pub retention: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            step: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Policy {
    /// Checks the operator's values; the message names the setting at fault.
    pub fn new(step: Duration, retention: Duration) -> Result<Policy, String> {
        if step < SHORTEST_STEP {
            return Err(format!(
                "HERALD_PARTITION_INTERVAL must be at least {}s, got {}s",
                SHORTEST_STEP.as_secs(),
                step.as_secs()
            ));
        }
        if retention < step {
            return Err(format!(
                "HERALD_RETENTION ({}s) must be at least HERALD_PARTITION_INTERVAL ({}s)",
                retention.as_secs(),
                step.as_secs()
            ));
        }
        Ok(Policy { step, retention })
    }

    /// How far ahead of now partitions exist.
    pub fn ahead(&self) -> Duration {
        self.step * STEPS_AHEAD
    }

    /// The wait between runs: a quarter step, at most a quarter of an hour.
    pub fn tick(&self) -> Duration {
        (self.step / 4).min(LONGEST_TICK)
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// One run: create what is missing ahead, then drop what is past the retention.
pub async fn maintain(pool: &Pool, policy: Policy) -> anyhow::Result<Report> {
    let mut conn = herald_store::pool::get(pool).await?;
    let created = herald_store::partitions::ensure(&mut conn, policy.step, policy.ahead()).await?;
    let cutoff = Utc::now() - chrono::Duration::from_std(policy.retention)?;
    let dropped = herald_store::partitions::drop_older_than(&mut conn, cutoff).await?;
    Ok(Report { created, dropped })
}

/// Runs [`maintain`] now and every tick until shutdown, on a connection of its own.
pub async fn run(database_url: String, policy: Policy, shutdown: CancellationToken) {
    let pool = match herald_store::connect(&database_url, 1) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!(error = %e, "partition maintenance cannot start");
            return;
        }
    };
    loop {
        let wait = match maintain(&pool, policy).await {
            Ok(report) => {
                if !report.created.is_empty() || !report.dropped.is_empty() {
                    tracing::info!(created = ?report.created, dropped = ?report.dropped,
                        "history partitions maintained");
                }
                policy.tick()
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "partition maintenance failed");
                RETRY_AFTER
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_shorter_than_an_hour_and_retentions_shorter_than_a_step_are_refused() {
        let day = Duration::from_secs(86_400);
        assert!(Policy::new(Duration::from_secs(60), day).is_err());
        assert!(Policy::new(day, Duration::from_secs(3600)).is_err());
        let p = Policy::new(day, day * 30).expect("the defaults are valid");
        assert_eq!(p, Policy::default());
        assert_eq!(p.ahead(), day * 3);
        assert_eq!(p.tick(), LONGEST_TICK);
        let hourly = Policy::new(Duration::from_secs(3600), day).expect("hourly");
        assert_eq!(hourly.tick(), Duration::from_secs(900));
    }
}
