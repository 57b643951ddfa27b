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

    # `atfr report` and `atfr table` on those real profile runs (the CLI, one line of output each)
    from atfr_cli.main import main

    runs = tmp_path / "cache" / "runs"
    out = tmp_path / "report"
    main(["report", str(runs / "slow_tiny_atfr"), "--out", str(out), "--baseline", str(runs / "slow_tiny"), "--by", "bins", "--k", "3"])
    for f in ("report.md", "per_class.csv", "ranking.csv", "paper_table.md", "paper_table.tex", "bins_hist.png",
              "class_distributions.png", "gmacs_vs_accuracy.png", "gmacs_distribution.png", "accuracy_vs_views.png",
              "delta_vs_reduction.png"):
        p = out / f
        assert p.stat().st_size > 0, f
        if f.endswith(".png"):
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["table", str(runs / "slow_tiny"), str(runs / "slow_tiny_atfr"), "--out", str(tmp_path / "table")])
    assert (tmp_path / "table" / "paper_table.csv").is_file()
