//! The bundling ranker and its settings, built once at start from `bundling.yml`
//! (loaded and checked with the rest of the configuration). Its own module so that the
//! worker's shared context can hold one without depending on the bundling job code.

use herald_core::bundle::ranker::LogisticRanker;
use herald_core::bundle::{BundlingConfig, Ranker};
use herald_core::rules::BundleSpec;

/// The ranker and its settings, loaded once at start.
pub struct Bundler {
    pub config: BundlingConfig,
    pub(crate) ranker: Box<dyn Ranker + Send + Sync>,
}

impl Bundler {
    /// Builds the ranker from the validated settings of `bundling.yml`, which the
    /// config loader read with the other files (`Config::bundling`).
    pub fn new(config: &BundlingConfig) -> Bundler {
        let ranker = Box::new(LogisticRanker::new(config));
        Bundler {
            config: config.clone(),
            ranker,
        }
    }

    pub(crate) fn cap(&self, spec: &BundleSpec) -> u32 {
        spec.max_per_day.unwrap_or(self.config.max_per_day)
    }
}
