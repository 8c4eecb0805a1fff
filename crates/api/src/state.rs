//! What every handler shares, built once at start.

use crate::failed_keys::FailedKeys;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use herald_core::access::{ApiKeys, MetricsKey};
use herald_core::config::Config;
use herald_core::signing::WebhookSecret;
use herald_core::targets::AllowedTargets;
use herald_queue::{ChangeHub, Changes, Heartbeats, Queue};
use herald_store::Pool;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// How the api runs; from the command line and environment. Its `Debug` output
/// shows how many API keys there are, never the keys.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    /// A read replica (`DATABASE_READ_URL`); None: every read goes to the primary.
    pub database_read_url: Option<String>,
    pub redis_url: String,
    pub redis_prefix: String,
    /// How work is split in Redis (`HERALD_PARTITIONS`); the workers must agree.
    pub partitions: herald_core::partitions::Partitions,
    pub config_dir: std::path::PathBuf,
    /// Accepted bearer keys; empty means no authentication (development only).
    pub api_keys: Vec<String>,
    pub allowed_targets: AllowedTargets,
    /// Database connections; Postgres is the bottleneck long before this is.
    pub db_pool_size: usize,
    /// Requests per second per API key (`HERALD_RATE_LIMIT_PER_S`); None or 0: no limit.
    pub rate_limit_per_s: Option<u32>,
    /// The secret providers sign receipts with (`HERALD_RECEIPTS_SECRET`), instead of
    /// sending a key.
    pub receipts_secret: Option<WebhookSecret>,
    /// The header a trusted proxy puts the client's address in
    /// (`HERALD_CLIENT_IP_HEADER`); None: the peer address is the client's.
    pub client_ip_header: Option<String>,
    /// The key `/metrics` asks for (`HERALD_METRICS_KEY`); None: open.
    pub metrics_key: Option<String>,
    /// The live streams' limits and timing.
    pub streams: StreamSettings,
}

/// How the live streams (`GET /api/v1/users/{id}/stream`) run.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Streams one API key may hold open in this api process
    /// (`HERALD_MAX_STREAMS_PER_KEY`); 0: no limit.
    pub max_per_key: usize,
    /// How often a stream re-reads its person's change log although no announcement
    /// woke it (`HERALD_STREAM_RECHECK`), for announcements lost on the way.
    pub recheck: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            max_per_key: crate::stream_slots::DEFAULT_MAX_PER_KEY,
            recheck: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("read_replica", &self.database_read_url.is_some())
            .field("redis_prefix", &self.redis_prefix)
            .field("partitions", &self.partitions.count())
            .field("config_dir", &self.config_dir)
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field("allowed_targets", &self.allowed_targets)
            .field("db_pool_size", &self.db_pool_size)
            .field("rate_limit_per_s", &self.rate_limit_per_s)
            .field("receipts_secret", &self.receipts_secret)
            .field("client_ip_header", &self.client_ip_header)
            .field(
                "metrics_key",
                &self.metrics_key.as_ref().map(|_| "<redacted>"),
            )
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    /// The primary: every write, and every read that decides something.
    pub pool: Pool,
    /// Where the reads that decide nothing go (a replica when one is set).
    pub reads: crate::reads::Reads,
    pub queue: Queue,
    /// Announces people's changes.
    pub changes: Changes,
    /// This process's one Redis subscription to change announcements, which wakes its
    /// live streams.
    pub hub: ChangeHub,
    /// The open live streams per API key.
    pub stream_slots: crate::stream_slots::StreamSlots,
    /// See [`StreamSettings::recheck`].
    pub stream_recheck: Duration,
    /// Change-log reads made by live streams (a test hook: an idle stream reads
    /// nothing until its re-check).
    pub stream_reads: AtomicU64,
    /// The live workers, for the operations view.
    pub heartbeats: Heartbeats,
    pub api_keys: ApiKeys,
    pub allowed_targets: AllowedTargets,
    pub metrics: Metrics,
    /// Requests without a valid key, counted per client address.
    pub failed_keys: FailedKeys,
    pub receipts_secret: Option<WebhookSecret>,
    pub client_ip_header: Option<String>,
    /// What `/metrics` asks for, when anything.
    pub metrics_key: MetricsKey,
    /// The rate limit per API key, when one is set.
    pub rate_limiter: Option<crate::rate_limit::RateLimiter>,
    /// Group commit of ingested events (see [`crate::ingest`]).
    pub ingestor: Ingestor,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
