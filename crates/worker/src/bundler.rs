//! The bundling rankers and their settings, built once at start from `bundling.yml`
//! and each bundled rule's `bundle.ranker` block (loaded and checked with the rest of
//! the configuration). Its own module so that the worker's shared context can hold
//! them without depending on the bundling job code.

use herald_core::bundle::ranker::LogisticRanker;
use herald_core::bundle::{BundlingConfig, Ranker};
use herald_core::config::Config;
use herald_core::rules::BundleSpec;
use std::collections::HashMap;

/// One ranker and the settings it was built from.
pub struct RuleRanker {
    pub config: BundlingConfig,
    pub(crate) ranker: Box<dyn Ranker + Send + Sync>,
}

impl RuleRanker {
    fn new(config: &BundlingConfig) -> RuleRanker {
        RuleRanker {
            config: config.clone(),
            ranker: Box::new(LogisticRanker::new(config)),
        }
    }
}

/// The rankers, loaded once at start: `bundling.yml`'s, and one per rule whose
/// `bundle.ranker` block overrides it.
pub struct Bundler {
    default: RuleRanker,
    by_rule: HashMap<String, RuleRanker>,
}

impl Bundler {
    /// Builds the rankers from the validated configuration (`Config::bundling` and
    /// `Config::rule_bundling`).
    pub fn new(config: &Config) -> Bundler {
        Bundler {
            default: RuleRanker::new(&config.bundling),
            by_rule: config
                .rule_bundling
                .iter()
                .map(|(name, cfg)| (name.clone(), RuleRanker::new(cfg)))
                .collect(),
        }
    }

    /// The ranker of the rule making `notification_type`.
    pub fn for_rule(&self, notification_type: &str) -> &RuleRanker {
        self.by_rule.get(notification_type).unwrap_or(&self.default)
    }

    /// The rule's daily cap: its own `max_per_day`, else its ranker settings'.
    pub(crate) fn cap(&self, notification_type: &str, spec: Option<&BundleSpec>) -> u32 {
        spec.and_then(|s| s.max_per_day)
            .unwrap_or(self.for_rule(notification_type).config.max_per_day)
    }
}
