"""The e2e harness: throwaway infrastructure, Herald's processes, HTTP and assertions.

Everything a scenario needs lives on one `Stack` object:

* `stack.api(method, path, body=None, expect=200)` calls the API with the test key
  and asserts the status;
* `stack.sink_received(which)` lists what one of the sinks recorded;
* `stack.sink_url(which, path)` is a URL on a sink (for people's `webhook_url`);
* `with stack.check("what is proven"):` runs one named check and reports
  `ok   <label>: what is proven` or `FAIL <label>: ...`.

Every driver (e2e, e2e-ui, chaos, bench, schemathesis) sets up through this file:
`new_run` names the run's database, Redis prefix and log directory, `Run.start_stack`
builds or locates the binaries, checks Postgres and Redis and creates the database,
and `launch` (the one function that starts Herald) starts the sinks, the api and the
workers a `StackSpec` asks for; `Run.cleanup` undoes it all. The fault suite, on a
Postgres and Redis of its own, calls `prepare_binaries` and `launch` directly.

Standard library only, so `make e2e` needs nothing but Python 3.11, psql and
redis-cli next to the Rust toolchain.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

API_KEY = "e2e-key"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

# The sinks every run starts: a healthy provider and two receivers forced to fail,
# one retryably (500) and one permanently (400).
SINKS: dict[str, list[str]] = {
    "healthy": [],
    "fail500": ["--status", "500"],
    "fail400": ["--status", "400"],
}

STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
HTTP_TIMEOUT_S = 30.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # herald-api/-worker colour their logs even in files


# --------------------------------------------------------------------------- errors


class CheckFailed(AssertionError):
    """An assertion about Herald's behaviour did not hold."""


class StackError(RuntimeError):
    """The test infrastructure itself could not be set up (not a product failure)."""


class ScenarioAborted(Exception):
    """A check that later ones depend on failed, so the scenario stops."""


# ----------------------------------------------------------------------- assertions


def check(condition: Any, message: str) -> None:
    """Fail the current check with `message` unless `condition` holds.

    Used instead of `assert`, which `python -O` would silently strip.
    """
    if not condition:
        raise CheckFailed(message)


def check_eq(actual: Any, expected: Any, what: str) -> None:
    """Fail unless `actual == expected`, showing both."""
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def check_in(needle: str, haystack: Any, what: str) -> None:
    """Fail unless the text `needle` occurs in `haystack` (a string, or None)."""
    if not isinstance(haystack, str) or needle not in haystack:
        raise CheckFailed(f"{what}: expected it to mention {needle!r}, got {haystack!r}")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` every 0.2 s until it returns something truthy; return that.

    Herald is asynchronous (api → Redis → worker → sink), so outcomes are awaited,
    never slept for. On timeout the failure says what was awaited and the predicate's
    last value or error, which is usually enough to see what went wrong. Connection
    errors are retried; a CheckFailed raised by the predicate fails at once (it means
    the outcome is already wrong, e.g. `sent` where `failed` was awaited).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException) as e:
            last = f"error: {e}"
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")
        time.sleep(POLL_INTERVAL_S)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as Herald and the sink write them (Z, up to ns)."""
    return datetime.fromisoformat(text)


def new_hex(n_bytes: int = 6) -> str:
    return secrets.token_hex(n_bytes)


# ----------------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def text(self, limit: int = 2000) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def http_request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> Response:
    """One HTTP request that returns any status instead of raising on 4xx/5xx.

    Built on http.client rather than urllib so a server that answers early and closes
    (a 413 for an oversized body, sent before the body is read) still yields its
    answer instead of a broken-pipe error.
    """
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        all_headers = {"Content-Length": str(len(body or b""))} | (headers or {})
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server already answered; read that answer below
        resp = conn.getresponse()
        return Response(resp.status, resp.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------ processes


def _die_with_parent() -> None:
    """Child side of Popen: get SIGTERM if the harness itself is killed (Linux).

    `finally` blocks cover Ctrl-C and failures; this covers `kill -9` of the harness,
    so no api, worker or sink outlives it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """The process's output so far, without colour codes."""
        return ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace"))

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_text()
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process the harness started, so all of them can be stopped at the end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Process:
        """Start `argv` with its output in `<log_dir>/<name>.log`.

        Each child gets its own session so a terminal Ctrl-C reaches only the
        harness, which then stops the children in order and cleans up.
        """
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        proc = Process(name, popen, log_path)
        self.started.append(proc)
        return proc

    def stop_all(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM everything (workers drain in-flight jobs), SIGKILL what is left after `grace`."""
        for proc in self.started:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.started:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {proc.name} ignored SIGTERM for {grace:g}s: killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait()

    def print_logs(self, lines: int = 40) -> None:
        for proc in self.started:
            print(f"----- last {lines} lines of {proc.log_path} -----")
            print(proc.tail(lines))
        if self.started:
            print("-----")


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------- Postgres and Redis


def run_command(argv: list[str], timeout: float = 30.0, env: dict[str, str] | None = None,
                stdin: str | None = None) -> str:
    """Run a client tool (with `stdin` as its input); raise StackError with its stderr when it fails."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError as e:
        raise StackError(f"{argv[0]} is not installed: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise StackError(f"{' '.join(argv[:2])} ... took over {timeout:g}s") from e
    if done.returncode != 0:
        raise StackError(f"{' '.join(argv[:2])} ... failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


class Postgres:
    """A throwaway database on the server at `admin_url`, dropped by `drop()`."""

    def __init__(self, admin_url: str, name: str):
        self.admin_url = admin_url
        self.name = name
        parts = urllib.parse.urlsplit(admin_url)
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        self.created = False

    def _psql(self, sql: str) -> str:
        env = os.environ | {"PGCONNECT_TIMEOUT": "5"}
        return run_command(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", self.admin_url, "-c", sql], env=env)

    def check_answers(self) -> None:
        try:
            self._psql("select 1")
        except StackError as e:
            raise StackError(f"Postgres at {self.admin_url} does not answer (set HERALD_TEST_DATABASE_URL): {e}") from e

    def create(self) -> None:
        self._psql(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


CLUSTER_SCHEME = "redis+cluster://"


def redis_cluster_seeds(url: str) -> list[str] | None:
    """The seed nodes of a `redis+cluster://[user:password@]host:port,host:port` URL (as
    REDIS_URL names a Redis Cluster) as `redis://` URLs, the credentials in each; None
    for a single Redis's `redis://` URL."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    auth, _, hosts = url[len(CLUSTER_SCHEME):].rpartition("@")
    seeds = [f"redis://{auth + '@' if auth else ''}{h.strip()}" for h in hosts.rstrip("/").split(",") if h.strip()]
    if not seeds or "/" in hosts.rstrip("/"):
        raise StackError(f"{url}: expected redis+cluster://host:port,host:port,...")
    return seeds


@dataclass
class ClusterNode:
    """One line of `CLUSTER NODES`."""

    node_id: str
    host: str
    port: int
    flags: list[str]
    master_id: str  # "-" for a master
    serves_slots: bool

    @property
    def live_master(self) -> bool:
        return "master" in self.flags and not {"fail", "fail?", "noaddr"} & set(self.flags)


def redis_cluster_nodes(node_url: str) -> list[ClusterNode]:
    """The cluster's nodes as the node at `node_url` (redis://) sees them."""
    nodes = []
    for line in run_command(["redis-cli", "-u", node_url, "CLUSTER", "NODES"], timeout=10).splitlines():
        # <id> <ip:port@bus> <flags> <master id> <ping> <pong> <epoch> <link> <slot>...
        fields = line.split()
        if len(fields) < 8:
            continue
        node_host, _, node_port = fields[1].split("@", 1)[0].rpartition(":")
        nodes.append(ClusterNode(fields[0], node_host, int(node_port), fields[2].split(","), fields[3],
                                 len(fields) > 8))
    return nodes


def redis_cluster_masters(seeds: list[str]) -> list[str]:
    """The masters serving slots now, as `redis://` URLs with the seeds' credentials, as
    the first seed that answers sees them; a failed-over master is replaced by its
    promoted replica."""
    errors = []
    for seed in seeds:
        try:
            nodes = redis_cluster_nodes(seed)
        except StackError as e:
            errors.append(str(e))
            continue
        auth = seed[len("redis://"):].rpartition("@")[0]
        masters = sorted((n.port, n.host) for n in nodes if n.live_master and n.serves_slots)
        if masters:
            return [f"redis://{auth + '@' if auth else ''}{h}:{p}" for p, h in masters]
        errors.append(f"{seed} knows no master serving slots")
    raise StackError("no seed of the Redis Cluster answered CLUSTER NODES: " + "; ".join(errors))


def resp_commands(commands: list[list[str]]) -> str:
    """Commands in the Redis protocol, for `redis-cli --pipe` (any bytes in a key survive)."""
    out = []
    for argv in commands:
        out.append(f"*{len(argv)}\r\n")
        for arg in argv:
            out.append(f"${len(arg.encode())}\r\n{arg}\r\n")
    return "".join(out)


class Redis:
    """The Redis server at `url`, or the Redis Cluster of a `redis+cluster://` URL, of
    which this run owns the keys under `prefix`."""

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = prefix
        self.seeds = redis_cluster_seeds(url)

    def node_clis(self) -> list[list[str]]:
        """A `redis-cli` command line per node holding keys: the server, or each master."""
        if self.seeds is None:
            return [["redis-cli", "-u", self.url]]
        return [["redis-cli", "--no-auth-warning", "-u", u] for u in redis_cluster_masters(self.seeds)]

    def check_answers(self) -> None:
        hint = "(set HERALD_TEST_REDIS_URL)"
        if self.seeds is None:
            try:
                reply = run_command(["redis-cli", "-u", self.url, "PING"]).strip()
            except StackError as e:
                raise StackError(f"Redis at {self.url} does not answer {hint}: {e}") from e
            if reply != "PONG":
                raise StackError(f"Redis at {self.url} answered PING with {reply!r}")
            return
        for cli in self.node_clis():
            info = run_command([*cli, "CLUSTER", "INFO"])
            if "cluster_state:ok" not in info:
                raise StackError(f"Redis Cluster {self.url}: {cli[-1]} is not ok {hint}: {info[:200]}")

    def delete_prefixed_keys(self, chunk: int = 500) -> int:
        """Delete every key under this run's prefix; returns how many there were.

        One DEL per key through `--pipe`: in a cluster, one DEL of keys in several
        slots is refused (CROSSSLOT), and each master holds only its own slots' keys."""
        total = 0
        for cli in self.node_clis():
            keys = [k for k in run_command([*cli, "--scan", "--pattern", self.prefix + "*"]).splitlines() if k]
            for i in range(0, len(keys), chunk):
                run_command([*cli, "--pipe"], stdin=resp_commands([["DEL", k] for k in keys[i : i + chunk]]))
            total += len(keys)
        return total


# ---------------------------------------------------------------------------- stack


@dataclass
class Results:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, ok: bool, name: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}", flush=True)
            for line in detail.rstrip().splitlines():
                print(f"     {line}", flush=True)

    def closing_line(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


@dataclass
class Stack:
    """A running Herald (api + one worker) with its sinks, and the run's results."""

    repo: Path
    api_url: str
    sink_ports: dict[str, int]
    results: Results
    processes: dict[str, Process] = field(default_factory=dict)
    label: str = "e2e"
    # What started it, so a driver can start more processes on the same stack.
    env: dict[str, str] = field(default_factory=dict)
    bin_dir: Path | None = None

    # ----------------------------------------------------------------- checks

    @contextlib.contextmanager
    def check(self, name: str, fatal: bool = False) -> Iterator[None]:
        """Run the block as one named check: `ok` if it completes, `FAIL` if it raises.

        Any exception fails only this check, so one broken behaviour does not hide
        the others. `fatal=True` is for setup the rest of the scenario relies on: its
        failure stops the scenario instead of producing a cascade of failures.
        """
        full_name = f"{self.label}: {name}"
        try:
            yield
        except CheckFailed as e:
            self.results.record(False, full_name, str(e))
            if fatal:
                raise ScenarioAborted(full_name) from e
        except Exception as e:  # noqa: BLE001 - a crash in a check is a failed check
            self.results.record(False, full_name, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
            if fatal:
                raise ScenarioAborted(full_name) from e
        else:
            self.results.record(True, full_name)

    # ------------------------------------------------------------------- HTTP

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        expect: int | tuple[int, ...] = 200,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Call the API and assert the status; return the parsed JSON body (or None).

        `body` is sent as JSON, except bytes or str which are sent verbatim (to test
        malformed or oversized bodies). `auth=False` omits the Authorization header.
        """
        if body is None:
            raw = None
        elif isinstance(body, (bytes, str)):
            raw = body.encode() if isinstance(body, str) else body
        else:
            raw = json.dumps(body).encode()
        all_headers = {"Accept": "application/json"}
        if raw is not None:
            all_headers["Content-Type"] = "application/json"
        if auth:
            all_headers["Authorization"] = f"Bearer {API_KEY}"
        all_headers |= headers or {}
        resp = http_request(self.api_url, method, path, raw, all_headers)
        allowed = expect if isinstance(expect, tuple) else (expect,)
        if resp.status not in allowed:
            want = " or ".join(map(str, allowed))
            raise CheckFailed(f"{method} {path}: expected HTTP {want}, got {resp.status}: {resp.text()}")
        return resp.json()

    def log_text(self, name: str) -> str:
        """What the process `name` (api, worker, sink-healthy, ...) has logged so far."""
        return self.processes[name].log_text()

    def sink_base(self, which: str) -> str:
        return f"http://127.0.0.1:{self.sink_ports[which]}"

    def sink_url(self, which: str, path: str = "/") -> str:
        """A URL on a sink, e.g. for a person's `webhook_url`."""
        return self.sink_base(which) + path

    def sink_received(self, which: str, path: str | None = None) -> list[dict]:
        """Every delivery the sink `which` recorded (GET /received), oldest first."""
        query = "/received" + (f"?path={urllib.parse.quote(path)}" if path else "")
        resp = http_request(self.sink_base(which), "GET", query)
        if resp.status != 200:
            raise CheckFailed(f"GET {query} on sink {which}: HTTP {resp.status}: {resp.text()}")
        return resp.json()


# ------------------------------------------------------------------------- startup

BINARIES = ("herald-api", "herald-worker", "herald-sim")


def target_dir(repo: Path) -> Path:
    """Cargo's target directory (CARGO_TARGET_DIR when set, as cargo itself does)."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return Path(configured) if configured else repo / "target"


def build_binaries(repo: Path, release: bool) -> None:
    """One `cargo build` for the three binaries; cargo's own output shows progress.

    Cargo waits by itself when another build holds the target dir's lock.
    """
    argv = ["cargo", "build"] + [arg for b in BINARIES for arg in ("-p", b)] + (["--release"] if release else [])
    print(f"building: {' '.join(argv)}", flush=True)
    if subprocess.run(argv, cwd=repo).returncode != 0:
        raise StackError("cargo build failed (see its output above)")


def find_binaries(repo: Path, release: bool) -> Path:
    bin_dir = target_dir(repo) / ("release" if release else "debug")
    return checked_bin_dir(bin_dir)


def checked_bin_dir(bin_dir: Path) -> Path:
    missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
    if missing:
        raise StackError(f"missing {', '.join(missing)} in {bin_dir}: build first or drop --no-build")
    return bin_dir


def prepare_binaries(repo: Path, build: bool, release: bool, bin_dir: Path | None = None) -> Path:
    """The directory of the binaries a run uses: `bin_dir` when given, else cargo's,
    built first when `build`."""
    if bin_dir is not None:
        return checked_bin_dir(bin_dir.resolve())
    if build:
        build_binaries(repo, release)
    return snapshot_binaries(find_binaries(repo, release))


def snapshot_binaries(bin_dir: Path) -> Path:
    """A private copy of the binaries, removed at exit.

    A target directory may be shared (CARGO_TARGET_DIR) with another checkout whose
    build replaces the binaries while this run still starts processes from them."""
    snapshot = Path(tempfile.mkdtemp(prefix="herald-bin-"))
    atexit.register(shutil.rmtree, snapshot, ignore_errors=True)
    for name in BINARIES:
        shutil.copy2(bin_dir / name, snapshot / name)
    return snapshot


def wait_http_ok(proc: Process, base_url: str, path: str, timeout: float) -> None:
    """Wait for `GET path` to answer 200, failing at once if the process died."""

    def ready() -> bool:
        if not proc.alive():
            raise StackError(f"{proc.name} exited with code {proc.popen.returncode} (log: {proc.log_path})")
        try:
            return http_request(base_url, "GET", path, timeout=2).status == 200
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise StackError(f"{proc.name} did not answer 200 on {base_url}{path} within {timeout:g}s")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class StackSpec:
    """What `launch` starts. The default is the e2e stack; the fault suite and the
    bench ask for other sinks, workers and timeouts through the same function."""

    # Sinks by name (process `sink-<name>`), each with its extra `herald-sim sink` flags.
    sinks: dict[str, list[str]] = field(default_factory=lambda: dict(SINKS))
    # The sink whose URL becomes HERALD_PROVIDER_URL (the first sink when None).
    provider: str | None = "healthy"
    sink_log: str = "info"
    # One `herald-worker` per entry, with these flags; [] starts none (start_worker later).
    workers: list[list[str]] = field(default_factory=lambda: [["--queues", "critical,default", "--concurrency", "16"]])
    # Added to the environment of the api and the workers.
    env: dict[str, str] = field(default_factory=lambda: {
        # The bank-link reminder rule waits an hour in production; 3 s here.
        "HERALD_BANK_LINK_REMINDER_DELAY": "3s",
    })
    api_ready_timeout: float = 60.0


def start_sink(procs: Processes, bin_dir: Path, repo: Path, name: str, flags: list[str],
               log_level: str = "info", smtp_port: int | None = None) -> tuple[Process, str]:
    """Starts `herald-sim sink` on a free port (and its SMTP receiver on `smtp_port`, a
    free one when None); returns it and its base URL once it answers."""
    port = free_port()
    smtp_port = smtp_port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start(name, [str(bin_dir / "herald-sim"), "sink", "--port", str(port),
                              "--smtp-port", str(smtp_port), *flags],
                       os.environ | {"RUST_LOG": log_level}, repo)
    wait_http_ok(proc, url, "/healthz", timeout=30)
    return proc, url


def start_worker(procs: Processes, bin_dir: Path, repo: Path, env: dict[str, str], flags: list[str],
                 name: str = "worker") -> Process:
    """Starts one `herald-worker` with `flags` on the stack described by `env`."""
    return procs.start(name, [str(bin_dir / "herald-worker"), *flags], env, repo)


def launch(
    repo: Path,
    bin_dir: Path,
    procs: Processes,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    results: Results,
    spec: StackSpec | None = None,
) -> Stack:
    """The one function that starts Herald for a driver: the sinks, then the api (which
    applies migrations), then the workers of `spec` (the e2e stack by default)."""
    spec = spec or StackSpec()
    sink_ports = {}
    sink_urls = {}
    smtp_ports = {}
    for which, extra in spec.sinks.items():
        smtp_ports[which] = free_port()
        _, sink_urls[which] = start_sink(procs, bin_dir, repo, f"sink-{which}", extra, spec.sink_log,
                                         smtp_ports[which])
        sink_ports[which] = int(sink_urls[which].rsplit(":", 1)[1])
    provider = spec.provider if spec.provider in sink_urls else next(iter(sink_urls), None)
    # The shipped `email` channel is SMTP: mails go to the provider sink's SMTP receiver.
    provider_env = ({"HERALD_PROVIDER_URL": sink_urls[provider],
                     "HERALD_SMTP_URL": f"smtp://127.0.0.1:{smtp_ports[provider]}"} if provider else {})

    api_port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HERALD_REDIS_PREFIX": redis_prefix,
        "HERALD_BIND": f"127.0.0.1:{api_port}",
        "HERALD_API_KEYS": API_KEY,
        "HERALD_ALLOWED_TARGETS": "127.0.0.0/8",
        "HERALD_CONFIG_DIR": str(repo / "config"),
        "RUST_LOG": "info",
    } | provider_env | spec.env
    api_url = f"http://127.0.0.1:{api_port}"
    api = procs.start("api", [str(bin_dir / "herald-api")], env, repo)
    wait_http_ok(api, api_url, "/healthz/ready", timeout=spec.api_ready_timeout)

    several = len(spec.workers) > 1
    workers = [start_worker(procs, bin_dir, repo, env, flags, f"worker-{i}" if several else "worker")
               for i, flags in enumerate(spec.workers, 1)]
    if workers:
        time.sleep(0.5)
    for worker in workers:
        if not worker.alive():
            raise StackError(f"{worker.name} exited with code {worker.popen.returncode} (log: {worker.log_path})")
    print(f"api {api_url}, sinks " + ", ".join(f"{w}=:{p}" for w, p in sink_ports.items()), flush=True)
    return Stack(repo=repo, api_url=api_url, sink_ports=sink_ports, results=results,
                 processes={p.name: p for p in procs.started}, env=env, bin_dir=bin_dir)


# ------------------------------------------------------------- helpers for scenarios


def process_environ(proc: Process) -> dict[str, str]:
    """The environment a running process was started with (Linux: /proc/<pid>/environ).

    Lets a scenario start extra processes against the same database and Redis as the
    shared stack (e.g. a second api and worker on a Redis prefix of their own).
    """
    raw = Path(f"/proc/{proc.popen.pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


# ------------------------------------------------------------------- one run's setup

def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def trap_interrupts() -> None:
    """SIGTERM and SIGHUP behave like Ctrl-C (also when started in the background), so
    every runner's `finally` stops its processes and drops what it created."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


@dataclass
class Run:
    """What one run of a driver owns: its id, log directory, private database and
    Redis prefix (named `<name>_<hex>`), and the processes it starts."""
    run_id: str
    log_dir: Path
    db: "Postgres"
    redis: "Redis"
    procs: "Processes"

    def start_stack(self, repo: Path, results: "Results", build: bool, release: bool,
                    spec: "StackSpec | None" = None, bin_dir: Path | None = None) -> "Stack":
        """Builds (unless told not to, or given `bin_dir`), checks that Postgres and
        Redis answer, creates the run's database and launches the stack of `spec`
        (sinks, api and worker of the e2e suite by default) on it."""
        bin_dir = prepare_binaries(repo, build, release, bin_dir)
        self.db.check_answers()
        self.redis.check_answers()
        self.db.create()
        print(f"database {self.db.name}, redis prefix {self.redis.prefix}", flush=True)
        return launch(repo, bin_dir, self.procs, self.db.url, self.redis.url, self.redis.prefix, results, spec)

    def cleanup(self) -> None:
        """Stops the processes first (so nothing writes any more), then drops the data.

        Each step runs even if an earlier one fails; problems are reported, not raised,
        so they never mask the results.
        """
        steps = [
            ("stop processes", self.procs.stop_all),
            (f"drop database {self.db.name}", self.db.drop),
            (f"delete redis keys {self.redis.prefix}*", self.redis.delete_prefixed_keys),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: could not {what}: {e}", file=sys.stderr, flush=True)


def new_run(repo: Path, logs: str, name: str) -> Run:
    """Sets up a run whose logs go to target/<logs>/<run id>/."""
    run_hex = new_hex()
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{run_hex}"
    log_dir = target_dir(repo) / logs / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    db = Postgres(os.environ.get("HERALD_TEST_DATABASE_URL", DEFAULT_DATABASE_URL), f"{name}_{run_hex}")
    redis = Redis(os.environ.get("HERALD_TEST_REDIS_URL", DEFAULT_REDIS_URL), f"{name}_{run_hex}:")
    return Run(run_id, log_dir, db, redis, Processes(log_dir))
