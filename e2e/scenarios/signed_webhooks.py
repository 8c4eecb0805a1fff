"""Signed deliveries (contract §5.2 and 6, issue 6): with a channel secret, Herald signs every
delivery per Standard Webhooks (`webhook-id` = notification_id, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256>`), and a receiver verifying them — the
sink with `--secret` — accepts Herald's deliveries and refuses a tampered one with 401.

The shared stack's channels have no secret, so this scenario starts its own signed
pair beside it: a sink with `--secret`, and an api and a worker with
`HERALD_CHANNEL_SECRET` set and `HERALD_PROVIDER_URL` pointing at that sink, on the
same database but a Redis prefix of their own (so the shared worker never sees their
jobs, and theirs never the shared ones; its sweep is off for the scenario's length).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid

from harness import (API_KEY, Processes, Stack, wait_http_ok, check, check_eq, free_port, http_request,
                     process_environ, wait_until)

NAME = "signed_webhooks"
LABEL = "signed"

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
DELIVERY_TIMEOUT_S = 30


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """A Standard Webhooks v1 signature header for `body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def post_to_sink(base: str, body: bytes, headers: dict[str, str]) -> int:
    return http_request(base, "POST", "/internal", body, {"Content-Type": "application/json"} | headers).status


def run(stack: Stack) -> None:
    api = stack.processes["api"]
    bin_dir = os.path.dirname(api.popen.args[0])
    procs = Processes(api.log_path.parent)
    try:
        signed: dict = {}
        with stack.check("a signed api, worker and verifying sink start beside the stack", fatal=True):
            signed.update(start_signed_pair(stack, procs, bin_dir))
        record: dict = {}
        with stack.check("the verifying sink accepts Herald's signed delivery (200)"):
            record.update(herald_delivery_is_accepted(signed))
        with stack.check("the same delivery tampered with is refused with 401"):
            check(record, "cannot run: no signed delivery was recorded")
            tampered_copies_are_refused(signed["sink"], record)
    finally:
        procs.stop_all()


def start_signed_pair(stack: Stack, procs: Processes, bin_dir: str) -> dict:
    env = process_environ(stack.processes["api"])
    sink_port, api_port = free_port(), free_port()
    sink = f"http://127.0.0.1:{sink_port}"
    proc = procs.start("sink-signed", [os.path.join(bin_dir, "herald-sim"), "sink", "--port", str(sink_port),
                                       "--secret", SECRET], os.environ | {"RUST_LOG": "info"}, stack.repo)
    wait_http_ok(proc, sink, "/healthz", timeout=30)
    env = env | {
        "HERALD_REDIS_PREFIX": env.get("HERALD_REDIS_PREFIX", "herald:") + "signed:",
        "HERALD_BIND": f"127.0.0.1:{api_port}",
        "HERALD_PROVIDER_URL": sink,
        "HERALD_CHANNEL_SECRET": SECRET,
    }
    api_url = f"http://127.0.0.1:{api_port}"
    api = procs.start("api-signed", [os.path.join(bin_dir, "herald-api")], env, stack.repo)
    wait_http_ok(api, api_url, "/healthz/ready", timeout=60)
    procs.start("worker-signed", [os.path.join(bin_dir, "herald-worker"), "--queues", "critical,default",
                                  "--concurrency", "4", "--sweep-interval", "1h"], env, stack.repo)
    # The secret is the operator's: it must not show in what the processes log.
    time.sleep(0.5)
    for p in procs.started:
        check(SECRET not in p.log_text() and SECRET.removeprefix("whsec_") not in p.log_text(),
              f"{p.name} logged the channel secret")
    return {"sink": sink, "api": api_url}


def herald_delivery_is_accepted(signed: dict) -> dict:
    """A payment failing a third time alerts the operators (HIGH_RISK_ALERT, channel
    `internal`): one delivery, signed by the worker, verified by the sink."""
    user = "signed_" + uuid.uuid4().hex[:8]
    event = {"user_id": user, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
             "properties": {"amount": 10, "attempt_number": 3, "failure_reason": "CARD_EXPIRED"}}
    resp = http_request(signed["api"], "POST", "/api/v1/events", json.dumps([event]).encode(),
                        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    check_eq(resp.status, 202, "POST /api/v1/events on the signed api")

    def delivered():
        got = http_request(signed["sink"], "GET", "/received").json() or []
        return [r for r in got if (r.get("body") or {}).get("user_id") == user]

    records = wait_until(delivered, DELIVERY_TIMEOUT_S, f"a delivery about {user} at the verifying sink")
    record = records[0]
    headers = record.get("headers") or {}
    check_eq(record.get("status"), 200, f"the verifying sink's answer ({record.get('body')})")
    check(str(headers.get("webhook-signature", "")).startswith("v1,"),
          f"webhook-signature should be v1,<base64>: {headers!r}")
    check_eq(headers.get("webhook-id"), record["body"].get("notification_id"), "webhook-id")
    check(str(headers.get("webhook-timestamp", "")).isdigit(), f"webhook-timestamp: {headers!r}")
    return record


def tampered_copies_are_refused(sink: str, record: dict) -> None:
    headers = record["headers"]
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    body = json.dumps(record["body"]).encode()
    # The recorded body is re-serialized, so sign it afresh: the control must pass.
    good = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sign(SECRET, msg_id, ts, body)}
    check_eq(post_to_sink(sink, body, good), 200, "a correctly signed copy")
    tampered = json.dumps(record["body"] | {"text": record["body"].get("text", "") + "!"}).encode()
    check_eq(post_to_sink(sink, tampered, good), 401, "the body changed, the signature kept")
    check_eq(post_to_sink(sink, body, good | {"webhook-id": str(uuid.uuid4())}), 401, "another webhook-id")
    check_eq(post_to_sink(sink, body, good | {"webhook-timestamp": str(int(ts) + 1)}), 401, "another timestamp")
    wrong = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    check_eq(post_to_sink(sink, body, good | {"webhook-signature": sign(wrong, msg_id, ts, body)}), 401,
             "signed with another secret")
    check_eq(post_to_sink(sink, body, {}), 401, "no signature at all")
    # The original signature from Herald, on the original record, still verifies only
    # for the exact bytes Herald sent: re-serialized JSON differs, so it must not.
    check_eq(post_to_sink(sink, tampered, headers), 401, "Herald's signature on a tampered body")
