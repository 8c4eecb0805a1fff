#!/usr/bin/env python3
"""`make bench`: build Herald in release mode, start it on private infrastructure and
print the performance figures (docs/contract.md §11), each the median of `--runs` runs and
each with the exact command that produced it.

    python3 bench/run.py [--no-build] [--runs 3] [--only FIGURE ...] [--json FILE]

What it starts (like `make e2e`): a fresh database on the local Postgres
(HERALD_TEST_DATABASE_URL), its own key prefix on the local Redis
(HERALD_TEST_REDIS_URL), one sink, the api and ONE worker, all on free ports. It
stops them and drops the data at the end, whatever happens.

Order, and why:
1. ingestion (ceiling, batched, single), with the worker not started yet: these are
   the api's figures, and a worker routing the backlog would take CPU from the api
   on a 2-core box. The ceiling runs interleaved with the batched figure, so both
   see the same machine; `events` is emptied before each run.
2. the backlog is dropped (events truncated, streams deleted) and the worker starts;
   end to end at a fixed rate, the maximum sustained rate (drain), fan-out.
3. peak RSS of api and worker (their VmHWM over the whole run).
4. bundle replay, offline, over a 1,000,000-row file made by
   `herald-worker bundle --generate` (kept in target/bench/ for later runs).

Standard library only; reuses e2e/harness.py for processes, Postgres and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO / "e2e"))

import harness  # noqa: E402

API_KEY = "bench-key"
FIGURES = ("ceiling", "batched", "single", "e2e", "drain", "fanout", "rss", "bundle")
BUNDLE_ROWS = 1_000_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (default 3; the median is reported)")
    p.add_argument("--only", action="append", choices=FIGURES, default=[], help="run only this figure (repeatable)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per closed-loop run (default 10)")
    p.add_argument("--drain-events", type=int, default=20_000, help="events of the drain figure (default 20000)")
    p.add_argument("--worker-concurrency", type=int, default=512, help="the worker's --concurrency (default 512, the worker's own default)")
    p.add_argument("--json", type=Path, help="also write every run's raw result to this file")
    p.add_argument("--bin-dir", type=Path, help="take herald-api/-worker/-sim from this directory (implies --no-build), "
                   "e.g. to measure a build from before a change")
    return p.parse_args(argv)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_by_command(names: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds used so far by every process whose command is one of `names`
    (Postgres's backends, Redis), summed per name. Machine-wide: other users of the
    same Postgres count too."""
    totals = dict.fromkeys(names, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        if comm in totals:
            totals[comm] += cpu_seconds(int(stat.parent.name))
    return totals


def psql(url: str, sql: str) -> str:
    """Run one statement on the database at `url`."""
    return harness.run_command(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                               env=os.environ | {"PGCONNECT_TIMEOUT": "5"})


class Bench:
    def __init__(self, args: argparse.Namespace, bin_dir: Path, procs: harness.Processes,
                 db: harness.Postgres, redis: harness.Redis, work_dir: Path):
        self.args = args
        self.bin_dir = bin_dir
        self.procs = procs
        self.db = db
        self.redis = redis
        self.work_dir = work_dir
        self.api_url = ""
        self.sink_url = ""
        self.env: dict[str, str] = {}
        self.api: harness.Process | None = None
        self.worker: harness.Process | None = None
        self.results: dict[str, list[dict]] = {}
        self.sink: harness.Process | None = None
        self.commands: dict[str, str] = {}

    # ------------------------------------------------------------ processes

    def start_services(self, run: harness.Run) -> None:
        """The run's database and the stack of the bench: one sink, the api, no worker
        yet (ingestion is measured without one)."""
        spec = harness.StackSpec(sinks={"default": []}, provider="default", sink_log="warn", workers=[],
                                 env={"HERALD_API_KEYS": API_KEY, "HERALD_API_KEY": API_KEY})
        stack = run.start_stack(REPO, harness.Results(), build=False, release=True, spec=spec, bin_dir=self.bin_dir)
        self.api_url, self.env = stack.api_url, stack.env
        self.sink_url = stack.sink_base("default")
        self.api, self.sink = stack.processes["api"], stack.processes["sink-default"]
        print(f"api {self.api_url} (pid {self.api.popen.pid}), sink {self.sink_url}, "
              f"database {self.db.name}, redis prefix {self.redis.prefix}", flush=True)

    def start_worker(self) -> None:
        argv = [str(self.bin_dir / "herald-worker"), "--concurrency", str(self.args.worker_concurrency)]
        self.worker = harness.start_worker(self.procs, self.bin_dir, REPO, self.env, argv[1:])
        time.sleep(1.0)
        if not self.worker.alive():
            raise harness.StackError(f"worker exited (log: {self.worker.log_path})")
        print(f"worker pid {self.worker.popen.pid}: {' '.join(argv[1:])}", flush=True)

    def reset_ingestion(self) -> None:
        """Empty `events` (and what hangs off it) and drop the queued route jobs."""
        psql(self.db.url, "TRUNCATE events CASCADE")
        self.redis.delete_prefixed_keys()

    # ------------------------------------------------------------- figures

    def sim(self, figure: str, *extra: str) -> tuple[list[str], str]:
        argv = [str(self.bin_dir / "herald-sim"), "load", figure, *extra]
        shown = ["herald-sim", "load", figure, *extra]
        env_shown = ""
        if figure not in ("ceiling", "rss"):
            env_shown = "HERALD_API_KEY=" + API_KEY + " "
        return argv, env_shown + shlex.join(shown)

    def run_figure(self, name: str, argv: list[str], shown: str, before: Callable[[], None] | None = None) -> None:
        self.commands[name] = shown
        runs = self.results.setdefault(name, [])
        for i in range(self.args.runs):
            if before:
                before()
            print(f"[{name} {i + 1}/{self.args.runs}] {shown}", flush=True)
            before_cpu = self.cpu_snapshot()
            started = time.monotonic()
            done = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True,
                                  timeout=1800)
            wall = time.monotonic() - started
            sys.stderr.write(done.stderr)
            if done.returncode != 0:
                raise harness.StackError(f"{name} failed (exit {done.returncode})")
            lines = [line for line in done.stdout.splitlines() if line.strip()]
            result = json.loads(lines[-1])
            used = {k: round(v - before_cpu.get(k, 0.0), 2) for k, v in self.cpu_snapshot().items()}
            # The ceiling's own Postgres backends exit with it; it reports their CPU itself.
            if isinstance(result.get("postgres_backend_cpu_s"), (int, float)):
                used["postgres"] = round(used.get("postgres", 0.0) + result["postgres_backend_cpu_s"], 2)
            result["cpu_s"] = used | {"wall": round(wall, 2)}
            print("  cpu s: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items()) + f" (wall {wall:.1f} s, "
                  f"{os.cpu_count()} CPUs)", flush=True)
            runs.append(result)

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each part: ours by pid, Postgres and Redis by name,
        the load generator as this script's finished children."""
        snap = {}
        for name, proc in (("api", self.api), ("worker", self.worker), ("sink", self.sink)):
            if proc:
                snap[name] = cpu_seconds(proc.popen.pid)
        snap |= cpu_by_command(("postgres", "redis-server"))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        snap["herald-sim"] = children.ru_utime + children.ru_stime
        return snap

    def ingestion(self, wanted: set[str]) -> None:
        d = str(self.args.duration)
        api = ["--api", self.api_url]
        ceiling = self.sim("ceiling", "--database-url", self.db.url, "--redis-url", self.redis.url,
                           "--redis-prefix", self.redis.prefix, "--batch", "100", "--concurrency", "8",
                           "--duration", d)
        ceiling_unnest = self.sim("ceiling", "--database-url", self.db.url, "--redis-url", self.redis.url,
                                  "--redis-prefix", self.redis.prefix, "--batch", "100", "--concurrency", "8",
                                  "--unnest", "--duration", d)
        batched = self.sim("batched", *api, "--batch", "100", "--concurrency", "8", "--duration", d)
        single = self.sim("single", *api, "--concurrency", "64", "--duration", d)
        runs, self.args.runs = self.args.runs, 1
        try:
            # Interleaved, so the ceiling and the api see the same machine.
            for _ in range(runs):
                if "ceiling" in wanted:
                    self.run_figure("ceiling", *ceiling, before=self.reset_ingestion)
                    self.run_figure("ceiling_unnest", *ceiling_unnest, before=self.reset_ingestion)
                if "batched" in wanted:
                    self.run_figure("batched", *batched, before=self.reset_ingestion)
                if "single" in wanted:
                    self.run_figure("single", *single, before=self.reset_ingestion)
        finally:
            self.args.runs = runs
        self.reset_ingestion()

    def pipeline(self, wanted: set[str]) -> None:
        common = ["--api", self.api_url, "--sink", self.sink_url]
        if "e2e" in wanted:
            self.run_figure("e2e", *self.sim("e2e", *common, "--rate", "1000", "--duration", str(self.args.duration)))
            # The same at a light load: the latency floor, without queueing.
            self.run_figure("e2e_light", *self.sim("e2e", *common, "--rate", "100", "--duration", str(self.args.duration)))
        if "drain" in wanted:
            self.run_figure("drain", *self.sim("drain", *common, "--events", str(self.args.drain_events)))
        if "fanout" in wanted:
            self.run_figure("fanout", *self.sim("fanout", *common, "--members", "10000"))

    def rss(self) -> None:
        pids = [f"api={self.api.popen.pid}"]
        if self.worker:
            pids.append(f"worker={self.worker.popen.pid}")
        argv, shown = self.sim("rss", *[a for p in pids for a in ("--pid", p)])
        runs, self.args.runs = self.args.runs, 1
        try:
            self.run_figure("rss", argv, shown.replace(str(self.api.popen.pid), "$(pidof herald-api)")
                            .replace(str(self.worker.popen.pid) if self.worker else "-", "$(pidof herald-worker)"))
        finally:
            self.args.runs = runs

    def bundle(self) -> None:
        data = harness.target_dir(REPO) / "bench" / f"tours_{BUNDLE_ROWS}.csv"
        worker = self.bin_dir / "herald-worker"
        if not data.exists():
            data.parent.mkdir(parents=True, exist_ok=True)
            print(f"generating {data} ({BUNDLE_ROWS} rows)", flush=True)
            tmp = data.with_suffix(".tmp")
            with open(tmp, "wb") as out:
                gen = subprocess.run([str(worker), "bundle", "--generate", str(BUNDLE_ROWS)], stdout=out)
            if gen.returncode != 0:
                raise harness.StackError("herald-worker bundle --generate failed")
            tmp.rename(data)
        argv = [str(worker), "bundle", str(data), "--no-optimum", "--config", str(REPO / "config")]
        shown = shlex.join(["herald-worker", "bundle", str(data.relative_to(REPO)) if data.is_relative_to(REPO)
                            else str(data), "--no-optimum"]) + " > /dev/null"
        self.commands["bundle"] = shown
        runs = self.results.setdefault("bundle", [])
        rows = sum(1 for _ in open(data, "rb")) - 1
        for i in range(self.args.runs):
            print(f"[bundle {i + 1}/{self.args.runs}] {shown}", flush=True)
            started = time.monotonic()
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            elapsed = time.monotonic() - started
            if done.returncode not in (0, 2):
                raise harness.StackError(f"bundle replay failed: {done.stderr[-2000:]}")
            # The tool's own figure (read + replay + write, without process start and exit).
            own = re.search(r"throughput\s+([0-9]+) rows/s", done.stderr)
            runs.append({"figure": "bundle", "rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed,
                         "tool_rows_per_s": int(own.group(1)) if own else None})
            print(f"bundle replay: {rows} rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s wall "
                  f"(the tool says {own.group(1) if own else '?'} rows/s)", flush=True)


# ------------------------------------------------------------------ report


def median(runs: list[dict], path: str) -> float | None:
    values = []
    for r in runs:
        v: Any = r
        for key in path.split("."):
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(float(v))
    return statistics.median(values) if values else None


def items_of(run: dict) -> float | None:
    """What a run's CPU time bought: deliveries end to end, or events or requests
    ingested over the whole run (warm-up included); None for the ceiling."""
    for key in ("delivered", "items_total"):
        if isinstance(run.get(key), (int, float)) and run[key] > 0:
            return float(run[key])
    return None  # the ceiling counts no warm-up: no honest denominator


def cpu_per_item(runs: list[dict]) -> str:
    """Median CPU µs per item of each process over the runs (the `cpu s` lines divided
    by what each run completed), e.g. "api 52, worker 180, postgres 410 µs"."""
    per: dict[str, list[float]] = {}
    for r in runs:
        n = items_of(r)
        if not n:
            continue
        for proc, secs in r.get("cpu_s", {}).items():
            if proc != "wall" and isinstance(secs, (int, float)):
                per.setdefault(proc, []).append(secs * 1e6 / n)
    if not per:
        return ""
    total = sum(statistics.median(v) for v in per.values())
    parts = ", ".join(f"{proc} {statistics.median(v):,.0f}" for proc, v in per.items())
    return f"CPU per item: {parts}; all {total:,.0f} µs"


def fmt(v: float | None, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def report(bench: Bench, busy: str) -> None:
    r = bench.results
    rows: list[tuple[str, str, str, str, str]] = []  # figure, value, target, command, key

    def add(figure: str, value: str, target: str, key: str) -> None:
        rows.append((figure, value, target, bench.commands.get(key, ""), key))

    if "ceiling" in r:
        add("6. ceiling: plain loop insert (100/statement) + XADD", fmt(median(r["ceiling"], "rows_per_s"), " rows/s"),
            "(reference)", "ceiling")
    if "ceiling_unnest" in r:
        add("6'. ceiling with the api's statement (unnest of arrays, 100 rows)",
            fmt(median(r["ceiling_unnest"], "rows_per_s"), " rows/s"), "(reference)", "ceiling_unnest")
    if "batched" in r:
        b = median(r["batched"], "events_per_s")
        c = median(r.get("ceiling", []), "rows_per_s")
        cu = median(r.get("ceiling_unnest", []), "rows_per_s")
        share = f" = {100 * b / c:.0f}% of ceiling" if b and c else ""
        share += f" ({100 * b / cu:.0f}% of 6')" if b and cu else ""
        add("1. ingestion, batches of 100", fmt(b, " events/s") + share, ">= 30,000/s and >= 50% of ceiling", "batched")
    if "single" in r:
        s = r["single"]
        add("2. ingestion, 1 event/request, concurrency 64",
            f"{fmt(median(s, 'requests_per_s'), ' req/s')}, p50 {fmt(median(s, 'latency.p50_ms'), ' ms', 1)}, "
            f"p99 {fmt(median(s, 'latency.p99_ms'), ' ms', 1)}", ">= 8,000 req/s, p99 <= 25 ms", "single")
    if "e2e" in r:
        e = r["e2e"]
        add("3a. end to end at 1,000 events/s: event->webhook",
            f"p50 {fmt(median(e, 'latency.p50_ms'), ' ms', 1)}, p99 {fmt(median(e, 'latency.p99_ms'), ' ms', 1)}",
            "p50 <= 10 ms, p99 <= 50 ms", "e2e")
    if "e2e_light" in r:
        e = r["e2e_light"]
        add("3a'. the same at 100 events/s (latency floor)",
            f"p50 {fmt(median(e, 'latency.p50_ms'), ' ms', 1)}, p99 {fmt(median(e, 'latency.p99_ms'), ' ms', 1)}",
            "(reference)", "e2e_light")
    if "drain" in r:
        add("3b. end to end, max sustained (one worker)", fmt(median(r["drain"], "deliveries_per_s"), " deliveries/s"),
            ">= 5,000/s", "drain")
    if "fanout" in r:
        add("4. fan-out to 10,000 members, last delivery", fmt(median(r["fanout"], "seconds_to_last"), " s", 2),
            "<= 1.5 s", "fanout")
    if "bundle" in r:
        add("5. bundle replay, 1,000,000 rows", fmt(median(r["bundle"], "rows_per_s"), " rows/s")
            + f" (process wall; the tool's own count {fmt(median(r['bundle'], 'tool_rows_per_s'), ' rows/s')})",
            ">= 1,000,000 rows/s", "bundle")
    if "rss" in r:
        p = r["rss"][-1]["processes"]
        value = ", ".join(f"{n} {v['peak_mb']:.0f} MB" for n, v in sorted(p.items()))
        add("7. peak RSS (VmHWM)", value, "< 150 MB each", "rss")

    print()
    print(f"== Herald benchmark: medians of {bench.args.runs} runs; {busy}")
    for figure, value, target, command, key in rows:
        cpu = cpu_per_item(r.get(key, []))
        print(f"{figure}\n    {value}    (target {target})" + (f"\n    {cpu}" if cpu else "")
              + f"\n    $ {command}")


def machine_load() -> str:
    try:
        load1, load5, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average at the end {load1:.2f} (5 min {load5:.2f}) on {os.cpu_count()} CPUs"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wanted = set(args.only or FIGURES)
    harness.trap_interrupts()
    run = harness.new_run(REPO, "bench-logs", "herald_bench")
    run_id, work_dir, db, redis, procs = run.run_id, run.log_dir, run.db, run.redis, run.procs
    print(f"bench run {run_id}: logs in {work_dir}; {machine_load()} at the start", flush=True)
    bench: Bench | None = None
    code = 0
    try:
        bin_dir = harness.prepare_binaries(REPO, build=not args.no_build, release=True, bin_dir=args.bin_dir)
        bench = Bench(args, bin_dir, procs, db, redis, work_dir)
        needs_stack = wanted - {"bundle"}
        if needs_stack:
            bench.start_services(run)
            bench.ingestion(wanted)
            if wanted & {"e2e", "drain", "fanout", "rss"}:
                bench.start_worker()
                bench.pipeline(wanted)
            if "rss" in wanted:
                bench.rss()
        if "bundle" in wanted:
            bench.bundle()
    except harness.StackError as e:
        print(f"bench: {e}", file=sys.stderr, flush=True)
        procs.print_logs()
        code = 1
    except KeyboardInterrupt as e:
        print(f"bench interrupted by {e or 'SIGINT'}; cleaning up", file=sys.stderr, flush=True)
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run.cleanup()
    if bench and bench.results:
        report(bench, machine_load())
        raw = json.dumps({"run": run_id, "commands": bench.commands, "results": bench.results}, indent=2)
        (work_dir / "results.json").write_text(raw)
        print(f"every run's raw result: {work_dir / 'results.json'}")
        if args.json:
            args.json.write_text(raw)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
