"""The Python examples of the README and ``docs/`` keep working.

Their ``python`` blocks are read from the files. The analysis part (from the import of
``atfr_analysis.analysis`` on) runs unchanged on a run folder at ``runs/sf`` (the folder the
example profiles into; here a synthetic run, as profiling SlowFast R50 on 10 x 3 views does not
fit a test); every name the other statements import or call on ``atfr`` must exist, and the
model names they use must be registered."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from analysis_logs import planted_log, write_run

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[str]:
    return [b for f in DOCS for b in re.findall(r"```python\n(.*?)```", f.read_text(encoding="utf-8"), flags=re.S)]


def analysis_part(block: str) -> str | None:
    """The statements from the import of ``atfr_analysis.analysis`` to the end of its paragraph."""
    m = re.search(r"^from atfr_analysis\.analysis import .*?(?:\n\n|\Z)", block, flags=re.S | re.M)
    return m.group(0) if m else None


def test_the_readme_has_python_examples():
    blocks = python_blocks()
    assert blocks and any(analysis_part(b) for b in blocks)
    for b in blocks:
        ast.parse(b)  # every block is Python


def test_the_readme_analysis_example_runs_unchanged(tmp_path, monkeypatch):
    import atfr_analysis as atfr

    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "runs" / "sf", planted_log(n_classes=4, videos_per_class=3, views=2))
    ran = 0
    for block in python_blocks():
        code = analysis_part(block)
        if code:
            ns = {"atfr": atfr, "log": atfr.load_run("runs/sf")}
            exec(compile(code, "README.md", "exec"), ns)
            ran += 1
    assert ran
    assert (tmp_path / "reports" / "sf" / "report.md").is_file()


@pytest.mark.parametrize("block", python_blocks())
def test_every_name_the_readme_uses_exists(block):
    import importlib

    import atfr_analysis as atfr

    tree = ast.parse(block)
    # modules the README itself writes (a block that opens with ``# name.py``; tests/test_readme_own_model.py runs them)
    own = {m for b in python_blocks() for m in re.findall(r"\A# (\w+)\.py\n", b)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module not in own:
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name), f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "atfr":
            assert hasattr(atfr, node.attr), f"atfr.{node.attr}"
    for name in re.findall(r'"([a-z0-9_]+_atfr)"', block):
        assert name in atfr.list_models(), name
