#!/usr/bin/env python3
"""`make cluster`: Herald on a Redis Cluster through a master failover (issue 17).

    python3 cluster/run.py [--no-build] [--release] [--events N] [--pace S] [--redis-port P]

The fault suite (chaos/run.py) on scaled-out engines, with its sender, its people and
its verdict:

* a Redis Cluster of 3 masters and 3 replicas (scripts/redis-cluster.sh, ports from
  `--redis-port`, default 17101, below the ephemeral port range; bus timeout 2 s, so a
  failover takes seconds);
* a Postgres primary with a streaming replica (scripts/pg-replica.sh, shared with `make
  test`; stopped at the end only when this run started it), on which the run creates a
  database of its own: the apis write to the primary and read from the replica
  (`DATABASE_READ_URL`);
* TWO apis, taking turns request by request, and THREE workers, all with
  `REDIS_URL=redis+cluster://...` and `HERALD_PARTITIONS=16`: the first serves only
  partitions 0-7 (`--partitions 0-7`), the others every partition; a flaky sink
  (`--fail-rate 0.2`) makes retries.

It sends 20,000 events (broadcasts to everyone and shop alerts to a topic's members,
both fan-outs, and bundled comments), and while deliveries are in flight:

1. **a Redis master fails over**: its process is SIGKILLed and the suite keeps sending
   until its replica is promoted and every node says `cluster_state:ok`;
2. later **a worker is SIGKILLed** (the partition-subset one), and a replacement with
   the same partitions started.

Then it waits for the pipeline to settle and asserts what the fault suite asserts
(every accepted event routed, every notification final: stuck = 0; lost = 0; duplicates
only for notifications in flight at a fault and within the at-least-once bound), plus:
the apis took events while the master was down, every original master's shard received
stream traffic (`XADD` and `XREADGROUP` calls from `INFO commandstats`: the killed
master's until it died, then its promoted replica's) and the promoted replica served its
shard after the failover.

It prints the figures (accepted, delivered, duplicates, stuck, lost, and per shard the
streams and XADDs), ends with `N passed, M failed` (exit code 0 only when M is 0) and,
whatever happens, stops every process it started, drops its database and removes the
cluster's directory. Logs are kept in `target/cluster-logs/<run id>/`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

CLUSTER_DIR = Path(__file__).resolve().parent
REPO = CLUSTER_DIR.parent
sys.path.insert(0, str(REPO / "e2e"))

import harness  # noqa: E402  (needs the path above)

# chaos/run.py (`make chaos`): its sender, faults, settling and verdict. Loaded by path,
# as e2e/ (on the path for the harness) has a run.py of its own.
_spec = importlib.util.spec_from_file_location("chaos_run", REPO / "chaos" / "run.py")
chaos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = chaos  # its dataclasses look their module up there
_spec.loader.exec_module(chaos)

log = chaos.log
PARTITIONS = 16
SUBSET = "0-7"  # the partitions of the first worker
APIS = 2
FAILOVER_TIMEOUT_S = 60
# After the failover, each worker's Redis commands answer again within this: a cluster
# connection that stops answering is replaced after three timeouts of 5 s.
RECOVERY_S = 45
REDIS_TIMEOUT = "redis: timed out"
REPLACED = "redis cluster connection stopped answering"
# Stream commands counted per shard: jobs added, jobs read by the workers' groups.
STREAM_COMMANDS = ("xadd", "xreadgroup")


def script(name: str, action: str, env: dict[str, str]) -> str:
    """Runs scripts/<name> <action>; its output (the shell exports of `start`)."""
    done = subprocess.run([str(REPO / "scripts" / name), action], capture_output=True, text=True,
                          env=os.environ | env, timeout=300)
    if done.returncode != 0:
        raise harness.StackError(f"scripts/{name} {action} failed: {(done.stderr or done.stdout).strip()[-600:]}")
    return done.stdout


def exports(text: str) -> dict[str, str]:
    """`export NAME=value` lines as a dict."""
    return dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))


def node_cli(port: int) -> list[str]:
    return ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]


def stream_calls(port: int) -> Counter:
    """Calls of STREAM_COMMANDS the node executed (its own and, on a replica, replicated)."""
    stats = harness.run_command([*node_cli(port), "INFO", "commandstats"], timeout=10)
    calls: Counter = Counter()
    for command in STREAM_COMMANDS:
        found = re.search(rf"^cmdstat_{command}:calls=(\d+)", stats, re.M)
        calls[command] = int(found.group(1)) if found else 0
    return calls


@dataclass
class Shard:
    """An original master and its replica; the counts of the stream commands it served."""

    master: int
    replica: int
    master_pid_file: Path
    failed_over: bool = False
    # The killed master's calls until its death, and its replica's at that moment (its
    # replicated XADDs, which the replica did not serve).
    master_at_kill: Counter = field(default_factory=Counter)
    replica_at_kill: Counter = field(default_factory=Counter)

    def serving(self) -> int:
        return self.replica if self.failed_over else self.master

    def calls(self) -> tuple[Counter, Counter]:
        """The shard's stream commands in all, and those its promoted replica served."""
        if not self.failed_over:
            return stream_calls(self.master), Counter()
        after = stream_calls(self.replica)
        after.subtract(self.replica_at_kill)
        return self.master_at_kill + after, after


def redis_trouble(log_path: Path) -> tuple[datetime | None, int]:
    """From a worker's log (each line starts with its UTC time): when its Redis
    commands last timed out, and how many times it replaced its cluster connection."""
    last_timeout, replacements = None, 0
    for line in log_path.read_text(errors="replace").splitlines():
        if REPLACED in line:
            replacements += 1
        elif REDIS_TIMEOUT in line:
            try:
                last_timeout = datetime.fromisoformat(line.split(" ", 1)[0])
            except ValueError:
                pass
    return last_timeout, replacements


class ClusterSuite(chaos.Chaos):
    LABEL = "cluster"

    def __init__(self, args, log_dir: Path, root: Path):
        super().__init__(args, log_dir, root)
        self.expected_workers = 3  # the two untouched and the replacement
        # 160 steps: 20 bursts, 10 digests per writer. The daily cap is 24: the margin
        # is for digests split by a fault (a comment routed after its post's digest
        # went starts another). With 20 digests per writer, a CI run split 9 and left
        # one writer's last digest waiting in the delayed set for tomorrow.
        self.comments_every = 8
        self.redis_env = {"HERALD_REDIS_CLUSTER_PORT": str(args.redis_port)}
        self.cluster_url = ""
        self.shards: list[Shard] = []
        self.failover: chaos.Fault | None = None
        self.db: harness.Postgres | None = None
        self.read_url = ""
        self.pg_started_here = False
        self.api_urls: list[str] = []
        self.taken_by_api: Counter = Counter()
        self.turn = itertools.count()

    # ------------------------------------------------------------------ stack

    def start_stores(self) -> tuple[str, str]:
        self.start_postgres()
        self.start_redis_cluster()
        return self.db.url, self.cluster_url

    def start_postgres(self) -> None:
        port = os.environ.get("HERALD_REPLICA_PG_PORT", "55432")
        self.pg_started_here = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]).returncode != 0
        urls = exports(script("pg-replica.sh", "start", {}))
        primary, replica = urls["HERALD_TEST_PRIMARY_URL"], urls["HERALD_TEST_REPLICA_URL"]
        self.db = harness.Postgres(primary, f"herald_cluster_{self.run_hex}")
        self.db.create()
        self.pg = chaos.Psql(self.db.url)  # the verdict reads the primary
        self.read_url = harness.Postgres(replica, self.db.name).url
        # The database reaches the replica by streaming; the apis read from it.
        replica_db = chaos.Psql(self.read_url)
        deadline = time.monotonic() + 30
        while True:
            try:
                replica_db.scalar("select 1")
                break
            except harness.StackError as e:
                if time.monotonic() > deadline:
                    raise harness.StackError(f"database {self.db.name} did not reach the replica: {e}") from e
                time.sleep(0.2)
        log(f"postgres primary {primary}, replica {replica} (started here: {self.pg_started_here}); "
            f"database {self.db.name}")

    def start_redis_cluster(self) -> None:
        # A cluster left by an interrupted run on these ports is wiped, never reused.
        script("redis-cluster.sh", "stop", self.redis_env)
        self.cluster_url = exports(script("redis-cluster.sh", "start", self.redis_env))[
            "HERALD_TEST_REDIS_CLUSTER_URL"]
        base = self.args.redis_port
        data_dir = harness.target_dir(REPO) / f"redis-cluster-{base}"
        nodes = harness.redis_cluster_nodes(f"redis://127.0.0.1:{base}")
        by_id = {n.node_id: n for n in nodes}
        replica_of = {by_id[n.master_id].port: n.port for n in nodes if n.master_id in by_id}
        for master in sorted(n.port for n in nodes if n.live_master and n.serves_slots):
            self.shards.append(Shard(master, replica_of[master], data_dir / f"redis-{master}.pid"))
        # Counted from here: the stream traffic of this run only.
        for n in nodes:
            harness.run_command([*node_cli(n.port), "CONFIG", "RESETSTAT"])
        log(f"redis cluster {self.cluster_url}: shards (master/replica) "
            + ", ".join(f":{s.master}/:{s.replica}" for s in self.shards))

    def stack_spec(self) -> harness.StackSpec:
        spec = super().stack_spec()
        spec.env |= {"HERALD_PARTITIONS": str(PARTITIONS), "DATABASE_READ_URL": self.read_url}
        return spec

    def start_processes(self) -> None:
        self.api_urls = [self.api_url]
        for i in range(2, APIS + 1):
            port = harness.free_port()
            url = f"http://127.0.0.1:{port}"
            api = self.procs.start(f"api-{i}", [str(self.bin_dir / "herald-api")],
                                   self.env | {"HERALD_BIND": f"127.0.0.1:{port}"}, REPO)
            harness.wait_http_ok(api, url, "/healthz/ready", timeout=90)
            self.api_urls.append(url)
        self.start_worker(["--partitions", SUBSET])
        self.start_worker()
        self.start_worker()
        log(f"apis {self.api_urls}")

    def redis_clis(self) -> list[list[str]]:
        return harness.Redis(self.cluster_url, "").node_clis()

    # ------------------------------------------------------------ sending

    def call(self, method: str, path: str, body: Any = None) -> harness.Response:
        """Each request to the next api in turn."""
        self.api_url = self.api_urls[next(self.turn) % len(self.api_urls)] if self.api_urls else self.api_url
        resp = super().call(method, path, body)
        if method == "POST" and resp.status in (200, 202):
            self.taken_by_api[self.api_url] += 1
        return resp

    def fault_plan(self, steps: int) -> dict[int, Any]:
        return {steps * 3 // 10: self.fail_over_master, steps * 6 // 10: self.kill_worker}

    def fail_over_master(self, step: int) -> None:
        """SIGKILL of the first master; sends on until its replica serves the slots."""
        self.wait_in_flight()
        shard = self.shards[0]
        running = len(self.live_workers())
        pid = int(shard.master_pid_file.read_text().strip())
        shard.master_at_kill = stream_calls(shard.master)
        shard.replica_at_kill = stream_calls(shard.replica)
        started = chaos.utcnow()
        os.kill(pid, signal.SIGKILL)
        shard.failed_over = True
        log(f"FAULT at step {step}: SIGKILL of Redis master :{shard.master} (pid {pid}); sending until "
            f"replica :{shard.replica} is promoted")
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        sent = 0
        while not self.promoted(shard):
            if time.monotonic() > deadline:
                raise harness.CheckFailed(f"replica :{shard.replica} not promoted within {FAILOVER_TIMEOUT_S} s")
            if sent < 4:
                self.send_broadcasts(30_000_000 + step * 1000 + sent * chaos.BATCH,
                                     outage=self.sent.during_redis_outage)
                self.send_alert(outage=self.sent.during_redis_outage)
                sent += 1
            else:
                time.sleep(0.2)
        ended = chaos.utcnow()
        log(f"  replica :{shard.replica} promoted, cluster_state:ok on every node after "
            f"{(ended - started).total_seconds():.1f} s; {sent} batches sent meanwhile")
        self.failover = chaos.Fault(f"Redis master :{shard.master} failed over", started, ended, running)
        self.faults.append(self.failover)

    def promoted(self, shard: Shard) -> bool:
        """The replica is a master and every live node says cluster_state:ok."""
        try:
            if "role:master" not in harness.run_command([*node_cli(shard.replica), "INFO", "replication"], 5):
                return False
            live = [p for s in self.shards for p in (s.master, s.replica) if p != shard.master]
            return all("cluster_state:ok" in harness.run_command([*node_cli(p), "CLUSTER", "INFO"], 5)
                       for p in live)
        except harness.StackError:
            return False

    # ------------------------------------------------------------- verdict

    def verify(self) -> None:
        self.verify_redis_outage("a Redis master was down")
        self.verify_workers_recovered()
        taken = {url.rsplit(":", 1)[1]: n for url, n in self.taken_by_api.items()}
        self.check(f"both apis took events ({taken})", len(taken) == APIS and min(taken.values()) > 0,
                   f"requests taken by api port: {taken}")
        self.verify_outcome()
        self.verify_shards()

    def verify_workers_recovered(self) -> None:
        """No worker's Redis commands kept timing out after the failover. Once, every
        command of a worker's shared cluster connection did, for minutes, while the
        cluster answered and the other workers did its work; the suite passed."""
        if self.failover is None:
            return
        late, replaced = {}, {}
        for worker in self.workers:
            last_timeout, replaced[worker.name] = redis_trouble(worker.log_path)
            after_s = (last_timeout - self.failover.ended).total_seconds() if last_timeout else 0
            if after_s > RECOVERY_S:
                late[worker.name] = f"last at +{after_s:.0f} s"
        self.check(f"every worker's Redis commands answer within {RECOVERY_S} s of the failover "
                   f"(cluster connections replaced: {replaced})", not late,
                   f"commands still timing out: {late}")

    def verify_shards(self) -> None:
        rows = []
        for shard in self.shards:
            total, promoted = shard.calls()
            streams = len([k for k in harness.run_command([*node_cli(shard.serving()), "--scan", "--pattern",
                                                           "herald:*queue:*"], 10).split()])
            rows.append({"master": shard.master, "serving": shard.serving(), "streams": streams,
                         **{c: total[c] for c in STREAM_COMMANDS}})
            if shard.failed_over:
                self.check(f"the promoted replica :{shard.replica} served its shard after the failover "
                           f"({promoted['xadd']} XADD, {promoted['xreadgroup']} XREADGROUP)",
                           promoted["xadd"] > 0 and promoted["xreadgroup"] > 0)
        self.check("every original master's shard received stream traffic ("
                   + "; ".join(f":{r['master']} {r['xadd']} XADD, {r['xreadgroup']} XREADGROUP" for r in rows) + ")",
                   all(r["xadd"] > 0 and r["xreadgroup"] > 0 for r in rows), f"per shard: {rows}")
        if hasattr(self, "figures"):
            self.figures["shards"] = rows
            self.figures["taken_by_api"] = dict(self.taken_by_api)

    def summary(self) -> str:
        shards = "; ".join(f":{r['master']}" + (f"->:{r['serving']}" if r["serving"] != r["master"] else "")
                           + f" {r['streams']} streams, {r['xadd']} XADD" for r in self.figures.get("shards", []))
        return f"{super().summary()}; per master: {shards}"

    # ------------------------------------------------------------- cleanup

    def cleanup(self) -> None:
        self.stop_herald()
        steps = [("drop the database", lambda: self.db and self.db.drop()),
                 ("stop the Redis Cluster", lambda: script("redis-cluster.sh", "stop", self.redis_env))]
        if self.pg_started_here:
            steps.append(("stop the Postgres primary and replica", lambda: script("pg-replica.sh", "stop", {})))
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: could not {what}: {e}", file=sys.stderr, flush=True)
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    p = chaos.arg_parser(__doc__, 20_000)
    p.add_argument("--redis-port", type=int, default=17101,
                   help="first of the six ports of the Redis Cluster (default 17101)")
    return chaos.run_suite(ClusterSuite, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
