"""``atfr table``'s GFLOPs keep three significant digits: a tiny model's 0.152 and 0.145 stay apart."""

import math

import pandas as pd

from atfr_analysis.analysis.tables import format_gflops, format_paper_table


def _table(gmacs_per_view: list[float]) -> pd.DataFrame:
    n = len(gmacs_per_view)
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(n)],
            "gmacs_per_view": gmacs_per_view,
            "views": [3] * n,
            "reduction_pct": [math.nan] * n,
            "top1": [90.0] * n,
            "top5": [99.0] * n,
            "params_m": [1.14] * n,
        }
    )


def test_small_gflops_keep_three_significant_digits():
    cells = format_paper_table(_table([0.152, 0.145, 0.2954, 20.84, 234.5]))["GFLOPs × views"].tolist()
    assert cells == ["0.152 × 3", "0.145 × 3", "0.295 × 3", "20.8 × 3", "234.5 × 3"]


def test_format_gflops():
    assert [format_gflops(x) for x in (0.0, 0.0012345, 1.5, 65.7)] == ["0.0", "0.00123", "1.50", "65.7"]
    assert format_gflops(math.nan) == "" and format_gflops(None) == ""
