//! The config loader (`Config::from_sources`, what `herald-api check-config` and every
//! process run at start, contract §5): four YAML texts → a validated `Config` or a list of
//! errors naming file, item and field. Nothing may panic.
//!
//! The input holds up to four texts separated by `\n---8<---\n`: rules.yml,
//! templates.yml, channels.yml, bundling.yml. Texts the input does not give are the
//! shipped ones, so a mutation of one file is checked against valid others.
#![no_main]

use herald_core::config::{Config, ConfigSources};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: &str = "\n---8<---\n";
const RULES: &str = include_str!("../../config/rules.yml");
const TEMPLATES: &str = include_str!("../../config/templates.yml");
const CHANNELS: &str = include_str!("../../config/channels.yml");
const BUNDLING: &str = include_str!("../../config/bundling.yml");

fuzz_target!(|data: &[u8]| {
    if data.len() > 256 * 1024 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, SEPARATOR);
    let sources = ConfigSources {
        dir: "fuzz".into(),
        rules: parts.next().unwrap_or(RULES).to_string(),
        templates: parts.next().unwrap_or(TEMPLATES).to_string(),
        channels: parts.next().unwrap_or(CHANNELS).to_string(),
        bundling: Some(parts.next().unwrap_or(BUNDLING).to_string()),
    };
    let env = |name: &str| match name {
        "HERALD_PROVIDER_URL" => Some("http://127.0.0.1:5000".to_string()),
        "HERALD_CHANNEL_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
        _ => None,
    };
    match Config::from_sources(&sources, env) {
        Ok(config) => {
            // A loaded config answers the questions the processes ask of it.
            let _ = config.channels.max_timeout();
            for rule in config.rules.all() {
                assert!(
                    config.channels.get(&rule.channel).is_some(),
                    "rule on an unknown channel"
                );
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            let _ = errors.to_string();
        }
    }
});
