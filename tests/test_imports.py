"""The import graph of ``atfr_analysis`` has no cycles, and no module uses another module's
private names.

Built statically with ``ast`` over every module of the package: each ``import`` and ``from ...
import`` statement anywhere in a module (top level, inside functions or classes, under ``if``
or ``try``, ``TYPE_CHECKING`` blocks included) that names a module of ``atfr_analysis`` is an
edge. ``from P import name`` is an edge to ``P.name`` when that is a module, else to ``P``;
relative imports are resolved against the importing module's package. The import of a parent
package that Python performs before a submodule's is not an edge (every package would otherwise
form a cycle with the submodules its ``__init__`` imports).

Private names (``private_uses``): a name that starts with one underscore (not a dunder) belongs to
the module that defines it. Within ``atfr_analysis`` and the CLI (``atfr_cli``) a module may not
take one from another module, neither by ``from M import _x`` nor by ``m._x`` on a name bound to
an imported module of the project (``import M as m``, ``from P import m``, ``import P.m`` then
``P.m._x``). A private module (``P/_m.py``) is private to its package: modules inside ``P`` may
import it. Attribute access on objects that are not imported modules (``obj._x``) cannot be told
apart statically and is not checked; nor are third-party private names (numpy's and torch's
private modules are needed for unpickling and dispatch).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "atfr_analysis"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
#: the CLI's folder and the name it is installed as
CLI_ROOT, CLI_PACKAGE = ROOT.parent / "cli", "atfr_cli"


def _modules(root: Path = ROOT, name: str | None = None) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (named ``name``, default
    its folder's name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if name is not None:
            parts[0] = name
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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a chain of attribute reads on a name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id] + parts[::-1])


def _private_module_use(user: str, target: str, mods: dict[str, Path]) -> str | None:
    """The first private module on the path of ``target`` that ``user`` lies outside of."""
    parts = target.split(".")
    for i in range(1, len(parts)):
        if _private(parts[i]):
            owner = ".".join(parts[:i])
            if not (user == owner or user.startswith(owner + ".")):
                return ".".join(parts[: i + 1])
    return None


def _private_attributes(tree: ast.AST, mod: str, bound: dict[str, str], mods: dict[str, Path], flag) -> None:
    """``m._x`` reads on names bound to another module of the project (``bound``: name -> module)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain = _dotted(node.value)
        if chain is None or chain.split(".")[0] not in bound:
            continue
        head, _, rest = chain.partition(".")
        target = bound[head] + (f".{rest}" if rest else "")
        if target not in mods or target == mod:
            continue  # not a module of the project (an object, a function), or the module itself
        sub = f"{target}.{node.attr}"
        if sub not in mods or _private_module_use(mod, sub, mods):
            flag(node, f"{chain}.{node.attr}")


def private_uses(mods: dict[str, Path], projects: tuple[str, ...] = (PACKAGE, CLI_PACKAGE)) -> list[str]:
    """``module:line: name`` for every use of another module's private name (see the module doc)."""
    found: list[str] = []

    def ours(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in projects)

    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        bound: dict[str, str] = {}  # a local name -> the project module it names

        def flag(node: ast.AST, what: str, mod: str = mod) -> None:
            found.append(f"{mod}:{node.lineno}: {what}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if not ours(a.name):
                        continue
                    bad = _private_module_use(mod, a.name, mods)
                    if bad:
                        flag(node, f"import {bad}")
                    if a.asname:
                        bound[a.asname] = a.name
                    else:
                        head = a.name.split(".")[0]
                        bound[head] = head
            elif isinstance(node, ast.ImportFrom):
                src = _resolve_from(mod, is_package, node)
                if not ours(src):
                    continue
                bad = _private_module_use(mod, src, mods)
                if bad:
                    flag(node, f"from {bad} import ...")
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in mods:
                        bound[a.asname or a.name] = sub
                        bad = _private_module_use(mod, sub, mods)
                        if bad:
                            flag(node, f"from {src} import {a.name}")
                    elif _private(a.name) and src != mod:
                        flag(node, f"from {src} import {a.name}")
        _private_attributes(tree, mod, bound, mods, flag)
    return sorted(set(found), key=lambda f: (f.split(":")[0], int(f.split(":")[1]), f))


def _project_modules() -> dict[str, Path]:
    return {**_modules(), **_modules(CLI_ROOT, CLI_PACKAGE)}


# ------------------------------------------------------------------------------ the checker
def test_private_name_checker(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from atfr_analysis._version import __version__\n")  # a dunder: public
    (pkg / "_version.py").write_text("__version__ = '1'\n")
    (pkg / "a.py").write_text("_own = 1\n\ndef f():\n    return _own\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "_impl.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text(
        "from atfr_analysis.a import _own, f\n"  # flagged: another module's private name
        "from atfr_analysis.sub import _impl\n"  # a private module of its own package: allowed
        "from .. import a\n"
        "import atfr_analysis.a as aa\n"
        "import atfr_analysis.a\n"
        "import numpy as np\n"
        "y = a._own + aa._own + atfr_analysis.a._own + f._cache + np._core + _impl.x\n"  # 3 flagged
    )
    (pkg / "c.py").write_text(
        "from atfr_analysis.sub._impl import x\n"  # flagged: outside sub
        "from atfr_analysis.sub import _impl\n"  # flagged
        "def g(obj):\n    return obj._hidden\n"  # an object, not a module: not checked
    )
    got = private_uses(_modules(pkg))
    assert got == [
        f"{PACKAGE}.c:1: from {PACKAGE}.sub._impl import ...",
        f"{PACKAGE}.c:2: from {PACKAGE}.sub import _impl",
        f"{PACKAGE}.sub.b:1: from {PACKAGE}.a import _own",
        f"{PACKAGE}.sub.b:7: a._own",
        f"{PACKAGE}.sub.b:7: aa._own",
        f"{PACKAGE}.sub.b:7: atfr_analysis.a._own",
    ], got


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
    (pkg / "c.py").write_text(
        "from atfr_analysis.sub.b import x\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import atfr_analysis.a\n"
    )
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


#: the analysis package's private names are being replaced by its redesign (issue 23, another branch)
ANALYSIS = f"{PACKAGE}.analysis"


def test_no_module_uses_another_modules_private_names():
    uses = [u for u in private_uses(_project_modules()) if not u.startswith(ANALYSIS)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


def test_analysis_uses_no_other_modules_private_names():
    uses = [u for u in private_uses(_project_modules()) if u.startswith(ANALYSIS)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


def test_the_data_layer_imports_no_model_family():
    """The 1-crop rule lives on ``InputSpec``: the data layer needs no model family."""
    graph = import_graph()
    families = {f"{PACKAGE}.models.resnet", f"{PACKAGE}.models.x3d"}
    users = {m: sorted(graph[m] & families) for m in graph if m.startswith(f"{PACKAGE}.data")}
    assert not any(users.values()), users


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


# ------------------------------------------------------------------------------ names that mean one thing
def test_atfr_analysis_profile_is_the_package_and_callable(monkeypatch):
    """``atfr.profile(...)`` (the README) and ``atfr_analysis.profile`` the subpackage are one
    object: no function shadows the package, however it is imported."""
    import importlib
    import types

    import atfr_analysis
    import atfr_analysis.profile as p
    from atfr_analysis.profile import run

    assert atfr_analysis.profile is p is importlib.import_module("atfr_analysis.profile")
    assert isinstance(p, types.ModuleType) and callable(p)
    assert p.profile is run.profile and p.ProfileConfig is not None
    monkeypatch.setattr(run, "profile", lambda *a, **k: ("run.profile", a, k))
    assert atfr_analysis.profile("ckpt", "model", x=1) == ("run.profile", ("ckpt", "model"), {"x": 1})


def _own_getattr_packages() -> list[str]:
    """Packages whose ``__init__`` defines its own module ``__getattr__`` (not ``lazy_exports``)."""
    out = []
    for mod, path in _modules().items():
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
                out.append(mod)
    return out


def test_lazy_imports_have_one_scheme():
    from atfr_analysis.data.views import ViewProtocol
    from atfr_analysis.lazy import lazy_exports

    get = lazy_exports("atfr_analysis.data", {"ViewProtocol": "views"})
    assert get("ViewProtocol") is ViewProtocol
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        get("nope")
    own = [m for m in _own_getattr_packages() if m != ANALYSIS]
    assert not own, f"packages with a lazy-import scheme of their own (use atfr_analysis.lazy.lazy_exports): {own}"


def test_analysis_lazy_imports_use_the_one_scheme():
    assert ANALYSIS not in _own_getattr_packages()
