//! What every handler shares, built once at start.

use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use herald_core::config::Config;
use herald_core::targets::AllowedTargets;
use herald_queue::{ChangeSubscriber, Queue};
use herald_store::Pool;
use std::sync::Arc;

/// How the api runs; from the command line and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub config_dir: std::path::PathBuf,
    /// Accepted bearer keys; empty means no authentication (development only).
    pub api_keys: Vec<String>,
    pub allowed_targets: AllowedTargets,
    /// Database connections; Postgres is the bottleneck long before this is.
    pub db_pool_size: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub pool: Pool,
    pub queue: Queue,
    /// Opens the live streams' Redis subscriptions (one connection each).
    pub changes: ChangeSubscriber,
    pub api_keys: Vec<String>,
    pub allowed_targets: AllowedTargets,
    pub metrics: Metrics,
    /// Group commit of ingested events (see [`crate::ingest`]).
    pub ingestor: Ingestor,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
