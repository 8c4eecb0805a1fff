"""Hostile input (contract §3 and 7, issue 6): bad input of any shape gets a clear 4xx with
a JSON error — never a 500, a dropped connection or a crash — and on batch routes a
bad item is listed in `rejected` with its reason while its neighbours are accepted.

Covered: bodies over 1 MiB (declared, and chunked with no length), JSON nested far
deeper than anyone writes, invalid UTF-8, bodies that are not JSON under other content
types, NUL characters (which Postgres cannot store), absurd timestamps (year 0, 9999,
beyond what RFC 3339 or Postgres hold, numbers as epoch seconds), 10,000-character ids
in bodies and paths, batches over 1,000 items, and the api still answering at the end.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
import uuid

from harness import API_KEY, Stack, check, check_eq, check_in, http_request

NAME = "hostile_input"
LABEL = "hostile"

LONG_ID = "u" * 10_000
NOW = "2025-10-31T19:30:00Z"


# ------------------------------------------------------------------------- helpers


def raw(stack: Stack, method: str, path: str, body: bytes | None, content_type: str | None = "application/json",
        expect: tuple[int, ...] = (400,)) -> dict:
    """Sends `body` verbatim; asserts the status is one of `expect` and the answer a
    JSON error with a code and a message. Returns the error object."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    resp = http_request(stack.api_url, method, path, body, headers)
    check(resp.status in expect, f"{method} {path[:80]}: expected HTTP {' or '.join(map(str, expect))}, "
                                 f"got {resp.status}: {resp.text(300)}")
    err = (resp.json() or {}).get("error")
    check(isinstance(err, dict) and err.get("code") and err.get("message"),
          f"{method} {path[:80]}: expected a JSON error with code and message, got {resp.text(300)!r}")
    return err


def event(**fields) -> dict:
    return {"event_type": "hostile_probe", "event_timestamp": NOW} | fields


def post_batch(stack: Stack, items: list) -> dict:
    return stack.api("POST", "/api/v1/events", items, expect=202)


def check_rejected(answer: dict, index: int, field: str, count: int) -> None:
    """Item `index` of a batch of `count` was rejected naming `field`; the others not."""
    rejected = {r.get("index"): r for r in answer.get("rejected") or []}
    check(index in rejected, f"item {index} should be in rejected: {answer!r}"[:600])
    check_eq(rejected[index].get("field"), field, f"the rejected field of item {index}")
    check_in(field, rejected[index].get("error"), f"the reason of item {index}")
    check_eq(answer.get("accepted", 0) + answer.get("duplicates", 0) + len(rejected), count, "items accounted for")
    ids = answer.get("event_ids") or []
    check(len(ids) == count and ids[index] is None, f"event_ids[{index}] should be null: {ids!r}"[:300])


def chunked_post(stack: Stack, path: str, total: int, chunk: int = 64 * 1024) -> int:
    """POSTs `total` bytes of a JSON array with Transfer-Encoding: chunked (so no
    Content-Length to refuse up front); returns the status, or 0 if none came."""
    url = urllib.parse.urlsplit(stack.api_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {API_KEY}\r\n"
                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        piece = b"[" + b'"' + b"x" * (chunk - 4) + b'",'
        sent = 0
        try:
            while sent < total:
                s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed
        data = b""
        try:
            while b"\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        except (ConnectionResetError, socket.timeout):
            pass
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


# ------------------------------------------------------------------------- the scenario


def run(stack: Stack) -> None:
    with stack.check("a 2 MiB body declared up front gets 413 on every JSON route"):
        body = b"[" + b'"' + b"x" * (2 * 1024 * 1024) + b'"]'
        for path in ("/api/v1/events", "/webhooks/alerts", "/webhooks/receipts"):
            err = raw(stack, "POST", path, body, expect=(413,))
            check_in("1 MiB", err["message"], f"the 413 message of {path}")
        raw(stack, "PUT", "/api/v1/users/hostile_big", body, expect=(413,))
    with stack.check("a chunked body growing past 1 MiB gets 413"):
        check_eq(chunked_post(stack, "/api/v1/events", 3 * 1024 * 1024), 413, "status of the chunked upload")
    with stack.check("JSON nested 100,000 deep gets 400, not a stack overflow"):
        deep = b"[" * 100_000 + b"]" * 100_000
        err = raw(stack, "POST", "/api/v1/events", deep)
        check_in("recursion", err["message"], "the 400 message")
        nested = b'[{"event_type": "x", "event_timestamp": "' + NOW.encode() + b'", "properties": ' \
            + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}]"
        raw(stack, "POST", "/api/v1/events", nested)
    with stack.check("invalid UTF-8 gets 400 naming the problem"):
        for body in (b'[{"event_type": "\xff\xfe", "event_timestamp": "' + NOW.encode() + b'"}]', b"\xc3\x28",
                     b'{"user_id": "a\xed\xa0\x80b"}'):
            err = raw(stack, "POST", "/api/v1/events", body)
            check_in("malformed JSON", err["message"], "the 400 message")
        raw(stack, "PUT", "/api/v1/users/hostile_utf8", b'{"email": "\xff"}')
    with stack.check("bodies that are not JSON get 400 (JSON types) or 415 (other types)"):
        for ctype, body in (("application/xml", b"<events><event/></events>"),
                            ("application/x-www-form-urlencoded", b"event_type=x&event_timestamp=now"),
                            ("multipart/form-data; boundary=XX", b"--XX\r\nContent-Disposition: form-data; "
                                                                 b"name=\"a\"\r\n\r\n1\r\n--XX--\r\n"),
                            ("text/plain", b"hello"), (None, b"\x00\x01\x02"), ("application/json", b"")):
            for path in ("/api/v1/events", "/webhooks/alerts", "/webhooks/receipts"):
                expect = (400,) if ctype in (None, "application/json") else (415,)
                raw(stack, "POST", path, body, content_type=ctype, expect=expect)
    with stack.check("JSON sent under another content type (curl -d without -H) gets 415 naming application/json"):
        err = raw(stack, "POST", "/api/v1/events", b"[]", content_type="application/x-www-form-urlencoded",
                  expect=(415,))
        check_in("application/json", err["message"], "the 415 message")
    with stack.check("scalars and nulls as bodies get 400"):
        for body in (b"3", b"null", b'"events"', b"true"):
            raw(stack, "POST", "/api/v1/events", body)
            raw(stack, "POST", "/webhooks/receipts", body)
    with stack.check("a batch of 1,001 events gets 413"):
        err = raw(stack, "POST", "/api/v1/events", __import__("json").dumps([event()] * 1001).encode(), expect=(413,))
        check_in("1000", err["message"].replace(",", ""), "the 413 message")

    with stack.check("absurd timestamps are rejected items naming event_timestamp"):
        stamps = ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                  "+275760-09-13T00:00:00Z", "2025-13-45T25:61:61Z", "2025-10-31", "1e308", "", "now",
                  "2025-10-31T19:30:00", "2025-10-31T19:30:00+99:00"]
        items = [event()] + [event(event_timestamp=s) for s in stamps] + [event(event_timestamp=1761939000),
                                                                          event(event_timestamp=None)]
        answer = post_batch(stack, items)
        check_eq(answer.get("accepted"), 1, "accepted (only the first item is valid)")
        for i in range(1, len(items)):
            check_rejected(answer, i, "event_timestamp", len(items))
    with stack.check("absurd alert times get 422 naming time_spotted"):
        for t in (1e308, -1, 253402300800, 1e20, "1742470260", None):
            alert = {"alert_uuid": str(uuid.uuid4()), "location": "Carrefour", "label": "theft",
                     "url": "https://media.example/x.mp4", "time_spotted": t}
            err = stack.api("POST", "/webhooks/alerts", alert, expect=422)["error"]
            check(any(d.get("field") == "time_spotted" for d in err.get("details") or []),
                  f"time_spotted={t!r}: details should name time_spotted: {err!r}")
        body = b'{"alert_uuid": "' + str(uuid.uuid4()).encode() + b'", "location": "Carrefour", "label": "theft",' \
               b' "url": "u", "time_spotted": 1e999}'
        raw(stack, "POST", "/webhooks/alerts", body, expect=(400, 422))

    with stack.check("10,000-character ids in a batch are rejected items naming the field"):
        items = [event(user_id=LONG_ID), event(topic=LONG_ID), event(event_id=LONG_ID),
                 event(event_type="e" * 10_000), event(user_id="ok_" + uuid.uuid4().hex[:8])]
        answer = post_batch(stack, items)
        for i, field in enumerate(("user_id", "topic", "event_id", "event_type")):
            check_rejected(answer, i, field, len(items))
        check_eq(answer.get("accepted"), 1, "accepted")
    with stack.check("10,000-character ids elsewhere get 4xx with a JSON error"):
        alert = {"alert_uuid": str(uuid.uuid4()), "location": LONG_ID, "label": "theft", "url": "u",
                 "time_spotted": time.time()}
        err = stack.api("POST", "/webhooks/alerts", alert, expect=422)["error"]
        check(any(d.get("field") == "location" for d in err.get("details") or []), f"details: {err!r}"[:300])
        alert = alert | {"location": "Carrefour", "alert_uuid": LONG_ID}
        stack.api("POST", "/webhooks/alerts", alert, expect=422)
        answer = stack.api("POST", "/webhooks/receipts", [{"notification_id": LONG_ID, "status": "opened"}])
        check_eq([r.get("field") for r in answer.get("rejected") or []], ["notification_id"], "rejected receipts")
        stack.api("PUT", "/preferences", {"user_id": LONG_ID, "level": "STANDARD"}, expect=(400, 404, 422))
        stack.api("PUT", "/api/v1/users/hostile_topics", {"topics": [LONG_ID]}, expect=(400, 422))
        for method, path in (("PUT", f"/api/v1/users/{LONG_ID}"), ("GET", f"/api/v1/users/{LONG_ID}"),
                             ("PUT", f"/api/v1/topics/{LONG_ID}"),
                             ("GET", f"/api/v1/users/{LONG_ID}/notifications"),
                             ("PUT", f"/api/v1/users/hostile_sub/subscriptions/{'e' * 10_000}"),
                             ("GET", f"/api/v1/notifications/{LONG_ID}")):
            body = b"{}" if method == "PUT" else None
            resp = http_request(stack.api_url, method, path, body,
                                {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
            check(400 <= resp.status < 500, f"{method} {path[:60]}...: expected 4xx, got {resp.status}")
            check((resp.json() or {}).get("error", {}).get("code"), f"{method} {path[:60]}...: no JSON error")

    with stack.check("NUL characters, which Postgres cannot store, are refused with a 4xx, never a 500"):
        items = [event(properties={"note": "a\u0000b"}), event(user_traits={"name": "\u0000"}),
                 event(properties={"k\u0000": 1}), event(user_id="a\u0000b"), event()]
        answer = post_batch(stack, items)
        for i, field in enumerate(("properties", "user_traits", "properties", "user_id")):
            check_rejected(answer, i, field, len(items))
        stack.api("PUT", "/api/v1/users/hostile_nul", {"traits": {"x": "\u0000"}}, expect=(400, 422))
        stack.api("PUT", "/api/v1/users/hostile_nul", {"email": "a\u0000@example.com"}, expect=(400, 422))
        alert = {"alert_uuid": str(uuid.uuid4()), "location": "Carrefour", "label": "theft",
                 "url": "https://m/\u0000", "time_spotted": time.time()}
        stack.api("POST", "/webhooks/alerts", alert, expect=(400, 404, 422))

    with stack.check("percent-encoded garbage in paths and queries gets 4xx with a JSON error"):
        for path in ("/api/v1/users/%FF%FE", "/api/v1/users/a%00b", "/api/v1/users/a%00b/notifications",
                     "/api/v1/notifications?limit=99999999999999999999", "/api/v1/notifications?cursor=%FF",
                     "/api/v1/notifications?status=%00", "/api/v1/events/not-a-uuid/stats",
                     "/audit/x?limit=abc", "/audit/a%00b"):
            resp = http_request(stack.api_url, "GET", path, None, {"Authorization": f"Bearer {API_KEY}"})
            check(400 <= resp.status < 500, f"GET {path}: expected 4xx, got {resp.status}: {resp.text(200)}")
            check((resp.json() or {}).get("error", {}).get("code"), f"GET {path}: no JSON error: {resp.text(200)}")
        # Out-of-range page sizes are clamped, not refused; either way never a 5xx.
        for path in ("/api/v1/notifications?limit=-1", "/api/v1/notifications?limit=0", "/audit/x?limit=100000"):
            resp = http_request(stack.api_url, "GET", path, None, {"Authorization": f"Bearer {API_KEY}"})
            check(resp.status < 500, f"GET {path}: got {resp.status}: {resp.text(200)}")

    with stack.check("after all that the api still answers and accepts a valid event"):
        answer = post_batch(stack, [event(user_id="hostile_survivor")])
        check_eq(answer.get("accepted"), 1, "accepted")
        check_eq(http_request(stack.api_url, "GET", "/healthz/ready").status, 200, "readiness")
        check("panicked" not in stack.log_text("api"), "the api log shows a panic")
