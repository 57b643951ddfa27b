"""The import graph of ``atfr_analysis`` has no cycles.

Built statically with ``ast`` over every module of the package: each ``import`` and ``from ...
import`` statement anywhere in a module (top level, inside functions or classes, under ``if``
or ``try``, ``TYPE_CHECKING`` blocks included) that names a module of ``atfr_analysis`` is an
edge. ``from P import name`` is an edge to ``P.name`` when that is a module, else to ``P``;
relative imports are resolved against the importing module's package. The import of a parent
package that Python performs before a submodule's is not an edge (every package would otherwise
form a cycle with the submodules its ``__init__`` imports).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "atfr_analysis"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module doc for the rules)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}

    def known(name: str) -> str | None:
        # the longest prefix of ``name`` that is a module of the package
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in mods:
                return cand
        return None

    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve_from(mod, is_package, node)
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.append(sub if sub in mods else src)
            for t in targets:
                if t == PACKAGE or t.startswith(PACKAGE + "."):
                    dst = known(t)
                    if dst is not None and dst != mod:
                        graph[mod].add(dst)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(comps)


def _describe(graph: dict[str, set[str]], comp: list[str]) -> str:
    members = set(comp)
    edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
    return "; ".join(edges)


# ------------------------------------------------------------------------------ the checker
def test_graph_builder_sees_the_package():
    graph = import_graph()
    assert f"{PACKAGE}.models.registry" in graph and f"{PACKAGE}.sgs.layer" in graph
    # edges the builder must find: absolute, relative-free ``from P import submodule``, and the
    # families' registration imports
    assert f"{PACKAGE}.models.registry" in graph[f"{PACKAGE}.models.resnet"]
    assert f"{PACKAGE}.models.exact" in graph[f"{PACKAGE}.models.base"]
    assert f"{PACKAGE}.models.resnet" in graph[f"{PACKAGE}.models"]


def test_cycle_finder_and_resolution_rules(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from atfr_analysis import a\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b  # function-level, relative\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import thing\nimport os\n")
    (pkg / "c.py").write_text("from atfr_analysis.sub.b import x\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    import atfr_analysis.a\n")
    graph = import_graph(pkg)
    assert graph[PACKAGE] == {f"{PACKAGE}.a"}
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.sub.b"}
    assert graph[f"{PACKAGE}.sub.b"] == {f"{PACKAGE}.c"}
    assert graph[f"{PACKAGE}.c"] == {f"{PACKAGE}.sub.b", f"{PACKAGE}.a"}
    assert find_cycles(graph) == [[f"{PACKAGE}.a", f"{PACKAGE}.c", f"{PACKAGE}.sub.b"]]


# ------------------------------------------------------------------------------ the package
def test_models_and_sgs_have_no_cycle():
    graph = import_graph()
    mine = [c for c in find_cycles(graph) if any(m.startswith((f"{PACKAGE}.models", f"{PACKAGE}.sgs")) for m in c)]
    assert not mine, "\n".join(_describe(graph, c) for c in mine)


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)
