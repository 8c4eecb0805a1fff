"""Seed 001, the delivery simulator (contract §9): 1,000 people, 5 messages, a provider
that loses 10% of messages and sees half of the delivered ones opened.

`herald-sim simulate` registers the people in a topic of the run's own, publishes the
messages to that topic (so a person it did not register gets none) and reads back,
per message, sent / received / opened from `GET /api/v1/events/{id}/stats`. The
provider is the run's `healthy` sink: simulate sets its loss, open ratio and receipts
URL for the run through `POST /control` (and restores them afterwards), so the sink
posts `delivered` and `opened` receipts to `POST /webhooks/receipts`.
"""

from __future__ import annotations

import json
import subprocess
import uuid

from harness import API_KEY, Stack, check, check_eq, http_request

NAME = "seed_001_simulation"
LABEL = "seed_001"

USERS = 1000
MESSAGES = 5
LOSS = 0.1
OPEN = 0.5
TOLERANCE = 0.03  # within 3 percentage points
TIMEOUT_S = 300


def run(stack: Stack) -> None:
    report: dict = {}
    # Someone who is not part of the simulation: its messages go to a topic of the
    # run's own, so they must not reach this person.
    bystander = f"bystander_{uuid.uuid4().hex[:8]}"
    stack.api("PUT", f"/api/v1/users/{bystander}", {}, expect=201)
    with stack.check(f"simulate {USERS} users x {MESSAGES} messages with loss {LOSS} and open {OPEN}", fatal=True):
        report.update(simulate(stack))
    with stack.check("every message reached exactly the registered people and none is pending"):
        for m in report["messages"]:
            check_eq(m["recipients"], USERS, f"message {m['message']}: recipients")
            check(m["sent"] >= USERS, f"message {m['message']} was sent to {m['sent']} people, expected >= {USERS}")
            # One row per person; no receipt here is a bounce, so each row is counted once.
            check_eq(m["sent"] + m["failed"] + m["suppressed"], m["recipients"],
                     f"message {m['message']}: sent + failed + suppressed")
    with stack.check(f"received is {100 * (1 - LOSS):.0f}% of sent within 3 points"):
        ratio = report["received_ratio"]
        check(abs(ratio - (1 - LOSS)) <= TOLERANCE, f"received/sent = {ratio:.3f}")
    with stack.check(f"opened is {100 * (1 - LOSS) * OPEN:.0f}% of sent within 3 points"):
        ratio = report["opened_ratio"]
        check(abs(ratio - (1 - LOSS) * OPEN) <= TOLERANCE, f"opened/sent = {ratio:.3f}")
    with stack.check("a person the run did not register got none of its messages"):
        got = stack.api("GET", f"/api/v1/notifications?user_id={bystander}")
        check_eq(got["items"], [], f"{bystander}'s notifications")
    with stack.check("the sink's settings are restored after the run"):
        resp = http_request(stack.sink_base("healthy"), "GET", "/control")
        control = json.loads(resp.body)
        check_eq((control["loss"], control["open"], control["receipts_url"]), (0.0, 0.0, None), "sink control")


def simulate(stack: Stack) -> dict:
    sim = stack.processes["sink-healthy"].popen.args[0]  # the run's herald-sim binary
    argv = [sim, "simulate", "--api", stack.api_url, "--api-key", API_KEY,
            "--users", str(USERS), "--messages", str(MESSAGES), "--loss", str(LOSS), "--open", str(OPEN),
            "--sink", stack.sink_base("healthy"), "--user-prefix", f"sim_{uuid.uuid4().hex[:6]}_",
            "--timeout", str(TIMEOUT_S), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S + 60)
    check_eq(done.returncode, 0, f"herald-sim simulate exit code (stderr: {done.stderr[-2000:]})")
    report = json.loads(done.stdout)
    for m in report["messages"]:
        sent = m["sent"] or 1
        print(f"     message {m['message']}: sent {m['sent']}, received {m['received']} "
              f"({100 * m['received'] / sent:.1f}%), opened {m['opened']} ({100 * m['opened'] / sent:.1f}%)",
              flush=True)
    t = report["total"]
    print(f"     total: sent {t['sent']}, received {t['received']} ({100 * report['received_ratio']:.1f}%), "
          f"opened {t['opened']} ({100 * report['opened_ratio']:.1f}%) in {report['seconds']:.1f}s", flush=True)
    return report
