//! `herald-worker`: parse arguments, set up logging, run until SIGTERM or Ctrl-C.

use clap::Parser;
use herald_core::duration::parse_duration;
use herald_core::targets::AllowedTargets;
use herald_queue::{Partitions, QueueName};
use herald_worker::Settings;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Herald's queue worker: routes events to notifications, delivers them, retries.
/// Run as many as you like; they share the work through Redis.
#[derive(Parser, Debug)]
#[command(name = "herald-worker", version)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Offline tools; without one, the worker daemon runs.
    #[command(subcommand)]
    command: Option<Command>,
    /// Queues to serve, highest priority first.
    #[arg(long, value_delimiter = ',', default_value = "critical,default", value_parser = parse_queue)]
    queues: Vec<QueueName>,
    /// Jobs handled at once. Jobs mostly wait (on Postgres batches, Redis, webhooks),
    /// and the more run at once, the larger the batches their statements share.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// How many partitions work is split into; every api and worker sharing a Redis
    /// must agree (a process with another number refuses to start).
    #[arg(long = "partition-count", env = "HERALD_PARTITIONS", default_value = "16", value_parser = Partitions::parse)]
    partition_count: Partitions,
    /// The partitions this worker serves: `all`, or numbers and ranges (`0-7,12`).
    #[arg(
        long = "partitions",
        env = "HERALD_WORKER_PARTITIONS",
        default_value = "all"
    )]
    served: String,
    /// How long a job may go unacknowledged before another worker takes it over.
    /// Must exceed the longest channel timeout plus margin.
    #[arg(long, env = "HERALD_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    visibility_timeout: Duration,
    /// How often the recovery sweep rebuilds lost work from Postgres.
    #[arg(long, env = "HERALD_SWEEP_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    sweep_interval: Duration,
    /// Times a job may be handed to workers without being acknowledged; at the next
    /// reclaim it is dead-lettered (recorded with its reason, taken off the stream).
    #[arg(long, env = "HERALD_MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_deliveries: u32,
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/herald"
    )]
    database_url: String,
    // `hide_env_values`: `--help` must not print a password the URL carries.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// How long a person's rotated-out webhook secret keeps signing beside the new one.
    #[arg(long, env = "HERALD_WEBHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    webhook_secret_overlap: Duration,
    /// Prefix of every Redis key Herald uses.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald:")]
    redis_prefix: String,
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// The span of one time partition of the history tables.
    #[arg(long, env = "HERALD_PARTITION_INTERVAL", default_value = "1d", value_parser = parse_duration)]
    partition_interval: Duration,
    /// History older than this is dropped, a whole partition at a time.
    #[arg(long, env = "HERALD_RETENTION", default_value = "30d", value_parser = parse_duration)]
    retention: Duration,
    /// CIDRs people's webhooks may reach although private or loopback.
    #[arg(long, env = "HERALD_ALLOWED_TARGETS", default_value = "", value_parser = AllowedTargets::parse)]
    allowed_targets: AllowedTargets,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9100;
    /// unset: not served.
    #[arg(long, env = "HERALD_WORKER_METRICS_BIND")]
    metrics_bind: Option<std::net::SocketAddr>,
    /// The key `/metrics` asks for (`Authorization: Bearer <key>`); unset: open.
    #[arg(long, env = "HERALD_METRICS_KEY", hide_env_values = true)]
    metrics_key: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Replay a komoot challenge file (`timestamp,user_id,friend_id,friend_name`)
    /// through the bundler; prints bundles as CSV on stdout, stats on stderr.
    /// Exit code 2 when bad rows were skipped.
    Bundle {
        /// The input CSV (header optional).
        #[arg(required_unless_present = "generate")]
        file: Option<PathBuf>,
        /// Also write the statistics as CSV (`metric,value`) to this file.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// Directory holding bundling.yml.
        #[arg(long = "config", env = "HERALD_CONFIG_DIR", default_value = "config")]
        config: PathBuf,
        /// Learn ranker weights from FILE and print a bundling.yml block instead.
        #[arg(long)]
        fit: bool,
        /// Skip the offline optimum (and the ratio) in the stats.
        #[arg(long)]
        no_optimum: bool,
        /// Write a synthetic file of N rows shaped like the sample data to stdout.
        #[arg(long, value_name = "N", conflicts_with_all = ["file", "fit", "stats"])]
        generate: Option<u64>,
    },
    /// Print the distinct receivers (`user_id`) of a komoot challenge file.
    Users { file: PathBuf },
}

fn run_offline(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Bundle {
            generate: Some(n), ..
        } => {
            herald_worker::offline::generate(n, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Bundle {
            file,
            stats,
            config,
            fit,
            no_optimum,
            generate: None,
        } => {
            let file = file.ok_or_else(|| anyhow::anyhow!("FILE is required"))?;
            herald_worker::offline::bundle(&herald_worker::offline::BundleOptions {
                file,
                stats,
                config_dir: config,
                fit,
                no_optimum,
            })
        }
        Command::Users { file } => herald_worker::offline::users(&file),
    }
}

fn parse_queue(s: &str) -> Result<QueueName, String> {
    QueueName::parse(s).ok_or_else(|| format!("unknown queue {s:?}: expected critical or default"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.command.take() {
        // Offline tools: no runtime services, their own exit codes.
        let code = match run_offline(cmd) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        };
        std::process::exit(code);
    }
    // Colour only on a terminal: logs redirected to files stay plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let partitions = herald_worker::partitions::Policy::new(cli.partition_interval, cli.retention)
        .map_err(anyhow::Error::msg)?;
    let settings = Settings {
        database_url: cli.database_url.clone(),
        redis_url: cli.redis_url,
        redis_prefix: cli.redis_prefix,
        config_dir: cli.config_dir,
        queues: cli.queues,
        served: cli
            .partition_count
            .parse_subset(&cli.served)
            .map_err(|e| anyhow::anyhow!("--partitions: {e}"))?,
        partitions: cli.partition_count,
        concurrency: usize::from(cli.concurrency),
        visibility_timeout: cli.visibility_timeout,
        sweep_interval: cli.sweep_interval,
        max_deliveries: cli.max_deliveries,
        allowed_targets: cli.allowed_targets,
        resolve_overrides: Vec::new(),
        config_env: Vec::new(),
        webhook_secret_overlap: cli.webhook_secret_overlap,
        metrics_bind: cli.metrics_bind,
        metrics_key: cli.metrics_key,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(herald_worker::partitions::run(
        cli.database_url,
        partitions,
        shutdown.clone(),
    ));
    herald_worker::run(settings, shutdown).await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "worker stopped with an error");
        e
    })
}

/// SIGTERM or Ctrl-C starts a graceful stop: no new jobs, in-flight ones finish.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping: draining in-flight jobs");
    shutdown.cancel();
}
