"""Seed 004, the event-driven fintech rules: every curl of the seed's README, in order,
then the audit trail it describes (contract §5.1, 4 "Audit").

WELCOME_EMAIL goes once per person ever, BANK_LINK_NUDGE_SMS when the bank is linked
within 24 h of signing up, INSUFFICIENT_FUNDS_EMAIL at most once per calendar day,
HIGH_RISK_ALERT (internal) from the third failed attempt on. The delayed
BANK_LINK_REMINDER_SMS (3 s here instead of 1 h) is cancelled when the bank was linked
and sent when it was not.
"""

from __future__ import annotations

import uuid

from harness import Stack, check, check_eq, check_in, wait_until

NAME = "seed_004_rules"
LABEL = "seed_004"

TIMEOUT_S = 20


def user(stack: Stack) -> str:
    """A fresh person per run, so reruns against one database stay independent."""
    return stack.__dict__.setdefault("seed_004_user", "u_12345_" + uuid.uuid4().hex[:6])


def audit(stack: Stack, user_id: str) -> dict:
    return stack.api("GET", f"/audit/{user_id}?limit=100")


def history(trail: dict, notification_type: str, status: str | None = None) -> list[dict]:
    return [n for n in trail["notification_history"]
            if n["notification_type"] == notification_type and (status is None or n["status"] == status)]


def post_and_wait(stack: Stack, events: list, rows_after: int) -> dict:
    """POSTs like the README's curl, then waits until the audit trail holds `rows_after`
    notifications, so each step is routed before the next (as a person would wait)."""
    resp = stack.api("POST", "/api/v1/events", events, expect=202)
    uid = user(stack)
    wait_until(lambda: len(audit(stack, uid)["notification_history"]) >= rows_after, TIMEOUT_S,
               f"{rows_after} notification rows for {uid}")
    return resp


def readme_flow(stack: Stack) -> dict:
    u = user(stack)
    out = {}
    post_and_wait(stack, [{"user_id": u, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z",
                           "properties": {"signup_method": "email"},
                           "user_traits": {"email": "maria@example.com", "marketing_opt_in": True}}], 2)
    post_and_wait(stack, [{"user_id": u, "event_type": "link_bank_success", "event_timestamp": "2025-10-31T19:10:45Z",
                           "properties": {"bank_name": "Santander"}, "user_traits": {"email": "maria@example.com"}}], 3)
    post_and_wait(stack, [{"user_id": u, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
                           "properties": {"amount": 1425.00, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
                           "user_traits": {"email": "maria@example.com"}}], 4)
    out["high_risk"] = post_and_wait(stack, [{"user_id": u, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
                                              "properties": {"amount": 1425.00, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"},
                                              "user_traits": {"email": "maria@example.com"}}], 6)
    post_and_wait(stack, [
        {"user_id": u, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z", "properties": {}, "user_traits": {"marketing_opt_in": True}},
        {"user_id": u, "event_type": "link_bank_success", "event_timestamp": "2025-10-31T19:10:45Z", "properties": {"bank_name": "Santander"}, "user_traits": {}}], 9)
    out["mixed"] = post_and_wait(stack, [
        {"user_id": u, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z", "properties": {}, "user_traits": {}},
        {"user_id": u},
        {"event_type": "orphan_event"},
        {"user_id": u, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"failure_reason": "INSUFFICIENT_FUNDS"}, "user_traits": {}}], 12)
    out["empty"] = stack.api("POST", "/api/v1/events", [], expect=202)
    return out


def run(stack: Stack) -> None:
    replies: dict = {}
    with stack.check("every curl of the README is accepted, in order", fatal=True):
        replies.update(readme_flow(stack))
    u = user(stack)

    with stack.check("the mixed batch accepts 2 and rejects 2; [] accepts 0"):
        check_eq(replies["mixed"]["accepted"], 2, "accepted")
        check_eq([r["index"] for r in replies["mixed"]["rejected"]], [1, 2], "rejected indexes")
        check_eq(replies["empty"]["accepted"], 0, "accepted for []")

    trail: dict = {}
    with stack.check("the delayed reminders are rechecked and cancelled: the bank was linked", fatal=True):
        def rechecked():
            t = audit(stack, u)
            reminders = history(t, "BANK_LINK_REMINDER_SMS")
            return t if reminders and all(n["status"] != "pending" for n in reminders) else None
        trail.update(wait_until(rechecked, TIMEOUT_S, "reminders rechecked"))
        reminders = history(trail, "BANK_LINK_REMINDER_SMS")
        check_eq(len(reminders), 3, "reminders (one per signup)")
        for n in reminders:
            check_eq(n["status"], "suppressed", "reminder status")
            check_in("link_bank_success happened within 1h", n["suppression_reason"], "reminder reason")

    with stack.check("WELCOME_EMAIL is sent once; the later signups are suppressed with a reason"):
        check_eq(len(history(trail, "WELCOME_EMAIL", "sent")), 1, "sent welcomes")
        for n in history(trail, "WELCOME_EMAIL", "suppressed"):
            check_eq(n["suppression_reason"], "skipped WELCOME_EMAIL: already sent 1 before (limit 1)", "reason")

    with stack.check("BANK_LINK_NUDGE_SMS is sent: the bank was linked within 24h of signup"):
        check(history(trail, "BANK_LINK_NUDGE_SMS", "sent"), "no nudge sent")
        nudges = stack.sink_received("healthy", "/sms")
        check(any(r["body"].get("user_id") == u and r["body"].get("notification_type") == "BANK_LINK_NUDGE_SMS"
                  for r in nudges), "the sink got no nudge SMS")

    with stack.check("the second INSUFFICIENT_FUNDS_EMAIL of the day is suppressed with a reason"):
        check_eq(len(history(trail, "INSUFFICIENT_FUNDS_EMAIL", "sent")), 1, "sent emails that day")
        skipped = history(trail, "INSUFFICIENT_FUNDS_EMAIL", "suppressed")
        check(len(skipped) >= 1, "no suppressed email")
        for n in skipped:
            check_eq(n["suppression_reason"], "skipped INSUFFICIENT_FUNDS_EMAIL: already sent 1 today (limit 1)", "reason")

    with stack.check("HIGH_RISK_ALERT for attempt 3 goes to the internal channel, beside the email of the same event"):
        event_id = replies["high_risk"]["event_ids"][0]
        risk = history(trail, "HIGH_RISK_ALERT")
        check_eq(len(risk), 1, "high risk alerts (attempt 3 only)")
        check_eq((risk[0]["channel"], risk[0]["status"], risk[0]["event_id"]), ("internal", "sent", event_id), "alert")
        same_event = {n["notification_type"] for n in trail["notification_history"] if n["event_id"] == event_id}
        check_eq(same_event, {"HIGH_RISK_ALERT", "INSUFFICIENT_FUNDS_EMAIL"}, "notifications of the attempt-3 event")
        internal = stack.sink_received("healthy", "/internal")
        check(any(r["body"].get("event", {}).get("event_id") == event_id for r in internal), "the sink got no internal alert")

    with stack.check("a signup without a bank link gets the reminder after the delay"):
        loner = "u_nolink_" + uuid.uuid4().hex[:6]
        stack.api("POST", "/api/v1/events", [{"user_id": loner, "event_type": "signup_completed",
                                             "event_timestamp": "2025-10-31T19:00:00Z", "user_traits": {"phone": "+33612345678"}}], expect=202)
        def reminded():
            sent = history(audit(stack, loner), "BANK_LINK_REMINDER_SMS", "sent")
            return sent or None
        wait_until(reminded, TIMEOUT_S, "the reminder to be sent")
        sms = [r for r in stack.sink_received("healthy", "/sms") if r["body"].get("user_id") == loner]
        check_eq(len(sms), 1, "reminder SMS at the sink")
        # No phone stored: the one of the event's user_traits (merged into the person's).
        check_eq(sms[0]["body"].get("to"), "+33612345678", "to (the phone of user_traits)")

    with stack.check("the audit trail of an unknown person is empty, not an error"):
        check_eq(audit(stack, "nobody_" + uuid.uuid4().hex[:6])["recent_events"], [], "recent_events")
