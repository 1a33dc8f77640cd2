"""The layer rules of docs/architecture.md, checked on the source (AST) and on a real start-up.

- Packages import one way: orchestration -> pipelines -> scorers, pools; orchestration -> laws;
  probe -> laws, scorers, pools. laws/, scorers/ and pools/ import no other curate package.
- Only pipelines/ imports apache_beam; laws/ uses no file-I/O framework, torch or Beam.
- Every import names `curate.<package>` (one top-level import name), never a bare `laws`.
- No import cycle between curate modules (lazy imports inside functions count too: a cycle
  that only works because one side imports late is still a knot in the design).
- `curate --help` loads no numpy, Beam, torch, pyarrow or duckdb, and no command module
  (orchestration/commands/) imports numpy, scipy, torch, pyarrow, duckdb or Beam at all.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "scorers", "pools", "laws", "orchestration", "probe")
ALLOWED = {
    "orchestration": {"laws", "pipelines", "pools", "probe", "scorers"},
    "pipelines": {"pools", "scorers"},
    "probe": {"laws", "pools", "scorers"},
    "laws": set(),
    "scorers": set(),
    "pools": set(),
}
FORBIDDEN_EXTERNAL = {
    "laws": {"apache_beam", "pyarrow", "duckdb", "pandas", "torch", "matplotlib", "argparse"},
    "scorers": {"apache_beam", "duckdb", "argparse"},
    "pools": {"apache_beam", "torch", "argparse"},
    "probe": {"apache_beam", "argparse"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "curate." + ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) for every absolute import outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    graph = defaultdict(set)
    for module, path in sources.items():
        for _, name in _imports(path):
            if name in sources and name != module:
                graph[module].add(name)
    return graph


def test_packages_import_only_downwards():
    bad = []
    for module, path in _sources().items():
        pkg = module.split(".")[1]
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in PACKAGES:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports bare {name!r} (use curate.{name})")
            if top == "curate" and "." in name:
                target = name.split(".")[1]
                if target != pkg and target not in ALLOWED[pkg]:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {pkg}/ may not import {name}")
            if top in FORBIDDEN_EXTERNAL.get(pkg, ()):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {pkg}/ may not import {top}")
            if top == "apache_beam" and pkg != "pipelines":
                bad.append(f"{path.relative_to(ROOT)}:{line}: only pipelines/ imports apache_beam")
    assert not bad, "\n".join(bad)


def test_command_modules_parse_call_render():
    """A command module parses arguments, calls the library and renders: no numerics of its own."""
    numeric = {"numpy", "scipy", "torch", "pyarrow", "duckdb", "apache_beam", "pandas"}
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in sorted((ROOT / "orchestration" / "commands").glob("*.py"))
           for line, name in _imports(p) if name.split(".")[0] in numeric]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components; any component of 2+ modules is a cycle
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(_sources()):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The AST reader finds lazy imports and skips TYPE_CHECKING ones (else the tests above prove nothing)."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import apache_beam\n"
                   "def f():\n    from curate.orchestration import cli\n    import laws.qqt\n")
    names = [name for _, name in _imports(src)]
    assert "curate.orchestration" in names and "laws.qqt" in names and "apache_beam" not in names


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["run", "--help"]])
def test_cli_help_loads_no_heavy_library(argv):
    heavy = ("numpy", "apache_beam", "torch", "duckdb", "pyarrow", "scipy", "sentence_transformers")
    code = (
        "import sys\n"
        "from curate.orchestration.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('LOADED:' + ','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.rsplit("LOADED:", 1)[1].strip()
    assert loaded == "", f"curate {' '.join(argv)} loaded {loaded}"
