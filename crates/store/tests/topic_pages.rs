//! `people::topic_pages`, on a database of its own: several pages in one statement,
//! each in user id order after its cursor and within the limit, each member with their
//! own switch for the page's event type, and a page with no one left empty.

use diesel_async::SimpleAsyncConnection;
use herald_store::people::{self, TopicPage};
use herald_store::testing::TestDb;

fn page(topic: &str, after: &str, event_type: &str) -> TopicPage {
    TopicPage {
        topic: topic.into(),
        after: after.into(),
        event_type: event_type.into(),
    }
}

#[tokio::test]
async fn pages_follow_their_cursor_limit_and_switches() {
    let db = TestDb::create().await.expect("test database");
    let pool = herald_store::connect(&db.url, 2).expect("pool");
    let mut conn = pool.get().await.expect("connection");
    conn.batch_execute(
        "INSERT INTO users (user_id) VALUES ('a1'), ('a2'), ('a3'), ('b1'), ('b2'), ('loner');
         INSERT INTO topics (topic) VALUES ('shop-a'), ('shop-b'), ('empty');
         INSERT INTO topic_members (topic, user_id) VALUES
             ('shop-a', 'a3'), ('shop-a', 'a1'), ('shop-a', 'a2'), ('shop-a', 'b1'),
             ('shop-b', 'b1'), ('shop-b', 'b2');
         INSERT INTO subscriptions (user_id, event_type, enabled) VALUES
             ('a2', 'alert', false), ('b2', 'alert', true), ('b1', 'digest', false);",
    )
    .await
    .expect("fixture");

    let pages = [
        page("shop-a", "", "alert"),
        page("shop-b", "", "alert"),
        page("shop-a", "a2", "alert"),
        page("empty", "", "alert"),
        page("shop-b", "", "digest"),
        page("nowhere", "", "alert"),
    ];
    let found = people::topic_pages(&mut conn, &pages, 2)
        .await
        .expect("topic pages");

    let seen: Vec<Vec<(String, bool)>> = found
        .into_iter()
        .map(|members| {
            members
                .into_iter()
                .map(|m| (m.person.user_id, m.unsubscribed))
                .collect()
        })
        .collect();
    let expected: Vec<Vec<(&str, bool)>> = vec![
        // The first two by user id; a2 switched alerts off.
        vec![("a1", false), ("a2", true)],
        // An enabled subscription is no switch.
        vec![("b1", false), ("b2", false)],
        // After the cursor only.
        vec![("a3", false), ("b1", false)],
        vec![],
        // The switch is per event type.
        vec![("b1", true), ("b2", false)],
        vec![],
    ];
    let expected: Vec<Vec<(String, bool)>> = expected
        .into_iter()
        .map(|p| p.into_iter().map(|(u, s)| (u.to_string(), s)).collect())
        .collect();
    assert_eq!(seen, expected);
}
