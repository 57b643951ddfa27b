"""Paper-style tables (model | GFLOPs x views | top-1 | top-5 | mean class | params) and the
multi-view sweep, with writers to Markdown (pandas' to_markdown, through tabulate), CSV and LaTeX
(pandas' Styler.to_latex)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import (
    ENSEMBLES,
    AnalysisError,
    _check_ensemble,
    _is_atfr,
    _mean_class_acc,
    _meta,
    _prepare,
    _topk,
    _video_level,
    _video_scores,
    run_name,
    views_per_video,
)
from atfr_analysis.analysis.comparable import NOT_COMPARABLE, IncomparableRunsError, OVERRIDE_HINT, differences

__all__ = [
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
    "model", "kind", "videos", "views", "gflops_per_view", "gflops_x_views", "reduction_pct",
    "reduction_ref", "top1", "top5", "mean_class_acc", "params_m", "static_gflops_per_view", "crop", "frames",
    "ensemble", "comparable",
]


def _run_summary(log: pd.DataFrame, name: str, ensemble: str = "sum") -> dict[str, Any]:
    df = _prepare(log, name)
    meta = _meta(df)
    vids = _video_level(df, ensemble)
    ok = vids[vids["status"] == "ok"]
    nv = views_per_video(df)
    gxv = float(ok["gmacs_x_views"].mean())
    params = meta.get("params")
    static = meta.get("static_gmacs")
    return {
        "model": run_name(df, name),
        "kind": "ATFR" if _is_atfr(df) else "baseline",
        "videos": int(len(ok)),
        "views": int(nv),
        "gflops_per_view": gxv / nv if nv else np.nan,
        "gflops_x_views": gxv,
        "top1": float(100 * ok["top1"].astype("Float64").mean()) if ok["top1"].notna().any() else np.nan,
        "top5": float(100 * ok["top5"].astype("Float64").mean()) if ok["top5"].notna().any() else np.nan,
        "mean_class_acc": _mean_class_acc(vids),
        "params_m": float(params) / 1e6 if isinstance(params, (int, float)) else np.nan,
        "static_gflops_per_view": float(static) if isinstance(static, (int, float)) and static > 0 else np.nan,
        "crop": meta.get("crop"),
        "frames": "+".join(map(str, meta["frames"])) if isinstance(meta.get("frames"), (list, tuple)) else meta.get("frames"),
        "failed_views": int((~df["_ok"]).sum()),
        "convention": meta.get("convention", "conv_fc"),
        "convention_text": (meta.get("conventions") or {}).get("gmacs"),
        "ensemble": ensemble,
        "comparable": True,
    }


def _baseline_for(i: int, log: pd.DataFrame, baselines: Any, n: int) -> pd.DataFrame | None:
    if baselines is None:
        return None
    if isinstance(baselines, pd.DataFrame):
        return baselines
    if isinstance(baselines, Mapping):
        return baselines.get(run_name(log, f"run{i}"))
    if isinstance(baselines, Sequence) and not isinstance(baselines, str):
        if len(baselines) != n:
            raise AnalysisError(f"baselines: a list needs one entry (or None) per run: {len(baselines)} for {n} runs")
        return baselines[i]
    raise AnalysisError(f"baselines must be a log, a list of logs (one per run) or a dict model -> log, got {type(baselines).__name__}")


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


def paper_table(
    runs: pd.DataFrame | Sequence[pd.DataFrame],
    baselines: Any = None,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
) -> pd.DataFrame:
    """The paper's comparison table over one or more runs.

    ``runs``: a log or a list of logs. ``baselines``: None; one log (the baseline of every ATFR
    run); a list with one log or None per run; or a dict {ATFR model name: baseline log}. A
    baseline not among ``runs`` gets its own row just above its ATFR run.

    One row per run with columns ``model, kind`` ("ATFR" | "baseline"), ``videos`` (ok), ``views``
    (per video), ``gflops_x_views`` (mean over ok videos of the sum over the video's ok views of
    per-view gmacs), ``gflops_per_view`` (= gflops_x_views / views, the paper's "20.8" in
    "20.8 x 30"), ``reduction_pct`` (ATFR rows: against the baseline run's gflops_x_views when
    given, else against ``static_gmacs`` x views; ``reduction_ref`` says which), ``top1, top5``
    (video-level %), ``mean_class_acc`` (mean of the classes' top-1, %), ``params_m``,
    ``static_gflops_per_view``, ``crop``, ``frames``, ``ensemble`` ("sum" | "max": how views
    were combined) and ``comparable`` (False on rows made comparable only by the override).
    ``attrs["footer"]``: convention, crop counted and how GFLOPs x views is computed.

    Every run must be comparable with its baseline and with the first run of the table (same
    videos, classes and views; no run twice; see :mod:`atfr_analysis.analysis.comparable`), else
    :class:`IncomparableRunsError`; with ``allow_incomparable`` the rows are labelled instead and
    ``attrs["not_comparable"]`` holds {model: differences}.
    """
    _check_ensemble(ensemble)
    if isinstance(runs, pd.DataFrame):
        runs = [runs]
    runs = list(runs)
    if not runs:
        raise AnalysisError("paper_table needs at least one run")
    bases = [_baseline_for(i, log, baselines, len(runs)) for i, log in enumerate(runs)]
    for i, log in enumerate(runs):  # bad input first, then comparability
        _prepare(log, f"runs[{i}]")
    for i, b in enumerate(bases):
        if b is not None:
            _prepare(b, f"baseline of runs[{i}]")
    diffs = _comparisons(runs, bases)
    if diffs and not allow_incomparable:
        msg = "; ".join(f"{run_name(runs[i], f'runs[{i}]')}: " + "; ".join(d) for i, d in diffs.items())
        raise IncomparableRunsError(f"runs not comparable: {msg}. {OVERRIDE_HINT}")
    rows: list[dict] = []
    listed: list[int] = [id(r) for r in runs]
    summaries: dict[int, dict] = {}

    def summary(log: pd.DataFrame, name: str) -> dict:
        if id(log) not in summaries:
            summaries[id(log)] = _run_summary(log, name, ensemble)
        return summaries[id(log)]

    not_comparable: dict[str, list[str]] = {}
    for i, log in enumerate(runs):
        s = dict(summary(log, f"runs[{i}]"))
        base = bases[i]
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
                if b["gflops_x_views"] > 0:
                    s["reduction_pct"] = 100 * (1 - s["gflops_x_views"] / b["gflops_x_views"])
                    s["reduction_ref"] = f"baseline run {b['model']}" + (" (not comparable)" if i in diffs else "")
            elif s["static_gflops_per_view"] > 0 and s["views"]:
                s["reduction_pct"] = 100 * (1 - s["gflops_x_views"] / (s["static_gflops_per_view"] * s["views"]))
                s["reduction_ref"] = "static backbone x views"
        rows.append(s)
    table = pd.DataFrame(rows)
    table["crop"] = pd.to_numeric(table["crop"], errors="coerce").astype("Int64")
    table["comparable"] = table["comparable"].astype(bool)
    footer = _footer(table)
    if not_comparable:
        footer += f" {NOT_COMPARABLE}: " + "; ".join(f"{m}: " + "; ".join(d) for m, d in not_comparable.items()) + "."
    table = table[PAPER_COLUMNS].reset_index(drop=True)
    table.attrs = {"footer": footer}
    if not_comparable:
        table.attrs["not_comparable"] = not_comparable
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
        + (f" ({text})" if text else "") + ".",
        "GFLOPs x views = mean over videos of the sum over the video's views of the per-view cost "
        "(each view costed at its own active bins); shown as that total / views x views.",
        "Reduction: against the baseline run when one is given, else against the static backbone "
        "(same network without SGS, same input) x views. Top-1/top-5: video-level, "
        + ("softmax summed over views" if set(t["ensemble"]) == {"sum"} else
           "element-wise maximum of the softmax over views" if set(t["ensemble"]) == {"max"} else
           "views combined by " + ", ".join(sorted(set(t["ensemble"]))))
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


def format_paper_table(table: pd.DataFrame, arrows: str = "unicode") -> pd.DataFrame:
    """Display strings like the poster: model | GFLOPs x views | top-1 | top-5 | params (M).

    ``arrows="unicode"`` writes "20.8 × 30 (↓42%)"; ``"latex"`` writes math-mode symbols;
    ``"ascii"`` writes "20.8 x 30 (-42%)"."""
    times, down, up = {"unicode": ("×", "↓", "↑"), "latex": (r"$\times$", r"$\downarrow$", r"$\uparrow$"),
                       "ascii": ("x", "-", "+")}[arrows]
    cells = []
    for _, r in table.iterrows():
        g = f"{_fmt(r['gflops_per_view'])} {times} {r['views']}"
        if not pd.isna(r["reduction_pct"]):
            red = r["reduction_pct"]
            g += f" ({down if red >= 0 else up}{abs(red):.0f}%)"
        comparable = bool(r["comparable"]) if "comparable" in r and not pd.isna(r["comparable"]) else True
        cells.append({
            "model": str(r["model"]) + ("" if comparable else " (not comparable)"),
            f"GFLOPs {times} views": g,
            "top-1": _fmt(r["top1"]),
            "top-5": _fmt(r["top5"]),
            "mean class": _fmt(r["mean_class_acc"]) if "mean_class_acc" in r else "",
            "params (M)": _fmt(r["params_m"], ".2f"),
        })
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
    return cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=["right" if n else "left" for n in numeric])


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
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
           "×": r"$\times$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "²": r"$^2$"}
    return "".join(rep.get(ch, ch) for ch in s)


def to_latex(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """The paper table as a LaTeX tabular (booktabs) inside a table with the footer as caption."""
    disp = format_paper_table(table)
    disp = disp.map(_latex_escape)
    disp.columns = [_latex_escape(c) for c in disp.columns]
    caption = _latex_escape(table.attrs.get("footer", ""))
    try:
        body = disp.style.hide(axis="index").to_latex(
            column_format="l" + "r" * (disp.shape[1] - 1), hrules=True,
            caption=caption or None, position="t", position_float="centering",
        )
    except ImportError:  # Styler needs jinja2: fall back to a hand-written tabular
        lines = [r"\begin{table}[t]", r"\centering"]
        if caption:
            lines.append(rf"\caption{{{caption}}}")
        lines += [rf"\begin{{tabular}}{{l{'r' * (disp.shape[1] - 1)}}}", r"\toprule",
                  " & ".join(disp.columns) + r" \\", r"\midrule"]
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
def accuracy_vs_views(log: pd.DataFrame, ensemble: str = "sum") -> pd.DataFrame:
    """Video-level accuracy and cost using only the first 1, 2, ..., V temporal views of each
    video (all spatial crops of those), as PySlowFast's multi-clip sweep; the views combined by
    ``ensemble`` ("sum" of the softmax, or its element-wise "max").

    Columns: ``temporal_views`` (n), ``views`` (n x crops), ``videos`` (with an ok view among
    those), ``top1, top5`` (%), ``gflops_x_views`` (mean over those videos of the sum of per-view
    gmacs over their first n temporal views), ``gflops_per_view``. The row n = V equals the full
    video-level result (``attrs["ensemble"]``). One pass over the scores: each temporal view's
    scores are added (or maxed) in turn."""
    _check_ensemble(ensemble)
    df = _prepare(log)
    meta = _meta(df)
    crops = int(meta["crops"]) if isinstance(meta.get("crops"), int) else int(df["spatial_index"].nunique())
    ok = df[df["_ok"]]
    videos = np.unique(df["video_id"].to_numpy())
    labels = df.groupby("video_id", sort=True)["label"].first().reindex(videos).to_numpy()
    S: np.ndarray | None = None
    scored = np.zeros(len(videos), bool)
    seen = np.zeros(len(videos), bool)
    gx = np.zeros(len(videos))
    rows = []
    for n, t in enumerate(sorted(int(t) for t in df["temporal_index"].unique()), start=1):
        part = ok[ok["temporal_index"] == t]
        if len(part):
            v, sc = _video_scores(part, ensemble)
            pos = np.searchsorted(videos, v)
            if S is None:
                S = np.zeros((len(videos), sc.shape[1]))
            if sc.shape[1] != S.shape[1]:
                raise AnalysisError("score vectors of different lengths in one log; is it a mix of runs?")
            good = ~np.isnan(sc).any(axis=1)
            if ensemble == "sum":
                S[pos[good]] += sc[good]
            else:  # softmax scores are >= 0, so the running maximum can start from 0
                S[pos[good]] = np.maximum(S[pos[good]], sc[good])
            scored[pos[good]] = True
            seen[pos] = True
            gx[pos] += part.groupby("video_id", sort=True)["gmacs"].sum().to_numpy()
        if not seen.any():
            continue
        sel = np.flatnonzero(seen)
        mat = np.where(scored[sel, None], S[sel], np.nan)
        _, t1, t5 = _topk(mat, labels[sel])
        t1, t5 = pd.Series(t1, dtype="boolean"), pd.Series(t5, dtype="boolean")
        g = float(gx[sel].mean())
        rows.append({
            "temporal_views": n,
            "views": n * crops,
            "videos": int(len(sel)),
            "top1": float(100 * t1.astype("Float64").mean()) if t1.notna().any() else np.nan,
            "top5": float(100 * t5.astype("Float64").mean()) if t5.notna().any() else np.nan,
            "gflops_x_views": g,
            "gflops_per_view": g / (n * crops),
        })
    out = pd.DataFrame(rows, columns=["temporal_views", "views", "videos", "top1", "top5", "gflops_x_views", "gflops_per_view"])
    out.attrs = {"model": run_name(df), "ensemble": ensemble}
    return out


def accuracy_vs_views_both(log: pd.DataFrame) -> pd.DataFrame:
    """:func:`accuracy_vs_views` for both ensembles side by side: ``temporal_views, views, videos,
    top1_sum, top5_sum, top1_max, top5_max, gflops_x_views, gflops_per_view``."""
    a = accuracy_vs_views(log, "sum")
    b = accuracy_vs_views(log, "max")
    out = a[["temporal_views", "views", "videos"]].copy()
    for e, t in (("sum", a), ("max", b)):
        out[f"top1_{e}"] = t["top1"].to_numpy()
        out[f"top5_{e}"] = t["top5"].to_numpy()
    out["gflops_x_views"] = a["gflops_x_views"].to_numpy()
    out["gflops_per_view"] = a["gflops_per_view"].to_numpy()
    out.attrs = {"model": a.attrs["model"]}
    return out
