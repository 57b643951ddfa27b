"""The committed reports/paper_baselines.{md,csv} are what `atfr paper-baselines` produces."""

from pathlib import Path

import pytest

from atfr_analysis.flops.paper import write_paper_baselines

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_report_is_reproduced(tmp_path):
    md, csv = write_paper_baselines(tmp_path)
    for produced in (md, csv):
        committed = ROOT / "reports" / produced.name
        assert committed.is_file(), f"{committed} missing: run `atfr paper-baselines`"
        assert produced.read_text() == committed.read_text(), f"{committed.name} differs from what the command produces"
