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


def _readme_demo_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## The demo (`atfr demo`)")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_readme_demo_numbers_come_from_demo_numbers_json():
    """Every measured number of README.md's demo section is the generated block of
    reports/demo/demo_numbers.json (`atfr demo` writes it to reports/demo/readme_section.md)."""
    import re

    from atfr_analysis.demo import README_BEGIN, README_END, readme_section

    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    section = _readme_demo_section()
    assert README_BEGIN in section and README_END in section, "README's demo section lacks the generated block"
    block = section[section.index(README_BEGIN) : section.index(README_END) + len(README_END)] + "\n"
    assert block == readme_section(committed)
    assert (ROOT / "reports" / "demo" / "readme_section.md").read_text() == block
    # no other measured number in the section: no percentage, no GFLOPs-like or correlation-like decimal
    rest = section.replace(block.rstrip("\n"), "")
    stray = re.findall(r"\d+(?:\.\d+)?\s*%|\b\d\.\d{3}\b|\btop-1 of \d", rest)
    assert not stray, f"numbers in README's demo section outside the generated block: {stray}"


def test_demo_checks_follow_the_acceptance():
    from atfr_analysis.demo import demo_checks

    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    assert committed["checks"] == demo_checks(committed)
    n = dict(committed, top1_baseline=80.0, top1_atfr=77.9, reduction_pct=40.0,
             per_class_top1_baseline={c: 50.0 for c in committed["per_class_top1_baseline"]})
    got = demo_checks(n)
    assert got["ATFR top-1 within 2 points of the baseline"] is False
    assert got["GFLOPs x views reduction >= 40%"] is True and got["baseline top-1 >= 75%"] is True
