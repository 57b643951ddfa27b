"""Every option of every ``atfr`` command is passed by some test.

The options come from the Typer app itself (``typer.main.get_command``: the root group, each
command and its parameters, every spelling of a flag: ``--cache`` and ``--no-cache`` are two).
Which flags the tests pass is found statically, with ``ast`` over ``tests/*.py``, and attributed to
the command the argv names, not to whichever command happens to have a flag of that name:

* an argv is a list or tuple literal, a ``+`` chain of them, or the positional arguments of a call
  (``run_cli(capsys, "profile", ck, "--views", "2")``, ``main(["train", ...])``,
  ``[torchrun, "--nproc_per_node", "2", "-m", "atfr_cli.main", "train", ...]``); its command is the
  first element that is a command's name (or a name bound to an argv, or a helper returning one),
  and only the flags after it count (torchrun's own flags before it do not);
* a helper function whose return value is an argv (``def args(ck, lst, out, *extra): return
  ["profile", ...]``), or that passes its ``*args`` on into an argv (``def _report(capsys, run,
  *extra): run_cli(capsys, "report", run, *extra)``), gives its command to the flags of every call
  of it;
* a name bound to an argv in a function gives its command to what is appended, extended or
  ``+=``-added to it; a helper returning a list of flags lends them to the argv it is spliced into.

Recording at run time would see every flag passed, however it is built, but only in a run of the
whole suite in one process (xdist splits it; subprocesses and torchrun workers hide it), so a
single test could not say anything on its own. The static scan runs in a second and fails at once,
naming the (command, option) pairs no test passes; a flag passed only through a variable (a
parametrized ``flag``) is not seen, which can only make this test stricter, never let it pass for a
flag that no test writes down. Flags for a command that are not its options (``--help``, a bad flag
a test checks the refusal of) are ignored.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def cli_options() -> dict[str, set[str]]:
    """Command -> every spelling of each of its options ('' is the root: ``--version``)."""
    import typer.main

    from atfr_cli.main import app

    group = typer.main.get_command(app)

    def spellings(cmd) -> set[str]:
        return {f for p in cmd.params if p.param_type_name == "option" for f in (*p.opts, *p.secondary_opts)}

    out = {"": spellings(group)}
    for name, cmd in group.commands.items():
        assert not hasattr(cmd, "commands"), f"nested group {name}: walk it too"
        out[name] = spellings(cmd)
    return out


def _text(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)  # f"--lr={value}"
    return None


def _flag(text: str | None) -> str | None:
    if text and text.startswith("--") and len(text) > 2 and not any(c.isspace() for c in text):
        return text.split("=", 1)[0]
    return None


def _callee(node) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return None


def _is_seq(node) -> bool:
    return isinstance(node, (ast.List, ast.Tuple)) or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add))


def _flatten(node) -> list:
    """The elements of an argv expression: a literal, a ``+`` chain of them, a call's positional args."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return list(node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _flatten(node.left) + _flatten(node.right)
    if isinstance(node, ast.Call):
        return list(node.args)
    return [node]


class FlagScan:
    """The flags the given test sources pass, per command (see the module's docstring)."""

    def __init__(self, commands: dict[str, set[str]]):
        self.commands = commands
        self.cmd_helpers: dict[str, str] = {}  # function -> the command its returned argv starts with
        self.flag_helpers: dict[str, set[str]] = {}  # function -> the flags its returned value holds
        self.found: dict[str, set[str]] = {c: set() for c in commands}

    def run(self, sources: list[str]) -> dict[str, set[str]]:
        trees = [ast.parse(s) for s in sources]
        for _ in range(3):  # helpers of helpers
            for tree in trees:
                self._learn_helpers(tree)
        for tree in trees:
            self._scan(tree)
        return self.found

    def command_of(self, node, names):
        """(command, the nodes after it) when ``node`` names a command or is an argv starting with one."""
        t = _text(node)
        if isinstance(node, ast.Constant) and t and t in self.commands:
            return t, []
        if isinstance(node, ast.Starred):
            return self.command_of(node.value, names)
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id], []
        c = _callee(node)
        if c in self.cmd_helpers:
            return self.cmd_helpers[c], list(node.args)
        if isinstance(node, ast.Call) or _is_seq(node):  # a wrapper (atfr_cmd("profile", ...)) or a literal
            return self.argv(node, names)
        return None

    def argv(self, node, names):
        elts = _flatten(node)
        for i, e in enumerate(elts):
            r = self.command_of(e, names)
            if r:
                return r[0], r[1] + elts[i + 1 :]
        return None

    def flags(self, nodes) -> set[str]:
        out = set()
        for n in nodes:
            for d in ast.walk(n):
                if f := _flag(_text(d)):
                    out.add(f)
                c = _callee(d)
                if c in self.flag_helpers and c not in self.cmd_helpers:
                    out |= self.flag_helpers[c]
        return out

    def _bound(self, scope) -> dict[str, str]:
        names: dict[str, str] = {}
        for _ in range(2):
            for n in ast.walk(scope):
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                    if r := self.command_of(n.value, names):
                        names[n.targets[0].id] = r[0]
        return names

    def _learn_helpers(self, tree) -> None:
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            names = self._bound(fn)
            if (
                fn.args.vararg is not None
            ):  # a wrapper: def _report(capsys, run, *extra): run_cli(..., "report", *extra)
                self._learn_wrapper(fn, fn.args.vararg.arg, names)
            for r in (r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None):
                if found := self.command_of(r, names):
                    self.cmd_helpers[fn.name] = found[0]
                if fl := self.flags([r]):
                    self.flag_helpers.setdefault(fn.name, set()).update(fl)

    def _learn_wrapper(self, fn, vararg: str, names) -> None:
        for n in ast.walk(fn):
            if isinstance(n, (ast.List, ast.Tuple, ast.BinOp, ast.Call)) and (r := self.argv(n, names)):
                if any(
                    isinstance(e, ast.Starred) and isinstance(e.value, ast.Name) and e.value.id == vararg for e in r[1]
                ):
                    self.cmd_helpers[fn.name] = r[0]

    def _record(self, cmd: str, nodes) -> None:
        self.found[cmd] |= self.flags(nodes)

    def _root_flag(self, elts) -> None:
        if elts and (f := _flag(_text(elts[0]))) in self.commands[""]:
            self.found[""].add(f)

    def _scan(self, tree) -> None:
        scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for scope in scopes:
            names = self._bound(scope)
            for n in ast.walk(scope):
                if isinstance(n, (ast.List, ast.Tuple, ast.Set, ast.BinOp, ast.Call)):
                    if r := self.argv(n, names):
                        self._record(*r)
                    self._root_flag(_flatten(n))
                if isinstance(n, ast.Call):
                    if _callee(n) in self.cmd_helpers:
                        self._record(self.cmd_helpers[_callee(n)], list(n.args))
                    self._root_flag(list(n.args)[1:2])  # run_cli(capsys, "--version")
                    f = n.func
                    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in names:
                        if f.attr in ("append", "extend", "insert"):
                            self._record(names[f.value.id], list(n.args))
                elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and n.target.id in names:
                    self._record(names[n.target.id], [n.value])


@functools.cache
def passed_options() -> dict[str, set[str]]:
    commands = cli_options()
    sources = [p.read_text() for p in sorted(TESTS.glob("*.py"))]
    return FlagScan(commands).run(sources)


def test_every_cli_option_is_passed_by_some_test():
    commands = cli_options()
    found = passed_options()
    missing = sorted((cmd or "<root>", opt) for cmd, opts in commands.items() for opt in opts - found[cmd])
    assert not missing, f"{len(missing)} (command, option) pairs no test passes: {missing}"


def test_the_walk_sees_every_command_and_both_spellings():
    commands = cli_options()
    assert {"profile", "train", "bench", "demo", "flops", "models", "report"} <= set(commands)
    assert {"--cache", "--no-cache", "--flops", "--no-flops"} <= commands["models"]
    assert commands[""] == {"--version"}
    assert "--help" not in commands["profile"]  # Click's own, not a parameter


_SNIPPET = """
def args(ck, out, *extra):
    return ["profile", ck, "--model", "m", "--out", out, *extra]

def train_opts():
    return ["--epochs", "1"]

def _views(capsys, *args):
    code, out, err = run_cli(capsys, "views", *args)
    return json.loads(out)

def test_a(capsys):
    _views(capsys, v, "--json")
    run_cli(capsys, "--version")
    main(["train", m, *train_opts(), f"--lr={x}"])
    subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "atfr_cli.main", *args(ck, out, "--views", "2")])
    argv = ["report", run, "--out", o]
    argv += ["--k", "3"]
    argv.append("--by")
    pairs = [(["export", r, "--format", "pyslowfast"], "--failed is not passed here")]
    ["--crop", "flops"]
"""


def test_scan_attributes_flags_to_the_command_of_their_argv():
    commands = {
        "": {"--version"},
        "profile": {"--model", "--out", "--views", "--nproc_per_node"},
        "views": {"--json"},
        "train": {"--epochs", "--lr"},
        "report": {"--out", "--k", "--by"},
        "export": {"--format", "--failed"},
        "flops": {"--crop"},
    }
    found = FlagScan(commands).run([_SNIPPET])
    assert found["profile"] == {"--model", "--out", "--views"}  # torchrun's flag is before the command
    assert found["views"] == {"--json"}
    assert found["train"] == {"--epochs", "--lr"}
    assert found["report"] == {"--out", "--k", "--by"}
    assert found["export"] == {"--format"}  # a message beside the argv is not a flag
    assert found["flops"] == set()  # a flag before the command's name is not the command's
    assert found[""] == {"--version"}


def test_a_flag_written_nowhere_is_reported_missing():
    """The check can fail: an option no test writes is missing from what the scan found."""
    commands = cli_options()
    commands["train"] = commands["train"] | {"--no-such-option-anywhere"}
    found = FlagScan(commands).run([p.read_text() for p in sorted(TESTS.glob("*.py"))])
    assert "--no-such-option-anywhere" not in found["train"]
    assert {"--data", "--out", "--epochs"} <= found["train"] and {"--model", "--data"} <= found["profile"]
