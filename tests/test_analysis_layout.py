"""The shape of ``analysis/`` (issue 23): a report analyses each run once, every function is
short, and no module reaches into another's private names."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from analysis_logs import planted_log

from atfr_analysis.analysis import AnalysisError, RankingSpec, ReportConfig, RunAnalysis, run_analysis, write_report

ANALYSIS = Path(run_analysis.__file__).parent


def test_a_report_prepares_each_run_once_and_each_video_table_once(tmp_path, monkeypatch):
    calls = {"prepare": 0, "video_level": 0}
    real_prepare, real_video_level = run_analysis.prepare, run_analysis.video_level

    def prepare(*a, **kw):
        calls["prepare"] += 1
        return real_prepare(*a, **kw)

    def video_level(*a, **kw):
        calls["video_level"] += 1
        return real_video_level(*a, **kw)

    monkeypatch.setattr(run_analysis, "prepare", prepare)
    monkeypatch.setattr(run_analysis, "video_level", video_level)
    log = planted_log(n_classes=4, videos_per_class=3)
    base = planted_log(n_classes=4, videos_per_class=3, baseline=True)
    base.attrs["meta"]["model"] = "x3d_s"
    write_report(log, tmp_path / "r", baseline=base, n_boot=10)
    assert calls == {"prepare": 2, "video_level": 2}  # two runs, one ensemble each


def test_the_analysis_is_queried_not_recomputed():
    a = RunAnalysis(planted_log(n_classes=3, videos_per_class=2))
    assert a.videos("sum") is a.videos("sum") and a.videos("max") is not a.videos("sum")
    assert RunAnalysis.of(a) is a
    assert a.layers and a.num_bins and a.meta["model"] and a.complete
    assert "_atfr_analysis_prepared" not in a.views.attrs


def test_configs_are_checked_when_made(tmp_path):
    with pytest.raises(AnalysisError, match="by="):
        RankingSpec(by="speed")
    with pytest.raises(AnalysisError, match="ensemble="):
        RankingSpec(ensemble="mean")
    with pytest.raises(AnalysisError, match="k must be"):
        RankingSpec(k=0)
    with pytest.raises(AnalysisError, match="confusion_top"):
        ReportConfig(tmp_path, confusion_top=0)
    with pytest.raises(AnalysisError, match="one string"):
        ReportConfig(tmp_path, confusion_classes="a,b")
    cfg = ReportConfig(str(tmp_path), RankingSpec("bins", k=3), ["a"])
    assert cfg.out_dir == tmp_path and cfg.confusion_classes == ("a",) and cfg.ensemble == "sum"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.confusion_top = 5  # frozen


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("package", ["analysis", "train"])
def test_no_function_in_analysis_or_train_is_over_60_lines(package):
    long = [
        f"{p.name}:{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for p in sorted((ANALYSIS.parent / package).glob("*.py"))
        for f in _functions(p)
        if f.end_lineno - f.lineno + 1 > 60
    ]
    assert not long, long


def test_analysis_imports_no_private_name():
    bad = []
    for p in sorted(ANALYSIS.glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("atfr_analysis"):
                bad += [f"{p.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad
