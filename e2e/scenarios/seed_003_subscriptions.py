"""Seed 003, per-event subscriptions with an inbox and read marks (contract §4).

Two people subscribe to test-scenario events as in the seed (one follows creations and
executions, the other executions and deletions); a test scenario is created, executed
and deleted; each inbox then holds exactly what its owner subscribed to, marking read
changes `unread_count`, another person's notification cannot be marked, and disabling a
subscription stops the next notification of that kind.
"""

from __future__ import annotations

import uuid

from harness import Stack, check, check_eq, check_in, wait_until

NAME = "seed_003_subscriptions"
LABEL = "seed_003"

TIMEOUT_S = 20
TIMESTAMP = "2025-11-20T10:00:00Z"
# Who follows what, as in the seed's NotificationSubscription table.
SUBSCRIPTIONS = {
    "alice": ["test_scenario.created", "test_scenario.executed"],
    "bob": ["test_scenario.executed", "test_scenario.deleted"],
}


def ids(stack: Stack) -> dict:
    """Fresh person ids and a fresh scenario number per run."""
    run = stack.__dict__.setdefault("seed_003_run", uuid.uuid4().hex[:6])
    return {"alice": f"alice_{run}", "bob": f"bob_{run}", "scenario": int(run, 16) % 100000}


def inbox(stack: Stack, user_id: str, query: str = "") -> dict:
    return stack.api("GET", f"/api/v1/users/{user_id}/notifications{query}")


def publish(stack: Stack, event_type: str, scenario: int) -> str:
    body = [{"event_type": event_type, "event_timestamp": TIMESTAMP,
             "properties": {"test_scenario_id": scenario}}]
    answer = stack.api("POST", "/api/v1/events", body, expect=202)
    check_eq(answer.get("accepted"), 1, f"accepted {event_type}")
    return answer["event_ids"][0]


def wait_rows(stack: Stack, event_id: str, count: int) -> list[dict]:
    """Waits until the event has `count` notification rows (routing is one insert per rule)."""
    def rows():
        items = stack.api("GET", f"/api/v1/notifications?event_id={event_id}&limit=500")["items"]
        check(len(items) <= count, f"event {event_id} has {len(items)} rows, expected {count}: {items}")
        return items if len(items) == count else None
    return wait_until(rows, TIMEOUT_S, f"{count} notification row(s) of event {event_id}")


def texts(page: dict) -> list[str]:
    return [item["text"] for item in page["items"]]


def run(stack: Stack) -> None:
    who = ids(stack)
    with stack.check("two people subscribe as in the seed", fatal=True):
        subscribe(stack, who)
    with stack.check("create, execute, delete a test scenario: each inbox holds what its owner follows", fatal=True):
        scenario_lifecycle(stack, who)
    with stack.check("marking one read lowers unread_count; the unread filter hides it"):
        mark_one_read(stack, who)
    with stack.check("another person's notification cannot be marked (404)"):
        someone_elses(stack, who)
    with stack.check("read-all marks the rest and says how many"):
        read_all(stack, who)
    with stack.check("disabling a subscription stops the next notification of that kind"):
        disable_stops_next(stack, who)
    with stack.check("subscriptions refuse an unknown person (404) and a bad event type (422)"):
        bad_requests(stack, who)


def subscribe(stack: Stack, who: dict) -> None:
    for person, event_types in SUBSCRIPTIONS.items():
        user_id = who[person]
        stack.api("PUT", f"/api/v1/users/{user_id}", {"email": f"{user_id}@example.com"}, expect=201)
        for event_type in event_types:
            sub = stack.api("PUT", f"/api/v1/users/{user_id}/subscriptions/{event_type}", {"enabled": True},
                            expect=201)
            check_eq(sub, {"event_type": event_type, "enabled": True}, f"{user_id}'s new subscription")
        listed = stack.api("GET", f"/api/v1/users/{user_id}/subscriptions")
        check_eq(listed, [{"event_type": t, "enabled": True} for t in sorted(event_types)],
                 f"{user_id}'s subscriptions")


def scenario_lifecycle(stack: Stack, who: dict) -> None:
    n = who["scenario"]
    for action, followers in (("created", 1), ("executed", 2), ("deleted", 1)):
        event_id = publish(stack, f"test_scenario.{action}", n)
        rows = wait_rows(stack, event_id, followers)
        check(all(r["status"] == "sent" and r["channel"] == "in_app" for r in rows),
              f"rows of test_scenario.{action} should be sent in_app: {rows}")

    alice = inbox(stack, who["alice"])
    check_eq(texts(alice), [f"Test scenario {n} was executed at {TIMESTAMP}",
                            f"Test scenario {n} was created at {TIMESTAMP}"], "alice's inbox, newest first")
    check_eq(alice["unread_count"], 2, "alice's unread_count")
    check_eq(alice["next_cursor"], None, "alice's next_cursor")
    bob = inbox(stack, who["bob"])
    check_eq(texts(bob), [f"Test scenario {n} was deleted at {TIMESTAMP}",
                          f"Test scenario {n} was executed at {TIMESTAMP}"], "bob's inbox, newest first")
    check_eq(bob["unread_count"], 2, "bob's unread_count")
    item = alice["items"][0]
    check_eq(sorted(item), ["channel", "created_at", "id", "notification_type", "read_at", "status", "subject", "text"],
             "fields of an inbox item")
    check_eq((item["notification_type"], item["read_at"]), ("TEST_SCENARIO_EXECUTED", None), "alice's newest item")


def mark_one_read(stack: Stack, who: dict) -> None:
    alice = who["alice"]
    newest = inbox(stack, alice)["items"][0]
    marked = stack.api("POST", f"/api/v1/users/{alice}/notifications/{newest['id']}/read")
    check(marked.get("read_at"), f"the answer should carry read_at: {marked}")
    after = inbox(stack, alice)
    check_eq(after["unread_count"], 1, "alice's unread_count after marking one read")
    unread = inbox(stack, alice, "?unread=true")
    check_eq([i["id"] for i in unread["items"]], [after["items"][1]["id"]], "alice's unread items")
    check_eq(unread["unread_count"], 1, "unread_count with the filter")
    again = stack.api("POST", f"/api/v1/users/{alice}/notifications/{newest['id']}/read")
    check_eq(again["read_at"], marked["read_at"], "marking again keeps the first read time")


def someone_elses(stack: Stack, who: dict) -> None:
    bobs = inbox(stack, who["bob"])["items"][0]["id"]
    err = stack.api("POST", f"/api/v1/users/{who['alice']}/notifications/{bobs}/read", expect=404)
    check(isinstance(err, dict) and err.get("error", {}).get("code") == "not_found", f"a JSON 404: {err}")
    check_eq(inbox(stack, who["bob"])["unread_count"], 2, "bob's unread_count after alice's attempt")


def read_all(stack: Stack, who: dict) -> None:
    bob = who["bob"]
    check_eq(stack.api("POST", f"/api/v1/users/{bob}/notifications/read-all"), {"marked": 2}, "read-all")
    check_eq(stack.api("POST", f"/api/v1/users/{bob}/notifications/read-all"), {"marked": 0}, "read-all again")
    page = inbox(stack, bob, "?unread=true")
    check_eq((page["items"], page["unread_count"]), ([], 0), "bob's unread items after read-all")


def disable_stops_next(stack: Stack, who: dict) -> None:
    alice = who["alice"]
    sub = stack.api("PUT", f"/api/v1/users/{alice}/subscriptions/test_scenario.executed", {"enabled": False})
    check_eq(sub, {"event_type": "test_scenario.executed", "enabled": False}, "the disabled subscription")
    n = who["scenario"] + 1
    event_id = publish(stack, "test_scenario.executed", n)
    rows = wait_rows(stack, event_id, 1)
    check_eq([r["user_id"] for r in rows], [who["bob"]], "recipients of the next execution")
    check_eq(len(inbox(stack, alice)["items"]), 2, "alice's inbox after the next execution")
    check_eq(texts(inbox(stack, who["bob"]))[0], f"Test scenario {n} was executed at {TIMESTAMP}", "bob's newest")
    listed = stack.api("GET", f"/api/v1/users/{alice}/subscriptions")
    check_in("'enabled': False", str([s for s in listed if s["event_type"] == "test_scenario.executed"]),
             "alice's listed subscription")


def bad_requests(stack: Stack, who: dict) -> None:
    stack.api("GET", f"/api/v1/users/nobody_{uuid.uuid4().hex[:6]}/subscriptions", expect=404)
    stack.api("PUT", f"/api/v1/users/nobody_{uuid.uuid4().hex[:6]}/subscriptions/test_scenario.created",
              {"enabled": True}, expect=404)
    err = stack.api("PUT", f"/api/v1/users/{who['alice']}/subscriptions/bad%20type!", {"enabled": True}, expect=422)
    check_in("event_type", err["error"]["message"], "the 422 message")
    stack.api("PUT", f"/api/v1/users/{who['alice']}/subscriptions/test_scenario.created", {"enabled": "yes"},
              expect=422)
