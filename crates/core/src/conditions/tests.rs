use super::*;
use serde_json::json;

fn cond(yaml: &str) -> Condition {
    let v: Value = serde_norway::from_str(yaml).unwrap();
    parse_conditions(&v).unwrap()
}

fn holds(c: &Condition, properties: Value) -> bool {
    let facts = Facts {
        properties: &properties,
        user_traits: &json!({}),
        user: &Value::Null,
    };
    c.evaluate(&facts, &History::new())
}

#[test]
fn every_operator_compares_as_documented() {
    let p = json!({"n": 3, "s": "Gold", "list": ["a", "b"], "flag": "true", "text": "insufficient funds"});
    let cases = [
        ("[{property: properties.n, op: EQ, value: 3}]", true),
        ("[{property: properties.n, op: EQ, value: '3'}]", true),
        ("[{property: properties.n, op: NEQ, value: 4}]", true),
        ("[{property: properties.n, op: GT, value: 2}]", true),
        ("[{property: properties.n, op: GT, value: 3}]", false),
        ("[{property: properties.n, op: GTE, value: 3}]", true),
        ("[{property: properties.n, op: LT, value: 3.5}]", true),
        ("[{property: properties.n, op: LTE, value: 2}]", false),
        ("[{property: properties.n, op: IN, value: [1, 2, 3]}]", true),
        (
            "[{property: properties.n, op: NIN, value: [1, 2, 3]}]",
            false,
        ),
        ("[{property: properties.s, op: EQ, value: gold}]", false),
        (
            "[{property: properties.s, op: EQ, value: gold, case_insensitive: true}]",
            true,
        ),
        (
            "[{property: properties.s, op: IN, value: [silver, gold], case_insensitive: true}]",
            true,
        ),
        ("[{property: properties.flag, op: EQ, value: true}]", true),
        (
            "[{property: properties.list, op: CONTAINS, value: b}]",
            true,
        ),
        (
            "[{property: properties.text, op: CONTAINS, value: funds}]",
            true,
        ),
        (
            "[{property: properties.text, op: CONTAINS, value: FUNDS}]",
            false,
        ),
        ("[{property: properties.s, op: EXISTS}]", true),
        ("[{property: properties.missing, op: EXISTS}]", false),
        (
            "[{property: properties.missing, op: EXISTS, value: false}]",
            true,
        ),
        ("[{property: properties.missing, op: NEQ, value: 1}]", false),
        (
            "[{property: properties.missing, op: NIN, value: [1]}]",
            false,
        ),
        ("[{property: properties.s, op: GT, value: 3}]", false),
    ];
    for (yaml, expected) in cases {
        assert_eq!(holds(&cond(yaml), p.clone()), expected, "{yaml}");
    }
}

#[test]
fn any_and_all_nest() {
    let c = cond("[{any: [{property: properties.a, op: EQ, value: 1}, {all: [{property: properties.b, op: EQ, value: 2}, {property: properties.c, op: EQ, value: 3}]}]}]");
    assert!(holds(&c, json!({"a": 1})));
    assert!(holds(&c, json!({"b": 2, "c": 3})));
    assert!(!holds(&c, json!({"b": 2})));
}

#[test]
fn user_traits_fall_back_to_the_stored_persons_traits() {
    let c = cond("[{property: user_traits.marketing_opt_in, op: EQ, value: true}]");
    let stored = json!({"traits": {"marketing_opt_in": true}});
    let facts = Facts {
        properties: &json!({}),
        user_traits: &json!({}),
        user: &stored,
    };
    assert!(c.evaluate(&facts, &History::new()));
    let overridden = json!({"marketing_opt_in": false});
    let facts = Facts {
        user_traits: &overridden,
        ..facts
    };
    assert!(!c.evaluate(&facts, &History::new()));
}

#[test]
fn proximity_and_absence_read_the_answered_history() {
    let c = cond("[{event_within: {event_type: signup_completed, within: 24h}}, {no_event_within: {event_type: link_bank_success, within: 1h}}]");
    let mut needs = Vec::new();
    c.history_needs(&mut needs);
    assert_eq!(needs.len(), 2);
    let facts = Facts {
        properties: &json!({}),
        user_traits: &json!({}),
        user: &Value::Null,
    };
    let mut history: History = needs.iter().map(|n| (n.clone(), false)).collect();
    assert!(!c.evaluate(&facts, &history), "no signup before");
    history.insert(needs[0].clone(), true);
    assert!(c.evaluate(&facts, &history));
    history.insert(needs[1].clone(), true);
    assert!(!c.evaluate(&facts, &history), "a bank link happened");
    assert_eq!(
        c.explain_failure(&facts, &history).unwrap(),
        "link_bank_success happened within 1h"
    );
}

#[test]
fn windows_include_their_edges_exactly() {
    let t: DateTime<Utc> = "2025-10-31T19:00:00Z".parse().unwrap();
    let before = HistoryNeed {
        event_type: "x".into(),
        within: Duration::hours(24),
        side: Side::Before,
    };
    let (from, to) = before.window(t);
    assert_eq!(
        from,
        "2025-10-30T19:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        "exactly 24h before is inside"
    );
    assert_eq!(to, t);
    let around = HistoryNeed {
        side: Side::Around,
        ..before
    };
    assert_eq!(
        around.window(t).1,
        "2025-11-01T19:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
}

#[test]
fn every_mistake_in_a_condition_list_is_reported_with_its_path() {
    let v: Value = serde_norway::from_str(
        "[{property: properties.a, op: EQUALS, value: 1}, {property: amount, op: EQ, value: 1}, {event_within: {event_type: x, within: soon}}, {property: properties.b, op: GT}, {bogus: 1}]",
    )
    .unwrap();
    let errors = parse_conditions(&v).unwrap_err();
    let joined = errors.join("\n");
    assert!(
        joined.contains("conditions[0].op: unknown operator \"EQUALS\""),
        "{joined}"
    );
    assert!(joined.contains("conditions[1].property"), "{joined}");
    assert!(
        joined.contains("conditions[2].event_within.within"),
        "{joined}"
    );
    assert!(joined.contains("conditions[3].value: required"), "{joined}");
    assert!(joined.contains("conditions[4]"), "{joined}");
    assert_eq!(errors.len(), 5, "{joined}");
}
