"""Providers by template and mail over SMTP (contract §5.2, issue 13).

An `http` channel with a `body` template speaks any provider's shape. This scenario
starts its own api and worker beside the stack (same database, a Redis prefix of
their own) on a config directory of its own whose channels are the README's shapes,
pointed at a sink of its own:

* `internal` is a Slack incoming webhook: `{"text": "*<subject>*\\n<text>"}`;
* `sms` is a Twilio-style SMS API: a form body (`To`, `From`, `Body`), basic auth,
  and a header whose value comes from an environment variable (`${VAR}`);
* `email` is SMTP to the sink's SMTP receiver.

It asserts the exact bytes and headers each request carried, and that seed 004's
WELCOME_EMAIL arrives as a mail to the address of the event's `user_traits`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.parse
import uuid

from harness import (API_KEY, Processes, Stack, check, check_eq, free_port, http_request,
                     process_environ, wait_http_ok, wait_until)

NAME = "channels"
LABEL = "channels"
DELIVERY_TIMEOUT_S = 30

SMS_USER, SMS_TOKEN = "AC0123", "s3cret-token"
HEADER_VALUE = "from-the-environment"

CHANNELS_YML = """\
channels:
  - name: email
    kind: smtp
    url: "${HERALD_SMTP_URL}"
    tls: none
    from: "Herald <no-reply@herald.localhost>"
    reply_to: help@herald.localhost
  - name: sms
    url: "${HERALD_PROVIDER_URL}/2010-04-01/Accounts/AC0123/Messages.json"
    basic_auth: "AC0123:s3cret-token"
    headers: {X-Herald-Test: "${E2E_CHANNELS_HEADER}"}
    content_type: form
    address: phone
    body: {To: "{{ to }}", From: "+15550001", Body: "{{ text }}"}
  - name: internal
    url: "${HERALD_PROVIDER_URL}/services/T000/B000/slack"
    address: none
    body: {text: "*{{ subject }}*\\n{{ text }}"}
  - name: push
    url: "${HERALD_PROVIDER_URL}/push"
  - name: webhook
    url: "${HERALD_PROVIDER_URL}/webhook/notifications/"
  - name: in_app
    kind: in_app
"""


def run(stack: Stack) -> None:
    api = stack.processes["api"]
    bin_dir = os.path.dirname(api.popen.args[0])
    procs = Processes(api.log_path.parent)
    try:
        pair: dict = {}
        with stack.check("an api and a worker with provider-shaped channels start beside the stack", fatal=True):
            pair.update(start_pair(stack, procs, bin_dir))
        user = "ch_" + uuid.uuid4().hex[:8]
        with stack.check("seed 004's WELCOME_EMAIL is a mail to the address of user_traits, with its subject"):
            welcome_mail(pair, user)
        with stack.check("a Twilio-style SMS arrives byte-exact: form body, basic auth, ${VAR} header"):
            sms_request(pair, user)
        with stack.check("a Slack-shaped message arrives byte-exact"):
            slack_request(pair, user)
    finally:
        procs.stop_all()


def start_pair(stack: Stack, procs: Processes, bin_dir: str) -> dict:
    env = process_environ(stack.processes["api"])
    sink_port, smtp_port, api_port = free_port(), free_port(), free_port()
    sink = f"http://127.0.0.1:{sink_port}"
    proc = procs.start("sink-channels", [os.path.join(bin_dir, "herald-sim"), "sink", "--port", str(sink_port),
                                         "--smtp-port", str(smtp_port)],
                       os.environ | {"RUST_LOG": "info"}, stack.repo)
    wait_http_ok(proc, sink, "/healthz", timeout=30)
    config = api_log_dir(stack) / "channels-config"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(stack.repo / "config", config)
    (config / "channels.yml").write_text(CHANNELS_YML)
    env = env | {
        "HERALD_REDIS_PREFIX": env.get("HERALD_REDIS_PREFIX", "herald:") + "channels:",
        "HERALD_BIND": f"127.0.0.1:{api_port}",
        "HERALD_PROVIDER_URL": sink,
        "HERALD_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "HERALD_CONFIG_DIR": str(config),
        "E2E_CHANNELS_HEADER": HEADER_VALUE,
    }
    api_url = f"http://127.0.0.1:{api_port}"
    api = procs.start("api-channels", [os.path.join(bin_dir, "herald-api")], env, stack.repo)
    wait_http_ok(api, api_url, "/healthz/ready", timeout=60)
    procs.start("worker-channels", [os.path.join(bin_dir, "herald-worker"), "--queues", "critical,default",
                                    "--concurrency", "4", "--sweep-interval", "1h"], env, stack.repo)
    return {"sink": sink, "api": api_url}


def api_log_dir(stack: Stack):
    return stack.processes["api"].log_path.parent


def post(pair: dict, method: str, path: str, body) -> dict:
    resp = http_request(pair["api"], method, path, json.dumps(body).encode(),
                        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    check(resp.status in (200, 201, 202), f"{method} {path}: HTTP {resp.status}: {resp.text()}")
    return resp.json()


def received(pair: dict, path: str, predicate) -> dict:
    def matching():
        got = http_request(pair["sink"], "GET", "/received?path=" + urllib.parse.quote(path)).json() or []
        return [r for r in got if predicate(r)]
    return wait_until(matching, DELIVERY_TIMEOUT_S, f"a request at {path}")[0]


def welcome_mail(pair: dict, user: str) -> None:
    post(pair, "POST", "/api/v1/events", [{
        "user_id": user, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z",
        "properties": {"signup_method": "email"},
        "user_traits": {"email": "maria@example.com", "marketing_opt_in": True}}])
    mail = received(pair, "/smtp", lambda r: user in (r.get("body") or {}).get("list_unsubscribe") or "")
    body = mail["body"]
    check_eq(mail["status"], 250, "the SMTP reply")
    check_eq(body["rcpt_to"], ["maria@example.com"], "the envelope's recipient")
    check_eq(body["to"], "maria@example.com", "To")
    check_eq(body["subject"], "Welcome to the family!", "Subject")
    check_eq(body["from"], "Herald <no-reply@herald.localhost>", "From")
    check_eq(body["reply_to"], "help@herald.localhost", "Reply-To")
    check(str(body["message_id"]).endswith("@herald.localhost>"), f"Message-ID: {body['message_id']}")
    check_in_text("Thanks for signing up with email. Link your bank to get started.", body["text"])


def notification(pair: dict, user: str, notification_type: str) -> dict:
    """The notification as Herald rendered it (its subject and text), from the API."""
    def found():
        resp = http_request(pair["api"], "GET", f"/api/v1/notifications?user_id={user}&limit=100",
                            None, {"Authorization": f"Bearer {API_KEY}"})
        items = (resp.json() or {}).get("items", [])
        return [n for n in items if n.get("notification_type") == notification_type]
    return wait_until(found, DELIVERY_TIMEOUT_S, f"{notification_type} of {user}")[0]


def check_in_text(needle: str, text: str) -> None:
    check(needle in text, f"{needle!r} not in the mail's text: {text!r}")


def sms_request(pair: dict, user: str) -> None:
    phone = "+34600111222"
    post(pair, "PUT", f"/api/v1/users/{user}", {"phone": phone})
    post(pair, "POST", "/api/v1/events", [{
        "user_id": user, "event_type": "link_bank_success", "event_timestamp": "2025-10-31T19:10:45Z",
        "properties": {"bank_name": "Santander"}}])
    path = "/2010-04-01/Accounts/AC0123/Messages.json"
    record = received(pair, path, lambda r: urllib.parse.quote_plus(phone) in r.get("raw", ""))
    text = notification(pair, user, "BANK_LINK_NUDGE_SMS")["text"]
    check_eq(text, "Nice! Santander is linked. Set up your first transfer in the app.", "the SMS text")
    # Fields in alphabetical order, form-encoded (space as +).
    expected = "Body=" + urllib.parse.quote_plus(text) + "&From=%2B15550001&To=%2B34600111222"
    check_eq(record["raw"], expected, "the SMS body's bytes")
    check_eq(record["method"], "POST", "the method")
    headers = record["all_headers"]
    auth = "Basic " + base64.b64encode(f"{SMS_USER}:{SMS_TOKEN}".encode()).decode()
    check_eq(headers.get("authorization"), auth, "Authorization")
    check_eq(headers.get("content-type"), "application/x-www-form-urlencoded", "Content-Type")
    check_eq(headers.get("x-herald-test"), HEADER_VALUE, "the header from ${E2E_CHANNELS_HEADER}")
    check(headers.get("webhook-id"), "webhook-id is sent")


def slack_request(pair: dict, user: str) -> None:
    post(pair, "POST", "/api/v1/events", [{
        "user_id": user, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
        "properties": {"amount": 10, "attempt_number": 3, "failure_reason": "CARD_EXPIRED"}}])
    record = received(pair, "/services/T000/B000/slack", lambda r: user in r.get("raw", ""))
    rendered = notification(pair, user, "HIGH_RISK_ALERT")
    subject, text = rendered["subject"], rendered["text"]
    check_eq(subject, f"High risk: {user} failed payment attempt 3", "the alert's subject")
    expected = json.dumps({"text": f"*{subject}*\n{text}"}, separators=(",", ":"))
    check_eq(record["raw"], expected, "the Slack body's bytes")
    headers = record["all_headers"]
    check_eq(headers.get("content-type"), "application/json", "Content-Type")
    check(headers.get("authorization") is None, "no Authorization on the Slack request")
