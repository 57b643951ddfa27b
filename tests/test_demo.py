"""`atfr demo` reproduces the committed reports/demo numbers (the shipped checkpoints, real footage)."""
import json
import math
from pathlib import Path

import pytest

from atfr_analysis.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
def test_demo_reproduces_committed_numbers(tmp_path):
    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    res = run_demo(out=tmp_path / "demo", cache=tmp_path / "cache", quiet=True)
    produced = json.loads((tmp_path / "demo" / "demo_numbers.json").read_text())
    _close(produced, committed)
    for f in ("README.md", "report.md", "per_class.csv", "ranking.csv", "sources.csv", "class_distributions.png"):
        assert (tmp_path / "demo" / f).stat().st_size > 0
    assert res.seconds < 600
