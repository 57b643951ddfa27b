"""Paper-style tables (model | GFLOPs x views | top-1 | top-5 | mean class | params) and the
multi-view sweep, with writers to Markdown (pandas' to_markdown, through tabulate), CSV and LaTeX
(pandas' Styler.to_latex)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError, run_name
from atfr_analysis.analysis.comparable import NOT_COMPARABLE, OVERRIDE_HINT, IncomparableRunsError, differences
from atfr_analysis.analysis.run_analysis import INCOMPLETE, RunAnalysis, check_ensemble, topk, video_scores

__all__ = [
    "TableConfig",
    "paper_table",
    "format_paper_table",
    "accuracy_vs_views",
    "accuracy_vs_views_both",
    "markdown_table",
    "to_markdown",
    "to_csv",
    "to_latex",
    "write_paper_table",
]

_NUMBER = re.compile(r"^[-+]?\d[\d.,]*(e[-+]?\d+)?\s*(%|×.*|x \d+.*)?$")

PAPER_COLUMNS = [
    "model",
    "kind",
    "videos",
    "views",
    "gmacs_per_view",
    "gmacs_x_views",
    "reduction_pct",
    "reduction_ref",
    "top1",
    "top5",
    "mean_class_acc",
    "params_m",
    "static_gmacs_per_view",
    "crop",
    "frames",
    "ensemble",
    "comparable",
]


def run_summary(a: RunAnalysis, name: str, ensemble: str = "sum") -> dict[str, Any]:
    """One run's row of the paper table (and what its footer needs)."""
    meta = a.meta
    vids = a.videos(ensemble)
    ok = vids[vids["status"] == "ok"]
    nv = a.views_per_video
    gxv = float(ok["gmacs_x_views"].mean())
    acc = a.accuracy(ensemble)
    params = meta.get("params")
    return {
        "model": run_name(a.views, name) + (f" ({INCOMPLETE})" if not a.complete else ""),
        "kind": "ATFR" if a.is_atfr else "baseline",
        "videos": int(len(ok)),
        "views": int(nv),
        "gmacs_per_view": gxv / nv if nv else np.nan,
        "gmacs_x_views": gxv,
        "top1": acc.top1,
        "top5": acc.top5,
        "mean_class_acc": acc.mean_class_acc,
        "params_m": float(params) / 1e6 if isinstance(params, (int, float)) else np.nan,
        "static_gmacs_per_view": a.static_gmacs or np.nan,
        "crop": meta.get("crop"),
        "frames": "+".join(map(str, meta["frames"]))
        if isinstance(meta.get("frames"), (list, tuple))
        else meta.get("frames"),
        "failed_views": int((~a.ok).sum()),
        "convention": meta.get("convention", "conv_fc"),
        "convention_text": (meta.get("conventions") or {}).get("gmacs"),
        "ensemble": ensemble,
        "comparable": True,
        "notes": [n for n in (a.incomplete_note(), a.nonfinite_note()) if n],
    }


@dataclass(frozen=True)
class TableConfig:
    """The settings of a paper table (``atfr table``), checked when made (AnalysisError): how a
    video's views are combined, whether runs that are not comparable or not finished are put in
    the table (marked) instead of refused, and where its files go (None: nowhere)."""

    ensemble: str = "sum"
    allow_incomparable: bool = False
    allow_incomplete: bool = False
    out_dir: Path | None = None

    def __post_init__(self) -> None:
        check_ensemble(self.ensemble)
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))

    def table(self, runs: Any, baselines: Any = None) -> pd.DataFrame:
        """:func:`paper_table` of ``runs`` with these settings."""
        return paper_table(runs, baselines, self.ensemble, self.allow_incomparable, self.allow_incomplete)


def _frame(log: Any) -> Any:
    return log.views if isinstance(log, RunAnalysis) else log


def _baseline_for(i: int, log: Any, baselines: Any, n: int) -> Any:
    if baselines is None:
        return None
    if isinstance(baselines, (pd.DataFrame, RunAnalysis)):
        return baselines
    if isinstance(baselines, Mapping):
        return baselines.get(run_name(_frame(log), f"run{i}"))
    if isinstance(baselines, Sequence) and not isinstance(baselines, str):
        if len(baselines) != n:
            raise AnalysisError(f"baselines: a list needs one entry (or None) per run: {len(baselines)} for {n} runs")
        return baselines[i]
    raise AnalysisError(
        f"baselines must be a log, a list of logs (one per run) or a dict model -> log, got {type(baselines).__name__}"
    )


def _comparisons(runs: list[pd.DataFrame], bases: list[pd.DataFrame | None]) -> dict[int, list[str]]:
    """{index of a run: differences} for every ATFR run against its baseline and every run against
    the first run of the table (and every pair of runs for the same run twice)."""
    out: dict[int, list[str]] = {}
    for i, (log, base) in enumerate(zip(runs, bases)):
        d: list[str] = []
        if base is not None:
            d += [f"its baseline {run_name(base, 'baseline')}: {x}" for x in differences(log, base, "baseline")]
        for j in range(i):
            if runs[j] is log:
                d.append(f"run {run_name(log)} is listed twice")
                continue
            dj = differences(runs[j], log, "run")
            if j > 0:  # against the first run everything is checked; the rest only for duplicates
                dj = [x for x in dj if x.startswith("the same run")]
            d += [f"against {run_name(runs[j])}: {x}" for x in dj]
        if d:
            out[i] = d
    return out


def _analyses(runs: list, bases: list, allow_incomplete: bool) -> tuple[list[RunAnalysis], list[RunAnalysis | None]]:
    """One analysis per distinct log (the same log object twice: the same analysis), checked."""
    seen: dict[int, RunAnalysis] = {}

    def of(log: Any, name: str) -> RunAnalysis:
        if id(log) not in seen:
            seen[id(log)] = RunAnalysis.of(log, name)
        return seen[id(log)]

    ra = [of(log, f"runs[{i}]") for i, log in enumerate(runs)]  # bad input first, then comparability
    ba = [None if b is None else of(b, f"baseline of runs[{i}]") for i, b in enumerate(bases)]
    for a in [*ra, *[b for b in ba if b is not None]]:
        a.require_complete(allow_incomplete)
    return ra, ba


def _rows(ra: list[RunAnalysis], ba: list[RunAnalysis | None], diffs: dict, ensemble: str) -> tuple[list[dict], dict]:
    """The table's rows (each run, its baseline first when that is not a run of the table), and
    {model: differences} of the rows not comparable."""
    rows: list[dict] = []
    not_comparable: dict[str, list[str]] = {}
    listed: list[int] = [id(r) for r in ra]
    summaries: dict[int, dict] = {}

    def summary(a: RunAnalysis, name: str) -> dict:
        if id(a) not in summaries:
            summaries[id(a)] = run_summary(a, name, ensemble)
        return summaries[id(a)]

    for i, a in enumerate(ra):
        s = dict(summary(a, f"runs[{i}]"))
        base = ba[i]
        s["reduction_pct"], s["reduction_ref"] = np.nan, ""
        if i in diffs:
            s["comparable"] = False
            not_comparable[s["model"]] = diffs[i]
        if s["kind"] == "ATFR":
            if base is not None:
                b = summary(base, f"baseline of runs[{i}]")
                if id(base) not in listed:
                    listed.append(id(base))
                    rows.append(dict(b, reduction_pct=np.nan, reduction_ref=""))
                if b["gmacs_x_views"] > 0:
                    s["reduction_pct"] = 100 * (1 - s["gmacs_x_views"] / b["gmacs_x_views"])
                    s["reduction_ref"] = f"baseline run {b['model']}" + (" (not comparable)" if i in diffs else "")
            elif s["static_gmacs_per_view"] > 0 and s["views"]:
                s["reduction_pct"] = 100 * (1 - s["gmacs_x_views"] / (s["static_gmacs_per_view"] * s["views"]))
                s["reduction_ref"] = "static backbone x views"
        rows.append(s)
    return rows, not_comparable


def paper_table(
    runs: pd.DataFrame | RunAnalysis | Sequence[pd.DataFrame | RunAnalysis],
    baselines: Any = None,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
    allow_incomplete: bool = False,
) -> pd.DataFrame:
    """The paper's comparison table over one or more runs.

    ``runs``: a log or a list of logs. ``baselines``: None; one log (the baseline of every ATFR
    run); a list with one log or None per run; or a dict {ATFR model name: baseline log}. A
    baseline not among ``runs`` gets its own row just above its ATFR run.

    One row per run with columns ``model, kind`` ("ATFR" | "baseline"), ``videos`` (ok), ``views``
    (per video), ``gmacs_x_views`` (mean over ok videos of the sum over the video's ok views of
    per-view gmacs), ``gmacs_per_view`` (= gmacs_x_views / views, the paper's "20.8" in
    "20.8 x 30"), ``reduction_pct`` (ATFR rows: against the baseline run's gmacs_x_views when
    given, else against ``static_gmacs`` x views; ``reduction_ref`` says which), ``top1, top5``
    (video-level %), ``mean_class_acc`` (mean of the classes' top-1, %), ``params_m``,
    ``static_gmacs_per_view``, ``crop``, ``frames``, ``ensemble`` ("sum" | "max": how views
    were combined) and ``comparable`` (False on rows made comparable only by the override).
    ``attrs["footer"]``: convention, crop counted and how GFLOPs x views is computed.

    Every run must be comparable with its baseline and with the first run of the table (same
    videos, classes and views; no run twice; see :mod:`atfr_analysis.analysis.comparable`), else
    :class:`IncomparableRunsError`; with ``allow_incomparable`` the rows are labelled instead and
    ``attrs["not_comparable"]`` holds {model: differences}.

    A run that has not logged every video of its list is refused (:class:`IncompleteRunError`)
    unless ``allow_incomplete``; its row is then marked INCOMPLETE. A run with non-finite scores
    gets no accuracy (NaN, shown "n/a"), and the footer says why.
    """
    check_ensemble(ensemble)
    runs = [runs] if isinstance(runs, (pd.DataFrame, RunAnalysis)) else list(runs)
    if not runs:
        raise AnalysisError("paper_table needs at least one run")
    bases = [_baseline_for(i, log, baselines, len(runs)) for i, log in enumerate(runs)]
    ra, ba = _analyses(runs, bases, allow_incomplete)
    diffs = _comparisons([a.views for a in ra], [None if b is None else b.views for b in ba])
    if diffs and not allow_incomparable:
        msg = "; ".join(f"{run_name(ra[i].views, f'runs[{i}]')}: " + "; ".join(d) for i, d in diffs.items())
        raise IncomparableRunsError(f"runs not comparable: {msg}. {OVERRIDE_HINT}")
    rows, not_comparable = _rows(ra, ba, diffs, ensemble)
    table = pd.DataFrame(rows)
    table["crop"] = pd.to_numeric(table["crop"], errors="coerce").astype("Int64")
    table["comparable"] = table["comparable"].astype(bool)
    footer = _footer(table)
    if not_comparable:
        footer += f" {NOT_COMPARABLE}: " + "; ".join(f"{m}: " + "; ".join(d) for m, d in not_comparable.items()) + "."
    notes = list(dict.fromkeys(f"{r['model']}: {n}" for r in rows for n in r["notes"]))
    if notes:
        footer += " " + "; ".join(notes) + "."
    table = table[PAPER_COLUMNS].reset_index(drop=True)
    table.attrs = {"footer": footer}
    if not_comparable:
        table.attrs["not_comparable"] = not_comparable
    if notes:
        table.attrs["notes"] = notes
    return table


def _footer(t: pd.DataFrame) -> str:
    conv = sorted(set(t["convention"].dropna().astype(str))) or ["conv_fc"]
    text = next((x for x in t["convention_text"] if isinstance(x, str) and x), None)
    inputs = []
    for _, r in t.iterrows():
        crop = f"{r['crop']}x{r['crop']} crop counted" if not pd.isna(r["crop"]) else "crop size unknown"
        fr = f"{r['frames']} frames, " if isinstance(r["frames"], str) and r["frames"] else ""
        inputs.append(f"{r['model']}: {fr}{crop}, {r['views']} views")
    parts = [
        f"GFLOPs are GMACs (one multiply-add counted once), convention {', '.join(conv)}"
        + (f" ({text})" if text else "")
        + ".",
        "GFLOPs x views = mean over videos of the sum over the video's views of the per-view cost "
        "(each view costed at its own active bins); shown as that total / views x views.",
        "Reduction: against the baseline run when one is given, else against the static backbone "
        "(same network without SGS, same input) x views. Top-1/top-5: video-level, "
        + (
            "softmax summed over views"
            if set(t["ensemble"]) == {"sum"}
            else "element-wise maximum of the softmax over views"
            if set(t["ensemble"]) == {"max"}
            else "views combined by " + ", ".join(sorted(set(t["ensemble"])))
        )
        + "; mean class: the mean of the classes' top-1 (mmaction2's mean class accuracy).",
        "Inputs: " + "; ".join(inputs) + ".",
    ]
    failed = {r["model"]: r["failed_views"] for _, r in t.iterrows() if r["failed_views"]}
    if failed:
        parts.append("Failed views excluded: " + ", ".join(f"{m} {n}" for m, n in failed.items()) + ".")
    return " ".join(parts)


def _fmt(x: Any, spec: str = ".1f") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return format(x, spec)


def format_gflops(x: Any, digits: int = 3) -> str:
    """A cost with ``digits`` significant digits and at least one decimal: 20.8, 4.00, 0.152 (a tiny
    model's 0.152 and 0.145 stay apart; a fixed one decimal would print both as 0.1 or 0.2)."""
    if x is None or not np.isfinite(x):
        return ""
    if x == 0:
        return format(0.0, ".1f")
    decimals = max(1, digits - 1 - math.floor(math.log10(abs(x))))
    return format(x, f".{decimals}f")


def format_paper_table(table: pd.DataFrame, arrows: str = "unicode") -> pd.DataFrame:
    """Display strings like the poster: model | GFLOPs x views | top-1 | top-5 | params (M).

    ``arrows="unicode"`` writes "20.8 × 30 (↓42%)"; ``"latex"`` writes math-mode symbols;
    ``"ascii"`` writes "20.8 x 30 (-42%)"."""
    times, down, up = {
        "unicode": ("×", "↓", "↑"),
        "latex": (r"$\times$", r"$\downarrow$", r"$\uparrow$"),
        "ascii": ("x", "-", "+"),
    }[arrows]
    cells = []
    for _, r in table.iterrows():
        g = f"{format_gflops(r['gmacs_per_view'])} {times} {r['views']}"
        if not pd.isna(r["reduction_pct"]):
            red = r["reduction_pct"]
            g += f" ({down if red >= 0 else up}{abs(red):.0f}%)"
        comparable = bool(r["comparable"]) if "comparable" in r and not pd.isna(r["comparable"]) else True
        cells.append(
            {
                "model": str(r["model"]) + ("" if comparable else " (not comparable)"),
                f"GFLOPs {times} views": g,
                "top-1": _fmt(r["top1"]) or "n/a",
                "top-5": _fmt(r["top5"]) or "n/a",
                "mean class": (_fmt(r["mean_class_acc"]) or "n/a") if "mean_class_acc" in r else "",
                "params (M)": _fmt(r["params_m"], ".2f"),
            }
        )
    return pd.DataFrame(cells)


# ----------------------------------------------------------------------------------- writers
def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (numbers right-aligned, NaN blank), laid
    out by pandas' ``to_markdown`` (tabulate) from cells formatted here."""
    d = df.reset_index() if index else df

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [str(c).replace("|", "\\|") for c in d.columns]
    rows = [[cell(v) for v in row] for row in d.itertuples(index=False, name=None)]
    # right-align numbers, including columns of formatted numbers ("1.3 × 15 (↓55%)" counts)
    numeric = [
        (pd.api.types.is_numeric_dtype(d[c]) and not pd.api.types.is_bool_dtype(d[c]))
        or (any(r[i] for r in rows) and all(_NUMBER.match(r[i]) for r in rows if r[i]))
        for i, c in enumerate(d.columns)
    ]
    cells = pd.DataFrame(rows, columns=range(len(header))) if rows else pd.DataFrame(columns=range(len(header)))
    cells.columns = header
    return cells.to_markdown(
        index=False, tablefmt="pipe", disable_numparse=True, colalign=["right" if n else "left" for n in numeric]
    )


def _write(text: str, path: str | Path | None) -> str:
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return text


def to_markdown(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """The paper table as Markdown (poster layout) with its footer; written to ``path`` if given."""
    text = markdown_table(format_paper_table(table))
    if table.attrs.get("footer"):
        text += "\n\n" + table.attrs["footer"]
    return _write(text + "\n", path)


def to_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """The numeric table as CSV (no footer: it is a data file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(p, index=False)
    return p


def _latex_escape(s: str) -> str:
    rep = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "×": r"$\times$",
        "↓": r"$\downarrow$",
        "↑": r"$\uparrow$",
        "²": r"$^2$",
    }
    return "".join(rep.get(ch, ch) for ch in s)


def to_latex(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """The paper table as a LaTeX tabular (booktabs) inside a table with the footer as caption."""
    disp = format_paper_table(table)
    disp = disp.map(_latex_escape)
    disp.columns = [_latex_escape(c) for c in disp.columns]
    caption = _latex_escape(table.attrs.get("footer", ""))
    try:
        body = disp.style.hide(axis="index").to_latex(
            column_format="l" + "r" * (disp.shape[1] - 1),
            hrules=True,
            caption=caption or None,
            position="t",
            position_float="centering",
        )
    except ImportError:  # Styler needs jinja2: fall back to a hand-written tabular
        lines = [r"\begin{table}[t]", r"\centering"]
        if caption:
            lines.append(rf"\caption{{{caption}}}")
        lines += [
            rf"\begin{{tabular}}{{l{'r' * (disp.shape[1] - 1)}}}",
            r"\toprule",
            " & ".join(disp.columns) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(r) + r" \\" for r in disp.itertuples(index=False, name=None)]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        body = "\n".join(lines) + "\n"
    return _write(body, path)


def write_paper_table(table: pd.DataFrame, out_dir: str | Path, stem: str = "paper_table") -> dict[str, Path]:
    """Write ``stem``.md, .csv and .tex under ``out_dir``; returns {"md"|"csv"|"tex": path}."""
    out = Path(out_dir)
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "tex": out / f"{stem}.tex"}
    to_markdown(table, paths["md"])
    to_csv(table, paths["csv"])
    to_latex(table, paths["tex"])
    return paths


# ------------------------------------------------------------------------ multi-view sweep
def accuracy_vs_views(log: pd.DataFrame | RunAnalysis, ensemble: str = "sum") -> pd.DataFrame:
    """Video-level accuracy and cost using only the first 1, 2, ..., V temporal views of each
    video (all spatial crops of those), as PySlowFast's multi-clip sweep; the views combined by
    ``ensemble`` ("sum" of the softmax, or its element-wise "max").

    Columns: ``temporal_views`` (n), ``views`` (n x crops), ``videos`` (with an ok view among
    those), ``top1, top5`` (%; NaN for a run with non-finite scores), ``gmacs_x_views`` (mean
    over those videos of the sum of per-view gmacs over their first n temporal views),
    ``gmacs_per_view``. The row n = V equals the full video-level result (``attrs["ensemble"]``).
    One pass over the scores: each temporal view's scores are added (or maxed) in turn."""
    check_ensemble(ensemble)
    a = RunAnalysis.of(log)
    df = a.views
    crops = int(a.meta["crops"]) if isinstance(a.meta.get("crops"), int) else int(df["spatial_index"].nunique())
    sweep = _Sweep(a, ensemble)
    rows = []
    for n, t in enumerate(sorted(int(t) for t in df["temporal_index"].unique()), start=1):
        sweep.add(t)
        if sweep.seen.any():
            rows.append(sweep.row(n, crops))
    out = pd.DataFrame(
        rows, columns=["temporal_views", "views", "videos", "top1", "top5", "gmacs_x_views", "gmacs_per_view"]
    )
    out.attrs = {"model": a.name, "ensemble": ensemble}
    return out


class _Sweep:
    """The running video scores and costs of :func:`accuracy_vs_views`, one temporal view at a time."""

    def __init__(self, a: RunAnalysis, ensemble: str):
        self.a, self.ensemble = a, ensemble
        self.ok = a.views[a.ok]
        self.videos = np.unique(a.views["video_id"].to_numpy())
        self.labels = a.views.groupby("video_id", sort=True)["label"].first().reindex(self.videos).to_numpy()
        self.S: np.ndarray | None = None
        self.scored = np.zeros(len(self.videos), bool)
        self.seen = np.zeros(len(self.videos), bool)
        self.gx = np.zeros(len(self.videos))

    def add(self, t: int) -> None:
        part = self.ok[self.ok["temporal_index"] == t]
        if not len(part):
            return
        v, sc = video_scores(part, self.ensemble, self.a.num_classes)
        pos = np.searchsorted(self.videos, v)
        if self.S is None:
            self.S = np.zeros((len(self.videos), sc.shape[1]))
        if sc.shape[1] != self.S.shape[1]:
            raise AnalysisError("score vectors of different lengths in one log; is it a mix of runs?")
        good = ~np.isnan(sc).any(axis=1)
        if self.ensemble == "sum":
            self.S[pos[good]] += sc[good]
        else:  # softmax scores are >= 0, so the running maximum can start from 0
            self.S[pos[good]] = np.maximum(self.S[pos[good]], sc[good])
        self.scored[pos[good]] = True
        self.seen[pos] = True
        self.gx[pos] += part.groupby("video_id", sort=True)["gmacs"].sum().to_numpy()

    def row(self, n: int, crops: int) -> dict[str, Any]:
        sel = np.flatnonzero(self.seen)
        mat = np.where(self.scored[sel, None], self.S[sel], np.nan)
        _, t1, t5 = topk(mat, self.labels[sel])
        t1, t5 = pd.Series(t1, dtype="boolean"), pd.Series(t5, dtype="boolean")
        finite = not self.a.nonfinite_views
        g = float(self.gx[sel].mean())
        return {
            "temporal_views": n,
            "views": n * crops,
            "videos": int(len(sel)),
            "top1": float(100 * t1.astype("Float64").mean()) if finite and t1.notna().any() else np.nan,
            "top5": float(100 * t5.astype("Float64").mean()) if finite and t5.notna().any() else np.nan,
            "gmacs_x_views": g,
            "gmacs_per_view": g / (n * crops),
        }


def accuracy_vs_views_both(log: pd.DataFrame | RunAnalysis) -> pd.DataFrame:
    """:func:`accuracy_vs_views` for both ensembles side by side: ``temporal_views, views, videos,
    top1_sum, top5_sum, top1_max, top5_max, gmacs_x_views, gmacs_per_view``."""
    run = RunAnalysis.of(log)
    a = accuracy_vs_views(run, "sum")
    b = accuracy_vs_views(run, "max")
    out = a[["temporal_views", "views", "videos"]].copy()
    for e, t in (("sum", a), ("max", b)):
        out[f"top1_{e}"] = t["top1"].to_numpy()
        out[f"top5_{e}"] = t["top5"].to_numpy()
    out["gmacs_x_views"] = a["gmacs_x_views"].to_numpy()
    out["gmacs_per_view"] = a["gmacs_per_view"].to_numpy()
    out.attrs = {"model": a.attrs["model"]}
    return out
