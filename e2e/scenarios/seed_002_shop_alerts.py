"""Seed 002, shop alerts: CRITICAL/STANDARD preferences, alert fan-out to a shop's
members, dedupe on `alert_uuid`, and retried third-party delivery (contract §3.2, 4, 6).

The people and shops are the seed's own: `crit_user` (level CRITICAL) and `std_user`
(STANDARD) follow Carrefour. Deliveries to them go to the healthy sink (the shipped
`webhook` channel under HERALD_PROVIDER_URL). Two more shops each have one member whose
own `webhook_url` points at a failing sink: Auchan's answers 500 (retried, then dead),
Lidl's answers 400 (dead at once).
"""

from __future__ import annotations

import time
import uuid

from harness import Stack, check, check_eq, check_in, parse_time, wait_until

NAME = "seed_002_shop_alerts"
LABEL = "seed_002"

ALERT_PATH = "/webhook/notifications/"  # the shipped webhook channel's path on the sink
ALERT_FIELDS = ("url", "alert_uuid", "location", "label")
FINAL = {"sent", "failed", "suppressed"}
DELIVERY_TIMEOUT_S = 30
RETRY_TIMEOUT_S = 40  # 3 tries with 3 s then 6 s backoff (±20%), plus margin


# ------------------------------------------------------------------------- helpers


def new_alert(location: str, label: str) -> dict:
    """An alert as the seed's camera system posts it."""
    return {
        "alert_uuid": str(uuid.uuid4()),
        "location": location,
        "label": label,
        "url": "https://media.example/b36006d7.mp4",
        "time_spotted": time.time(),
    }


def post_alert(stack: Stack, alert: dict, route: str = "/webhooks/alerts") -> str:
    """Post a new alert; returns Herald's event id."""
    body = stack.api("POST", route, alert, expect=202)
    check(body and body.get("event_id"), f"POST {route}: no event_id in {body!r}")
    return body["event_id"]


def deliveries_of_alert(stack: Stack, which: str, alert_uuid: str) -> list[dict]:
    """The sink's records of SHOP_ALERT deliveries for one alert."""
    return [
        r for r in stack.sink_received(which)
        if isinstance(r.get("body"), dict)
        and r["body"].get("notification_type") == "SHOP_ALERT"
        and r["body"].get("alert_uuid") == alert_uuid
    ]


def deliveries_of_notification(stack: Stack, which: str, notification_id: str) -> list[dict]:
    return [r for r in stack.sink_received(which)
            if isinstance(r.get("body"), dict) and r["body"].get("notification_id") == notification_id]


def notifications_of(stack: Stack, event_id: str) -> list[dict]:
    return stack.api("GET", f"/api/v1/notifications?event_id={event_id}&limit=500")["items"]


def wait_final_notifications(stack: Stack, event_id: str, count: int, timeout: float = DELIVERY_TIMEOUT_S) -> dict:
    """Wait until the event has `count` rows, all in a final state; returns them by user_id.

    The sink sees a delivery a moment before the worker records `sent`, so rows are
    awaited rather than read once.
    """
    def settled():
        rows = notifications_of(stack, event_id)
        return rows if len(rows) == count and all(r["status"] in FINAL for r in rows) else None

    rows = wait_until(settled, timeout, f"{count} notification(s) of event {event_id} in a final state")
    by_user = {r["user_id"]: r for r in rows}
    check_eq(len(by_user), count, f"distinct recipients of event {event_id}")
    return by_user


def the_notification(stack: Stack, event_id: str) -> dict:
    """The single notification an event to a one-member shop produces."""
    rows = wait_until(lambda: notifications_of(stack, event_id), DELIVERY_TIMEOUT_S,
                      f"a notification for event {event_id}")
    check_eq(len(rows), 1, f"notifications of event {event_id}")
    return rows[0]


def wait_status(stack: Stack, notification_id: str, status: str, timeout: float) -> dict:
    """Wait for a notification to reach `status`; returns it with its delivery attempts."""
    path = f"/api/v1/notifications/{notification_id}"

    def reached():
        n = stack.api("GET", path)
        check(n["status"] == status or n["status"] not in FINAL,
              f"notification {notification_id} ended {n['status']!r}, expected {status!r}: {n}")
        return n if n["status"] == status else None

    return wait_until(reached, timeout, f"notification {notification_id} to become {status!r}")


def join_member(stack: Stack, user_id: str, topic: str, **fields) -> None:
    """Create a shop (if new) and a person whose only membership is that shop."""
    stack.api("PUT", f"/api/v1/topics/{topic}", expect=(200, 201))
    stack.api("PUT", f"/api/v1/users/{user_id}", {"topics": [topic], **fields}, expect=201)


# ------------------------------------------------------------------------- the scenario


def run(stack: Stack) -> None:
    with stack.check("Carrefour with a CRITICAL and a STANDARD member", fatal=True):
        setup_carrefour(stack)
    with stack.check("preferences refuse a bad level (400) and an unknown user (404)"):
        bad_preferences(stack)

    theft: dict = {}
    with stack.check("theft alert reaches both members"):
        theft.update(theft_reaches_everyone(stack))
    with stack.check("suspicious alert reaches only the STANDARD member"):
        suspicious_spares_critical(stack)
    with stack.check("the same alert_uuid again is a duplicate with no second fan-out"):
        check(theft, "cannot run: the theft alert check did not post its alert")
        duplicate_is_not_fanned_out(stack, theft["alert"], theft["event_id"])

    with stack.check("a receiver answering 500 gets 3 tries, then the notification fails"):
        retried_then_failed(stack)
    with stack.check("a receiver answering 400 gets 1 try, then the notification fails"):
        rejected_without_retry(stack)

    with stack.check("a batch with one invalid event accepts the other and names the field"):
        batch_with_invalid_item(stack)
    with stack.check("an empty batch is accepted with 0 events"):
        check_eq(stack.api("POST", "/api/v1/events", [], expect=202).get("accepted"), 0, "accepted")
    with stack.check("malformed JSON gets 400 with a JSON error"):
        malformed_json(stack)
    with stack.check("an alert for an unknown location gets 422 naming location"):
        invalid_alert_field(stack, "location", location="Nowhere_" + uuid.uuid4().hex[:8])
    with stack.check("an alert with an unknown label gets 422 naming label"):
        invalid_alert_field(stack, "label", label="fire")
    with stack.check("a request without a valid API key gets 401"):
        unauthorized(stack)
    with stack.check("a 2 MiB body gets 413"):
        oversized_body(stack)


def setup_carrefour(stack: Stack) -> None:
    stack.api("PUT", "/api/v1/topics/Carrefour", expect=201)
    for user_id, level in (("crit_user", "CRITICAL"), ("std_user", "STANDARD")):
        user = stack.api("PUT", f"/api/v1/users/{user_id}", {"topics": ["Carrefour"]}, expect=201)
        check_eq(user.get("topics"), ["Carrefour"], f"{user_id}'s topics")
        prefs = stack.api("PUT", "/preferences", {"user_id": user_id, "level": level}, expect=200)
        check_eq(prefs.get("level"), level.lower(), f"level of {user_id} in the PUT /preferences answer")
        stored = stack.api("GET", f"/api/v1/users/{user_id}/preferences")
        check_eq(stored.get("level"), level.lower(), f"stored level of {user_id}")


def bad_preferences(stack: Stack) -> None:
    err = stack.api("PUT", "/preferences", {"user_id": "crit_user", "level": "URGENT"}, expect=400)
    check_in("standard, critical", err["error"]["message"], "the bad-level error")
    stack.api("PUT", "/preferences", {"user_id": "nobody_" + uuid.uuid4().hex[:8], "level": "STANDARD"},
              expect=404)
    check_eq(stack.api("GET", "/api/v1/users/crit_user/preferences").get("level"), "critical",
             "crit_user's level after the refused update")


def theft_reaches_everyone(stack: Stack) -> dict:
    """A critical alert reaches every member whatever their level."""
    alert = new_alert("Carrefour", "theft")
    event_id = post_alert(stack, alert)

    wait_until(lambda: len(deliveries_of_alert(stack, "healthy", alert["alert_uuid"])) >= 2,
               DELIVERY_TIMEOUT_S, "2 SHOP_ALERT deliveries of the theft alert at the sink")
    records = deliveries_of_alert(stack, "healthy", alert["alert_uuid"])
    check_eq(len(records), 2, "deliveries of the theft alert")
    check_eq(sorted(r["body"].get("target_user_uuid") for r in records), ["crit_user", "std_user"],
             "target_user_uuid of the deliveries")
    for r in records:
        body = r["body"]
        check_eq(r["path"], ALERT_PATH, "delivery path")
        check_eq(r["status"], 200, "the sink's answer")
        for name in ALERT_FIELDS:
            check_eq(body.get(name), alert[name], f"top-level {name} of the delivery to {body.get('target_user_uuid')}")
        check_eq(body.get("user_id"), body.get("target_user_uuid"), "envelope user_id")
        check_eq((body.get("event") or {}).get("event_id"), event_id, "envelope event.event_id")
        check_eq(body.get("severity"), "critical", "envelope severity")

    rows = wait_final_notifications(stack, event_id, 2)
    for user_id, row in rows.items():
        check_eq(row["status"], "sent", f"status of {user_id}'s notification")
        check_eq(row["severity"], "critical", f"severity of {user_id}'s notification")
    check_eq(sorted(rows), ["crit_user", "std_user"], "recipients")
    return {"alert": alert, "event_id": event_id}


def suspicious_spares_critical(stack: Stack) -> None:
    """A standard alert skips the CRITICAL member, with a readable reason."""
    alert = new_alert("Carrefour", "suspicious")
    event_id = post_alert(stack, alert, route="/webhook/notifications")

    rows = wait_final_notifications(stack, event_id, 2)
    check_eq(rows["std_user"]["status"], "sent", "std_user's notification")
    check_eq(rows["std_user"]["severity"], "standard", "std_user's severity")
    check_eq(rows["crit_user"]["status"], "suppressed", "crit_user's notification")
    check_in("critical", rows["crit_user"].get("suppression_reason"), "crit_user's suppression_reason")

    records = deliveries_of_alert(stack, "healthy", alert["alert_uuid"])
    check_eq([r["body"].get("target_user_uuid") for r in records], ["std_user"],
             "recipients of the suspicious alert at the sink")


def duplicate_is_not_fanned_out(stack: Stack, alert: dict, event_id: str) -> None:
    again = stack.api("POST", "/webhooks/alerts", alert, expect=200)
    check_eq(again, {"duplicate": True, "event_id": event_id}, "answer to the re-posted alert")
    time.sleep(2)  # the time a second fan-out would take to reach the sink
    check_eq(len(deliveries_of_alert(stack, "healthy", alert["alert_uuid"])), 2,
             "deliveries of the theft alert after the duplicate")
    check_eq(len(notifications_of(stack, event_id)), 2, "notifications of the theft event")


def retried_then_failed(stack: Stack) -> None:
    """5xx is retried with 3 s then 6 s backoff (±20%) up to 3 tries (contract §6)."""
    join_member(stack, "flaky_user", "Auchan", webhook_url=stack.sink_url("fail500", "/hook"))
    event_id = post_alert(stack, new_alert("Auchan", "theft"))
    nid = the_notification(stack, event_id)["id"]

    n = wait_status(stack, nid, "failed", RETRY_TIMEOUT_S)
    check_eq(n["attempts"], 3, "attempts")
    tries = n["delivery_attempts"]
    check_eq([a["outcome"] for a in tries], ["retry", "retry", "permanent_failure"], "attempt outcomes")
    check_eq([a["http_status"] for a in tries], [500, 500, 500], "attempt http_status")
    check_eq([a["attempt"] for a in tries], [1, 2, 3], "attempt numbers")

    starts = [parse_time(a["started_at"]) for a in tries]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    check(2.4 <= gaps[0] <= 6.0, f"first retry came {gaps[0]:.2f}s after the first try, expected 3 s ±20%")
    check(4.8 <= gaps[1] <= 10.0, f"second retry came {gaps[1]:.2f}s after the second try, expected 6 s ±20%")

    records = deliveries_of_notification(stack, "fail500", nid)
    check_eq(len(records), 3, "requests the 500 sink received for the notification")
    check_eq({r["path"] for r in records}, {"/hook"}, "path on the person's webhook_url")
    # Receivers dedupe on webhook-id, so every retry must carry the same one (contract §6).
    check_eq({r["headers"].get("webhook-id") for r in records}, {nid}, "webhook-id of the 3 tries")
    check_eq(deliveries_of_notification(stack, "healthy", nid), [],
             "deliveries that went to the provider instead of the person's webhook_url")
    # Seed 002: "After 3 attempts, the systems stop trying and a log.error is issued".
    wait_until(lambda: any("ERROR" in line and nid in line for line in stack.log_text("worker").splitlines()),
               5, f"an ERROR line about notification {nid} in the worker log")


def rejected_without_retry(stack: Stack) -> None:
    """A 4xx other than 429 is permanent: no retry (contract §6)."""
    join_member(stack, "rejecting_user", "Lidl", webhook_url=stack.sink_url("fail400", "/hook"))
    event_id = post_alert(stack, new_alert("Lidl", "theft"))
    nid = the_notification(stack, event_id)["id"]

    n = wait_status(stack, nid, "failed", DELIVERY_TIMEOUT_S)
    check_eq(n["attempts"], 1, "attempts")
    check_eq([(a["outcome"], a["http_status"]) for a in n["delivery_attempts"]],
             [("permanent_failure", 400)], "delivery attempts")

    time.sleep(4)  # longer than the 3 s a (wrong) retry would wait
    check_eq(len(deliveries_of_notification(stack, "fail400", nid)), 1, "requests the 400 sink received")
    check_eq(stack.api("GET", f"/api/v1/notifications/{nid}")["attempts"], 1, "attempts 4 s later")


def batch_with_invalid_item(stack: Stack) -> None:
    body = [{"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z"}, {"event_type": "x"}]
    answer = stack.api("POST", "/api/v1/events", body, expect=202)
    check_eq(answer.get("accepted"), 1, "accepted")
    rejected = answer.get("rejected") or []
    check_eq([r.get("index") for r in rejected], [1], "indexes of rejected items")
    check_in("event_timestamp", rejected[0].get("error"), "the rejection")
    ids = answer.get("event_ids") or []
    check(len(ids) == 2 and ids[0] and ids[1] is None, f"event_ids should be [<id>, null], got {ids!r}")


def malformed_json(stack: Stack) -> None:
    err = stack.api("POST", "/api/v1/events", "{bad", expect=400)
    check(isinstance(err, dict) and isinstance(err.get("error"), dict) and err["error"].get("code"),
          f"expected a JSON body with error.code, got {err!r}")


def invalid_alert_field(stack: Stack, field: str, **overrides) -> None:
    alert = new_alert("Carrefour", "theft") | overrides
    err = stack.api("POST", "/webhooks/alerts", alert, expect=422)["error"]
    check_in(field, err.get("message"), "the 422 message")
    check(any(d.get("field") == field for d in err.get("details") or []),
          f"error.details should name {field!r}: {err.get('details')!r}")


def unauthorized(stack: Stack) -> None:
    for headers, what in (({}, "no Authorization header"), ({"Authorization": "Bearer wrong-key"}, "a wrong key")):
        err = stack.api("POST", "/webhooks/alerts", new_alert("Carrefour", "theft"), expect=401,
                        auth=False, headers=headers)
        check(isinstance(err, dict) and err.get("error", {}).get("code"), f"{what}: expected a JSON error, got {err!r}")


def oversized_body(stack: Stack) -> None:
    padding = "x" * 1024
    body = ("[" + ",".join(f'"{padding}"' for _ in range(2048)) + "]").encode()
    check(len(body) > 2 * 1024 * 1024, "the test body should exceed 2 MiB")
    stack.api("POST", "/api/v1/events", body, expect=413)
