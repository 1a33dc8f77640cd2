"""laws/ has no import cycle (function-level imports count too) and imports no higher layer."""
from __future__ import annotations

import ast
from pathlib import Path

LAWS = Path(__file__).resolve().parents[2] / "laws"
FORBIDDEN = ("curate.orchestration", "curate.pipelines", "curate.probe", "apache_beam")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement is."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in LAWS.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in modules:
        deps = _imports(LAWS / f"{name}.py")
        graph[name] = {d.split(".")[2] for d in deps
                       if d.startswith("curate.laws.") and d.split(".")[2] in modules} - {name}
    return graph


def test_laws_modules_import_each_other_without_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles in laws/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_laws_import_no_higher_layer():
    for path in LAWS.glob("*.py"):
        bad = sorted(d for d in _imports(path) if d.startswith(FORBIDDEN))
        assert not bad, f"{path.name} imports {bad}"
