#!/usr/bin/env python3
"""`make soak`: Herald on an empty database and on one holding weeks of history, side
by side under the same steady load, while retention drops the oldest day.

    python3 bench/soak.py [--no-build] [--days 30] [--events-per-day 700000]
                          [--rate 300] [--duration 600] [--window 60]

Steps (release build; each database and Redis prefix private to the run, like `make bench`):
1. Two stacks start, each an api, a sink and a worker on a database of its own: the
   *empty* one and the *loaded* one.
2. The loaded stack's database is preloaded in SQL: `--days` + 1 days before today,
   `--events-per-day` events a day, each with a sent notification and its attempt,
   spread over the days' partitions (with triggers off: the live streams' change log
   gets none of them). The extra, oldest day lies past the retention
   (`HERALD_RETENTION`, 30d by default): it is what gets dropped. Both databases are
   analysed.
3. The same steady load on each stack in turn, for `--duration` seconds each, in
   alternating windows of `--window` seconds (empty, loaded, loaded, empty, ...):
   `herald-sim load e2e` at `--rate` events/s (each event ingested by the api, routed,
   delivered to the sink). Throughput and event→webhook latency per window. The two
   stacks alternate rather than run one after the other because this shared box's own
   speed drifts by a third over minutes: measured one after the other, the comparison
   was the drift's. Half-way through, a second worker joins each stack: the loaded
   one's partition maintenance runs retention at once, which drops the oldest day
   while the load runs (the empty one's has nothing to drop; it is there so that the
   stacks still differ only in their history). The first workers run with a retention
   of ten years, so that their own maintenance, every 15 minutes, cannot drop that day
   during a long preload.
4. The report: per phase, the median window's delivered rate and latency (and the
   loaded/empty ratio; the target is >= 80 %), the database size before and after
   retention, the partitions dropped, and the api's and the worker's RSS at the start
   and at the end of each phase (target: no growth beyond 20 %).
5. `/metrics` (api and worker, with the key `HERALD_METRICS_KEY`, set to a key of the
   run's own unless given): scraped every 2 s during the loaded stack's windows, then
   `--scrapes` times each with the load paused; p50 and max ms of each (the issue's target: under
   50 ms with millions of notifications stored). When the server has loaded
   pg_stat_statements (`shared_preload_libraries`), the report also lists the SQL run
   during the paused scrapes (a scrape must run none), and the loaded phase's costliest
   statements next to their empty-phase figures (all of them in `statements.json` in the
   run's log directory). The shared dev Postgres does not load it; a private one does:

       initdb -D DIR && echo "shared_preload_libraries = 'pg_stat_statements'" >> DIR/postgresql.conf
       pg_ctl -D DIR -o "-p 5433 -c max_connections=300" start
       HERALD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres python3 bench/soak.py ...

The two stacks and their second workers open up to about 200 connections at once (a
worker's pools hold up to 41, an api's 16): the server needs `max_connections` of at
least `MIN_CONNECTIONS` (250; Debian's default is 100), and the soak checks that first.

`--keep-database` leaves the preloaded database in place to study (drop it yourself);
`--bin-dir DIR` runs another build (before/after comparisons).

The default scale is the issue's: 31 × 700,000 ≈ 21.7 million events with their
notifications and attempts (about 65 million rows; tens of GB of disk, and the
preload alone takes a while on 2 cores: it prints its progress per day). `--events-per-day 20000`
runs the same steps in a few minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import importlib.util

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "e2e"))

import harness  # noqa: E402

# bench/run.py (`make bench`): its stack, psql and load generator. Loaded by path, as
# e2e/ (on the path for the harness) has a run.py of its own.
_spec = importlib.util.spec_from_file_location("bench_run", BENCH_DIR / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

REPO = bench.REPO
PEOPLE = 10_000
# The first worker's retention: longer than any preload, so only the second one drops.
KEEP_ALL = "3650d"
# Two stacks of an api and two workers each: their pools' sizes added up (196), with
# room for psql and the load generator.
MIN_CONNECTIONS = 250


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    p.add_argument("--days", type=int, default=30, help="days of history kept by the retention (default 30)")
    p.add_argument("--events-per-day", type=int, default=700_000, help="preloaded events a day (default 700000)")
    p.add_argument("--rate", type=float, default=300.0, help="events/s offered during the load (default 300)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load per phase (default 600)")
    p.add_argument("--window", type=float, default=60.0, help="seconds per measured window (default 60)")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    p.add_argument("--bin-dir", type=Path, help="take herald-api/worker/sim from DIR (implies --no-build)")
    p.add_argument("--keep-database", action="store_true",
                   help="leave the run's database in place at the end (to study it; drop it yourself)")
    p.add_argument("--statements", type=int, default=12,
                   help="with pg_stat_statements loaded: show this many statements of the loaded phase, "
                        "by total time, next to the same statements' empty-phase figures (default 12)")
    p.add_argument("--scrapes", type=int, default=20,
                   help="/metrics scrapes of the api and the worker after the loaded phase (default 20)")
    return p.parse_args(argv)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def database_mb(url: str) -> float:
    return float(bench.psql(url, "SELECT pg_database_size(current_database())")) / 1e6


def long_psql(url: str, sql: str) -> str:
    """One statement that may take minutes (a day's preload, ANALYZE of millions of
    rows); bench.psql gives up after 30 s."""
    return harness.run_command(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                               timeout=3600, env=os.environ | {"PGCONNECT_TIMEOUT": "5"})


def preload(url: str, days: int, per_day: int) -> float:
    """Days of history before today, one statement per table and day; returns seconds."""
    started = time.monotonic()
    long_psql(url, f"""
        INSERT INTO users (user_id, timezone, traits, level, channels)
        SELECT 'soak-' || i, 'UTC', '{{}}', 'standard', '["webhook"]'
        FROM generate_series(1, {PEOPLE}) AS i ON CONFLICT DO NOTHING""")
    for table in ("events", "notifications", "delivery_attempts", "person_changes"):
        long_psql(url, f"SELECT count(*) FROM herald_ensure_partitions('{table}', "
                        f"date_trunc('day', now()) - interval '{days + 1} days', now(), interval '1 day')")

    def one_day(back: int) -> None:
        day = f"date_trunc('day', now()) - interval '{back} days'"
        # One statement per day: the events, their notifications (sent) and attempts.
        # Triggers off (session_replication_role): the change log of a person's live
        # stream is not history anyone reads back, and its per-person counters would
        # make the preload five times slower.
        long_psql(url, f"""
            SET session_replication_role = replica;
            WITH e AS (
              INSERT INTO events (id, event_type, user_id, event_timestamp, received_at, properties,
                                  user_traits, status, routed_at)
              SELECT gen_random_uuid(), 'soak.event', 'soak-' || (1 + i % {PEOPLE}),
                     {day} + (i * 86400.0 / {per_day}) * interval '1 second',
                     {day} + (i * 86400.0 / {per_day}) * interval '1 second',
                     jsonb_build_object('n', i), '{{}}', 'routed',
                     {day} + (i * 86400.0 / {per_day} + 0.01) * interval '1 second'
              FROM generate_series(0, {per_day} - 1) AS i
              RETURNING id, user_id, received_at),
            n AS (
              INSERT INTO notifications (id, event_id, user_id, notification_type, channel, status,
                                         severity, private, subject, text, created_at, due_at,
                                         sent_at, attempts)
              SELECT gen_random_uuid(), e.id, e.user_id, 'SOAK', 'webhook', 'sent', 'standard', false,
                     'Soak', 'A preloaded notification', e.received_at, e.received_at,
                     e.received_at + interval '20 milliseconds', 1
              FROM e RETURNING id, sent_at)
            INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms,
                                           http_status, outcome)
            SELECT n.id, 1, n.sent_at - interval '10 milliseconds', 10, 200, 'success' FROM n""")
        print(f"  preloaded day -{back}: {per_day:,} events ({time.monotonic() - started:.0f} s so far)",
              flush=True)

    # Two days at a time: one statement keeps one core busy, and the box has two.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one_day, range(days + 1, 0, -1)))
    long_psql(url, "ANALYZE")
    return time.monotonic() - started


# --------------------------------------------------------------- pg_stat_statements

STATEMENTS_SQL = """
    SELECT coalesce(json_agg(json_build_object(
             'id', s.queryid::text, 'calls', s.calls, 'rows', s.rows,
             'exec_ms', s.total_exec_time, 'plan_ms', s.total_plan_time, 'plans', s.plans,
             'hit', s.shared_blks_hit, 'read', s.shared_blks_read,
             'query', left(regexp_replace(s.query, '\\s+', ' ', 'g'), 2000))), '[]')
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = current_database()"""


def statements(url: str) -> dict[str, dict] | None:
    """Every statement's cumulative figures in the run's database (pg_stat_statements),
    by query id; None when the server has not loaded the extension."""
    try:
        bench.psql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = json.loads(bench.psql(url, STATEMENTS_SQL) or "[]")
    except harness.StackError:
        return None
    return {r["id"]: r for r in rows}


def statements_delta(before: dict[str, dict] | None, after: dict[str, dict] | None) -> list[dict]:
    """What each statement did between two snapshots (those that ran at all)."""
    if before is None or after is None:
        return []
    out = []
    for qid, a in after.items():
        b = before.get(qid, {})
        d = {k: a[k] - b.get(k, 0) for k in ("calls", "rows", "exec_ms", "plan_ms", "plans", "hit", "read")}
        if d["calls"] > 0:
            out.append(d | {"id": qid, "query": a["query"]})
    return sorted(out, key=lambda d: d["exec_ms"] + d["plan_ms"], reverse=True)


def print_statements(loaded: list[dict], empty: list[dict], top: int) -> None:
    """The loaded phase's costliest statements, each with its empty-phase figures."""
    if not loaded:
        print("statements: pg_stat_statements is not loaded on this server (shared_preload_libraries); "
              "nothing to show")
        return
    # The two phases ran on two databases, whose statements have query ids of their
    # own (the ids hash the tables' oids): match them by their text.
    by_query = {d["query"]: d for d in empty}
    print("\nstatements by total time on the loaded stack (mean ms = (exec + plan) / calls; "
          "blocks = shared buffers hit + read per call), empty stack in brackets:")
    for d in loaded[:top]:
        e = by_query.get(d["query"])

        def per(x: dict | None, key: str) -> str:
            return f"{(x[key] if key != 'ms' else x['exec_ms'] + x['plan_ms']) / x['calls']:.2f}" if x else "-"

        total_s = (d["exec_ms"] + d["plan_ms"]) / 1000
        print(f"  {total_s:8.1f} s  calls {d['calls']:>7} [{e['calls'] if e else '-':>7}]  "
              f"mean {per(d, 'ms'):>8} [{per(e, 'ms'):>7}] ms  plan {per(d, 'plan_ms')} [{per(e, 'plan_ms')}] ms  "
              f"rows {per(d, 'rows')} [{per(e, 'rows')}]  blocks {(d['hit'] + d['read']) / d['calls']:.0f} "
              f"[{(e['hit'] + e['read']) / e['calls'] if e else 0:.0f}]")
        print(f"            {d['query'][:220]}")


# ------------------------------------------------------------------------ /metrics

METRICS_KEY = "soak-metrics-key"


def scrape_ms(base_url: str) -> float:
    """One `GET /metrics` with the key; its wall time in ms."""
    started = time.monotonic()
    r = harness.http_request(base_url, "GET", "/metrics",
                             headers={"Authorization": f"Bearer {os.environ.get('HERALD_METRICS_KEY', METRICS_KEY)}"})
    ms = (time.monotonic() - started) * 1000
    if r.status != 200:
        raise harness.StackError(f"GET {base_url}/metrics answered {r.status}")
    return ms


class Scraper:
    """Scrapes the api's and the worker's `/metrics` every `every` seconds in a thread
    while the load runs, as Prometheus would."""

    def __init__(self, targets: dict[str, str], every: float = 2.0):
        self.targets, self.every = targets, every
        self.ms: dict[str, list[float]] = {name: [] for name in targets}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.wait(self.every):
            for name, url in self.targets.items():
                try:
                    self.ms[name].append(scrape_ms(url))
                except (OSError, harness.StackError) as e:
                    self.errors.append(f"{name}: {e}")

    def __enter__(self) -> "Scraper":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def summary_ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(statistics.median(values), 2), "max_ms": round(max(values), 2)}


def window_order(windows: int) -> list[str]:
    """Which stack runs each window: empty, loaded, loaded, empty, empty, loaded, ...
    (ABBA), `windows` of each. Alternating cancels what drifts over the run (the box's
    own speed, measured here to swing by a third from one minute to the next); the
    ABBA order also cancels a steady trend within each pair of pairs."""
    pairs = [("empty", "loaded") if i % 2 == 0 else ("loaded", "empty") for i in range(windows)]
    return [phase for pair in pairs for phase in pair]


class Soak:
    """Two stacks side by side (api, sink and worker each, on a database and Redis
    prefix of their own): one on an empty database, one on the preloaded one. The load
    runs on one stack at a time, in alternating windows."""

    def __init__(self, args: argparse.Namespace, stacks: dict[str, bench.Bench], worker_metrics: dict[str, str]):
        self.args, self.stacks = args, stacks
        self.phases: dict[str, dict] = {}
        self.statements: dict[str, list[dict]] = {}
        loaded = stacks["loaded"]
        self.metrics_targets = {"api": loaded.api_url, "worker": worker_metrics["loaded"]}
        self.scrapes: dict[str, dict] = {}
        self.retention: dict = {}

    @property
    def loaded(self) -> bench.Bench:
        return self.stacks["loaded"]

    def load(self) -> None:
        """The steady load in alternating windows. Half-way through, each stack gets
        its second worker (on the loaded one, retention drops the oldest day); `/metrics`
        of the loaded stack's api and worker is scraped every 2 s during its windows."""
        windows = max(1, round(self.args.duration / self.args.window))
        before = {phase: statements(b.db.url) for phase, b in self.stacks.items()}
        for phase, b in self.stacks.items():
            _, shown = self.sim_argv(b)
            self.phases[phase] = {"command": shown, "windows": [], "rss_start": self.rss(phase)}
        print(f"{windows} windows of {self.args.window:.0f} s on each stack, alternating: "
              f"{self.phases['loaded']['command']}", flush=True)
        during: dict[str, list[float]] = {name: [] for name in self.metrics_targets}
        errors: list[str] = []
        order = window_order(windows)
        for i, phase in enumerate(order):
            if i == 2 * (windows // 2):
                self.second_workers()
            if phase == "loaded":
                with Scraper(self.metrics_targets) as scraper:
                    self.window(phase)
                for name, ms in scraper.ms.items():
                    during[name].extend(ms)
                errors.extend(scraper.errors)
            else:
                self.window(phase)
        for phase, b in self.stacks.items():
            self.phases[phase]["rss_end"] = self.rss(phase)
            self.statements[phase] = statements_delta(before[phase], statements(b.db.url))
        self.scrapes["during load"] = {name: summary_ms(v) for name, v in during.items()}
        self.scrapes["during load"]["errors"] = errors[:5]

    def sim_argv(self, b: bench.Bench) -> tuple[list[str], str]:
        return b.sim("e2e", "--api", b.api_url, "--sink", b.sink_url,
                     "--rate", str(self.args.rate), "--duration", str(self.args.window))

    def window(self, phase: str) -> None:
        b = self.stacks[phase]
        argv, _ = self.sim_argv(b)
        done = subprocess.run(argv, cwd=REPO, env=b.env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise harness.StackError(f"{phase}: the load failed (exit {done.returncode})")
        r = json.loads([line for line in done.stdout.splitlines() if line.strip()][-1])
        windows = self.phases[phase]["windows"]
        windows.append(r)
        print(f"  {phase:>6} window {len(windows)}: delivered {r['delivered']}/{r['accepted']} at "
              f"{r['delivered_per_s']:.0f}/s, p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} ms",
              flush=True)

    def scrape_idle(self) -> None:
        """`--scrapes` scrapes of each of the loaded stack's `/metrics` with the load
        paused, between two pg_stat_statements snapshots: the SQL they ran (none, if the
        metrics are kept in process; the workers' own periodic statements run meanwhile
        and are listed too)."""
        n = self.args.scrapes
        url = self.loaded.db.url
        notifications = bench.psql(url, "SELECT count(*) FROM notifications")
        before = statements(url)
        started = time.monotonic()
        ms = {name: [scrape_ms(target) for _ in range(n)] for name, target in self.metrics_targets.items()}
        elapsed = time.monotonic() - started
        delta = statements_delta(before, statements(url))
        # The snapshot query itself is one of the statements; leave it out.
        delta = [d for d in delta if "pg_stat_statements" not in d["query"]
                 and "CREATE EXTENSION" not in d["query"]]
        self.scrapes["load paused"] = {name: summary_ms(v) for name, v in ms.items()} | {
            "notifications": int(notifications), "seconds": round(elapsed, 2),
            "sql": None if before is None else [
                {"calls": d["calls"], "query": d["query"][:200]} for d in delta]}

    def rss(self, phase: str) -> dict[str, float]:
        b = self.stacks[phase]
        procs = {"api": b.api, "worker": b.worker}
        return {name: round(rss_mb(p.popen.pid), 1) for name, p in procs.items() if p and p.alive()}

    def partitions(self) -> int:
        """Partitions of the loaded stack's tables and of their indexes (retention drops
        both)."""
        return int(bench.psql(self.loaded.db.url, "SELECT count(*) FROM pg_inherits").strip())

    def second_workers(self) -> None:
        """A second worker joins each stack; the loaded stack's runs retention as it
        starts, and drops the oldest day. Both stacks get one, so that from here on
        they still differ only in their history: a second worker on these two cores
        costs CPU of its own (its readers, its sweep), which measured on one stack
        alone read as history's cost (2026-12-03: the loaded stack's latency doubled
        from the window it started, while it matched the empty stack's before)."""
        before = self.partitions()
        # The loaded stack's goes last, so the time to the drop counts from its start.
        for b in (self.stacks["empty"], self.loaded):
            env = b.env | {"HERALD_WORKER_METRICS_BIND": f"127.0.0.1:{harness.free_port()}",
                           "HERALD_RETENTION": f"{self.args.days}d"}
            started = time.monotonic()
            harness.start_worker(b.procs, b.bin_dir, REPO, env, ["--concurrency", "64"], name="worker-2")
        deadline = time.monotonic() + 120
        while self.partitions() == before:
            if time.monotonic() > deadline:
                raise harness.StackError("retention dropped nothing within 120 s of the second worker's start")
            time.sleep(1)
        after = self.partitions()
        self.retention = {"partitions_before": before, "partitions_after": after,
                          "seconds": round(time.monotonic() - started, 1)}
        print(f"  second workers started; retention: partitions {before} -> {after}, "
              f"{self.retention['seconds']} s after the loaded stack's second worker started", flush=True)


def summary(phase: dict) -> dict:
    w = phase["windows"]
    return {
        "delivered_per_s": statistics.median(r["delivered_per_s"] for r in w),
        "p50_ms": statistics.median(float(r["latency"]["p50_ms"]) for r in w),
        "p99_ms": statistics.median(float(r["latency"]["p99_ms"]) for r in w),
        "lost": sum(r["accepted"] - r["delivered"] for r in w),
    }


def paired_ratios(empty: list[dict], loaded: list[dict]) -> dict[str, list[float]]:
    """Loaded over empty latency of each pair of windows run next to each other (the
    i-th of each stack: see `window_order`), for p50 and p99."""
    return {q: [float(l["latency"][f"{q}_ms"]) / float(e["latency"][f"{q}_ms"]) for e, l in zip(empty, loaded)]
            for q in ("p50", "p99")}


def report(soak: Soak, sizes: dict, preload_s: float) -> None:
    args = soak.args
    print(f"\n== Herald soak: {args.days + 1} days × {args.events_per_day:,} events preloaded in "
          f"{preload_s:.0f} s; load {args.rate:g} events/s for {args.duration:g} s per phase "
          f"(windows of {args.window:g} s, medians)")
    base = summary(soak.phases["empty"])
    for name, phase in soak.phases.items():
        s = summary(phase)
        ratio = s["delivered_per_s"] / base["delivered_per_s"] if base["delivered_per_s"] else 0
        print(f"{name:>7}: delivered {s['delivered_per_s']:.0f}/s ({100 * ratio:.0f}% of empty), "
              f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, undelivered {s['lost']}; "
              f"RSS {phase['rss_start']} -> {phase['rss_end']} MB")
    loaded = summary(soak.phases["loaded"])
    print("latency, empty over loaded (the target is >= 80 %): "
          f"p50 {100 * base['p50_ms'] / loaded['p50_ms']:.0f} %, p99 {100 * base['p99_ms'] / loaded['p99_ms']:.0f} %")
    pairs = paired_ratios(soak.phases["empty"]["windows"], soak.phases["loaded"]["windows"])
    print("  window by window (each loaded window over the empty one run next to it): "
          + ", ".join(f"{q} {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})" for q, r in pairs.items()))
    print(f"database: {sizes['empty']:.0f} MB empty, {sizes['loaded']:.0f} MB preloaded, "
          f"{sizes['after']:.0f} MB after retention")
    if soak.retention:
        r = soak.retention
        print(f"retention: partitions {r['partitions_before']} -> {r['partitions_after']} "
              f"(with their indexes' partitions), {r['seconds']} s after the loaded stack's second worker started")
    print(f"    $ {soak.phases['empty']['command']}")
    for when, figures in soak.scrapes.items():
        line = ", ".join(f"{name} p50 {f['p50_ms']} ms, max {f['max_ms']} ms ({f['n']} scrapes)"
                         for name, f in figures.items() if isinstance(f, dict) and f.get("n"))
        extra = ""
        if "notifications" in figures:
            extra = f"; {figures['notifications']:,} notifications stored"
        print(f"/metrics {when}: {line or 'no scrape'}{extra}")
        for e in figures.get("errors", []):
            print(f"    scrape error: {e}")
        if "sql" in figures:
            sql = figures["sql"]
            if sql is None:
                print("    SQL run meanwhile: unknown (pg_stat_statements is not loaded on this server)")
            else:
                n = soak.args.scrapes
                print(f"    SQL run during those {2 * n} scrapes ({figures['seconds']} s; the workers' periodic "
                      f"statements included): {sum(d['calls'] for d in sql)} calls"
                      + ("" if not sql else ", " + "; ".join(f"{d['calls']}× {d['query'][:80]}" for d in sql[:6])))
                per_scrape = [d for d in sql if d["calls"] >= n]
                print("    statements called once per scrape or more: "
                      + ("none" if not per_scrape else "; ".join(d["query"][:120] for d in per_scrape)))
    print_statements(soak.statements.get("loaded", []), soak.statements.get("empty", []), args.statements)


def check_connections(url: str) -> None:
    """Fails early, saying what to change, when the server cannot take both stacks."""
    allowed = int(bench.psql(url, "SHOW max_connections").strip())
    if allowed < MIN_CONNECTIONS:
        raise harness.StackError(
            f"the server allows {allowed} connections and the soak's two stacks need up to "
            f"{MIN_CONNECTIONS}: start it with -c max_connections=300 (or set max_connections "
            f"in postgresql.conf and restart it)")


def start_stack(run: harness.Run, bin_dir: Path, retention: str) -> tuple[bench.Bench, str]:
    """One stack (sink, api, worker) on the run's database; returns it and the
    worker's `/metrics` address."""
    b = bench.Bench(argparse.Namespace(worker_concurrency=512, runs=1), bin_dir, run.procs, run.db, run.redis,
                    run.log_dir)
    b.start_services(run)
    worker_metrics = f"127.0.0.1:{harness.free_port()}"
    b.env = b.env | {"HERALD_WORKER_METRICS_BIND": worker_metrics, "HERALD_RETENTION": retention}
    b.start_worker()
    return b, f"http://{worker_metrics}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    harness.trap_interrupts()
    runs = {phase: harness.new_run(REPO, "soak-logs", "herald_soak") for phase in ("empty", "loaded")}
    for phase, run in runs.items():
        print(f"soak run {run.run_id} ({phase} database): logs in {run.log_dir}", flush=True)
    code = 0
    try:
        bin_dir = harness.prepare_binaries(REPO, build=not (args.no_build or args.bin_dir), release=True,
                                           bin_dir=args.bin_dir)
        # /metrics behind a key, as an operator would run it; the api reads it from
        # the environment the stack inherits.
        os.environ.setdefault("HERALD_METRICS_KEY", METRICS_KEY)
        runs["empty"].db.check_answers()
        check_connections(runs["empty"].db.admin_url)
        stacks, worker_metrics = {}, {}
        # The first workers keep all history: their maintenance runs every 15 minutes,
        # and a preload that lasts longer than that would see the oldest day dropped
        # before the load starts (the 20-million-event preload takes about 20 minutes).
        # The second workers, joining half-way, apply the `--days` retention (30 by
        # default).
        for phase, run in runs.items():
            stacks[phase], worker_metrics[phase] = start_stack(run, bin_dir, KEEP_ALL)
        print(f"preloading {args.days + 1} days × {args.events_per_day:,} events", flush=True)
        preload_s = preload(runs["loaded"].db.url, args.days, args.events_per_day)
        # Both databases analysed alike before the load: the preload ends with ANALYZE.
        long_psql(runs["empty"].db.url, "ANALYZE")
        sizes = {"empty": database_mb(runs["empty"].db.url), "loaded": database_mb(runs["loaded"].db.url)}
        soak = Soak(args, stacks, worker_metrics)
        soak.load()
        sizes["after"] = database_mb(runs["loaded"].db.url)
        soak.scrape_idle()
        report(soak, sizes, preload_s)
        if args.json:
            args.json.write_text(json.dumps({"sizes": sizes, "phases": soak.phases, "scrapes": soak.scrapes,
                                             "retention": soak.retention,
                                             "statements": soak.statements}, indent=2))
        (runs["loaded"].log_dir / "statements.json").write_text(json.dumps(soak.statements, indent=2))
    except harness.StackError as e:
        print(f"soak: {e}", file=sys.stderr, flush=True)
        for run in runs.values():
            run.procs.print_logs()
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        for phase, run in runs.items():
            if args.keep_database and run.db.created:
                print(f"database kept ({phase}): {run.db.url}", flush=True)
                run.db.created = False
            run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
