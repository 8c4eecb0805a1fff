//! Answering a rule's conditions for an event: the history questions go to Postgres,
//! the verdict comes from the pure evaluator in `herald_core::conditions`.

use herald_core::conditions::{Facts, History, Side};
use herald_core::routing::person_json;
use herald_core::rules::Rule;
use herald_store::events::EventRow;
use herald_store::history;
use herald_store::people::Person;
use herald_store::{Conn, StoreError};

/// When conditions are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// When the event is routed. For rules with `recheck`, absence (`no_event_within`)
    /// is left to the send: the events it looks for may still be on their way.
    Routing,
    /// When a delayed notification is due: everything is evaluated.
    Send,
}

/// Why the rule's conditions do not hold for `event`, or None when they do.
pub async fn failure(
    conn: &mut Conn,
    rule: &Rule,
    event: &EventRow,
    subject: Option<&Person>,
    moment: Moment,
) -> Result<Option<String>, StoreError> {
    let mut answers = History::new();
    for need in rule.history_needs() {
        if moment == Moment::Routing && rule.recheck && need.side == Side::Around {
            answers.insert(need, false);
            continue;
        }
        // Without a person there is no history: proximity fails, absence holds.
        let found = match &event.user_id {
            Some(user_id) => {
                let (from, to) = need.window(event.event_timestamp);
                history::has_event(conn, user_id, &need.event_type, from, to, event.id).await?
            }
            None => false,
        };
        answers.insert(need, found);
    }
    let user = person_json(subject.map(Person::facts).as_ref());
    let facts = Facts {
        properties: &event.properties,
        user_traits: &event.user_traits,
        user: &user,
    };
    Ok(rule.conditions.explain_failure(&facts, &answers))
}
