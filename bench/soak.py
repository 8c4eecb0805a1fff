#!/usr/bin/env python3
"""`make soak`: Herald on an empty database, then on one holding weeks of history,
under the same steady load, while retention drops the oldest day.

    python3 bench/soak.py [--no-build] [--days 30] [--events-per-day 700000]
                          [--rate 300] [--duration 600] [--window 60]

Steps (release build, private database and Redis prefix, like `make bench`):
1. api, sink and one worker start on an empty database; the load runs for
   `--duration` seconds in windows of `--window` seconds: `herald-sim load e2e` at
   `--rate` events/s (each event ingested by the api, routed, delivered to the sink),
   the sink emptied between windows. Throughput and event→webhook latency per window.
2. History is preloaded in SQL: `--days` + 1 days before today, `--events-per-day`
   events a day, each with a sent notification and its attempt, spread over the days'
   partitions (with triggers off: the live streams' change log gets none of them). The extra, oldest day lies
   past the retention (`HERALD_RETENTION`, 30d by default): it is what gets dropped.
3. The same load again. Half-way through, a second worker starts: its partition
   maintenance runs retention at once, which drops the oldest day while the load runs.
4. The report: per phase, the median window's delivered rate and latency (and the
   loaded/empty ratio; the target is >= 80 %), the database size before and after
   retention, the partitions dropped, and the api's and the worker's RSS at the start
   and at the end of each phase (target: no growth beyond 20 %).

The default scale is the issue's: 31 × 700,000 ≈ 21.7 million events with their
notifications and attempts (about 65 million rows; tens of GB of disk, and the
preload alone takes a while on 2 cores: it prints its progress per day). `--events-per-day 20000`
runs the same steps in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    p.add_argument("--days", type=int, default=30, help="days of history kept by the retention (default 30)")
    p.add_argument("--events-per-day", type=int, default=700_000, help="preloaded events a day (default 700000)")
    p.add_argument("--rate", type=float, default=300.0, help="events/s offered during the load (default 300)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load per phase (default 600)")
    p.add_argument("--window", type=float, default=60.0, help="seconds per measured window (default 60)")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    return p.parse_args(argv)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def database_mb(url: str) -> float:
    return float(bench.psql(url, "SELECT pg_database_size(current_database())")) / 1e6


def preload(url: str, days: int, per_day: int) -> float:
    """Days of history before today, one statement per table and day; returns seconds."""
    started = time.monotonic()
    bench.psql(url, f"""
        INSERT INTO users (user_id, timezone, traits, level, channels)
        SELECT 'soak-' || i, 'UTC', '{{}}', 'standard', '["webhook"]'
        FROM generate_series(1, {PEOPLE}) AS i ON CONFLICT DO NOTHING""")
    for table in ("events", "notifications", "delivery_attempts", "person_changes"):
        bench.psql(url, f"SELECT count(*) FROM herald_ensure_partitions('{table}', "
                        f"date_trunc('day', now()) - interval '{days + 1} days', now(), interval '1 day')")
    for back in range(days + 1, 0, -1):
        day = f"date_trunc('day', now()) - interval '{back} days'"
        # One statement per day: the events, their notifications (sent) and attempts.
        # Triggers off (session_replication_role): the change log of a person's live
        # stream is not history anyone reads back, and its per-person counters would
        # make the preload five times slower.
        bench.psql(url, f"""
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
    bench.psql(url, "ANALYZE")
    return time.monotonic() - started


class Soak:
    def __init__(self, args: argparse.Namespace, b: bench.Bench):
        self.args, self.b = args, b
        self.phases: dict[str, dict] = {}

    def load(self, phase: str, halfway=None) -> None:
        """The steady load in windows; `halfway` runs once when half the windows are done."""
        windows = max(1, round(self.args.duration / self.args.window))
        argv, shown = self.b.sim("e2e", "--api", self.b.api_url, "--sink", self.b.sink_url,
                                 "--rate", str(self.args.rate), "--duration", str(self.args.window))
        result = {"command": shown, "windows": [], "rss_start": self.rss()}
        print(f"[{phase}] {windows} windows of {self.args.window:.0f} s: {shown}", flush=True)
        for w in range(windows):
            if halfway and w == windows // 2:
                halfway()
            done = subprocess.run(argv, cwd=REPO, env=self.b.env, capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise harness.StackError(f"{phase}: the load failed (exit {done.returncode})")
            r = json.loads([line for line in done.stdout.splitlines() if line.strip()][-1])
            result["windows"].append(r)
            print(f"  window {w + 1}: delivered {r['delivered']}/{r['accepted']} at {r['delivered_per_s']:.0f}/s, "
                  f"p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} ms", flush=True)
        result["rss_end"] = self.rss()
        self.phases[phase] = result

    def rss(self) -> dict[str, float]:
        procs = {"api": self.b.api, "worker": self.b.worker}
        return {name: round(rss_mb(p.popen.pid), 1) for name, p in procs.items() if p and p.alive()}

    def second_worker(self) -> None:
        """A second worker joins: its maintenance runs retention as it starts."""
        before = bench.psql(self.b.db.url, "SELECT count(*) FROM pg_inherits")
        harness.start_worker(self.b.procs, self.b.bin_dir, REPO, self.b.env, ["--concurrency", "64"],
                            name="worker-2")
        deadline = time.monotonic() + 120
        while bench.psql(self.b.db.url, "SELECT count(*) FROM pg_inherits") == before:
            if time.monotonic() > deadline:
                raise harness.StackError("retention dropped nothing within 120 s of the second worker's start")
            time.sleep(1)
        print(f"  retention: partitions {before} -> {bench.psql(self.b.db.url, 'SELECT count(*) FROM pg_inherits')}",
              flush=True)


def summary(phase: dict) -> dict:
    w = phase["windows"]
    return {
        "delivered_per_s": statistics.median(r["delivered_per_s"] for r in w),
        "p50_ms": statistics.median(float(r["latency"]["p50_ms"]) for r in w),
        "p99_ms": statistics.median(float(r["latency"]["p99_ms"]) for r in w),
        "lost": sum(r["accepted"] - r["delivered"] for r in w),
    }


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
    print(f"database: {sizes['empty']:.0f} MB empty, {sizes['loaded']:.0f} MB preloaded, "
          f"{sizes['after']:.0f} MB after retention")
    print(f"    $ {soak.phases['empty']['command']}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    harness.trap_interrupts()
    run = harness.new_run(REPO, "soak-logs", "herald_soak")
    print(f"soak run {run.run_id}: logs in {run.log_dir}", flush=True)
    code = 0
    try:
        bin_dir = harness.prepare_binaries(REPO, build=not args.no_build, release=True)
        bargs = argparse.Namespace(worker_concurrency=512, runs=1)
        b = bench.Bench(bargs, bin_dir, run.procs, run.db, run.redis, run.log_dir)
        b.start_services(run)
        b.start_worker()
        soak = Soak(args, b)
        sizes = {"empty": database_mb(run.db.url)}
        soak.load("empty")
        print(f"preloading {args.days + 1} days × {args.events_per_day:,} events", flush=True)
        preload_s = preload(run.db.url, args.days, args.events_per_day)
        sizes["loaded"] = database_mb(run.db.url)
        soak.load("loaded", halfway=soak.second_worker)
        sizes["after"] = database_mb(run.db.url)
        report(soak, sizes, preload_s)
        if args.json:
            args.json.write_text(json.dumps({"sizes": sizes, "phases": soak.phases}, indent=2))
    except harness.StackError as e:
        print(f"soak: {e}", file=sys.stderr, flush=True)
        run.procs.print_logs()
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
