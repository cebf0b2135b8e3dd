"""The house rules, checked over the source: imports between mapper's packages run one way (no circle), Ray is
imported only in mapper.pipelines, and no module grows past 600 lines. Read with ast, so nothing is imported."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each importable package lives in the checkout (pyproject's package-dir).
PACKAGE_DIRS = {"mapper": ROOT / "mapper", "mapper.pipelines": ROOT / "pipelines",
                "mapper.validation": ROOT / "validation"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    mods = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = path
    return mods


def _imports(name: str, path: Path) -> list[str]:
    """Absolute names of what a module imports (from-imports resolved relative to the module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out += [module, *(f"{module}.{a.name}" for a in node.names)]
    return out


def _package(module: str) -> str:
    """The package a module belongs to for the layering rule: mapper.X (top-level modules count as mapper)."""
    return ".".join(module.split(".")[:2])


def package_graph() -> dict[str, dict[str, list[str]]]:
    """{package: {imported package: [importing module -> imported module, ...]}} within mapper."""
    mods = _modules()
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, path in mods.items():
        for target in _imports(name, path):
            if target in mods and _package(name) != _package(target) and name.count(".") >= 1:
                graph[_package(name)][_package(target)].append(f"{name} -> {target}")
    return graph


def circles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(set(graph) | {w for targets in graph.values() for w in targets}):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_between_packages():
    graph = package_graph()
    found = circles(graph)
    detail = [f"{a} -> {b}: {graph[a][b][:3]}" for group in found for a in group for b in group if b in graph[a]]
    assert not found, "import circles between packages:\n" + "\n".join(detail)


def test_the_checker_finds_a_circle():
    assert circles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]
    assert circles({"a": {"b": []}, "b": {}}) == []


def test_ray_is_imported_only_in_pipelines():
    offenders = [f"{name} ({path.relative_to(ROOT)})" for name, path in _modules().items()
                 if not name.startswith("mapper.pipelines")
                 and any(t == "ray" or t.startswith("ray.") for t in _imports(name, path))]  # fmt: skip
    assert not offenders, f"ray imported outside mapper.pipelines: {offenders}"


def test_the_run_engine_imports_no_capability():
    """mapper.run (the engine) knows crop types, label rounds and allocation only through its stage registry."""
    capabilities = {"mapper.croptype", "mapper.al", "mapper.allocate", "mapper.validation", "mapper.cli"}
    used = set(package_graph().get("mapper.run", {}))
    assert not used & capabilities, f"mapper.run imports {sorted(used & capabilities)}"


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_every_package_is_installed():
    """pyproject lists its packages by name: a new folder left out would import in a checkout but not when
    installed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert found - listed == set(), f"packages missing from pyproject's [tool.setuptools] packages: {found - listed}"
