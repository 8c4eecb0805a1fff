//! What every job handler shares. Built once at start: config is parsed and HTTP
//! clients are created here, never per job.

use crate::http::Clients;
use herald_core::config::Config;
use herald_core::targets::AllowedTargets;
use herald_queue::{
    Changes, Circuits, FriendCounts, Heartbeats, Locks, Partition, Partitions, Queue, QueueName,
    RateLimits, Redis,
};
use herald_store::Pool;
use std::time::Duration;

/// How a worker runs; from the command line and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub redis_url: String,
    /// Key prefix in Redis (`herald:` by default; tests use their own).
    pub redis_prefix: String,
    pub config_dir: std::path::PathBuf,
    /// Queues served, highest priority first.
    pub queues: Vec<QueueName>,
    /// How work is split (`HERALD_PARTITIONS`); every process sharing the Redis agrees.
    pub partitions: Partitions,
    /// The partitions this worker reads, reclaims and promotes (`--partitions`); all by
    /// default.
    pub served: Vec<Partition>,
    /// Jobs handled at once.
    pub concurrency: usize,
    /// How long a job may stay unacknowledged before another worker takes it over.
    /// Must exceed the longest channel timeout plus margin.
    pub visibility_timeout: Duration,
    /// How often the recovery sweep looks for work Redis lost.
    pub sweep_interval: Duration,
    /// A job handed to workers this many times without being acknowledged is
    /// dead-lettered at its next reclaim instead of run again.
    pub max_deliveries: u32,
    pub allowed_targets: AllowedTargets,
    /// Testing hook: host names the webhook client answers from this list instead of
    /// DNS (the answers are still vetted). Empty in production.
    pub resolve_overrides: Vec<(String, std::net::IpAddr)>,
    /// Values for `${VAR}` in config that take precedence over the environment.
    pub config_env: Vec<(String, String)>,
    /// How long a rotated-out webhook secret keeps signing beside the new one.
    pub webhook_secret_overlap: Duration,
    /// Where `/metrics` is served (`--metrics-bind`); None: not served.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// The key `/metrics` asks for (`HERALD_METRICS_KEY`); None: open.
    pub metrics_key: Option<String>,
}

pub struct Context {
    pub settings: Settings,
    pub config: Config,
    pub pool: Pool,
    /// The job streams and the delayed set.
    pub queue: Queue,
    /// The delivery lock per notification, and the periodic tasks' locks.
    pub locks: Locks,
    /// Failure streaks per destination host.
    pub circuits: Circuits,
    /// Bundling's per-person friend counters.
    pub friends: FriendCounts,
    pub heartbeats: Heartbeats,
    /// Wakes the live streams of people whose notifications changed.
    pub changes: Changes,
    pub clients: Clients,
    /// The pooled SMTP transports of the SMTP channels.
    pub mailers: crate::smtp::Mailers,
    /// Channels' shared `rate_limit_per_s` buckets.
    pub rate_limits: RateLimits,
    /// Deliveries in flight per destination host (this process's).
    pub host_slots: crate::host_slots::HostSlots,
    /// Batches the acknowledgement of handled jobs.
    pub acker: crate::acks::Acker,
    /// Runs routing's fresh deliveries in free job slots (once the consume loop runs).
    pub hand_off: crate::hand_off::HandOff,
    /// The per-job statements, batched across concurrent jobs.
    pub statements: crate::statements::Statements,
    /// Bundling's ranker and settings (`bundling.yml`, from `config.bundling`).
    pub bundler: crate::bundler::Bundler,
    /// This process's consumer name in the group; also its heartbeat key.
    pub worker_id: String,
    /// Counters and histograms, recorded as things happen (see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Samples the queues' backlog for the metrics.
    pub backlogs: herald_queue::Backlogs,
}

impl Context {
    pub async fn build(settings: Settings) -> anyhow::Result<Context> {
        let config = Config::load_dir_with_env(&settings.config_dir, &settings.config_env)?;
        let longest = config.channels.max_timeout();
        if settings.visibility_timeout <= longest + Duration::from_secs(5) {
            tracing::warn!(?longest, visibility = ?settings.visibility_timeout,
                "visibility timeout is not comfortably longer than the longest channel \
                 timeout: slow deliveries may be duplicated by another worker");
        }
        herald_store::migrate::run(&settings.database_url).await?;
        let pool =
            herald_store::connect(&settings.database_url, settings.concurrency.clamp(4, 32))?;
        let metrics = crate::metrics::Metrics::new();
        metrics.start_at_zero(config.channels.iter().map(|c| c.name.as_str()));
        let event_partitions = {
            let mut conn = herald_store::pool::get(&pool).await?;
            herald_store::partitions::list(&mut conn, "events")
                .await?
                .len()
        };
        let statements = crate::statements::Statements::start(
            crate::statements::Pools::connect(&settings.database_url, event_partitions)?,
            metrics.clone(),
        );
        let redis = Redis::connect(
            &settings.redis_url,
            &settings.redis_prefix,
            settings.partitions,
        )?;
        let clients = Clients::new(
            settings.allowed_targets.clone(),
            settings.resolve_overrides.clone(),
        )?;
        let mailers = crate::smtp::Mailers::new(&config.channels)?;
        let bundler = crate::bundler::Bundler::new(&config);
        let host_slots = crate::host_slots::HostSlots::new(settings.concurrency);
        let worker_id = format!(
            "{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("0")
        );
        Ok(Context {
            settings,
            config,
            pool,
            backlogs: herald_queue::Backlogs::new(redis.clone()),
            queue: Queue::new(redis.clone()),
            locks: Locks::new(redis.clone()),
            circuits: Circuits::new(redis.clone()),
            friends: FriendCounts::new(redis.clone()),
            heartbeats: Heartbeats::new(redis.clone()),
            rate_limits: RateLimits::new(redis.clone()),
            changes: Changes::new(redis),
            clients,
            mailers,
            host_slots,
            acker: crate::acks::Acker::default(),
            hand_off: crate::hand_off::HandOff::default(),
            statements,
            bundler,
            worker_id,
            metrics,
        })
    }
}
