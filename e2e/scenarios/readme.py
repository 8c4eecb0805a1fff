"""The README's examples, pasted into a shell in order against a fresh stack.

The blocks between `<!-- walkthrough: begin -->` and `<!-- walkthrough: end -->` in
README.md run in one bash session, command by command, as a newcomer would paste them
after `make up`: the same ports and key are rewritten to the fresh stack's, and
`HERALD_BANK_LINK_REMINDER_DELAY` is what `make up` sets. After each command, the answer
the README shows on its `# → ` lines must match what the command printed:

* JSON against JSON: every key shown must be there with a matching value (other keys
  may follow), arrays match element by element, `"..."` or `...` matches any value,
  and a trailing `, ...]` lets the array go on;
* anything else line by line, with `...` matching any text.

The SQL blocks of "Inspect history in Postgres" then run against the same database and
must run without error. So the README and Herald cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import harness
from harness import Stack, StackSpec, check, run_command

NAME = "readme"
LABEL = "readme"

BEGIN = "<!-- walkthrough: begin -->"
END = "<!-- walkthrough: end -->"
EXPECT = "# → "
# As `make up` sets it (scripts/up-local.sh, docker-compose.yml); the README waits for it.
REMINDER_DELAY = "10s"
COMMAND_TIMEOUT_S = 60
REST = "\u2026rest"  # the sentinel a trailing `, ...]` becomes


class Command:
    """One shell command and the answer lines the README shows after it."""

    def __init__(self, text: str):
        self.text = text
        self.expected: list[str] = []

    def __repr__(self) -> str:
        return f"Command({self.text!r}, {self.expected!r})"


def walkthrough_blocks(readme: str) -> list[str]:
    """The ```bash blocks between the walkthrough markers, in order."""
    start, end = readme.index(BEGIN), readme.index(END)
    return re.findall(r"```bash\n(.*?)```", readme[start:end], flags=re.S)


def sql_blocks(readme: str) -> list[str]:
    section = readme[readme.index("## Inspect history in Postgres"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def is_complete(text: str) -> bool:
    """Whether `text` is a whole shell command (not inside an open quote or loop)."""
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode == 0


def split_commands(block: str) -> list[Command]:
    """Splits a block into commands, each with the `# → ` answer lines that follow it."""
    commands: list[Command] = []
    pending: list[str] = []
    in_expectation = False
    for line in block.splitlines():
        if line.startswith(EXPECT) and not pending and commands:
            commands[-1].expected.append(line[len(EXPECT):])
            in_expectation = True
            continue
        if in_expectation and re.match(r"#\s{2,}", line) and not pending:
            commands[-1].expected.append(line[1:].strip())
            continue
        in_expectation = False
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if is_complete(text):
            commands.append(Command(text))
            pending = []
    check(not pending, f"an unfinished command at the end of a block: {pending}")
    return commands


def to_json(expected: str):
    """The README's JSON with its ellipses made parseable; None when it is not JSON."""
    text = re.sub(r",\s*\.\.\.\s*\]", f', "{REST}"]', expected)
    text = re.sub(r",\s*\.\.\.\s*\}", "}", text)
    text = re.sub(r"(?<=[:\[,])(\s*)\.\.\.(?=\s*[,\]}])", r'\1"..."', text)
    try:
        return json.loads(text)
    except ValueError:
        return None


def json_matches(expected, actual) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and json_matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        open_ended = bool(expected) and expected[-1] == REST
        shown = expected[:-1] if open_ended else expected
        if len(actual) < len(shown) or (not open_ended and len(actual) != len(shown)):
            return False
        return all(json_matches(e, a) for e, a in zip(shown, actual))
    return expected == actual


def text_matches(expected: list[str], output: str) -> bool:
    lines = [line.strip() for line in output.strip().splitlines()]
    if len(lines) != len(expected):
        return False
    for want, got in zip(expected, lines):
        pattern = ".+?".join(re.escape(part) for part in want.strip().split("..."))
        if not re.fullmatch(pattern, got):
            return False
    return True


def answer_matches(expected: list[str], output: str) -> bool:
    wanted = to_json(" ".join(expected))
    if wanted is not None:
        try:
            got = json.loads(output)
        except ValueError:
            return text_matches(expected, output)
        return json_matches(wanted, got)
    return text_matches(expected, output)


class Shell:
    """One bash session, fed command after command, as a terminal would be."""

    MARK = "__readme_done__"

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

    def run(self, command: str) -> tuple[int, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{command}\nprintf '\\n{self.MARK} %s\\n' $?\n".encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while (self.MARK.encode() + b" ") not in out or not out.endswith(b"\n"):
            left = deadline - time.monotonic()
            check(left > 0, f"no answer within {COMMAND_TIMEOUT_S}s to: {command[:200]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                check(chunk, f"the shell exited while running: {command[:200]}")
                out += chunk
        text = out.decode("utf-8", "replace")
        body, _, status = text.rpartition(f"\n{self.MARK} ")
        return int(status.strip()), body

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def localize(text: str, stack: Stack, db_url: str) -> str:
    """The README as written for `make up`, pointed at this run's stack instead."""
    sink = stack.sink_url("healthy").rstrip("/").removeprefix("http://")
    return (text.replace("localhost:8000", stack.api_url.removeprefix("http://"))
                .replace("localhost:5000", sink)
                .replace("dev-key", harness.API_KEY)
                .replace("postgres://postgres@127.0.0.1:5432/herald", db_url))


def run(shared: Stack) -> None:
    readme = (shared.repo / "README.md").read_text()
    run_ = harness.new_run(shared.repo, "e2e-logs", "herald_readme")
    spec = StackSpec(sinks={"healthy": []}, env={"HERALD_BANK_LINK_REMINDER_DELAY": REMINDER_DELAY})
    shell = None
    try:
        with shared.check("a fresh stack for the README", fatal=True):
            stack = run_.start_stack(shared.repo, shared.results, build=False, release=False, spec=spec,
                                     bin_dir=shared.bin_dir)
            stack.label = LABEL
        shell = Shell(os.environ | {"PAGER": "cat", "PSQL_PAGER": "cat"})
        for number, block in enumerate(walkthrough_blocks(readme), 1):
            commands = split_commands(localize(block, stack, run_.db.url))
            first = commands[0].text.splitlines()[0][:60] if commands else "(empty)"
            with shared.check(f"block {number} ({first})", fatal=False):
                for command in commands:
                    status, output = shell.run(command.text)
                    check(status == 0, f"exit status {status} of:\n{command.text}\n{output}")
                    if command.expected:
                        check(answer_matches(command.expected, output),
                              f"the README shows\n  {' '.join(command.expected)}\nbut\n{command.text}\n"
                              f"printed\n  {output.strip()[:1500]}")
        for number, sql in enumerate(sql_blocks(readme), 1):
            with shared.check(f"SQL block {number} of 'Inspect history' runs"):
                run_command(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", run_.db.url, "-c", sql])
    finally:
        if shell:
            shell.close()
        run_.cleanup()


def _self_test() -> None:
    """The matcher's own cases (python3 e2e/scenarios/readme.py)."""
    assert answer_matches(['{"a": 1, ...}'], '{"a": 1, "b": 2}')
    assert not answer_matches(['{"a": 1}'], '{"a": 2}')
    assert answer_matches(['[{"x": ...}, ...]'], '[{"x": 1}, {"y": 2}]')
    assert not answer_matches(['[{"x": 1}]'], '[{"x": 1}, {"y": 2}]')
    assert answer_matches(['{"id": "...", "ok": true}'], '{"id": "abc", "ok": true}')
    assert answer_matches(["... ..."], "a b\n")
    assert answer_matches(["1", "1"], "1\n1\n")
    assert not answer_matches(["1"], "1\n1\n")
    cmds = split_commands("A=1\n# → x\necho '{\n}'\nfor i in 1 2; do\necho $i\ndone\n# → 1\n#   2\n")
    assert [c.text for c in cmds] == ["A=1", "echo '{\n}'", "for i in 1 2; do\necho $i\ndone"], cmds
    assert cmds[0].expected == ["x"] and cmds[2].expected == ["1", "2"], cmds


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _self_test()
    print("ok")
