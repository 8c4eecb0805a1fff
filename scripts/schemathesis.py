#!/usr/bin/env python3
"""`make schemathesis`: HTTP fuzzing of every route of `/openapi.json` (issue 6).

    python3 scripts/schemathesis.py [--no-build] [--release] [--max-examples N] [--seed S]

Starts the e2e stack (a throwaway database and Redis prefix, the sinks, the api and a
worker: `e2e/harness.py`), then runs schemathesis (from PyPI; installed with pip when
missing) against the api's own OpenAPI document with the test key, in all its phases
(explicit examples, coverage of boundary and invalid values, random fuzzing, and
stateful sequences that reuse ids the api returned), with the check
`not_a_server_error`: any 5xx answer, or a connection the api dropped, fails the run.

Positive and negative data are generated (`--mode all`): well-formed bodies of the
documented shapes and bodies that violate the schema (wrong types, missing fields,
huge strings, odd encodings, unknown content types). Only the SSE stream
(`GET /api/v1/users/{user_id}/stream`) is left out: it never ends by design.

Prints schemathesis's summary, then `runs: <operations>, inputs: <test cases>,
failures: <n>` and the closing line `N passed, M failed`; the exit code is 0 only
when M is 0. Reports (JUnit XML, NDJSON events) go to target/schemathesis/<run id>/.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "e2e"))

import harness  # noqa: E402  (needs the path above)


def ensure_schemathesis() -> str:
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe:
        return exe
    print("schemathesis is not installed: pip install schemathesis", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "schemathesis"], check=True)
    exe = shutil.which("schemathesis")
    if not exe:
        raise harness.StackError("schemathesis did not install")
    return exe


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--release", action="store_true", help="build and run target/release binaries")
    p.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase (default 100)")
    p.add_argument("--seed", type=int, default=None, help="schemathesis seed, for a reproducible run")
    p.add_argument("--max-time", type=int, default=None, help="time budget in seconds for the schemathesis run")
    return p.parse_args(argv)


def count_inputs(ndjson: Path) -> tuple[int, int]:
    """(operations, test cases) from the NDJSON event stream schemathesis writes."""
    operations: set[str] = set()
    cases = 0
    if not ndjson.is_file():
        return 0, 0
    for line in ndjson.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for kind, body in event.items() if isinstance(event, dict) else ():
            if kind == "ScenarioFinished" and isinstance(body, dict):
                label = body.get("label") or (body.get("recorder") or {}).get("label")
                if label:
                    operations.add(label)
                cases += len(((body.get("recorder") or {}).get("cases")) or {})
    return len(operations), cases


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    run = harness.new_run(REPO, "schemathesis", "herald_st")
    out_dir, procs = run.log_dir, run.procs
    results = harness.Results()
    started = time.monotonic()
    figures = ""
    try:
        exe = ensure_schemathesis()
        stack = run.start_stack(REPO, results, build=not args.no_build, release=args.release)
        ndjson = out_dir / "events.ndjson"
        argv = [exe, "run", f"{stack.api_url}/openapi.json", "--url", stack.api_url,
                "--checks", "not_a_server_error", "--mode", "all",
                "--header", f"Authorization: Bearer {harness.API_KEY}",
                "--exclude-path-regex", "/stream$",
                "--max-examples", str(args.max_examples), "--workers", "2",
                "--request-timeout", "30", "--no-color", "--suppress-health-check", "all",
                "--generation-database", "none",
                "--report", "junit,ndjson", "--report-dir", str(out_dir),
                "--report-ndjson-path", str(ndjson)]
        if args.seed is not None:
            argv += ["--seed", str(args.seed)]
        if args.max_time:
            argv += ["--max-time", str(args.max_time)]
        print("running: " + " ".join(a if " " not in a else repr(a) for a in argv), flush=True)
        done = subprocess.run(argv, cwd=out_dir, capture_output=True, text=True)
        output = done.stdout + done.stderr
        (out_dir / "schemathesis.log").write_text(output)
        summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-6000:]
        print(summary.rstrip(), flush=True)
        operations, cases = count_inputs(ndjson)
        m = re.search(r"Test cases:\s*([\d,]+) generated", output)
        if m:
            cases = int(m.group(1).replace(",", ""))
        m = re.search(r"API Operations:\s*\n?\s*Selected:\s*(\d+)/(\d+)", output)
        if m:
            operations = int(m.group(1))
        server_errors = len(re.findall(r"Server error", output))
        api_log = stack.log_text("api")
        panics = len(re.findall(r"panicked at", api_log))
        internal = len(re.findall(r"internal error", api_log))
        figures = (f"runs: {operations} operations, inputs: {cases} test cases, "
                   f"failures: {server_errors} server errors, {panics} panics, exit code {done.returncode}")
        results.record(done.returncode == 0 and server_errors == 0,
                       "schemathesis: no 5xx from any route of /openapi.json",
                       f"exit code {done.returncode}; see {out_dir / 'schemathesis.log'}")
        results.record(panics == 0 and internal == 0, "schemathesis: the api logged no panic and no internal error",
                       f"{panics} panics, {internal} internal errors in {procs.log_dir / 'api.log'}")
    except (harness.StackError, subprocess.CalledProcessError) as e:
        results.record(False, "schemathesis: start", str(e))
    except KeyboardInterrupt:
        results.record(False, "schemathesis: interrupted", "")
    finally:
        run.cleanup()
    if figures:
        print(figures)
    print(f"wall time {time.monotonic() - started:.1f}s; reports in {out_dir}")
    print(results.closing_line(), flush=True)
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
