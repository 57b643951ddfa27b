"""Issue 14 case 10: generated reports are byte-reproducible, so `atfr demo` leaves the checkout
clean."""

import numpy as np
from analysis_logs import planted_log

from atfr_analysis.analysis import write_report


def test_report_is_byte_reproducible(tmp_path):
    """Issue 14 case 10: the same inputs give byte-identical files (PNG, CSV, MD, TeX), whatever
    NumPy's global random state (seaborn's strip plot used to jitter with it) and without the
    matplotlib version in the PNGs."""
    log = planted_log(n_classes=5, videos_per_class=4, views=2, failed_views=1, seed=2)
    base = planted_log(n_classes=5, videos_per_class=4, views=2, baseline=True, seed=5)
    np.random.seed(1)
    write_report(log, tmp_path / "a", baseline=base, n_boot=50)
    np.random.seed(2)
    write_report(log, tmp_path / "b", baseline=base, n_boot=50)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert {"report.md", "per_class.csv", "paper_table.tex", "class_distributions.png"} <= set(files)
    differ = [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert differ == []
    png = (tmp_path / "a" / "class_distributions.png").read_bytes()
    assert b"Matplotlib" not in png and b"Software" not in png
