#!/usr/bin/env python3
"""`make e2e`: build Herald, start it on throwaway infrastructure, drive the seed
scenarios over HTTP and assert their outcomes.

    python3 e2e/run.py [--no-build] [--release] [--only NAME ...] [--list]

Every scenario module in e2e/scenarios/ exposing `NAME` and `run(stack)` is run (in
file-name order), or only those named with `--only`. The last line printed is always
`N passed, M failed`; the exit code is 0 only when M is 0.

Whatever happens (success, failure, Ctrl-C, SIGTERM), the processes started are
stopped and the run's database and Redis keys are deleted.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parent
sys.path.insert(0, str(E2E_DIR))  # `python3 e2e/run.py` from anywhere, no package needed

import harness  # noqa: E402  (needs the path above)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="env: HERALD_TEST_DATABASE_URL (default %s), HERALD_TEST_REDIS_URL (default %s)"
                                % (harness.DEFAULT_DATABASE_URL, harness.DEFAULT_REDIS_URL))
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--release", action="store_true", help="build and run target/release binaries")
    p.add_argument("--only", action="append", metavar="NAME", default=[],
                   help="run only this scenario (repeatable)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


def load_scenarios() -> list[ModuleType]:
    """Every e2e/scenarios/*.py with a NAME and a run(stack), ordered by file name."""
    scenarios = []
    for path in sorted((E2E_DIR / "scenarios").glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"e2e_scenario_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not (isinstance(getattr(module, "NAME", None), str) and callable(getattr(module, "run", None))):
            raise SystemExit(f"{path}: a scenario module must define NAME and run(stack)")
        scenarios.append(module)
    return scenarios


def select(scenarios: list[ModuleType], only: list[str]) -> list[ModuleType]:
    if not only:
        return scenarios
    known = {s.NAME for s in scenarios}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [s for s in scenarios if s.NAME in only]


def run_scenario(stack: harness.Stack, scenario: ModuleType) -> None:
    """Run one scenario; an aborting or crashing scenario never stops the next one."""
    stack.label = getattr(scenario, "LABEL", scenario.NAME)
    started = time.monotonic()
    try:
        scenario.run(stack)
    except harness.ScenarioAborted as e:
        print(f"     ({scenario.NAME}: stopped after {e} failed)", flush=True)
    except Exception as e:  # noqa: BLE001 - a crash outside any check still counts
        stack.results.record(False, f"{stack.label}: scenario crashed", f"{type(e).__name__}: {e}")
    print(f"     ({scenario.NAME}: {time.monotonic() - started:.1f}s)", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scenarios = select(load_scenarios(), args.only)
    if args.list:
        print("\n".join(s.NAME for s in scenarios))
        return 0
    harness.trap_interrupts()
    run = harness.new_run(REPO, "e2e-logs", "herald_e2e")
    run_id, log_dir, procs = run.run_id, run.log_dir, run.procs
    results = harness.Results()
    started = time.monotonic()
    interrupted = False
    print(f"e2e run {run_id}: logs in {log_dir}", flush=True)
    try:
        try:
            stack = run.start_stack(REPO, results, build=not args.no_build, release=args.release)
        except harness.StackError as e:
            results.record(False, "e2e: start the stack", str(e))
        else:
            for scenario in scenarios:
                run_scenario(stack, scenario)
    except KeyboardInterrupt as e:
        interrupted = True
        # Counted as a failure so an interrupted run never reads as a green one.
        results.record(False, "e2e: run interrupted", f"by {str(e) or 'SIGINT'}; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        if results.failed or interrupted:
            procs.print_logs()
        run.cleanup()
    print(f"wall time {time.monotonic() - started:.1f}s; logs in {log_dir}")
    if results.failures:
        print("failed: " + "; ".join(results.failures))
    print(results.closing_line(), flush=True)
    if interrupted:
        return 130
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
