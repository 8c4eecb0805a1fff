#!/usr/bin/env python3
"""`make chaos`: Herald's fault suite (contract §6 and 7, issue 6).

    python3 chaos/run.py [--no-build] [--release] [--events N] [--keep]

On infrastructure of its own — a private Postgres (initdb in a temporary directory,
trust auth, a free port) and a private Redis (no persistence, a free port) — it starts
the api, TWO workers (`--visibility-timeout 12s --sweep-interval 2s`) and a flaky sink
(`herald-sim sink --fail-rate 0.2 --latency-ms 5`), creates a shop with two members (one
CRITICAL, one STANDARD), and sends at least 5,000 events:

* `broadcast` events in batches of 100 through `POST /api/v1/events` (rule BROADCAST:
  recipients `all`, channel `push`, so each goes over HTTP to the sink), and
* shop alerts one by one through `POST /webhooks/alerts` (rule SHOP_ALERT, channel
  `webhook`, the critical queue for thefts; a suspicious alert is `suppressed` for the
  CRITICAL member), and
* on every other step, a burst of `comment_created` events on two posts of one of four
  writers (rule COMMENTS_DIGEST: bundled per post, each digest sent after 2 s without a
  new comment, `HERALD_COMMENTS_QUIET_PER_HOUR=1800`). The writers are at level
  CRITICAL and the comments critical, so broadcasts reach them as suppressed rows only.

While sending it injects three faults, in this order, each while deliveries are in
flight:

1. **SIGKILL of a worker** (a replacement worker is started at once);
2. **Redis restarted empty** (killed, then started again with nothing; events sent
   while it is down must still get 202);
3. **Postgres restarted** (immediate shutdown, i.e. crash-like; while it is down the
   api must answer 503, never 500, and the sender retries).

Then it waits until the pipeline settles and asserts, reading Postgres and the sink:

* every accepted event is in Postgres (lost = 0) and `routed`, with one notification
  row per recipient;
* no job was dead-lettered: the faults alone must not use up a job's deliveries
  (`HERALD_MAX_DELIVERIES`). A dead-lettered event (`failed_routing`) or notification
  (`failed`) is final, so it counts neither as stuck nor as lost (its row in
  `dead_letters` says why), but it fails this check;
* every notification is in a final state — `sent`, `failed` or `suppressed` — (stuck =
  0), and every `sent` one was answered 2xx by the sink at least once (lost = 0);
* every bundle item (comment) ends `sent` or `failed`, no bundle stays pending, and
  each comment counts in exactly one sent bundle;
* duplicates (2xx deliveries beyond the first of a notification) are only allowed for
  notifications in flight at a fault: the first 2xx of every duplicated notification
  must lie in a fault's window (from the channel timeout before the fault to a moment
  after the service is back), no notification is delivered more than 1 + faults times,
  and their total stays within the jobs the affected workers could hold at once
  (concurrency × workers running, summed over the faults).

It prints the figures (accepted, notifications by status, delivered, duplicates, stuck,
lost) and ends with `N passed, M failed`; exit code 0 only when M is 0. Whatever
happens, every process it started is stopped and the temporary directories removed.
Logs are kept in `target/chaos-logs/<run id>/`.

Standard library only (Python ≥ 3.11), plus the Postgres server binaries
(`/usr/lib/postgresql/*/bin` or `pg_config --bindir`), `psql` and `redis-server`.
Running as root, Postgres runs as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

CHAOS_DIR = Path(__file__).resolve().parent
REPO = CHAOS_DIR.parent
sys.path.insert(0, str(REPO / "e2e"))

import harness  # noqa: E402  (needs the path above)

API_KEY = "chaos-key"
SHOP = "ChaosMart"
MEMBERS = {"chaos_crit": "CRITICAL", "chaos_std": "STANDARD"}
# Receivers of the comment digests (at level CRITICAL: broadcasts reach them suppressed).
WRITERS = [f"chaos_writer_{i}" for i in range(4)]
COMMENTS_PER_BURST = 6
BATCH = 100
CONCURRENCY = 16
VISIBILITY_TIMEOUT_S = 12  # > channel timeout (5 s) + margin, so live deliveries are never duplicated
SWEEP_INTERVAL_S = 2
CHANNEL_TIMEOUT_S = 5  # config/channels.yml: timeout of every shipped channel
FINAL = ("sent", "failed", "suppressed")
SETTLE_TIMEOUT_S = 240


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------- private Postgres


def _postgres_bin_dir() -> Path:
    """The newest server installation: Debian's /usr/lib/postgresql/N/bin, else pg_config."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for c in reversed(candidates):
        if (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").is_file():
            return Path(out)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise harness.StackError("no Postgres server binaries (initdb, postgres): apt-get install postgresql")


def _as_user(uid: int | None, gid: int | None):
    """preexec_fn: drop to uid/gid (when given), then die with the parent (Linux).

    The parent-death signal is cleared by a change of credentials, so it is set after.
    """

    def preexec() -> None:
        if uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


class Psql:
    """psql on the database at `url`: rows of text columns, or one number."""

    def __init__(self, url: str):
        self.url = url

    def psql(self, sql: str, timeout: float = 60) -> list[list[str]]:
        """Rows of the last statement of `sql`, each a list of text columns.

        The SQL goes through stdin: it may hold thousands of ids, more than one
        command-line argument may (128 KiB).
        """
        env = os.environ | {"PGCONNECT_TIMEOUT": "3"}
        argv = ["psql", "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-f", "-"]
        try:
            done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise harness.StackError(f"psql took over {timeout:g}s") from e
        if done.returncode != 0:
            raise harness.StackError(f"psql failed: {(done.stderr or done.stdout).strip()}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def scalar(self, sql: str) -> int:
        rows = self.psql(sql)
        return int(rows[0][0]) if rows and rows[0] and rows[0][0] else 0


class PrivatePostgres(Psql):
    """A Postgres server of this run only: its own data directory, port and socket dir."""

    def __init__(self, procs: harness.Processes, root: Path):
        self.procs = procs
        self.bin = _postgres_bin_dir()
        self.port = harness.free_port()
        self.data = root / "pgdata"
        self.uid = self.gid = None
        if os.geteuid() == 0:
            import pwd  # noqa: PLC0415 - Unix only, needed only as root

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise harness.StackError("running as root, but there is no `postgres` user to run Postgres as") from e
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.data.mkdir(mode=0o700)
        if self.uid is not None:
            os.chown(root, self.uid, self.gid)
            os.chown(self.data, self.uid, self.gid)
        self.proc: harness.Process | None = None
        self.starts = 0
        super().__init__(f"postgres://postgres@127.0.0.1:{self.port}/postgres")

    def init(self) -> None:
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync", "--locale=C"]
        done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=_as_user(self.uid, self.gid))
        if done.returncode != 0:
            raise harness.StackError(f"initdb failed: {(done.stderr or done.stdout).strip()}")

    def start(self) -> None:
        self.starts += 1
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.data), "-c", "listen_addresses=127.0.0.1",
                # Durability across a *process* crash does not need fsync (the OS keeps
                # the written pages); this is a test database on a shared 2-core box.
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]
        log_path = self.procs.log_dir / f"postgres-{self.starts}.log"
        with open(log_path, "wb") as out:
            if self.uid is not None:
                os.chown(log_path, self.uid, self.gid)
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_as_user(self.uid, self.gid))
        self.proc = harness.Process(f"postgres-{self.starts}", popen, log_path)
        self.procs.started.append(self.proc)
        deadline = time.monotonic() + 60
        while not self.answers():
            if not self.proc.alive():
                raise harness.StackError(f"postgres exited with {popen.returncode}: {self.proc.tail(10)}")
            if time.monotonic() > deadline:
                raise harness.StackError("postgres did not answer within 60 s")
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            self.psql("select 1", timeout=5)
            return True
        except harness.StackError:
            return False

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT): no checkpoint, recovery on the next start."""
        if self.proc and self.proc.alive():
            self.proc.popen.send_signal(signal.SIGQUIT)
            try:
                self.proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.popen.kill()
                self.proc.popen.wait()

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, a checkpoint is written."""
        if self.proc and self.proc.alive():
            self.proc.popen.send_signal(signal.SIGINT)
            try:
                self.proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.popen.kill()
                self.proc.popen.wait()


# ---------------------------------------------------------------- private Redis


class PrivateRedis:
    """A Redis of this run only, keeping nothing on disk: a restart starts empty."""

    def __init__(self, procs: harness.Processes, root: Path):
        self.procs = procs
        self.port = harness.free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc: harness.Process | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no"]
        if not shutil.which("redis-server"):
            raise harness.StackError("redis-server is not installed: apt-get install redis-server")
        self.proc = self.procs.start(f"redis-{self.starts}", argv, dict(os.environ), REPO)
        deadline = time.monotonic() + 30
        while not self.answers():
            if not self.proc.alive() or time.monotonic() > deadline:
                raise harness.StackError(f"redis did not start: {self.proc.tail(10)}")
            time.sleep(0.1)

    def answers(self) -> bool:
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
        return done.returncode == 0 and "PONG" in done.stdout

    def kill(self) -> None:
        if self.proc and self.proc.alive():
            self.proc.popen.kill()
            self.proc.popen.wait()

    def dbsize(self) -> int:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "dbsize"], capture_output=True, text=True).stdout
        return int(out.strip() or 0)


# ------------------------------------------------------------ queues in Redis

# What a progress line counts, by how the key ends: one key each in a single Redis, one
# per partition (`herald:{p7}:queue:default`) when the work is partitioned.
QUEUE_KEYS = {"critical": ("queue:critical", "XLEN"), "default": ("queue:default", "XLEN"),
              "delayed": ("delayed", "ZCARD")}


def queue_keys(cli: list[str], prefix: str = "herald:") -> dict[str, list[str]]:
    """The node's stream and delayed-set keys, by QUEUE_KEYS's names."""
    found: dict[str, list[str]] = {name: [] for name in QUEUE_KEYS}
    for key in harness.run_command([*cli, "--scan", "--pattern", prefix + "*"], timeout=10).split():
        for name, (suffix, _) in QUEUE_KEYS.items():
            if key.endswith(suffix):
                found[name].append(key)
    return found


def cli_replies(cli: list[str], commands: list[str]) -> list[str]:
    """One reply line per command, the commands (without spaces in their arguments)
    sent through one redis-cli."""
    if not commands:
        return []
    return harness.run_command(cli, timeout=10, stdin="\n".join(commands) + "\n").splitlines()


def queue_sizes(clis: list[list[str]]) -> Counter:
    """Jobs in the critical and default streams and in the delayed set, summed over
    every partition's key on every node (each `redis-cli` command line of `clis`)."""
    sizes: Counter = Counter()
    for cli in clis:
        for name, keys in queue_keys(cli).items():
            replies = cli_replies(cli, [f"{QUEUE_KEYS[name][1]} {k}" for k in keys])
            sizes[name] += sum(int(r) for r in replies if r.strip().lstrip("-").isdigit())
    return sizes


# ------------------------------------------------------------------- the run


@dataclass
class Fault:
    """One injected fault: what, when it began and when service was back (UTC)."""

    name: str
    started: datetime
    ended: datetime
    workers_running: int  # workers that may have had deliveries in flight

    def window(self) -> tuple[datetime, datetime]:
        """Deliveries whose first 2xx lies here may have been in flight at the fault.

        From the channel timeout (plus a second) before the fault, since a try started
        then can still be answered after it, to a few seconds after service is back.
        """
        return (self.started - timedelta(seconds=CHANNEL_TIMEOUT_S + 1),
                self.ended + timedelta(seconds=CHANNEL_TIMEOUT_S + 1))


@dataclass
class Sent:
    """What the sender did and saw."""

    broadcast_ids: set[str] = field(default_factory=set)
    alert_ids: dict[str, str] = field(default_factory=dict)  # event id -> label
    comment_ids: set[str] = field(default_factory=set)
    requests: Counter = field(default_factory=Counter)  # HTTP status (or "error") -> count
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503
    connection_errors: list[str] = field(default_factory=list)  # the api did not answer at all
    during_redis_outage: Counter = field(default_factory=Counter)
    during_postgres_outage: Counter = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return len(self.broadcast_ids) + len(self.alert_ids) + len(self.comment_ids)


class Chaos:
    LABEL = "chaos"  # of its checks, its log directory (target/<label>-logs/) and temporary one

    def __init__(self, args: argparse.Namespace, log_dir: Path, root: Path):
        self.args = args
        self.procs = harness.Processes(log_dir)
        self.root = root
        self.results = harness.Results()
        self.pg: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.workers: list[harness.Process] = []
        self.worker_count = 0
        self.worker_flags: dict[str, list[str]] = {}  # extra flags by worker name
        self.expected_workers = 2  # alive at the end: the survivor and the replacement
        # A burst of comments every this many steps. The bursts take turns over the
        # writers, and each writer gets at most max_per_day (24) digests a day
        # (config/rules.yml), one per post: 48 bursts of 2 posts fit the 4 writers,
        # more would leave digests pending until tomorrow.
        self.comments_every = 2
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.sink_url = ""
        self.bin_dir = Path()
        self.faults: list[Fault] = []
        self.sent = Sent()

    # ----------------------------------------------------------------- checks

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.record(ok, f"{self.LABEL}: {name}", detail)
        return ok

    # ------------------------------------------------------------------ stack

    def start_stack(self) -> None:
        self.bin_dir = harness.prepare_binaries(REPO, build=not self.args.no_build, release=self.args.release,
                                                bin_dir=self.args.bin_dir)
        database_url, redis_url = self.start_stores()
        stack = harness.launch(REPO, self.bin_dir, self.procs, database_url, redis_url, "herald:",
                               self.results, self.stack_spec())
        self.api_url, self.env = stack.api_url, stack.env
        self.sink_url = f"http://127.0.0.1:{stack.sink_ports['flaky']}"
        self.start_processes()
        log(f"api {self.api_url}, sink {self.sink_url}, workers {[w.name for w in self.workers]}")

    def start_stores(self) -> tuple[str, str]:
        """Postgres and Redis of this run; their URLs."""
        self.pg = PrivatePostgres(self.procs, self.root)
        self.pg.init()
        self.pg.start()
        self.redis = PrivateRedis(self.procs, self.root)
        self.redis.start()
        log(f"private postgres on :{self.pg.port} ({self.pg.bin}), redis on :{self.redis.port}")
        return self.pg.url, self.redis.url

    def stack_spec(self) -> harness.StackSpec:
        """A flaky sink (one delivery in five fails: retries), the api, no worker yet."""
        return harness.StackSpec(
            sinks={"flaky": ["--fail-rate", "0.2", "--latency-ms", "5"]}, provider="flaky", sink_log="warn",
            workers=[], env={"HERALD_API_KEYS": API_KEY, "HERALD_COMMENTS_QUIET_PER_HOUR": "1800"},
            api_ready_timeout=90)

    def start_processes(self) -> None:
        """What runs beside the api once it answers: two workers."""
        self.start_worker()
        self.start_worker()

    def start_worker(self, extra: list[str] | None = None) -> harness.Process:
        self.worker_count += 1
        name = f"worker-{self.worker_count}"
        flags = ["--queues", "critical,default", "--concurrency", str(CONCURRENCY),
                 "--visibility-timeout", f"{VISIBILITY_TIMEOUT_S}s", "--sweep-interval", f"{SWEEP_INTERVAL_S}s",
                 *(extra or [])]
        proc = harness.start_worker(self.procs, self.bin_dir, REPO, self.env, flags, name)
        self.worker_flags[name] = list(extra or [])
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[harness.Process]:
        return [w for w in self.workers if w.alive()]

    # ------------------------------------------------------------------- HTTP

    def call(self, method: str, path: str, body: Any = None) -> harness.Response:
        raw = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        return harness.http_request(self.api_url, method, path, raw, headers, timeout=30)

    def post(self, path: str, body: Any, outage: Counter | None = None, once: bool = False) -> dict | None:
        """POST until the api takes it (202/200); 503 and connection errors are retried.

        Returns the answer, or None when `once` and the first try was not taken.
        """
        deadline = time.monotonic() + 120
        while True:
            try:
                resp = self.call("POST", path, body)
                status: int | str = resp.status
            except OSError as e:
                resp, status = None, "error"
                detail = str(e)
            self.sent.requests[status] += 1
            if outage is not None:
                outage[status] += 1
            if status in (200, 202):
                return resp.json()
            if isinstance(status, int) and status >= 500 and status != 503:
                self.sent.server_errors.append(f"POST {path}: {status} {resp.text(300)}")
            elif isinstance(status, int) and status < 500:
                raise harness.CheckFailed(f"POST {path}: unexpected {status}: {resp.text(300)}")
            elif status == "error":
                self.sent.connection_errors.append(f"POST {path}: {detail}")
            if once:
                return None
            if time.monotonic() > deadline:
                raise harness.CheckFailed(f"POST {path}: not accepted within 120 s (last: {status})")
            time.sleep(0.3)

    def setup_people(self) -> None:
        for path, body, ok in [(f"/api/v1/topics/{SHOP}", {}, (200, 201))] + [
            (f"/api/v1/users/{u}", {"topics": [SHOP]}, (200, 201)) for u in MEMBERS
        ] + [(f"/api/v1/users/{w}", {"level": "critical"}, (200, 201)) for w in WRITERS]:
            resp = self.call("PUT", path, body)
            if resp.status not in ok:
                raise harness.CheckFailed(f"PUT {path}: {resp.status} {resp.text()}")
        for user_id, level in MEMBERS.items():
            resp = self.call("PUT", "/preferences", {"user_id": user_id, "level": level})
            if resp.status != 200:
                raise harness.CheckFailed(f"PUT /preferences: {resp.status} {resp.text()}")

    # ---------------------------------------------------------------- sending

    def send_broadcasts(self, start: int, outage: Counter | None = None, once: bool = False) -> bool:
        now = utcnow().isoformat().replace("+00:00", "Z")
        batch = [{"event_type": "broadcast", "event_timestamp": now, "event_id": f"chaos-{self.run_hex}-b{start + i}",
                  "properties": {"title": "chaos", "text": f"message {start + i}"}} for i in range(BATCH)]
        answer = self.post("/api/v1/events", batch, outage, once)
        if answer is None:
            return False
        ids = answer.get("event_ids") or []
        if len(ids) != BATCH or any(i is None for i in ids) or answer.get("rejected"):
            raise harness.CheckFailed(f"batch at {start} not fully accepted: {json.dumps(answer)[:500]}")
        self.sent.broadcast_ids.update(ids)
        return True

    def send_comments(self, step: int) -> None:
        """A burst of comments on two posts of one writer: bundled items, two digests."""
        now = utcnow().isoformat().replace("+00:00", "Z")
        writer = WRITERS[(step // self.comments_every) % len(WRITERS)]
        batch = [{"user_id": writer, "event_type": "comment_created", "event_timestamp": now,
                  "event_id": f"chaos-{self.run_hex}-c{step}-{i}",
                  "properties": {"post_id": f"{writer}-s{step}-p{i % 2}", "author": f"author{i % 3}",
                                 "severity": "critical"}} for i in range(COMMENTS_PER_BURST)]
        answer = self.post("/api/v1/events", batch)
        ids = (answer or {}).get("event_ids") or []
        if len(ids) != len(batch) or any(i is None for i in ids):
            raise harness.CheckFailed(f"comments at step {step} not fully accepted: {json.dumps(answer)[:500]}")
        self.sent.comment_ids.update(ids)

    def send_alert(self, outage: Counter | None = None) -> None:
        label = random.choice(("theft", "suspicious"))
        alert = {"alert_uuid": str(uuid.uuid4()), "location": SHOP, "label": label,
                 "url": "https://media.example/chaos.mp4", "time_spotted": time.time()}
        answer = self.post("/webhooks/alerts", alert, outage)
        self.sent.alert_ids[answer["event_id"]] = label

    def fault_plan(self, steps: int) -> dict[int, Any]:
        """The faults to inject, by the sending step before which each one happens."""
        return {steps * 2 // 10: self.kill_worker, steps * 45 // 100: self.restart_redis,
                steps * 7 // 10: self.restart_postgres}

    def send_all(self) -> None:
        """Sends the events in steps (a batch of broadcasts and a few alerts each),
        injecting the three faults at fixed steps while deliveries are in flight."""
        total = self.args.events
        alerts_total = total // 5
        steps = max(10, (total - alerts_total) // BATCH)
        alerts_per_step = -(-alerts_total // steps)
        faults = self.fault_plan(steps)
        log(f"sending {steps * BATCH} broadcasts in {steps} batches and ~{alerts_total} alerts; faults at steps "
            f"{sorted(faults)}")
        alerts_sent = 0
        for step in range(steps):
            if step in faults:
                faults[step](step)
            self.send_broadcasts(step * BATCH)
            if step % self.comments_every == 0:
                self.send_comments(step)
            for _ in range(min(alerts_per_step, alerts_total - alerts_sent)):
                self.send_alert()
                alerts_sent += 1
            if step % 10 == 9:
                log(f"  step {step + 1}/{steps}: {self.sent.accepted} accepted; sink "
                    f"{harness.http_request(self.sink_url, 'GET', '/received/count').json()}")
            time.sleep(self.args.pace)
        # Top up to the requested count (the alert share is rounded).
        while self.sent.accepted < total:
            self.send_alert()

    # ----------------------------------------------------------------- faults

    def wait_in_flight(self) -> None:
        """Waits until the sink is receiving deliveries, so the fault lands mid-delivery."""
        before = harness.http_request(self.sink_url, "GET", "/received/count").json()["total"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if harness.http_request(self.sink_url, "GET", "/received/count").json()["total"] > before + 5:
                return
        log("  (no delivery seen at the sink for 30 s before the fault)")

    def kill_worker(self, step: int) -> None:
        self.wait_in_flight()
        victim = self.live_workers()[0]
        started = utcnow()
        victim.popen.kill()  # SIGKILL: no drain, no ack
        victim.popen.wait()
        log(f"FAULT at step {step}: SIGKILL {victim.name} (pid {victim.popen.pid}); starting a replacement")
        self.faults.append(Fault(f"SIGKILL {victim.name}", started, utcnow(), workers_running=1))
        self.start_worker(self.worker_flags.get(victim.name))

    def restart_redis(self, step: int) -> None:
        self.wait_in_flight()
        running = len(self.live_workers())
        started = utcnow()
        self.redis.kill()
        log(f"FAULT at step {step}: Redis killed; sending while it is down")
        for i in range(2):
            self.send_broadcasts(10_000_000 + step * 1000 + i * BATCH, outage=self.sent.during_redis_outage)
            self.send_alert(outage=self.sent.during_redis_outage)
        time.sleep(1.0)
        self.redis.start()
        log(f"  Redis back, empty (dbsize {self.redis.dbsize()})")
        self.faults.append(Fault("Redis restarted empty", started, utcnow(), workers_running=running))

    def restart_postgres(self, step: int) -> None:
        self.wait_in_flight()
        running = len(self.live_workers())
        started = utcnow()
        self.pg.crash()
        log(f"FAULT at step {step}: Postgres down (immediate shutdown)")
        # One try per request while it is down: each must be a 503 (not a 500).
        for i in range(3):
            self.send_broadcasts(20_000_000 + step * 1000 + i * BATCH, outage=self.sent.during_postgres_outage,
                                 once=True)
            time.sleep(0.5)
        time.sleep(1.5)
        self.pg.start()
        log("  Postgres back")
        self.faults.append(Fault("Postgres restarted", started, utcnow(), workers_running=running))

    # ---------------------------------------------------------------- settling

    def our_event_ids_sql(self) -> str:
        """A subquery of the ids of every accepted event."""
        ids = sorted(self.sent.broadcast_ids | set(self.sent.alert_ids) | self.sent.comment_ids)
        return "(select unnest(array[" + ",".join(f"'{i}'" for i in ids) + "]::uuid[]))"

    def stuck_counts(self) -> tuple[int, int]:
        # `failed_routing` is final: a dead-lettered route job (counted apart, see verify).
        events = self.pg.scalar("select count(*) from events where status not in ('routed', 'failed_routing')")
        notifications = self.pg.scalar("select count(*) from notifications where status not in "
                                       "('sent', 'failed', 'suppressed')")
        return events, notifications

    def settle(self) -> tuple[int, int]:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last_log = 0.0
        while True:
            try:
                stuck = self.stuck_counts()
            except harness.StackError as e:
                stuck = (-1, -1)
                log(f"  (postgres: {e})")
            if stuck == (0, 0):
                return stuck
            if time.monotonic() > deadline:
                return stuck
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                log(f"  settling: {stuck[0]} events not routed, {stuck[1]} notifications not final; "
                    f"{self.queue_state()}")
            time.sleep(1)

    # ----------------------------------------------------------------- verdict

    def verify(self) -> None:
        self.verify_outages()
        self.verify_outcome()

    def verify_outages(self) -> None:
        """What the api answered while Redis and while Postgres were down."""
        s = self.sent
        self.verify_redis_outage("Redis was down")
        self.check(f"the api answered 503, never 500, while Postgres was down ({dict(s.during_postgres_outage)})",
                   s.during_postgres_outage.get(503, 0) > 0
                   and not any(isinstance(k, int) and k >= 500 and k != 503 for k in s.during_postgres_outage),
                   f"answers during the Postgres outage: {dict(s.during_postgres_outage)}")

    def verify_redis_outage(self, what: str) -> None:
        """Events sent while Redis (or part of it) was down were taken: 202."""
        outage = dict(self.sent.during_redis_outage)
        self.check(f"the api answered 202 while {what} ({outage})",
                   bool(outage) and set(outage) <= {200, 202}, f"answers during the outage: {outage}")

    def verify_outcome(self) -> None:
        """The answers, then the settled pipeline: nothing lost, stuck or duplicated
        beyond the faults' bound; sets `self.figures`."""
        s = self.sent
        self.check("no 5xx other than 503 from the api during the whole run", not s.server_errors,
                   "\n".join(s.server_errors[:20]))
        self.check("the api answered every request (no connection refused or reset)", not s.connection_errors,
                   "\n".join(s.connection_errors[:20]))

        log(f"waiting for the pipeline to settle (up to {SETTLE_TIMEOUT_S} s)")
        settle_started = time.monotonic()
        stuck_events, stuck_notifications = self.settle()
        settle_s = time.monotonic() - settle_started
        pg = self.pg

        ours = self.our_event_ids_sql()
        in_db = pg.scalar(f"select count(*) from events where id in {ours}")
        missing_events = s.accepted - in_db
        not_routed = pg.scalar(f"select count(*) from events where id in {ours} and status <> 'routed'")
        dead_letters = dict((r[0], int(r[1])) for r in pg.psql("select kind, count(*) from dead_letters group by kind"))
        dead_reasons = pg.psql("select kind, left(reason, 200) from dead_letters order by id limit 5")
        self.check(f"every accepted event is in Postgres ({in_db}/{s.accepted})", missing_events == 0,
                   f"{missing_events} accepted events are missing")
        self.check(f"every accepted event is routed (not routed: {not_routed})", not_routed == 0,
                   f"{not_routed} events not `routed` (`received` or `failed_routing`) after {settle_s:.0f} s")
        self.check(f"no job was dead-lettered ({dead_letters or 'none'})", not dead_letters,
                   f"dead letters by kind: {dead_letters}; first reasons: {dead_reasons}")

        # Broadcasts reach everyone (members and writers), alerts the shop's members,
        # comments their writer.
        members = len(MEMBERS)
        short = pg.psql(f"select e.id, e.event_type, count(n.id) from events e left join notifications n "
                        f"on n.event_id = e.id where e.id in {ours} and e.status <> 'failed_routing' "
                        f"group by e.id, e.event_type "
                        f"having count(n.id) <> case e.event_type when 'broadcast' then {members + len(WRITERS)} "
                        f"when 'comment_created' then 1 else {members} end limit 20")
        self.check(f"every routed event has one notification per recipient ({members} members, "
                   f"+{len(WRITERS)} writers for broadcasts, 1 per comment)", not short,
                   f"events with another count: {short}")
        items_open = pg.psql("select status, count(*) from notifications where bundle_id is not null "
                             "and status not in ('sent', 'failed') group by status")
        items_total = pg.scalar("select count(*) from notifications where bundle_id is not null")
        self.check(f"every bundle item ends sent or failed ({items_total} items of "
                   f"{len(s.comment_ids)} comments)", not items_open and items_total == len(s.comment_ids),
                   f"items not final: {items_open}; items {items_total}, comments {len(s.comment_ids)}")
        bundles = dict((r[0], int(r[1])) for r in pg.psql("select status, count(*) from bundles group by status"))
        miscounted = pg.psql("select b.id, b.tours, count(n.id) from bundles b left join notifications n "
                             "on n.bundle_id = b.id group by b.id, b.tours having count(n.id) <> b.tours "
                             "or count(n.id) = 0 limit 10")
        why = ""
        if bundles.get("pending"):
            # A digest past the daily cap waits for tomorrow: the per-writer counts tell
            # a capped digest (ready_at at midnight) from a stuck one.
            digests = pg.psql("select user_id, count(*) filter (where status = 'sent'), count(*) filter "
                              "(where status = 'pending') from bundles group by user_id order by 1")
            pending = pg.psql("select user_id, bundle_key, tours, ready_at from bundles "
                              "where status = 'pending' limit 5")
            why = f"; digests per writer (sent, pending): {digests}; pending: {pending}"
        self.check(f"no bundle is left pending and each counts its items once ({bundles})",
                   bundles.get("pending", 0) == 0 and not miscounted,
                   f"bundles: {bundles}; tours <> items: {miscounted}{why}")

        by_status = dict((r[0], int(r[1])) for r in pg.psql("select status, count(*) from notifications "
                                                            "group by status"))
        total_notifications = sum(by_status.values())
        not_final = sum(n for st, n in by_status.items() if st not in FINAL)
        self.check(f"every notification is in a final state ({by_status})", not_final == 0,
                   f"{not_final} notifications not final after {settle_s:.0f} s: {by_status}")
        failed_reasons = pg.psql("select coalesce(suppression_reason, ''), count(*) from notifications "
                                 "where status = 'failed' group by 1")
        if not_final or stuck_events:
            self.diagnose()

        # The sink's view: 2xx answers per notification.
        records = harness.http_request(self.sink_url, "GET", "/received?status=200", timeout=120).json()
        ok_per_id: dict[str, list[str]] = {}
        for r in records:
            nid = (r.get("body") or {}).get("notification_id")
            if nid:
                ok_per_id.setdefault(nid, []).append(r["received_at"])
        # A bundle's items take its carrier's status; only the carrier reaches the sink.
        sent_ids = {r[0] for r in pg.psql("select n.id from notifications n where n.status = 'sent' and "
                                          "(n.bundle_id is null or exists (select 1 from bundles b where "
                                          "b.id = n.bundle_id and b.notification_id = n.id))")}
        sent_not_at_sink = sent_ids - set(ok_per_id)
        accepted_but_not_sent = {nid for nid in ok_per_id if nid not in sent_ids}
        # What Postgres says of them: a status, or no row at all (a notification row a
        # crash forgot after its delivery, which routing would recreate under a new id).
        found: dict[str, str] = {}
        if accepted_but_not_sent:
            ids = ", ".join(f"'{nid}'" for nid in sorted(accepted_but_not_sent))
            found = dict(pg.psql(f"select id::text, status from notifications where id::text in ({ids})"))
        accepted_but_not_sent_by_status = Counter(found.get(nid, "no row") for nid in accepted_but_not_sent)
        self.check(f"every sent notification was answered 2xx by the sink ({len(sent_ids)} sent)",
                   not sent_not_at_sink, f"{len(sent_not_at_sink)} sent but never 2xx at the sink: "
                   f"{sorted(sent_not_at_sink)[:10]}")

        duplicates = {nid: times for nid, times in ok_per_id.items() if len(times) > 1}
        extra = sum(len(t) - 1 for t in duplicates.values())
        bound = sum(CONCURRENCY * f.workers_running for f in self.faults)
        max_per_notification = max((len(t) for t in ok_per_id.values()), default=0)
        unexplained = []
        for nid, times in duplicates.items():
            first = min(datetime.fromisoformat(t) for t in times)
            if not any(lo <= first <= hi for lo, hi in (f.window() for f in self.faults)):
                unexplained.append((nid, sorted(times)))
        self.check(f"duplicates only for notifications in flight at a fault ({extra} extra deliveries of "
                   f"{len(duplicates)} notifications; bound {bound}; at most {max_per_notification} per "
                   f"notification, limit {1 + len(self.faults)})",
                   not unexplained and extra <= bound and max_per_notification <= 1 + len(self.faults),
                   f"unexplained: {unexplained[:10]}; faults: "
                   + "; ".join(f"{f.name} {f.started.isoformat()}..{f.ended.isoformat()}" for f in self.faults))

        alive = [w.name for w in self.live_workers()]
        self.check(f"the surviving and replacement workers are still running ({', '.join(alive)})",
                   len(alive) == self.expected_workers, f"alive: {alive}")

        lost = missing_events + len(sent_not_at_sink) + sum(
            1 for _ in short)  # accepted work with no trace where it must be
        stuck = stuck_events + stuck_notifications
        self.figures = {
            "accepted": s.accepted,
            "notifications": total_notifications,
            **{st: by_status.get(st, 0) for st in FINAL},
            "delivered": len(ok_per_id),
            "duplicates": extra,
            "duplicate_bound": bound,
            "accepted_by_sink_but_recorded_failed": len(accepted_but_not_sent),
            "accepted_by_sink_but_not_sent_by_status": dict(accepted_but_not_sent_by_status),
            "stuck": stuck,
            "lost": lost,
            "dead_letters": sum(dead_letters.values()),
            "requests": dict(s.requests),
            "settle_s": round(settle_s, 1),
            "failed_reasons": {r[0]: int(r[1]) for r in failed_reasons},
        }

    def redis_clis(self) -> list[list[str]]:
        """A `redis-cli` command line per Redis node holding Herald's keys."""
        return [["redis-cli", "-p", str(self.redis.port)]]

    def queue_state(self) -> str:
        """Stream lengths, the delayed set and the sink's count, for progress lines."""
        try:
            sizes = queue_sizes(self.redis_clis())
            sink = harness.http_request(self.sink_url, "GET", "/received/count").json()
        except (OSError, harness.StackError) as e:
            return f"(queue state unknown: {e})"
        return f"streams critical {sizes['critical']}, default {sizes['default']}, delayed {sizes['delayed']}; " \
               f"sink {sink}"

    def diagnose(self) -> None:
        """What a stuck run looks like from Postgres and Redis, for the report."""
        print("----- diagnosis: notifications not final -----")
        for row in self.pg.psql(
                "select n.id, n.status, n.attempts, n.due_at, n.created_at, "
                "(select string_agg(a.attempt || ':' || coalesce(a.http_status::text, a.error, '?') || '@' "
                "|| to_char(a.started_at, 'HH24:MI:SS.MS'), ' ' order by a.attempt) "
                " from delivery_attempts a where a.notification_id = n.id) "
                "from notifications n where n.status not in ('sent', 'failed', 'suppressed') "
                "order by n.created_at limit 10"):
            print("  " + " | ".join(row))
        print("  by attempts: " + str(self.pg.psql(
            "select attempts, count(*), min(due_at), max(due_at) from notifications "
            "where status not in ('sent', 'failed', 'suppressed') group by 1 order by 1")))
        print("  events not routed: " + str(self.pg.psql(
            "select count(*), min(received_at), max(received_at) from events where status <> 'routed'")))
        for cli in self.redis_clis():
            try:
                keys = queue_keys(cli)
            except harness.StackError as e:
                print(f"  redis {cli[-1]}: {e}")
                continue
            commands = [f"{QUEUE_KEYS[name][1]} {k}" for name in ("critical", "default", "delayed") for k in keys[name]]
            commands += [f"XPENDING {k} workers" for k in keys["default"][:4]]
            commands += [f"XINFO GROUPS {k}" for k in keys["default"][:2]]
            commands += [f"ZRANGE {k} 0 4 WITHSCORES" for k in keys["delayed"][:2]]
            commands += ["KEYS herald:*circuit*", "DBSIZE"]
            for command in commands:
                out = subprocess.run(cli + command.split(), capture_output=True, text=True).stdout.strip()
                print(f"  redis {cli[-1]} {command}: {out[:600]}")
        print(f"  utc now {utcnow().isoformat()}")

    def summary(self) -> str:
        """The figures in one line, after the run."""
        f = self.figures
        return (f"accepted {f['accepted']}, notifications {f['notifications']} (sent {f['sent']}, "
                f"failed {f['failed']}, suppressed {f['suppressed']}), delivered {f['delivered']}, "
                f"duplicates {f['duplicates']} (bound {f['duplicate_bound']}), "
                f"stuck = {f['stuck']}, lost = {f['lost']}")

    @property
    def run_hex(self) -> str:
        return self.args.run_hex

    # ----------------------------------------------------------------- cleanup

    def cleanup(self) -> None:
        self.stop_herald()
        if self.pg:
            self.pg.stop()
        if self.redis:
            self.redis.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_herald(self) -> None:
        """SIGTERM to every process but the databases, SIGKILL after the grace period."""
        others = [p for p in self.procs.started if not p.name.startswith(("postgres", "redis"))]
        for p in others:
            if p.alive():
                with contextlib.suppress(ProcessLookupError):
                    p.popen.send_signal(signal.SIGTERM)
        for p in others:
            try:
                p.popen.wait(timeout=harness.STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()


def arg_parser(doc: str, events: int) -> argparse.ArgumentParser:
    """The options of a suite run by `run_suite`; `events` is the default count."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--release", action="store_true", help="build and run target/release binaries")
    p.add_argument("--bin-dir", type=Path, default=None, help="run the binaries of this directory (no build)")
    p.add_argument("--events", type=int, default=events, help=f"events to send (at least; default {events})")
    p.add_argument("--pace", type=float, default=0.3, help="seconds between sending steps (default 0.3)")
    p.add_argument("--seed", type=int, default=None, help="random seed for alert labels")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return arg_parser(__doc__, 5000).parse_args(argv)


def main(argv: list[str]) -> int:
    return run_suite(Chaos, parse_args(argv))


def run_suite(suite_class: type[Chaos], args: argparse.Namespace) -> int:
    """Runs a suite (the fault suite, or one built on it): start, send, verify, and
    whatever happens clean up; prints the figures and `N passed, M failed`."""
    args.run_hex = harness.new_hex(4)
    random.seed(args.seed)
    harness.trap_interrupts()
    label = suite_class.LABEL
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{args.run_hex}"
    log_dir = harness.target_dir(REPO) / f"{label}-logs" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"herald-{label}-"))
    chaos = suite_class(args, log_dir, root)
    started = time.monotonic()
    interrupted = False
    log(f"{label} run {run_id}: logs in {log_dir}")
    try:
        try:
            chaos.start_stack()
            chaos.setup_people()
        except (harness.StackError, harness.CheckFailed) as e:
            chaos.check("start the stack", False, str(e))
        else:
            try:
                chaos.send_all()
                log(f"sent: {chaos.sent.accepted} events accepted; requests {dict(chaos.sent.requests)}")
            except harness.CheckFailed as e:
                chaos.check("send the events", False, str(e))
            chaos.verify()
    except KeyboardInterrupt as e:
        interrupted = True
        chaos.check("run interrupted", False, f"by {str(e) or 'SIGINT'}; cleaning up")
    except Exception as e:  # noqa: BLE001 - a crash of the driver is a failed run
        chaos.check("driver crashed", False, f"{type(e).__name__}: {e}")
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if chaos.results.failed:
            chaos.procs.print_logs(30)
        chaos.cleanup()
    figures = getattr(chaos, "figures", None)
    if figures:
        print("figures: " + json.dumps(figures))
        print(chaos.summary())
    print(f"wall time {time.monotonic() - started:.1f}s; logs in {log_dir}")
    if chaos.results.failures:
        print("failed: " + "; ".join(chaos.results.failures))
    print(chaos.results.closing_line(), flush=True)
    if interrupted:
        return 130
    return 0 if chaos.results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
