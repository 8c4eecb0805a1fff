//! `herald-api`: parse arguments, set up logging, then serve, migrate or check config.

use clap::{Parser, Subcommand};
use herald_api::Settings;
use herald_core::config::Config;
use herald_core::partitions::Partitions;
use herald_core::signing::WebhookSecret;
use herald_core::targets::AllowedTargets;
use std::path::PathBuf;
use std::time::Duration;

/// Herald's HTTP API: validates, stores and enqueues events; serves queries.
#[derive(Parser, Debug)]
#[command(name = "herald-api", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "HERALD_BIND", default_value = "127.0.0.1:8000")]
    bind: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/herald"
    )]
    database_url: String,
    /// A read replica of the database, for the reads that decide nothing (inbox,
    /// audit, stats, lists, operations summary); unset: everything reads the primary.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    database_read_url: Option<String>,
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Prefix of every Redis key Herald uses.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald:")]
    redis_prefix: String,
    /// How many partitions work is split into in Redis; every api and worker sharing
    /// a Redis must agree (a process with another number refuses to start).
    #[arg(long = "partition-count", env = "HERALD_PARTITIONS", default_value = "16", value_parser = Partitions::parse)]
    partitions: Partitions,
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Comma-separated API keys; when empty, no key is required (development only).
    #[arg(
        long,
        env = "HERALD_API_KEYS",
        default_value = "",
        hide_env_values = true
    )]
    api_keys: String,
    /// CIDRs people's webhooks may reach although private or loopback.
    #[arg(long, env = "HERALD_ALLOWED_TARGETS", default_value = "", value_parser = AllowedTargets::parse)]
    allowed_targets: AllowedTargets,
    /// Database connections in the pool.
    #[arg(long, env = "HERALD_DB_POOL_SIZE", default_value_t = 16)]
    db_pool_size: usize,
    /// Requests per second allowed per API key, counted in Redis across api processes
    /// (over it: 429 with Retry-After); 0, the default, means no limit.
    #[arg(long, env = "HERALD_RATE_LIMIT_PER_S", default_value_t = 0)]
    rate_limit_per_s: u32,
    /// A secret (`whsec_<base64>` or any string) with which providers may sign their
    /// receipts (Standard Webhooks) instead of sending an API key.
    #[arg(long, env = "HERALD_RECEIPTS_SECRET", hide_env_values = true, value_parser = WebhookSecret::parse)]
    receipts_secret: Option<WebhookSecret>,
    /// Behind a proxy: the header holding the client's address (its last entry is
    /// used), e.g. X-Forwarded-For; without it, the peer address is the client's.
    #[arg(long, env = "HERALD_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// The key `/metrics` asks for (`Authorization: Bearer <key>`); unset: open.
    #[arg(long, env = "HERALD_METRICS_KEY", hide_env_values = true)]
    metrics_key: Option<String>,
    /// Live streams one API key may hold open in this api process (over it: 429); 0
    /// means no limit.
    #[arg(long, env = "HERALD_MAX_STREAMS_PER_KEY", default_value_t = herald_api::stream_slots::DEFAULT_MAX_PER_KEY)]
    max_streams_per_key: usize,
    /// How often an idle live stream re-reads its person's changes although no Redis
    /// announcement woke it (one lost on the way arrives this late at worst).
    #[arg(long, env = "HERALD_STREAM_RECHECK", default_value = "30s", value_parser = parse_recheck)]
    stream_recheck: Duration,
}

/// A duration of at least a second: a shorter re-check would be the per-second poll
/// the announcements replace.
fn parse_recheck(s: &str) -> Result<Duration, String> {
    let d = herald_core::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?} is under a second"));
    }
    Ok(d)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate config/ and exit: 0 when valid, else every problem is listed.
    CheckConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Colour only on a terminal: logs redirected to files stay plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match cli.command {
        Some(Command::CheckConfig) => check_config(&cli.config_dir),
        Some(Command::Migrate) => {
            let n = herald_store::migrate::run(&cli.database_url).await?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Some(Command::Serve) | None => serve(cli).await,
    }
}

fn check_config(dir: &std::path::Path) -> anyhow::Result<()> {
    match Config::load_dir(dir) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} rules, {} templates)",
                dir.display(),
                cfg.rules.all().len(),
                cfg.template_meta.len()
            );
            Ok(())
        }
        Err(errors) => {
            eprint!("{errors}");
            std::process::exit(1);
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings {
        database_url: cli.database_url,
        database_read_url: cli.database_read_url.filter(|u| !u.is_empty()),
        redis_url: cli.redis_url,
        redis_prefix: cli.redis_prefix,
        partitions: cli.partitions,
        config_dir: cli.config_dir,
        api_keys: cli
            .api_keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect(),
        allowed_targets: cli.allowed_targets,
        db_pool_size: cli.db_pool_size,
        rate_limit_per_s: Some(cli.rate_limit_per_s).filter(|n| *n > 0),
        receipts_secret: cli.receipts_secret,
        client_ip_header: cli.client_ip_header,
        metrics_key: cli.metrics_key,
        streams: herald_api::StreamSettings {
            max_per_key: cli.max_streams_per_key,
            recheck: cli.stream_recheck,
        },
    };
    if settings.api_keys.is_empty() {
        tracing::warn!("HERALD_API_KEYS is empty: the API accepts requests without a key");
    }
    let state = herald_api::build_state(&settings).await.map_err(|e| {
        eprintln!("herald-api cannot start: {e:#}");
        e
    })?;
    let listener = std::net::TcpListener::bind(&cli.bind)?;
    tracing::info!(bind = %cli.bind, "herald-api listening");
    herald_api::run(state, listener)?.await?;
    Ok(())
}
