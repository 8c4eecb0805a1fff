//! The `config/` directory: `rules.yml`, `templates.yml`, `channels.yml` and, when
//! present, `bundling.yml` (absent: the built-in bundling defaults).
//!
//! Loaded once at start (api and worker alike, and by `herald-api check-config`);
//! invalid config stops the process with every mistake listed, each naming file,
//! rule and field. Values may name environment variables (`${VAR}`,
//! `${VAR:-default}`), substituted in the raw text before YAML parsing so that any
//! value, including numbers, can come from the environment.
//!
//! Reading the files is the only I/O in this crate; it is kept in
//! [`ConfigSources::read_dir`] (and [`Config::load_bundling`], for the offline tools
//! that need `bundling.yml` alone) so that everything else is testable on strings.

use crate::alert::AlertLabels;
use crate::bundle::ranker::BundlingConfig;
use crate::channels::{Channel, ChannelSpec, Channels};
use crate::envsubst::substitute;
use crate::rules::{Rule, RuleSet};
use crate::template::{TemplateSource, Templates};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

pub const RULES_FILE: &str = "rules.yml";
pub const TEMPLATES_FILE: &str = "templates.yml";
pub const CHANNELS_FILE: &str = "channels.yml";
pub use crate::bundle::ranker::BUNDLING_FILE;

/// One mistake in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// The rule, template or channel the mistake is in, when known.
    pub item: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(item) = &self.item {
            write!(f, ": {item}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every mistake found; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The raw text of the files, with the directory they came from for messages.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    pub dir: String,
    pub rules: String,
    pub templates: String,
    pub channels: String,
    /// `bundling.yml`; `None` when the directory has none (the built-in defaults).
    pub bundling: Option<String>,
}

impl ConfigSources {
    /// Reads the files of `dir`: the three required ones and `bundling.yml` if present.
    pub fn read_dir(dir: &Path) -> Result<Self, ConfigErrors> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| file_error(&path.display().to_string(), format!("cannot read: {e}")))
        };
        let (rules, templates, channels, bundling) = (
            read(RULES_FILE),
            read(TEMPLATES_FILE),
            read(CHANNELS_FILE),
            read_optional(dir, BUNDLING_FILE),
        );
        match (rules, templates, channels, bundling) {
            (Ok(rules), Ok(templates), Ok(channels), Ok(bundling)) => Ok(ConfigSources {
                dir: dir.display().to_string(),
                rules,
                templates,
                channels,
                bundling,
            }),
            (r, t, c, b) => Err(ConfigErrors(
                [r.err(), t.err(), c.err(), b.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        }
    }
}

/// The text of `dir/name`, or `None` when there is no such file.
fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, ConfigError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(
            &path.display().to_string(),
            format!("cannot read: {e}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Parsed rule by rule, so that every rule's mistakes are reported.
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    alerts: AlertsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsSection {
    #[serde(default)]
    labels: AlertLabels,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatesFile {
    templates: Vec<TemplateSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateSpec {
    #[serde(rename = "type")]
    name: String,
    channel: String,
    #[serde(default)]
    subject: Option<String>,
    text: String,
    /// Mail only: an HTML alternative to `text`.
    #[serde(default)]
    html: Option<String>,
    /// Mail only: the `List-Unsubscribe` header (e.g. `<https://…/unsubscribe/{{ user.user_id }}>`).
    #[serde(default)]
    list_unsubscribe: Option<String>,
    #[serde(default)]
    private: bool,
}

/// The name under which a template's extra part (`html`, `list_unsubscribe`) is
/// compiled beside its subject and text.
pub fn extra_part_name(notification_type: &str, part: &str) -> String {
    format!("{notification_type}#{part}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsFile {
    /// Parsed channel by channel, so that a mistake names its channel.
    channels: Vec<serde_json::Value>,
}

/// What a template declares besides its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMeta {
    pub channel: String,
    /// Private notifications (operators' alerts) never show in the person's inbox.
    pub private: bool,
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    pub rules: RuleSet,
    pub channels: Channels,
    pub templates: Templates,
    pub template_meta: HashMap<String, TemplateMeta>,
    pub alert_labels: AlertLabels,
    /// Bundling's ranker and cap (`bundling.yml`, else the built-in defaults).
    pub bundling: BundlingConfig,
    /// The rules whose `bundle.ranker` block overrides `bundling.yml`, by
    /// notification type: `bundling.yml` with the block laid over it.
    pub rule_bundling: HashMap<String, BundlingConfig>,
}

impl Config {
    /// The bundling settings of the rule making `notification_type`: its own
    /// `bundle.ranker` block over `bundling.yml`, else `bundling.yml`.
    pub fn bundling_for(&self, notification_type: &str) -> &BundlingConfig {
        self.rule_bundling
            .get(notification_type)
            .unwrap_or(&self.bundling)
    }

    /// Reads and validates `dir` with the process environment.
    pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
        Config::load_dir_with_env(dir, &[])
    }

    /// Like [`Config::load_dir`], with `overrides` taking precedence over the process
    /// environment (tests run several configurations in one process).
    pub fn load_dir_with_env(
        dir: &Path,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        Config::from_sources(&ConfigSources::read_dir(dir)?, |k| {
            overrides
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        })
    }

    /// Renders a template's extra part (`html`, `list_unsubscribe`) over `ctx`; None
    /// when the template has no such part or it fails to render (logged).
    pub fn render_extra(
        &self,
        notification_type: &str,
        part: &str,
        ctx: &serde_json::Value,
    ) -> Option<String> {
        let name = extra_part_name(notification_type, part);
        match self.templates.render(&name, ctx) {
            Ok(rendered) => Some(rendered.text),
            Err(crate::template::TemplateError::Unknown { .. }) => None,
            Err(e) => {
                tracing::warn!(error = %e, "template part failed to render; sent without it");
                None
            }
        }
    }

    /// Reads and validates `bundling.yml` of `dir` alone, with the process
    /// environment: for the offline tools, which replay a file and need no rules or
    /// channels. `None` when the file is absent (the caller picks the defaults).
    pub fn load_bundling(dir: &Path) -> Result<Option<BundlingConfig>, ConfigErrors> {
        let Some(text) = read_optional(dir, BUNDLING_FILE).map_err(|e| ConfigErrors(vec![e]))?
        else {
            return Ok(None);
        };
        let file = dir.join(BUNDLING_FILE).display().to_string();
        let mut errors = Vec::new();
        let cfg = parse_bundling(&file, &text, &|k| std::env::var(k).ok(), &mut errors);
        if errors.is_empty() {
            Ok(Some(cfg))
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Validates the given texts; `env` resolves `${VAR}` references.
    pub fn from_sources(
        src: &ConfigSources,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let path = |name: &str| format!("{}/{name}", src.dir.trim_end_matches('/'));
        let rules_file: Option<RulesFile> =
            parse_yaml(&path(RULES_FILE), &src.rules, &env, &mut errors);
        let templates_file: Option<TemplatesFile> =
            parse_yaml(&path(TEMPLATES_FILE), &src.templates, &env, &mut errors);
        let channels_file: Option<ChannelsFile> =
            parse_yaml(&path(CHANNELS_FILE), &src.channels, &env, &mut errors);

        let channels = channels_file
            .map(|f| build_channels(&path(CHANNELS_FILE), f, &mut errors))
            .unwrap_or_default();
        let (templates, template_meta) = templates_file
            .map(|f| build_templates(&path(TEMPLATES_FILE), f, &channels, &mut errors))
            .unwrap_or_default();
        let (rules, alert_labels) = rules_file
            .map(|f| {
                let rules = parse_rules(
                    &path(RULES_FILE),
                    &f.rules,
                    &channels,
                    &template_meta,
                    &mut errors,
                );
                (RuleSet::new(rules), f.alerts.labels)
            })
            .unwrap_or_default();
        let bundling = src
            .bundling
            .as_deref()
            .map(|text| parse_bundling(&path(BUNDLING_FILE), text, &env, &mut errors))
            .unwrap_or_default();
        let rule_bundling = rule_rankers(&path(RULES_FILE), &rules, &bundling, &mut errors);

        match (errors.is_empty(), templates) {
            (true, Some(templates)) => Ok(Config {
                rules,
                channels,
                templates,
                template_meta,
                alert_labels,
                bundling,
                rule_bundling,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let text = substitute(text, env)
        .map_err(|e| errors.push(file_error(file, e.to_string())))
        .ok()?;
    serde_norway::from_str(&text)
        .map_err(|e| errors.push(file_error(file, e.to_string())))
        .ok()
}

/// A mistake that concerns a whole file (unreadable, not YAML of the right shape).
fn file_error(file: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        item: None,
        field: None,
        message,
    }
}

/// Parses and validates `bundling.yml`; each problem names its field. The defaults
/// stand in when the text is invalid (the errors then stop the load anyway).
fn parse_bundling(
    file: &str,
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> BundlingConfig {
    let Some(cfg) = parse_yaml::<BundlingConfig>(file, text, env, errors) else {
        return BundlingConfig::default();
    };
    match cfg.validate() {
        Ok(()) => cfg,
        Err(problems) => {
            errors.extend(problems.into_iter().map(|p| ConfigError {
                file: file.to_string(),
                item: None,
                field: Some(p.field.to_string()),
                message: p.message,
            }));
            BundlingConfig::default()
        }
    }
}

/// Each rule's `bundle.ranker` block laid over `bundling.yml` (objects merge key by
/// key, anything else replaces), then validated like `bundling.yml`. A rule's own
/// `bundle.max_per_day` is its ranker's cap too: the ranker plans the day's sends
/// around the cap the flush enforces.
fn rule_rankers(
    file: &str,
    rules: &RuleSet,
    base: &BundlingConfig,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, BundlingConfig> {
    let mut out = HashMap::new();
    for rule in rules.all() {
        let Some(spec) = rule.bundle.as_ref() else {
            continue;
        };
        if spec.ranker.is_none() && spec.max_per_day.is_none_or(|m| m == base.max_per_day) {
            continue;
        }
        let name = &rule.notification_type;
        let mut merged = serde_json::to_value(base).unwrap_or_default();
        if let Some(block) = &spec.ranker {
            overlay(&mut merged, block);
        }
        if let Some(cap) = spec.max_per_day {
            merged["max_per_day"] = cap.into();
        }
        match serde_json::from_value::<BundlingConfig>(merged) {
            Ok(cfg) => match cfg.validate() {
                Ok(()) => {
                    out.insert(name.clone(), cfg);
                }
                Err(problems) => errors.extend(problems.into_iter().map(|p| {
                    let field = format!("bundle.ranker.{}", p.field);
                    item_error(file, "rule", name, &field, &p.message)
                })),
            },
            Err(e) => errors.push(item_error(
                file,
                "rule",
                name,
                "bundle.ranker",
                &e.to_string(),
            )),
        }
    }
    out
}

/// Lays `over` onto `base`: objects merge key by key, anything else replaces.
fn overlay(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                overlay(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn build_channels(file: &str, f: ChannelsFile, errors: &mut Vec<ConfigError>) -> Channels {
    let mut seen = HashSet::new();
    let mut channels = Vec::new();
    for (i, value) in f.channels.into_iter().enumerate() {
        let name = value
            .get("name")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("#{}", i + 1), str::to_string);
        let spec: ChannelSpec = match serde_json::from_value(value) {
            Ok(spec) => spec,
            Err(e) => {
                errors.push(ConfigError {
                    file: file.to_string(),
                    item: Some(format!("channel {name}")),
                    field: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        if !seen.insert(name.clone()) {
            errors.push(item_error(
                file,
                "channel",
                &name,
                "name",
                "is defined twice",
            ));
            continue;
        }
        match Channel::from_spec(spec) {
            Ok(c) => channels.push(c),
            Err((field, message)) => {
                errors.push(item_error(file, "channel", &name, field, &message))
            }
        }
    }
    Channels::new(channels)
}

fn build_templates(
    file: &str,
    f: TemplatesFile,
    channels: &Channels,
    errors: &mut Vec<ConfigError>,
) -> (Option<Templates>, HashMap<String, TemplateMeta>) {
    let mut meta = HashMap::new();
    let mut sources = Vec::new();
    for t in f.templates {
        if meta.contains_key(&t.name) {
            errors.push(item_error(
                file,
                "template",
                &t.name,
                "type",
                "is defined twice",
            ));
            continue;
        }
        if !channels.contains(&t.channel) {
            let msg = format!("unknown channel {:?}", t.channel);
            errors.push(item_error(file, "template", &t.name, "channel", &msg));
        }
        meta.insert(
            t.name.clone(),
            TemplateMeta {
                channel: t.channel,
                private: t.private,
            },
        );
        for (part, text) in [("html", &t.html), ("list_unsubscribe", &t.list_unsubscribe)] {
            if let Some(text) = text {
                sources.push(TemplateSource {
                    name: extra_part_name(&t.name, part),
                    subject: None,
                    text: text.clone(),
                });
            }
        }
        sources.push(TemplateSource {
            name: t.name,
            subject: t.subject,
            text: t.text,
        });
    }
    match Templates::compile(&sources) {
        Ok(t) => (Some(t), meta),
        Err(e) => {
            errors.push(ConfigError {
                file: file.to_string(),
                item: None,
                field: None,
                message: e.to_string(),
            });
            (None, meta)
        }
    }
}

/// Parses and checks every rule, reporting all of each rule's mistakes: its own
/// (unknown fields, bad durations or operators) and its references (channel, template),
/// even when the rule could not be parsed.
fn parse_rules(
    file: &str,
    raw: &[serde_json::Value],
    channels: &Channels,
    templates: &HashMap<String, TemplateMeta>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut seen = HashSet::new();
    for (i, value) in raw.iter().enumerate() {
        let name = Rule::name_of(value, i);
        let mut push =
            |field: &str, msg: String| errors.push(item_error(file, "rule", &name, field, &msg));
        if !seen.insert(name.clone()) {
            push("notification_type", "is defined twice".into());
        }
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        if let Some(Err(e)) = text("event_type").map(crate::event::validate_event_type) {
            push("event_type", e.message);
        }
        if let Some(channel) = text("channel").filter(|c| !channels.contains(c)) {
            push("channel", format!("unknown channel {channel:?}"));
        }
        if let Some(template) = text("template").filter(|t| !templates.contains_key(*t)) {
            push("template", format!("unknown template {template:?}"));
        }
        let digest_template = value
            .get("bundle")
            .and_then(|b| b.get("template"))
            .and_then(serde_json::Value::as_str);
        if let Some(template) = digest_template.filter(|t| !templates.contains_key(*t)) {
            push("bundle.template", format!("unknown template {template:?}"));
        }
        match Rule::parse(value) {
            Ok(rule) => rules.push(rule),
            Err(problems) => problems
                .into_iter()
                .for_each(|(field, message)| push(&field, message)),
        }
    }
    rules
}

fn item_error(file: &str, kind: &str, name: &str, field: &str, message: &str) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        item: Some(format!("{kind} {name}")),
        field: Some(field.to_string()),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(rules: &str) -> ConfigSources {
        ConfigSources {
            dir: "config".into(),
            rules: rules.into(),
            templates: "templates:\n  - {type: A, channel: email, subject: 'Hi {{ user.email }}', text: 'x'}\n".into(),
            channels: "channels:\n  - {name: email, url: '${PROVIDER:-http://127.0.0.1:5000}/email'}\n".into(),
            bundling: None,
        }
    }

    const ONE_RULE: &str = "rules:\n  - {notification_type: A, event_type: x, recipients: subject, channel: email, template: A}\n";

    fn with_bundling(text: &str) -> ConfigSources {
        ConfigSources {
            bundling: Some(text.into()),
            ..sources(ONE_RULE)
        }
    }

    #[test]
    fn bundling_settings_load_with_the_other_files() {
        let env = |k: &str| (k == "CAP").then(|| "2".to_string());
        let cases: [(Option<&str>, u32, f64); 4] = [
            (None, BundlingConfig::default().max_per_day, 0.5),
            (Some("max_per_day: 7\n"), 7, 0.5),
            (Some("threshold: 0.25\n"), 4, 0.25),
            (Some("max_per_day: ${CAP}\n"), 2, 0.5),
        ];
        for (text, cap, threshold) in cases {
            let src = ConfigSources {
                bundling: text.map(String::from),
                ..sources(ONE_RULE)
            };
            let cfg = Config::from_sources(&src, env).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                (cfg.bundling.max_per_day, cfg.bundling.threshold),
                (cap, threshold),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_rules_ranker_block_overrides_bundling_yml_and_is_checked() {
        let rule = |bundle: &str| {
            format!("rules:\n  - {{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, bundle: {bundle}}}\n")
        };
        let src = ConfigSources {
            bundling: Some("max_per_day: 7\nthreshold: 0.25\n".into()),
            ..sources(&rule(
                "{ranker: {threshold: 0.75, weights: {since_last: 2.0}}}",
            ))
        };
        let cfg = Config::from_sources(&src, |_| None).expect("valid");
        let own = cfg.bundling_for("A");
        assert_eq!((own.max_per_day, own.threshold), (7, 0.75));
        assert_eq!(own.weights.since_last, 2.0);
        assert_eq!(own.weights.bias, cfg.bundling.weights.bias);
        assert_eq!(cfg.bundling_for("B").threshold, 0.25);
        // The rule's own cap is its ranker's.
        let capped = ConfigSources {
            bundling: Some("max_per_day: 7\n".into()),
            ..sources(&rule("{max_per_day: 24}"))
        };
        let cfg = Config::from_sources(&capped, |_| None).expect("valid");
        assert_eq!(cfg.bundling_for("A").max_per_day, 24);
        let cases = [
            (
                "{ranker: {threshold: 2}}",
                "config/rules.yml: rule A: field bundle.ranker.threshold: must lie strictly between 0 and 1",
            ),
            (
                "{template: NOPE}",
                "config/rules.yml: rule A: field bundle.template: unknown template \"NOPE\"",
            ),
            (
                "{key: post_id}",
                "config/rules.yml: rule A: field bundle.key: \"post_id\" must be a path under properties. or user_traits.",
            ),
        ];
        for (bundle, want) in cases {
            let err = Config::from_sources(&sources(&rule(bundle)), |_| None)
                .expect_err(bundle)
                .to_string();
            assert!(err.contains(want), "{bundle}: {err}");
        }
    }

    #[test]
    fn bundling_mistakes_name_the_file_and_field() {
        let cases = [
            (
                "max_per_day: 0\n",
                vec!["config/bundling.yml: field max_per_day: must be at least 1"],
            ),
            (
                "threshold: 1\nweights: {since_last: -1, time_left: 0.5}\n",
                vec![
                    "config/bundling.yml: field threshold: must lie strictly between 0 and 1",
                    "config/bundling.yml: field weights.since_last: must be ≥ 0",
                    "config/bundling.yml: field weights.time_left: must be ≤ 0",
                ],
            ),
            (
                "friends: {count_power: 2}\nhour_profile: [1]\n",
                vec![
                    "config/bundling.yml: field hour_profile: must hold 24 non-negative numbers, not all zero",
                    "config/bundling.yml: field friends.count_power: must lie in 0..=1",
                ],
            ),
        ];
        for (text, expected) in cases {
            let errs = Config::from_sources(&with_bundling(text), |_| None).unwrap_err();
            let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
            assert_eq!(lines, expected, "{text:?}");
        }
    }

    #[test]
    fn a_bundling_yaml_error_names_the_file_and_the_unknown_field() {
        for text in ["weights: {nope: 1}\n", "colour: red\n", "max_per_day: [\n"] {
            let errs = Config::from_sources(&with_bundling(text), |_| None).unwrap_err();
            assert_eq!(errs.0.len(), 1, "{text:?}: {errs}");
            assert_eq!(errs.0[0].file, "config/bundling.yml", "{text:?}");
        }
        let errs = Config::from_sources(&with_bundling("colour: red\n"), |_| None).unwrap_err();
        assert!(errs.to_string().contains("colour"), "{errs}");
    }

    #[test]
    fn the_shipped_directory_loads_with_its_bundling_settings() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let shipped = Config::load_bundling(&dir)
            .expect("valid bundling.yml")
            .expect("config/ has a bundling.yml");
        assert_eq!(shipped.max_per_day, 4);
        assert_ne!(
            shipped,
            BundlingConfig::default(),
            "the fitted weights are read"
        );
        let nowhere = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-dir");
        assert_eq!(Config::load_bundling(&nowhere), Ok(None));
    }

    #[test]
    fn a_valid_directory_loads_with_environment_defaults() {
        let cfg = Config::from_sources(
            &sources("rules:\n  - {notification_type: A, event_type: x, recipients: subject, channel: email, template: A}\n"),
            |_| None,
        )
        .unwrap();
        assert_eq!(cfg.rules.all().len(), 1);
        assert_eq!(
            cfg.channels.get("email").unwrap().url.as_deref(),
            Some("http://127.0.0.1:5000/email")
        );
    }

    #[test]
    fn every_mistake_is_reported_with_file_rule_and_field() {
        let errs = Config::from_sources(
            &sources("rules:\n  - {notification_type: A, event_type: x, recipients: subject, channel: fax, template: B}\n"),
            |_| None,
        )
        .unwrap_err();
        let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "config/rules.yml: rule A: field channel: unknown channel \"fax\"",
                "config/rules.yml: rule A: field template: unknown template \"B\"",
            ]
        );
    }

    #[test]
    fn check_config_lists_every_mistake_of_every_rule_at_once() {
        let rules = "rules:
  - {notification_type: A, event_type: x, recipients: subject, channel: fax, template: B, delay: soon}
  - {notification_type: C, event_type: x, recipients: subject, channel: email, template: A, colour: red,
     conditions: [{property: properties.a, op: EQUALS, value: 1}, {event_within: {event_type: y, within: 3 weeks-ish}}]}
";
        let errs = Config::from_sources(&sources(rules), |_| None).unwrap_err();
        let lines: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        let all = lines.join("\n");
        for expected in [
            "rule A: field channel: unknown channel \"fax\"",
            "rule A: field template: unknown template \"B\"",
            "rule A: field rule: invalid duration \"soon\"",
            "rule C: field colour: unknown field",
            "rule C: field conditions: conditions[0].op: unknown operator \"EQUALS\"",
            "rule C: field conditions: conditions[1].event_within.within",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("config/rules.yml: rule ")),
            "{all}"
        );
    }

    #[test]
    fn a_yaml_error_names_the_file_and_line() {
        let errs = Config::from_sources(
            &sources("rules:\n  - {notification_type: A, bogus: 1}\n"),
            |_| None,
        )
        .unwrap_err();
        let msg = errs.to_string();
        assert!(
            msg.contains("config/rules.yml") && msg.contains("bogus"),
            "{msg}"
        );
    }
}
