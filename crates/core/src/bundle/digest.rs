//! Digests (contract §8): what groups a rule's bundled items and what a bundle says.
//!
//! A rule's `bundle.key` (a path into the event, e.g. `properties.post_id`) splits a
//! person's items into several bundles ([`bundle_key`]); when a bundle is sent, its
//! message is the rule's `bundle.template` rendered over [`digest_vars`]: `count`,
//! `actors` (distinct values of `bundle.actor`, in order of first appearance),
//! `actors_count`, `first`, `last` (the first and last items' properties), `items`
//! (the first [`DIGEST_ITEMS`] items' properties), `key`, `notification_type` and
//! `user`. Without a template the first item's own text speaks for the bundle
//! ([`fallback_text`]).

use crate::conditions::Facts;
use serde_json::{json, Value};

/// How many items' properties a digest template sees in `items`.
pub const DIGEST_ITEMS: usize = 10;

/// One bundled item as the digest sees it: its event's fields.
#[derive(Debug, Clone, Copy)]
pub struct DigestItem<'a> {
    pub properties: &'a Value,
    pub user_traits: &'a Value,
}

impl DigestItem<'_> {
    /// The value at a dotted path, as conditions read it.
    fn lookup(&self, path: &str) -> Option<Value> {
        Facts {
            properties: self.properties,
            user_traits: self.user_traits,
            user: &Value::Null,
        }
        .lookup(path)
        .cloned()
    }
}

/// A value named by a key or actor path, as text: strings as they are, other JSON as
/// JSON; missing or null is `None`.
fn as_text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// The bundle an item belongs to, beside its person and notification type: the value
/// at the rule's `key` path, `""` without a key or when the event lacks the value.
pub fn bundle_key(key_path: Option<&str>, item: &DigestItem<'_>) -> String {
    key_path
        .and_then(|p| as_text(item.lookup(p)))
        .unwrap_or_default()
}

/// The item's actor (the rule's `actor` path), if it has one.
pub fn actor_of(actor_path: Option<&str>, item: &DigestItem<'_>) -> Option<String> {
    actor_path.and_then(|p| as_text(item.lookup(p)))
}

/// The variables a digest template receives for a bundle of `items` (oldest first).
pub fn digest_vars(
    items: &[DigestItem<'_>],
    actor_path: Option<&str>,
    key: &str,
    notification_type: &str,
    user: &Value,
) -> Value {
    let mut actors: Vec<String> = Vec::new();
    for actor in items.iter().filter_map(|i| actor_of(actor_path, i)) {
        if !actors.contains(&actor) {
            actors.push(actor);
        }
    }
    let props = |i: Option<&DigestItem<'_>>| i.map_or(Value::Null, |i| i.properties.clone());
    json!({
        "count": items.len(),
        "actors_count": actors.len(),
        "actors": actors,
        "first": props(items.first()),
        "last": props(items.last()),
        "items": items.iter().take(DIGEST_ITEMS).map(|i| i.properties.clone()).collect::<Vec<_>>(),
        "key": key,
        "notification_type": notification_type,
        "user": user,
    })
}

/// A bundle's text when its rule names no template: the first item's own text, and
/// how many more there are.
pub fn fallback_text(first_text: &str, count: usize) -> String {
    match count {
        0 | 1 => first_text.to_string(),
        n => format!("{first_text} (+{} more)", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{TemplateSource, Templates};

    fn item(properties: &Value) -> DigestItem<'_> {
        DigestItem {
            properties,
            user_traits: &Value::Null,
        }
    }

    #[test]
    fn the_key_and_the_actor_are_read_from_the_event() {
        let p = json!({"post_id": 42, "author": "Ann", "slug": "hello", "none": null});
        let i = item(&p);
        let cases = [
            (Some("properties.post_id"), "42"),
            (Some("properties.slug"), "hello"),
            (Some("properties.missing"), ""),
            (Some("properties.none"), ""),
            (None, ""),
        ];
        for (path, want) in cases {
            assert_eq!(bundle_key(path, &i), want, "{path:?}");
        }
        assert_eq!(
            actor_of(Some("properties.author"), &i).as_deref(),
            Some("Ann")
        );
        assert_eq!(actor_of(None, &i), None);
    }

    #[test]
    fn digest_vars_count_items_and_distinct_actors_in_order() {
        let ps: Vec<Value> = ["Ann", "Bob", "Ann", "Cy"]
            .iter()
            .enumerate()
            .map(|(n, a)| json!({"author": a, "n": n}))
            .chain((0..12).map(|n| json!({"author": "Ann", "n": 10 + n})))
            .collect();
        let items: Vec<DigestItem<'_>> = ps.iter().map(item).collect();
        let v = digest_vars(
            &items,
            Some("properties.author"),
            "7",
            "T",
            &json!({"user_id": "u"}),
        );
        assert_eq!(v["count"], 16);
        assert_eq!(v["actors"], json!(["Ann", "Bob", "Cy"]));
        assert_eq!(v["actors_count"], 3);
        assert_eq!(v["first"]["n"], 0);
        assert_eq!(v["last"]["n"], 21);
        assert_eq!(v["items"].as_array().map(Vec::len), Some(DIGEST_ITEMS));
        assert_eq!(v["key"], "7");
        assert_eq!(v["user"]["user_id"], "u");
        let none = digest_vars(&items[..1], None, "", "T", &Value::Null);
        assert_eq!(
            (none["actors_count"].clone(), none["count"].clone()),
            (json!(0), json!(1))
        );
    }

    #[test]
    fn the_shipped_templates_say_what_the_old_code_said() {
        // config/templates.yml's FRIEND_TOUR_DIGEST and COMMENTS_DIGEST, verbatim.
        let shipped: serde_norway::Value = serde_norway::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../config/templates.yml"
            ))
            .expect("config/templates.yml"),
        )
        .expect("yaml");
        let text_of = |name: &str| -> String {
            shipped["templates"]
                .as_sequence()
                .and_then(|ts| ts.iter().find(|t| t["type"].as_str() == Some(name)))
                .and_then(|t| t["text"].as_str())
                .unwrap_or_else(|| panic!("template {name}"))
                .to_string()
        };
        let templates = Templates::compile(&[
            TemplateSource {
                name: "TOUR".into(),
                subject: None,
                text: text_of("FRIEND_TOUR_DIGEST"),
            },
            TemplateSource {
                name: "COMMENTS".into(),
                subject: None,
                text: text_of("COMMENTS_DIGEST"),
            },
        ])
        .expect("compile");
        let tours = |names: &[&str]| -> String {
            let ps: Vec<Value> = names
                .iter()
                .map(|n| json!({"friend_name": n, "friend_id": format!("id_{n}")}))
                .collect();
            let items: Vec<_> = ps.iter().map(item).collect();
            let vars = digest_vars(
                &items,
                Some("properties.friend_id"),
                "",
                "FRIEND_TOUR",
                &Value::Null,
            );
            templates.render("TOUR", &vars).expect("render").text
        };
        // The message counts tours, not distinct friends, after the first friend.
        let cases: [(&[&str], &str); 4] = [
            (&["Matthew"], "Matthew went on a tour"),
            (&["Matthew", "Anna"], "Matthew and 1 other went on a tour"),
            (
                &["Matthew", "Anna", "Anna"],
                "Matthew and 2 others went on a tour",
            ),
            (
                &["Zoë, \"Z\"", "A", "B", "C", "D"],
                "Zoë, \"Z\" and 4 others went on a tour",
            ),
        ];
        for (names, want) in cases {
            assert_eq!(tours(names), want, "{names:?}");
        }
        let ps = [
            json!({"post_id": 1, "author": "Ann"}),
            json!({"post_id": 1, "author": "Bob"}),
            json!({"post_id": 1, "author": "Ann"}),
        ];
        let items: Vec<_> = ps.iter().map(item).collect();
        let cases = [
            (1, "Ann commented on your post"),
            (2, "Ann and Bob left 2 comments on your post"),
            (3, "Ann and Bob left 3 comments on your post"),
        ];
        for (n, want) in cases {
            let vars = digest_vars(
                &items[..n],
                Some("properties.author"),
                "1",
                "C",
                &Value::Null,
            );
            assert_eq!(
                templates.render("COMMENTS", &vars).expect("render").text,
                want
            );
        }
    }

    #[test]
    fn without_a_template_the_first_text_speaks_for_the_bundle() {
        assert_eq!(fallback_text("Hi", 1), "Hi");
        assert_eq!(fallback_text("Hi", 3), "Hi (+2 more)");
    }
}
