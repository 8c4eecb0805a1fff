//! Notification subjects and texts, rendered with minijinja.
//!
//! `config/templates.yml` (contract §5.2) gives each notification type a `text` and an
//! optional `subject` with `{{ var }}` placeholders over the event:
//! `properties.*`, `user_traits.*`, `user.*`, `event_type`, `event_timestamp`.
//! Every template is compiled once at startup, so a syntax error (or an unknown
//! filter, test or function on the straight-line path) stops the process with a
//! message naming the template, the part and the line, instead of failing each
//! delivery later.
//!
//! Events are free-form, so a template will meet events that lack a field it
//! names. The contract is that a missing variable renders empty and is logged,
//! never crashes: the environment uses `UndefinedBehavior::Chainable` (so
//! `{{ properties.missing.deeper }}` is empty too) and a formatter notices when
//! an undefined value is printed; the render then names the paths the template
//! references that the event lacks in a `tracing::warn!`. Paths only used in
//! tests, conditions or with a `default` filter print nothing undefined and are
//! not logged. JSON `null` also prints as empty rather than minijinja's `none`.
//!
//! Output is plain text or JSON, not HTML: auto-escaping is off. `trim_blocks`
//! and `lstrip_blocks` are on so `{% if %}` lines in multi-line YAML texts do
//! not leave blank lines behind.
//!
//! Numbers print as minijinja prints them: an integer `1425` as `1425`, a float
//! `1425.0` as `1425.0` (and `14.25` as `14.25`). An event that sends amounts
//! as floats therefore shows `.0`; write `{{ properties.amount | int }}` or
//! `{{ "%.2f" | format(properties.amount) }}` where that matters.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// Name of the per-render flag the formatter sets when it prints an undefined value.
const PRINTED_UNDEFINED: &str = "herald.printed_undefined";

/// One entry of `templates.yml`, as the config loader hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    pub name: String,
    pub subject: Option<String>,
    pub text: String,
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
}

/// Which part of a template an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart {
    Subject,
    Text,
}

impl TemplatePart {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Text => "text",
        }
    }
}

impl fmt::Display for TemplatePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong compiling or rendering templates. Messages carry
/// minijinja's own, which ends with `(in <template>/<part>:<line>)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template}: {part} does not compile: {message}")]
    Compile {
        template: String,
        part: TemplatePart,
        message: String,
    },
    #[error("template {template}: {part} failed to render: {message}")]
    Render {
        template: String,
        part: TemplatePart,
        message: String,
    },
    #[error("unknown template {name:?}")]
    Unknown { name: String },
    #[error("template {name:?} is defined more than once")]
    Duplicate { name: String },
}

/// A compiled part: its key in the environment and the dotted variable paths
/// it references (`properties.amount`, `user.name`, `event_type`).
#[derive(Debug)]
struct Part {
    key: String,
    paths: BTreeSet<String>,
}

#[derive(Debug)]
struct Entry {
    subject: Option<Part>,
    text: Part,
}

/// Every notification template, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    entries: HashMap<String, Entry>,
}

impl Templates {
    /// Compiles every template once at startup. An error names the template and
    /// whether its subject or text failed, with minijinja's message and line.
    pub fn compile(sources: &[TemplateSource]) -> Result<Self, TemplateError> {
        let mut env = new_environment();
        let mut names = std::collections::HashSet::new();
        let mut keys = Vec::new();
        for source in sources {
            if !names.insert(source.name.as_str()) {
                return Err(TemplateError::Duplicate {
                    name: source.name.clone(),
                });
            }
            let mut parts = vec![(TemplatePart::Text, &source.text)];
            parts.extend(source.subject.as_ref().map(|s| (TemplatePart::Subject, s)));
            for (part, text) in parts {
                let key = part_key(&source.name, part);
                env.add_template_owned(key.clone(), text.clone())
                    .map_err(|e| compile_error(&source.name, part, &e))?;
                keys.push((source.name.clone(), part, key));
            }
        }

        let globals: BTreeSet<String> = env.globals().map(|(k, _)| k.to_owned()).collect();
        let mut entries: HashMap<String, (Option<Part>, Option<Part>)> = HashMap::new();
        for (name, part, key) in keys {
            let template = env
                .get_template(&key)
                .map_err(|e| compile_error(&name, part, &e))?;
            // Filters, tests and functions are looked up at render time; a trial
            // render with an empty event surfaces unknown ones now. Other errors
            // (arithmetic on a missing value...) depend on the event and are not
            // a reason to refuse the config.
            if let Err(e) = template.render(serde_json::json!({})) {
                if matches!(
                    e.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
                ) {
                    return Err(compile_error(&name, part, &e));
                }
            }
            let paths = template
                .undeclared_variables(true)
                .into_iter()
                .filter(|p| !globals.contains(root_of(p)))
                .collect();
            let slot = entries.entry(name).or_default();
            let compiled = Some(Part { key, paths });
            match part {
                TemplatePart::Subject => slot.0 = compiled,
                TemplatePart::Text => slot.1 = compiled,
            }
        }
        let entries = entries
            .into_iter()
            .filter_map(|(name, (subject, text))| {
                Some((
                    name,
                    Entry {
                        subject,
                        text: text?,
                    },
                ))
            })
            .collect();
        Ok(Self { env, entries })
    }

    /// Renders `(subject, text)` of template `name` with `ctx`, an object with
    /// keys such as `properties`, `user_traits`, `user`, `event_type` and
    /// `event_timestamp`. A missing variable renders as an empty string and is
    /// logged with `tracing::warn!` naming the template and the variable.
    pub fn render(&self, name: &str, ctx: &serde_json::Value) -> Result<Rendered, TemplateError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| TemplateError::Unknown {
                name: name.to_owned(),
            })?;
        let subject = match &entry.subject {
            Some(part) => Some(self.render_part(name, TemplatePart::Subject, part, ctx)?),
            None => None,
        };
        let text = self.render_part(name, TemplatePart::Text, &entry.text, ctx)?;
        Ok(Rendered { subject, text })
    }

    /// Whether a template called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn render_part(
        &self,
        name: &str,
        part: TemplatePart,
        compiled: &Part,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let render_error = |e: minijinja::Error| TemplateError::Render {
            template: name.to_owned(),
            part,
            message: e.to_string(),
        };
        let template = self.env.get_template(&compiled.key).map_err(render_error)?;
        let captured = template.render_captured(ctx).map_err(render_error)?;
        if captured.state().get_temp(PRINTED_UNDEFINED).is_some() {
            let missing = missing_paths(&compiled.paths, ctx);
            if missing.is_empty() {
                tracing::warn!(
                    template = name,
                    part = part.as_str(),
                    "template printed an undefined value; rendered as empty"
                );
            } else {
                tracing::warn!(
                    template = name,
                    part = part.as_str(),
                    variables = %missing.join(", "),
                    "template variable missing from the event; rendered as empty"
                );
            }
        }
        Ok(captured.into_output())
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_formatter(|out, state, value| {
        if value.is_undefined() {
            state.set_temp(PRINTED_UNDEFINED, Value::from(true));
            Ok(())
        } else if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// The environment's name for one part of a template; minijinja quotes it in
/// error messages as `(in NAME/subject:LINE)`.
fn part_key(name: &str, part: TemplatePart) -> String {
    format!("{name}/{part}")
}

fn compile_error(name: &str, part: TemplatePart, e: &minijinja::Error) -> TemplateError {
    TemplateError::Compile {
        template: name.to_owned(),
        part,
        message: e.to_string(),
    }
}

fn root_of(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// The referenced dotted paths that do not resolve to a value in `ctx`.
fn missing_paths(paths: &BTreeSet<String>, ctx: &serde_json::Value) -> Vec<String> {
    paths
        .iter()
        .filter(|p| resolve(ctx, p).is_none())
        .cloned()
        .collect()
}

fn resolve<'a>(ctx: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(ctx, |value, segment| match value {
        serde_json::Value::Object(map) => map.get(segment),
        serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(name: &str, subject: Option<&str>, text: &str) -> TemplateSource {
        TemplateSource {
            name: name.into(),
            subject: subject.map(Into::into),
            text: text.into(),
        }
    }

    fn render_text(text: &str, ctx: serde_json::Value) -> String {
        let templates = Templates::compile(&[source("T", None, text)]).unwrap();
        templates.render("T", &ctx).unwrap().text
    }

    #[test]
    fn subject_and_text_render_from_the_event() {
        let templates = Templates::compile(&[source(
            "INSUFFICIENT_FUNDS_EMAIL",
            Some("Payment of {{ properties.amount }} failed"),
            "Hi {{ user.name }}, your {{ event_type }} at {{ event_timestamp }}.",
        )])
        .unwrap();
        let ctx = json!({
            "event_type": "payment_failed",
            "event_timestamp": "2024-05-01T10:00:00Z",
            "properties": {"amount": 12},
            "user": {"name": "Ada"},
        });
        let rendered = templates.render("INSUFFICIENT_FUNDS_EMAIL", &ctx).unwrap();
        assert_eq!(rendered.subject.as_deref(), Some("Payment of 12 failed"));
        assert_eq!(
            rendered.text,
            "Hi Ada, your payment_failed at 2024-05-01T10:00:00Z."
        );
    }

    #[test]
    fn a_template_without_subject_renders_none() {
        let templates = Templates::compile(&[source("T", None, "x")]).unwrap();
        assert_eq!(templates.render("T", &json!({})).unwrap().subject, None);
    }

    #[test]
    fn integers_print_bare_and_floats_keep_their_decimal_point() {
        let ctx = json!({"properties": {"i": 1425, "f": 1425.0, "c": 14.25}});
        let out = render_text(
            "{{ properties.i }} {{ properties.f }} {{ properties.c }}",
            ctx,
        );
        assert_eq!(out, "1425 1425.0 14.25");
    }

    #[test]
    fn the_int_and_format_filters_control_how_a_float_prints() {
        let ctx = json!({"properties": {"f": 1425.0}});
        assert_eq!(render_text("{{ properties.f | int }}", ctx.clone()), "1425");
        let two_places = r#"{{ "%.2f" | format(properties.f) }}"#;
        assert_eq!(render_text(two_places, ctx), "1425.00");
    }

    #[test]
    fn conditionals_see_user_traits() {
        let text = "{% if user_traits.vip %}VIP {% endif %}welcome";
        assert_eq!(
            render_text(text, json!({"user_traits": {"vip": true}})),
            "VIP welcome"
        );
        assert_eq!(
            render_text(text, json!({"user_traits": {"vip": false}})),
            "welcome"
        );
        assert_eq!(render_text(text, json!({})), "welcome");
    }

    #[test]
    fn the_default_filter_fills_a_missing_name() {
        let text = r#"Hi {{ user.name | default("there") }}"#;
        assert_eq!(render_text(text, json!({"user": {}})), "Hi there");
        assert_eq!(render_text(text, json!({})), "Hi there");
        assert_eq!(render_text(text, json!({"user": {"name": "Bo"}})), "Hi Bo");
    }

    #[test]
    fn missing_variables_render_as_empty_strings_at_any_depth() {
        let text = "[{{ properties.missing }}|{{ properties.missing.deeper }}|{{ nothing }}]";
        assert_eq!(render_text(text, json!({"properties": {}})), "[||]");
        assert_eq!(render_text(text, json!({})), "[||]");
    }

    #[test]
    fn a_context_that_is_not_an_object_renders_everything_empty() {
        assert_eq!(render_text("a{{ x.y }}b", json!(null)), "ab");
        assert_eq!(render_text("a{{ x }}b", json!([1, 2])), "ab");
    }

    #[test]
    fn json_null_renders_as_empty_not_none() {
        assert_eq!(
            render_text(
                "[{{ properties.coupon }}]",
                json!({"properties": {"coupon": null}})
            ),
            "[]"
        );
    }

    #[test]
    fn html_is_not_escaped() {
        let ctx = json!({"properties": {"q": "<b>\"Tom & Jerry\"</b>"}});
        assert_eq!(
            render_text("{{ properties.q }}", ctx),
            "<b>\"Tom & Jerry\"</b>"
        );
    }

    #[test]
    fn block_tags_do_not_leave_blank_lines() {
        let text = "Hello\n  {% if user_traits.vip %}\nVIP line\n  {% endif %}\nBye\n";
        let out = render_text(text, json!({"user_traits": {"vip": true}}));
        assert_eq!(out, "Hello\nVIP line\nBye");
    }

    #[test]
    fn loops_over_event_lists_work() {
        let ctx = json!({"properties": {"items": [{"n": "a"}, {"n": "b"}]}});
        let text = "{% for it in properties.items %}{{ loop.index }}{{ it.n }} {% endfor %}";
        assert_eq!(render_text(text, ctx), "1a 2b ");
    }

    #[test]
    fn missing_paths_names_only_what_the_event_lacks() {
        let paths: BTreeSet<String> = [
            "properties.amount",
            "properties.missing.deeper",
            "user.name",
            "event_type",
            "properties.items.1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let ctx = json!({
            "properties": {"amount": 3, "items": [1]},
            "user": {"name": "Ada"},
            "event_type": "x",
        });
        assert_eq!(
            missing_paths(&paths, &ctx),
            ["properties.items.1", "properties.missing.deeper"]
        );
    }

    #[test]
    fn referenced_paths_leave_out_globals_and_loop_variables() {
        let templates = Templates::compile(&[source(
            "T",
            Some("{{ range(2) }}{{ user.name }}"),
            "{% for x in properties.items %}{{ x.n }}{{ loop.index }}{% endfor %}",
        )])
        .unwrap();
        let entry = &templates.entries["T"];
        let subject: Vec<_> = entry.subject.as_ref().unwrap().paths.iter().collect();
        assert_eq!(subject, ["user.name"]);
        let text: Vec<_> = entry.text.paths.iter().collect();
        assert_eq!(text, ["properties.items"]);
    }

    #[test]
    fn a_syntax_error_names_the_template_the_part_and_the_line() {
        let err = Templates::compile(&[
            source("OK", None, "fine"),
            source("WELCOME_EMAIL", Some("Welcome"), "line one\n{{ user.name "),
        ])
        .unwrap_err();
        let TemplateError::Compile {
            template,
            part,
            message,
        } = &err
        else {
            panic!("expected a compile error, got {err:?}");
        };
        assert_eq!(template, "WELCOME_EMAIL");
        assert_eq!(*part, TemplatePart::Text);
        assert!(message.contains("syntax error"), "{message}");
        assert!(message.contains("WELCOME_EMAIL/text:2"), "{message}");
        assert!(err
            .to_string()
            .starts_with("template WELCOME_EMAIL: text does not compile: "));
    }

    #[test]
    fn a_broken_subject_is_reported_as_the_subject() {
        let err = Templates::compile(&[source("T", Some("{% if %}"), "ok")]).unwrap_err();
        assert!(
            matches!(
                &err,
                TemplateError::Compile {
                    part: TemplatePart::Subject,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_filters_tests_and_functions_fail_at_compile_time() {
        for text in [
            "{{ x | nosuchfilter }}",
            "{{ x is nosuchtest }}",
            "{{ nosuchfn() }}",
        ] {
            let err = Templates::compile(&[source("T", None, text)]).unwrap_err();
            assert!(
                matches!(err, TemplateError::Compile { .. }),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn errors_that_depend_on_the_event_do_not_fail_compilation() {
        let templates =
            Templates::compile(&[source("T", None, "{{ properties.amount / 100 }}")]).unwrap();
        let ctx = json!({"properties": {"amount": 250}});
        assert_eq!(templates.render("T", &ctx).unwrap().text, "2.5");
    }

    #[test]
    fn a_runtime_error_is_returned_not_panicked() {
        let templates =
            Templates::compile(&[source("T", None, "{{ properties.a / properties.b }}")]).unwrap();
        let err = templates
            .render("T", &json!({"properties": {"a": 1, "b": "x"}}))
            .unwrap_err();
        assert!(
            matches!(
                err,
                TemplateError::Render {
                    part: TemplatePart::Text,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_template_names_are_rejected() {
        let err =
            Templates::compile(&[source("T", None, "a"), source("T", None, "b")]).unwrap_err();
        assert_eq!(err, TemplateError::Duplicate { name: "T".into() });
    }

    #[test]
    fn an_unknown_template_name_is_an_error() {
        let templates = Templates::compile(&[source("T", None, "a")]).unwrap();
        assert!(templates.contains("T"));
        assert!(!templates.contains("U"));
        let err = templates.render("U", &json!({})).unwrap_err();
        assert_eq!(err, TemplateError::Unknown { name: "U".into() });
    }

    #[test]
    fn templates_with_similar_names_do_not_collide() {
        let templates =
            Templates::compile(&[source("A", Some("sa"), "ta"), source("A/text", None, "tat")])
                .unwrap();
        assert_eq!(templates.render("A", &json!({})).unwrap().text, "ta");
        assert_eq!(templates.render("A/text", &json!({})).unwrap().text, "tat");
    }
}
