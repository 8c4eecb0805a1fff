#!/usr/bin/env python3
"""Structure checks that rustc and clippy cannot make; `make lint` runs them.

1. Docker builds: every workspace member (root Cargo.toml `members`), `config/`, `data/` and
   `migrations/` are copied into the build context by Dockerfile.api and
   Dockerfile.worker (a COPY of the path itself or of a folder above it). A member
   missing there builds locally and breaks the images.
2. No module cycles: no Rust file under a crate's src/ imports from a file of the same
   crate that imports it back, directly or through other files. Imports are the
   paths written `crate::a::b`, `super::x` and `self::x` (in `use` items and in code);
   each is mapped to the deepest file of the module tree it names. `#[cfg(test)]`
   modules are left out: a test's `use super::*` is not a dependency of the code.
   Declaring a child (`mod x;`) is not an import either.
3. The repository stands alone: README.md, Makefile, config/ and docs/ contain no
   path leaving it (`../`).

Usage: python3 scripts/lint_structure.py [--root DIR] [--self-test]
Exit status 0 when every check passes, 1 otherwise (each problem on its own lines).
Standard library only, so it runs wherever python3 does.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
# Folders every image build needs beside the workspace members.
BUILD_FOLDERS = ("config", "migrations", "data")
# Files and folders that must not point outside the repository.
STANDALONE_PATHS = ("README.md", "Makefile", "config", "docs")


# ---------------------------------------------------------------- 1. Dockerfiles


def workspace_members(root: Path) -> list[str]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    return list(manifest.get("workspace", {}).get("members", []))


def copied_sources(dockerfile: str) -> list[str]:
    """Build-context paths a Dockerfile COPYs (or ADDs); `--from=` copies are stage
    to stage and read nothing from the context."""
    sources: list[str] = []
    text = re.sub(r"\\\n", " ", dockerfile)  # join continuation lines
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources.extend(args[:-1])
    return sources


def normalise(path: str) -> PurePosixPath:
    parts = [p for p in PurePosixPath(path).parts if p not in (".", "")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def covers(source: str, wanted: str) -> bool:
    """Whether copying `source` copies `wanted` (the same path or a folder above)."""
    src, want = normalise(source), normalise(wanted)
    return src == PurePosixPath(".") or src == want or src in want.parents


def check_dockerfiles(root: Path) -> list[str]:
    problems: list[str] = []
    wanted = workspace_members(root) + list(BUILD_FOLDERS)
    for name in DOCKERFILES:
        path = root / name
        if not path.exists():
            problems.append(f"{name}: missing (the images are built from it)")
            continue
        sources = copied_sources(path.read_text(encoding="utf-8"))
        for item in wanted:
            if not any(covers(s, item) for s in sources):
                kind = "workspace member" if item not in BUILD_FOLDERS else "folder"
                problems.append(
                    f"{name}: {kind} `{item}` is not copied into the build "
                    f"(add `COPY {item} {item}` or copy a folder above it)"
                )
    return problems


# ---------------------------------------------------------------- 2. module cycles


def strip_comments_and_strings(src: str) -> str:
    """Blanks comments, string and char literals (newlines kept), so that paths in
    docs or messages are not mistaken for imports."""
    out: list[str] = []
    i, n = 0, len(src)

    def blank(text: str) -> str:
        return "".join(c if c == "\n" else " " for c in text)

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(src, i)) and (
            i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")
        ):
            end = src.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(blank(src[i : j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if i + 1 < n and src[i + 1] == "\\":
                j = src.find("'", i + 2)
                j = n - 1 if j < 0 else j
                out.append(blank(src[i : j + 1]))
                i = j + 1
            elif i + 2 < n and src[i + 2] == "'":
                out.append("   ")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")


def drop_test_modules(code: str) -> tuple[str, set[str]]:
    """Removes inline `#[cfg(test)] mod x { ... }` bodies; returns the code and the
    names of out-of-line test modules (`#[cfg(test)] mod x;`) not to follow."""
    test_files: set[str] = set()
    while m := TEST_MOD.search(code):
        if m.group(2) == ";":
            test_files.add(m.group(1))
            end = m.end()
        else:
            end = matching_brace(code, m.end() - 1) + 1
        code = code[: m.start()] + "".join(c if c == "\n" else " " for c in code[m.start() : end]) + code[end:]
    return code, test_files


MOD_DECL = re.compile(r"(?<![\w:])(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
USE_ITEM = re.compile(r"(?<![\w:])use\s+([^;]+);")
PATH_IN_CODE = re.compile(r"(?<![\w$:])((?:crate|self|super)(?:::\w+)+)")


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, e as f}, self}` -> [`a::b`, `a::c::d`, `a::c::e`, `a`]."""
    tree = re.sub(r"\s*(::|[{},])\s*", r"\1", tree.strip())
    if "{" not in tree:
        return [strip_use_alias(tree).removesuffix("::*")]
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    parts, depth, start = [], 0, 0
    for j, c in enumerate(inner):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(inner[start:j])
            start = j + 1
    parts.append(inner[start:])
    paths: list[str] = []
    prefix = head.removesuffix("::")
    for part in filter(None, parts):
        if part == "self":
            paths.append(prefix)
        else:
            paths.extend(f"{prefix}::{p}" if prefix else p for p in expand_use_tree(part))
    return paths


def strip_use_alias(path: str) -> str:
    return re.split(r"\s+as\s+", path)[0]


@dataclass
class ModuleTree:
    """One crate target (lib.rs, main.rs or a bin): module path -> file."""

    files: dict[tuple[str, ...], Path] = field(default_factory=dict)
    modules: dict[Path, tuple[str, ...]] = field(default_factory=dict)
    code: dict[Path, str] = field(default_factory=dict)


def child_file(parent: Path, is_dir_owner: bool, name: str) -> Path | None:
    base = parent.parent if is_dir_owner else parent.parent / parent.stem
    for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
        if candidate.exists():
            return candidate
    return None


def build_tree(root_file: Path) -> ModuleTree:
    tree = ModuleTree()
    pending = [(root_file, ())]
    while pending:
        path, module = pending.pop()
        if path in tree.modules:
            continue
        code, test_mods = drop_test_modules(strip_comments_and_strings(path.read_text(encoding="utf-8")))
        tree.files[module], tree.modules[path], tree.code[path] = path, module, code
        dir_owner = path.name == "mod.rs" or module == ()
        for m in MOD_DECL.finditer(code):
            name = m.group(1)
            if name in test_mods:
                continue
            child = child_file(path, dir_owner, name)
            if child is not None:
                pending.append((child, module + (name,)))
    return tree


def resolve(tree: ModuleTree, module: tuple[str, ...], path: str) -> Path | None:
    """The deepest file of the tree that `crate::`/`self::`/`super::` `path`, written in
    `module`, names; None for other crates' paths."""
    segs = [s for s in strip_use_alias(path).split("::") if s]
    if not segs or segs[0] not in ("crate", "self", "super"):
        return None
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    else:
        base, rest = list(module), segs
        if rest[0] == "self":
            rest = rest[1:]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    full = tuple(base + rest)
    for k in range(len(full), -1, -1):
        if full[:k] in tree.files:
            return tree.files[full[:k]]
    return None


def imports_of(tree: ModuleTree, path: Path) -> dict[Path, set[str]]:
    """Files of the same tree that `path` imports, with the paths written."""
    code, module = tree.code[path], tree.modules[path]
    written: list[str] = []
    for m in USE_ITEM.finditer(code):
        written.extend(expand_use_tree(m.group(1)))
    written.extend(m.group(1) for m in PATH_IN_CODE.finditer(USE_ITEM.sub(" ", code)))
    edges: dict[Path, set[str]] = {}
    for w in written:
        target = resolve(tree, module, w)
        if target is not None and target != path:
            edges.setdefault(target, set()).add(w)
    return edges


def strongly_connected(graph: dict[Path, dict[Path, set[str]]]) -> list[list[Path]]:
    """Tarjan's algorithm, iterative; components of more than one file."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    found: list[list[Path]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def crate_roots(crate_dir: Path) -> list[Path]:
    src = crate_dir / "src"
    roots = [src / "lib.rs", src / "main.rs"] + sorted((src / "bin").glob("*.rs"))
    return [r for r in roots if r.exists()]


def check_cycles(root: Path) -> list[str]:
    problems: list[str] = []
    for member in workspace_members(root):
        crate_dir = root / member
        src = crate_dir / "src"
        for root_file in crate_roots(crate_dir):
            tree = build_tree(root_file)
            graph = {p: imports_of(tree, p) for p in tree.modules}
            for component in strongly_connected(graph):
                names = [str(p.relative_to(src)) for p in component]
                problems.append(f"{member}: module cycle between {', '.join(names)}:")
                for a in component:
                    for b in component:
                        if b in graph[a]:
                            used = ", ".join(sorted(graph[a][b]))
                            problems.append(f"    {a.relative_to(src)} imports {b.relative_to(src)} ({used})")
    if problems:
        problems.append(
            "  a file may not import from a file that imports it back; move what both "
            "need into a module below them both"
        )
    return problems


# ---------------------------------------------------------------- 3. standalone


def check_standalone(root: Path) -> list[str]:
    problems: list[str] = []
    for name in STANDALONE_PATHS:
        base = root / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # images and other binary files
            for lineno, line in enumerate(text.splitlines(), 1):
                if "../" in line:
                    rel = path.relative_to(root)
                    problems.append(f"{rel}:{lineno}: path leaves the repository (`../`): {line.strip()}")
    return problems


# ---------------------------------------------------------------- driver

CHECKS = (
    ("Dockerfiles copy every workspace member, config/, migrations/ and data/", check_dockerfiles),
    ("no module cycles within a crate", check_cycles),
    ("README.md, Makefile, config/ and docs/ stay inside the repository", check_standalone),
)


def run_checks(root: Path, out=sys.stdout) -> int:
    failed = 0
    for title, check in CHECKS:
        problems = check(root)
        print(f"{'FAIL' if problems else 'ok  '} {title}", file=out)
        for p in problems:
            print(f"  {p}", file=out)
        failed += bool(problems)
    return 1 if failed else 0


def self_test() -> int:
    """Each check on small synthetic trees: it must pass a clean one and name the fault
    in a broken one."""
    import io

    def tree(files: dict[str, str]) -> Path:
        base = Path(tempfile.mkdtemp(prefix="lint-structure-"))
        for rel, text in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text(text, encoding="utf-8")
        return base

    docker = "FROM x AS b\nCOPY Cargo.toml ./\nCOPY crates crates\nCOPY config config\nCOPY migrations migrations\nCOPY --from=b /a /a\n"
    clean = {
        "Cargo.toml": '[workspace]\nmembers = ["crates/a"]\n',
        "Dockerfile.api": docker,
        "Dockerfile.worker": docker,
        "README.md": "see [contract](docs/contract.md)\n",
        "Makefile": "lint:\n\tpython3 scripts/lint_structure.py\n",
        "config/rules.yml": "rules: []\n",
        "crates/a/src/lib.rs": "//! uses `crate::b::X` in a doc only\nmod b;\nmod c;\npub mod d;\npub use b::X;\n",
        "crates/a/src/b.rs": 'use crate::c::Y;\npub struct X(Y);\nconst S: &str = "crate::d::Z";\n'
        "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::d::Z;\n}\n",
        "crates/a/src/c.rs": "pub struct Y;\n#[cfg(test)]\nmod tests;\n",
        "crates/a/src/c/tests.rs": "use crate::b::X;\n",
        "crates/a/src/d/mod.rs": "mod e;\npub struct Z;\npub fn f() -> e::E { e::E }\n",
        "crates/a/src/d/e.rs": "pub struct E;\nfn g(_: super::super::c::Y) {}\n",
    }
    cases: list[tuple[str, dict[str, str], list[str]]] = [
        ("clean tree", {}, []),
        (
            "member missing from the images",
            {"Cargo.toml": '[workspace]\nmembers = ["crates/a", "tools/t"]\n'},
            ["Dockerfile.api: workspace member `tools/t`", "Dockerfile.worker: workspace member `tools/t`"],
        ),
        (
            "config/ missing from one image",
            {"Dockerfile.worker": docker.replace("COPY config config\n", "")},
            ["Dockerfile.worker: folder `config`"],
        ),
        (
            "two files import each other",
            {"crates/a/src/c.rs": "pub struct Y(crate::b::X);\n"},
            ["module cycle between b.rs, c.rs", "b.rs imports c.rs (crate::c::Y)", "c.rs imports b.rs (crate::b::X)"],
        ),
        (
            "a cycle through super:: and a braced use",
            {
                "crates/a/src/b.rs": "pub struct X;\npub fn h() { super::d::f(); }\n",
                "crates/a/src/d/mod.rs": "mod e;\npub struct Z;\npub fn f() -> self::e::E { self::e::E }\n",
                "crates/a/src/d/e.rs": "use crate::{b::X, d::{Z}};\npub struct E;\n",
            },
            ["module cycle between b.rs, d/e.rs, d/mod.rs"],
        ),
        (
            "a path out of the repository",
            {"README.md": "contract: [spec](../shared/SPEC.md)\n"},
            ["README.md:1: path leaves the repository"],
        ),
    ]
    failures = 0
    for name, changes, expected in cases:
        root = tree({**clean, **changes})
        out = io.StringIO()
        status = run_checks(root, out)
        shutil.rmtree(root)
        report = out.getvalue()
        ok = (status == 0) == (not expected) and all(e in report for e in expected)
        print(f"{'ok  ' if ok else 'FAIL'} self-test: {name}")
        if not ok:
            failures += 1
            print("  expected " + repr(expected) + "\n  got:\n" + report)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="repository root")
    parser.add_argument("--self-test", action="store_true", help="check the checks on synthetic trees")
    args = parser.parse_args()
    return self_test() if args.self_test else run_checks(args.root)


if __name__ == "__main__":
    sys.exit(main())
