#!/usr/bin/env python3
"""`make e2e-ui`: the web console in a real browser against a running Herald.

    python3 e2e-ui/run.py [--no-build] [--release] [--docs]

1. makes sure Debian's Chromium is installed (`apt-get install chromium` when
   /usr/bin/chromium is missing) and that e2e-ui/node_modules holds the locked
   playwright-core (`npm ci`); no browser is ever downloaded: Playwright drives
   /usr/bin/chromium;
2. builds Herald and starts api + worker + sinks on free ports with a fresh database
   and Redis prefix, exactly as `make e2e` does (e2e/harness.py);
3. runs `node e2e-ui/test.mjs`, which opens the console, enters the key, follows a
   person live, marks read, and retries a failed delivery from the operations page,
   saving screenshots under target/ui-screenshots/ (and docs/ with --docs);
4. always stops the processes and drops the database and Redis keys.

The last line is `N passed, M failed`; the exit code is 0 only when M is 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

UI_DIR = Path(__file__).resolve().parent
REPO = UI_DIR.parent
sys.path.insert(0, str(REPO / "e2e"))

import harness  # noqa: E402  (needs the path above)

CHROMIUM = Path("/usr/bin/chromium")
NODE_TIMEOUT_S = 300
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--release", action="store_true", help="build and run target/release binaries")
    p.add_argument("--docs", action="store_true", help="also save the README's screenshots in docs/")
    return p.parse_args(argv)


def run_tool(argv: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> None:
    print(f"running: {' '.join(argv)}", flush=True)
    if subprocess.run(argv, cwd=cwd, env=env).returncode != 0:
        raise harness.StackError(f"{' '.join(argv)} failed (see its output above)")


def ensure_chromium() -> None:
    """Debian's chromium package, installed when missing (CI machines start without it)."""
    if CHROMIUM.is_file():
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    print(f"{CHROMIUM} is missing: installing Debian's chromium", flush=True)
    run_tool([*sudo, "apt-get", "update"], env=env)
    run_tool([*sudo, "apt-get", "install", "-y", "chromium"], env=env)
    if not CHROMIUM.is_file():
        raise harness.StackError(f"apt-get installed chromium but {CHROMIUM} is still missing")


def ensure_playwright() -> None:
    """The locked playwright-core in e2e-ui/node_modules (npm ci when absent or stale)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise harness.StackError("node and npm are needed (apt-get install nodejs npm)")
    installed = UI_DIR / "node_modules" / ".package-lock.json"
    lock = UI_DIR / "package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    # The browser comes from Debian; playwright-core alone never downloads one.
    env = os.environ | {"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    run_tool(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI_DIR, env=env)


def run_browser_test(stack: harness.Stack, results: harness.Results, docs: bool) -> None:
    """Runs test.mjs, echoing its lines, and adds its counts to `results`."""
    shots = harness.target_dir(REPO) / "ui-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "HERALD_UI_API": stack.api_url,
        "HERALD_UI_KEY": harness.API_KEY,
        "HERALD_UI_FAIL_SINK": stack.sink_base("fail400"),
        "HERALD_UI_SCREENSHOTS": str(shots),
        "HERALD_UI_CHROMIUM": str(CHROMIUM),
    }
    if docs:
        env["HERALD_UI_DOCS"] = str(REPO / "docs")
    proc = subprocess.Popen(["node", "test.mjs"], cwd=UI_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    counted = None
    deadline = time.monotonic() + NODE_TIMEOUT_S
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            match = SUMMARY.match(line.strip())
            if match:
                counted = (int(match[1]), int(match[2]))
                continue  # the closing line is printed once, by this script, at the very end
            print(f"  {line}", flush=True)
            if time.monotonic() > deadline:
                raise TimeoutError
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (TimeoutError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        results.record(False, "e2e-ui: browser test", f"took over {NODE_TIMEOUT_S}s: killed")
        return
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if counted is None:
        results.record(False, "e2e-ui: browser test", f"node exited with code {proc.returncode} before its summary")
        return
    results.passed += counted[0]
    results.failed += counted[1]
    if counted[1]:
        results.failures.append(f"{counted[1]} browser check(s)")
    if proc.returncode != 0 and counted[1] == 0:
        results.record(False, "e2e-ui: browser test", f"node exited with code {proc.returncode}")
    print(f"  screenshots in {shots}", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    harness.trap_interrupts()
    run = harness.new_run(REPO, "e2e-ui-logs", "herald_e2e_ui")
    run_id, log_dir, procs = run.run_id, run.log_dir, run.procs
    results = harness.Results()
    started = time.monotonic()
    interrupted = False
    print(f"e2e-ui run {run_id}: logs in {log_dir}", flush=True)
    try:
        try:
            ensure_chromium()
            ensure_playwright()
            stack = run.start_stack(REPO, results, build=not args.no_build, release=args.release)
        except harness.StackError as e:
            results.record(False, "e2e-ui: start the stack", str(e))
        else:
            run_browser_test(stack, results, args.docs)
    except KeyboardInterrupt as e:
        interrupted = True
        results.record(False, "e2e-ui: run interrupted", f"by {str(e) or 'SIGINT'}; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
