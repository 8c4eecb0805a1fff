"""Digests and scheduling (contract §4, §5.3, §8; issue 14), over HTTP:

* a comments digest keyed by post: three comments on one post and one on another
  give two notifications, with the right counts and actors;
* a person whose quiet hours cover now gets nothing until they end (a few seconds
  ahead), while a person without quiet hours gets the same notification at once; the
  audit trail says why and `GET /api/v1/notifications/{id}` shows `due_at`;
* a rule's `send_window` (opening a few seconds ahead) and an event's `deliver_at`
  (a few seconds ahead) are honoured.

The shipped comments digest waits for 5 quiet minutes and the report's window is
office hours, so this scenario starts its own api and worker beside the stack with
`HERALD_COMMENTS_QUIET_PER_HOUR` (3 s of quiet) and `HERALD_REPORT_WINDOW_*` (a window
opening shortly after start), on the same database and sinks but a Redis prefix of
their own.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone

from harness import (API_KEY, Processes, Stack, check, check_eq, check_in, free_port, http_request,
                     parse_time, process_environ, wait_http_ok, wait_until)

NAME = "scheduling"
LABEL = "scheduling"

TIMEOUT_S = 30
WINDOW_OPENS_IN_S = 15
BERLIN = "Europe/Berlin"


def berlin_clock(at: datetime) -> str:
    """`HH:MM:SS` of `at` in Berlin (UTC when the zone database is missing)."""
    try:
        from zoneinfo import ZoneInfo
        return at.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M:%S")
    except Exception:  # noqa: BLE001 - no tzdata: the scenario then uses UTC
        return at.strftime("%H:%M:%S")


def as_read(clock: str) -> str:
    """An `HH:MM:SS` time of day as Herald writes it in a hold reason: times on the
    minute without their seconds (`18:14`, not `18:14:00`)."""
    return clock[:-3] if clock.endswith(":00") else clock


def zone_for_berlin() -> str:
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(BERLIN)
        return BERLIN
    except Exception:  # noqa: BLE001
        return "UTC"


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pair:
    """The scenario's own api (and worker) with its settings."""

    def __init__(self, stack: Stack, api: str):
        self.stack = stack
        self.api_url = api

    def call(self, method: str, path: str, body=None, expect: int = 200):
        raw = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        resp = http_request(self.api_url, method, path, raw, headers)
        check_eq(resp.status, expect, f"{method} {path} ({resp.text(300)})")
        return resp.json()

    def deliveries_to(self, user: str) -> list[dict]:
        """What the provider sink got for `user`: HTTP deliveries naming them, and mails
        to their address (the `email` channel speaks SMTP to the sink)."""
        resp = http_request(self.api_url, "GET", f"/api/v1/users/{user}", None,
                            {"Authorization": f"Bearer {API_KEY}"})
        email = ((resp.json() or {}).get("email") if resp.status == 200 else None) or "\0"
        return [r["body"] for r in self.stack.sink_received("healthy")
                if isinstance(r.get("body"), dict)
                and (r["body"].get("user_id") == user or email in str(r["body"].get("to") or ""))]

    def sent_at(self, notification_id: str) -> datetime:
        """When the notification was recorded sent: a provider may have the message a
        moment before the worker records the attempt, so this waits for it."""
        def recorded():
            at = self.call("GET", f"/api/v1/notifications/{notification_id}").get("sent_at")
            return parse_time(at) if at else None
        return wait_until(recorded, TIMEOUT_S, f"the attempt of {notification_id} recorded")

    def history(self, user: str) -> list[dict]:
        return self.call("GET", f"/audit/{user}?limit=100")["notification_history"]


def start_pair(stack: Stack, procs: Processes, bin_dir: str, window_start: datetime) -> Pair:
    env = process_environ(stack.processes["api"])
    api_port = free_port()
    env = env | {
        "HERALD_REDIS_PREFIX": env.get("HERALD_REDIS_PREFIX", "herald:") + "sched:",
        "HERALD_BIND": f"127.0.0.1:{api_port}",
        "HERALD_COMMENTS_QUIET_PER_HOUR": "1200",
        "HERALD_REPORT_WINDOW_START": window_start.strftime("%H:%M:%S"),
        "HERALD_REPORT_WINDOW_END": (window_start + timedelta(hours=1)).strftime("%H:%M:%S"),
        "HERALD_REPORT_WINDOW_DAYS": "[mon, tue, wed, thu, fri, sat, sun]",
    }
    api_url = f"http://127.0.0.1:{api_port}"
    api = procs.start("api-sched", [os.path.join(bin_dir, "herald-api")], env, stack.repo)
    wait_http_ok(api, api_url, "/healthz/ready", timeout=60)
    procs.start("worker-sched", [os.path.join(bin_dir, "herald-worker"), "--queues", "critical,default",
                                 "--concurrency", "8"], env, stack.repo)
    return Pair(stack, api_url)


def run(stack: Stack) -> None:
    api = stack.processes["api"]
    bin_dir = os.path.dirname(api.popen.args[0])
    procs = Processes(api.log_path.parent)
    run_id = uuid.uuid4().hex[:8]
    window_start = (now() + timedelta(seconds=WINDOW_OPENS_IN_S)).replace(microsecond=0)
    try:
        pair: list[Pair] = []
        with stack.check("an api and worker with short digest and window settings start beside the stack", fatal=True):
            pair.append(start_pair(stack, procs, bin_dir, window_start))
        p = pair[0]
        office = f"office_{run_id}"
        report: dict = {}
        with stack.check("a report of a rule with a send_window opening later waits, saying why"):
            report.update(hold_report(p, office, window_start))
        with stack.check("three comments on one post and one on another give two digests with counts and actors"):
            comments_digest(p, f"writer_{run_id}")
        with stack.check("quiet hours hold a notification until they end; a person without them gets it at once"):
            quiet_hours(p, f"sleeper_{run_id}", f"awake_{run_id}")
        with stack.check("an event's deliver_at a few seconds ahead is honoured"):
            deliver_at(p, f"later_{run_id}")
        with stack.check("a rule's send_window opening a few seconds ahead is honoured"):
            check(report, "cannot run: the report was not held")
            report_sent_in_window(p, office, report, window_start)
    finally:
        procs.stop_all()


def comments_digest(p: Pair, user: str) -> None:
    def comment(post: str, author: str) -> dict:
        return {"user_id": user, "event_type": "comment_created", "event_timestamp": iso(now()),
                "properties": {"post_id": post, "author": author}}
    p.call("POST", "/api/v1/events", [comment("p1", "Ann"), comment("p1", "Bob"), comment("p2", "Cy"),
                                      comment("p1", "Ann")], expect=202)
    bodies = wait_until(lambda: (lambda d: d if len(d) >= 2 else None)(p.deliveries_to(user)), TIMEOUT_S,
                        f"two digests for {user}")
    texts = sorted(b["text"] for b in bodies)
    check_eq(texts, ["Ann and Bob left 3 comments on your post", "Cy commented on your post"], "digest texts")
    check(all(b["notification_type"] == "COMMENTS_DIGEST" for b in bodies), f"types: {bodies}")
    rows = wait_until(lambda: (lambda h: h if all(n["status"] == "sent" for n in h) and len(h) == 4 else None)(
        p.history(user)), TIMEOUT_S, "all four comments settled as sent")
    check_eq(len(rows), 4, "comment notifications")
    check_eq(len(p.deliveries_to(user)), 2, "deliveries after the items settled")


def payment_failed(user: str, extra: dict | None = None) -> dict:
    return {"user_id": user, "event_type": "payment_failed", "event_timestamp": iso(now()),
            "properties": {"amount": 10, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"}} | (extra or {})


def quiet_hours(p: Pair, sleeper: str, awake: str) -> None:
    tz = zone_for_berlin()
    ends = now() + timedelta(seconds=8)
    quiet = {"start": berlin_clock(now() - timedelta(minutes=1)), "end": berlin_clock(ends)}
    person = p.call("PUT", f"/api/v1/users/{sleeper}", {"email": "s@example.com", "timezone": tz,
                                                         "quiet_hours": quiet}, expect=201)
    check_eq(person["quiet_hours"], quiet, "stored quiet hours")
    p.call("PUT", f"/api/v1/users/{awake}", {"email": "a@example.com", "timezone": tz}, expect=201)
    p.call("POST", "/api/v1/events", [payment_failed(sleeper), payment_failed(awake)], expect=202)
    wait_until(lambda: p.deliveries_to(awake), TIMEOUT_S, f"the email of {awake} (no quiet hours)")
    held = wait_until(lambda: p.history(sleeper), TIMEOUT_S, f"the notification row of {sleeper}")[0]
    check_eq(held["hold_reason"], f"held for quiet hours until {as_read(quiet['end'])} {tz}", "audit trail reason")
    row = p.call("GET", f"/api/v1/notifications/{held['notification_id']}")
    due = parse_time(row["due_at"])
    check(abs((due - ends.replace(microsecond=0)).total_seconds()) <= 1, f"due_at {due} is the end {ends}")
    if now() < due:
        check_eq(p.deliveries_to(sleeper), [], "deliveries inside the quiet hours")
    wait_until(lambda: p.deliveries_to(sleeper), TIMEOUT_S, f"the email of {sleeper} after the quiet hours")
    sent = p.sent_at(held["notification_id"])
    check(sent >= due, f"sent {sent} before its due time {due}")


def deliver_at(p: Pair, user: str) -> None:
    p.call("PUT", f"/api/v1/users/{user}", {"email": "l@example.com"}, expect=201)
    at = now() + timedelta(seconds=5)
    p.call("POST", "/api/v1/events", [payment_failed(user, {"deliver_at": iso(at)})], expect=202)
    held = wait_until(lambda: p.history(user), TIMEOUT_S, f"the notification row of {user}")[0]
    check_in("deliver_at", held["hold_reason"], "audit trail reason")
    if now() < at:
        check_eq(p.deliveries_to(user), [], "deliveries before deliver_at")
    wait_until(lambda: p.deliveries_to(user), TIMEOUT_S, f"the email of {user} at its deliver_at")
    sent = p.sent_at(held["notification_id"])
    check(sent >= at, f"sent {sent} before deliver_at {at}")
    far = iso(now() + timedelta(days=91))
    answer = p.call("POST", "/api/v1/events", [payment_failed(user, {"deliver_at": far})], expect=202)
    check_eq((answer["accepted"], answer["rejected"][0]["field"]), (0, "deliver_at"), "91 days ahead is refused")


def hold_report(p: Pair, user: str, opens: datetime) -> dict:
    p.call("PUT", f"/api/v1/users/{user}", {"email": "o@example.com"}, expect=201)
    check(now() < opens, f"the window opened ({opens}) before the scenario got here; raise WINDOW_OPENS_IN_S")
    p.call("POST", "/api/v1/events", [{"user_id": user, "event_type": "report_ready", "event_timestamp": iso(now()),
                                       "properties": {"title": "Q3"}}], expect=202)
    held = wait_until(lambda: p.history(user), TIMEOUT_S, f"the notification row of {user}")[0]
    check_in(f"until {as_read(opens.strftime('%H:%M:%S'))} UTC", held["hold_reason"], "audit trail reason")
    row = p.call("GET", f"/api/v1/notifications/{held['notification_id']}")
    check_eq(parse_time(row["due_at"]), opens, "due_at")
    if now() < opens:
        check_eq(p.deliveries_to(user), [], "deliveries before the window opened")
    return held


def report_sent_in_window(p: Pair, user: str, held: dict, opens: datetime) -> None:
    bodies = wait_until(lambda: p.deliveries_to(user), TIMEOUT_S + WINDOW_OPENS_IN_S, f"the report of {user}")
    check_eq(bodies[0]["text"].rstrip(), "Q3 is ready.", "report text")
    sent = p.sent_at(held["notification_id"])
    check(sent >= opens, f"sent {sent} before the window opened {opens}")
