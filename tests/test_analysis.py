"""The analysis layer on synthetic logs (tests/analysis_logs.py): no model, no video."""

import re

import numpy as np
import pandas as pd
import pytest
from analysis_logs import LAYER, build_log, one_hot, planted_log

from atfr_analysis.analysis import (
    AnalysisError,
    accuracy_vs_views,
    below_min_videos,
    format_paper_table,
    paper_table,
    per_class,
    ranking,
    to_latex,
    to_markdown,
    video_table,
    write_report,
)

NAMES = ["run", "sit", "c2", "c3", "c4", "c5"]  # 6 classes, so top-5 can miss


def _s(*p):
    return list(p)


def hand_log(**kw):
    """3 videos. v0 (run): bins 2, 4; GMACs 1, 2; right. v1 (run): bins 6, 8; GMACs 3, 4; a third
    view failed; top-1 wrong (c2), top-5 right. v2 (sit): bins 1, 1; GMACs 0.5, 0.5; label last."""
    v0 = [
        {"bins": 2, "gmacs": 1.0, "scores": _s(0.5, 0.1, 0.1, 0.1, 0.1, 0.1)},
        {"bins": 4, "gmacs": 2.0, "scores": _s(0.4, 0.2, 0.1, 0.1, 0.1, 0.1)},
    ]
    v1 = [
        {"bins": 6, "gmacs": 3.0, "scores": _s(0.3, 0.05, 0.4, 0.1, 0.1, 0.05)},
        {"bins": 8, "gmacs": 4.0, "scores": _s(0.2, 0.05, 0.5, 0.1, 0.1, 0.05)},
        {"status": "failed"},
    ]
    v2 = [
        {"bins": 1, "gmacs": 0.5, "scores": _s(0.3, 0.0, 0.2, 0.2, 0.2, 0.1)},
        {"bins": 1, "gmacs": 0.5, "scores": _s(0.3, 0.0, 0.2, 0.2, 0.2, 0.1)},
    ]
    return build_log(
        [{"label": 0, "views": v0}, {"label": 0, "views": v1}, {"label": 1, "views": v2}],
        NAMES,
        layers={LAYER: 8},
        meta={"static_gmacs": 5.0, "views": 2, "crops": 1},
        **kw,
    )


# ------------------------------------------------------------------------------ aggregation
def test_video_table_by_hand():
    vt = video_table(hand_log())
    assert list(vt["video_id"]) == [0, 1, 2]
    assert list(vt["views_ok"]) == [2, 2, 2] and list(vt["views_failed"]) == [0, 1, 0]
    assert list(vt["top1"]) == [True, False, False]
    assert list(vt["top5"]) == [True, True, False]
    assert list(vt["pred"]) == [0, 2, 0]
    assert vt["gmacs_x_views"].tolist() == pytest.approx([3.0, 7.0, 1.0])
    assert vt[f"bins.{LAYER}"].tolist() == pytest.approx([3.0, 7.0, 1.0])
    assert vt["frac_kept"].tolist() == pytest.approx([3 / 8, 7 / 8, 1 / 8])


def test_per_class_by_hand():
    pc = per_class(hand_log()).set_index("class_name")
    assert list(pc.index) == ["run", "sit", "overall"]
    run, sit, allc = pc.loc["run"], pc.loc["sit"], pc.loc["overall"]
    assert (run["videos"], run["views"], run["failures"]) == (2, 4, 1)
    assert (sit["videos"], sit["views"], sit["failures"]) == (1, 2, 0)
    assert (allc["videos"], allc["views"], allc["failures"]) == (3, 6, 1)
    assert (run["top1"], run["top5"]) == (50.0, 100.0)
    assert (sit["top1"], sit["top5"]) == (0.0, 0.0)
    assert allc["top1"] == pytest.approx(100 / 3) and allc["top5"] == pytest.approx(200 / 3)
    b = f"bins.{LAYER}"
    assert run[f"{b}_mean"] == 5.0 and run[f"{b}_median"] == 5.0
    assert run[f"{b}_std"] == pytest.approx(np.sqrt(20 / 3))
    assert run[f"{b}_p10"] == pytest.approx(2.6) and run[f"{b}_p90"] == pytest.approx(7.4)
    assert run[f"frac.{LAYER}_mean"] == pytest.approx(5 / 8) and run[f"frac.{LAYER}_p90"] == pytest.approx(7.4 / 8)
    assert run["gmacs_per_view_mean"] == 2.5 and run["gmacs_x_views_mean"] == 5.0
    assert run["reduction_pct"] == pytest.approx(50.0)
    assert allc["gmacs_per_view_mean"] == pytest.approx(11 / 6)
    assert allc["gmacs_x_views_mean"] == pytest.approx(11 / 3)
    assert sit[f"{b}_mean"] == 1.0 and sit[f"{b}_std"] == 0.0


def test_per_class_required_columns():
    pc = per_class(hand_log()).set_index("class_name")
    for c in ("videos", "top1", "top5", "gmacs_per_view_mean", "gmacs_x_views_mean", f"bins.{LAYER}_mean"):
        assert c in pc.columns


def test_per_class_with_baseline():
    base = build_log(
        [
            {"label": 0, "views": [{"gmacs": 5.0, "scores": one_hot(6, 0)}] * 2},
            {"label": 0, "views": [{"gmacs": 5.0, "scores": one_hot(6, 0)}] * 2},
            {"label": 1, "views": [{"gmacs": 5.0, "scores": one_hot(6, 1)}] * 2},
        ],
        NAMES,
    )
    pc = per_class(hand_log(), baseline=base).set_index("class_name")
    assert pc.loc["run", "top1_delta"] == -50.0 and pc.loc["sit", "top1_delta"] == -100.0
    assert pc.loc["run", "gmacs_reduction_vs_baseline_pct"] == pytest.approx(50.0)
    assert pc.loc["sit", "gmacs_reduction_vs_baseline_pct"] == pytest.approx(90.0)
    assert pc.loc["overall", "gmacs_reduction_vs_baseline_pct"] == pytest.approx(100 * (1 - (11 / 6) / 5))


def test_meta_missing_pieces_and_two_pathways():
    layers = {"s2.pathway0_ts_layer": 4, "s2.pathway1_ts_layer": 16}
    vids = [
        {
            "label": 0,
            "views": [
                {"bins": {"s2.pathway0_ts_layer": 2, "s2.pathway1_ts_layer": 4}, "gmacs": 1.0, "scores": one_hot(2, 0)}
            ],
        },
        {
            "label": 1,
            "views": [
                {"bins": {"s2.pathway0_ts_layer": 4, "s2.pathway1_ts_layer": 16}, "gmacs": 2.0, "scores": one_hot(2, 1)}
            ],
        },
    ]
    full = per_class(build_log(vids, ["a", "b"], layers=layers)).set_index("class_name")
    assert full.loc["a", "frac_kept_mean"] == pytest.approx((2 / 4 + 4 / 16) / 2)
    assert full.loc["b", "frac_kept_mean"] == pytest.approx(1.0)
    bare = build_log(
        vids,
        ["a", "b"],
        layers=layers,
        drop_meta=["sgs_layers", "static_gmacs", "views", "crops", "class_names", "num_classes"],
    )
    pc = per_class(bare)
    assert "bins.s2.pathway1_ts_layer_mean" in pc.columns
    assert not any(c.startswith("frac") for c in pc.columns) and "reduction_pct" not in pc.columns
    r = ranking(bare, by="bins", k=1, n_boot=50)  # B unknown: ranked by mean active bins
    assert list(r["class_name"]) == ["a", "b"] and "B unknown" in r.attrs["metric"]
    bare.attrs = {}
    assert per_class(bare)["top1"].iloc[-1] == 100.0


def test_unlabelled_videos_are_not_scored():
    log = build_log(
        [
            {"label": 0, "views": [{"bins": 1, "gmacs": 1.0, "scores": one_hot(3, 0)}]},
            {"label": -1, "views": [{"bins": 2, "gmacs": 1.0, "scores": one_hot(3, 1)}]},
        ],
        ["a", "b", "c"],
        layers={LAYER: 4},
    )
    pc = per_class(log).set_index("class_name")
    assert pc.loc["overall", "labelled"] == 1 and pc.loc["overall", "top1"] == 100.0
    assert pc.loc["(unknown)", "videos"] == 1 and np.isnan(pc.loc["(unknown)", "top1"])


def _independent_topk(log):
    """Top-1 / top-5 per video from summed softmax, without the package's code path."""
    ok = log[log["status"] == "ok"]
    out = {}
    for vid, g in ok.groupby("video_id"):
        s = np.sum([np.asarray(x, dtype=float) for x in g["scores"]], axis=0)
        ranked = sorted(range(len(s)), key=lambda c: (-s[c], c))
        lab = int(g["label"].iloc[0])
        out[vid] = (ranked[0] == lab, lab in ranked[:5])
    return out


def test_topk_equals_independent_computation():
    log = planted_log(n_classes=9, videos_per_class=5, views=3, crops=3, failed_views=4, seed=3)
    ref = _independent_topk(log)
    vt = video_table(log).set_index("video_id")
    assert {v: (bool(vt.loc[v, "top1"]), bool(vt.loc[v, "top5"])) for v in ref} == ref
    overall = per_class(log).set_index("class_name").loc["overall"]
    assert overall["top1"] == pytest.approx(100 * np.mean([a for a, _ in ref.values()]))
    assert overall["top5"] == pytest.approx(100 * np.mean([b for _, b in ref.values()]))
    assert 0 < overall["top1"] < 100  # the planted log is not trivially right or wrong


# ---------------------------------------------------------------------------------- ranking
@pytest.mark.parametrize("by", ["bins", "gmacs"])
def test_ranking_reproduces_planted_order(by):
    log = planted_log(n_classes=8, videos_per_class=6, seed=0)
    r = ranking(log, by=by, k=3, n_boot=300)
    assert list(r.columns)[:8] == [
        "end",
        "rank",
        "class_name",
        "value",
        "ci_low",
        "ci_high",
        "videos",
        "overlaps_other_end",
    ]
    names = sorted(set(log["class_name"]))  # class i is the i-th name
    low, high = r[r["end"] == "lowest"], r[r["end"] == "highest"]
    assert list(low["class_name"]) == names[:3] and list(low["rank"]) == [1, 2, 3]
    assert list(high["class_name"]) == names[::-1][:3] and list(high["rank"]) == [1, 2, 3]
    assert not r["overlaps_other_end"].any()
    assert (r["ci_low"] <= r["value"]).all() and (r["value"] <= r["ci_high"]).all()
    assert (r["videos"] == 6).all()


def test_ranking_value_by_hand_and_overlap():
    r = ranking(hand_log(), by="gmacs", k=1, n_boot=200)
    assert list(r["class_name"]) == ["sit", "run"]
    assert r["value"].tolist() == pytest.approx([0.5, 2.5])
    # run's videos (1.5 and 3.5 GMACs/view) bootstrap within [1.5, 3.5]; sit's single video is a point
    run = r.iloc[1]
    assert 1.5 <= run["ci_low"] <= 2.5 <= run["ci_high"] <= 3.5
    assert r.iloc[0]["ci_low"] == r.iloc[0]["ci_high"] == 0.5
    assert not r["overlaps_other_end"].any()
    r = ranking(hand_log(), by="bins", k=1, n_boot=200)
    assert r["value"].tolist() == pytest.approx([1 / 8, 5 / 8])


def test_ranking_overlap_flag_when_classes_are_alike():
    log = planted_log(n_classes=4, videos_per_class=6, seed=0)
    log.loc[log["class_name"] == sorted(set(log["class_name"]))[3], "gmacs"] = 0.9  # the highest class ...
    log.loc[log["class_name"] == sorted(set(log["class_name"]))[0], "gmacs"] = 0.9  # ... equals the lowest
    r = ranking(log, by="gmacs", k=2, n_boot=200)
    assert r["overlaps_other_end"].any()


def test_bootstrap_deterministic_per_seed():
    log = planted_log(n_classes=6, videos_per_class=8, seed=5)
    a = ranking(log, by="bins", k=3, n_boot=400, seed=7)
    b = ranking(log, by="bins", k=3, n_boot=400, seed=7)
    c = ranking(log, by="bins", k=3, n_boot=400, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["class_name"]) == list(c["class_name"])
    assert not np.allclose(a[["ci_low", "ci_high"]].to_numpy(), c[["ci_low", "ci_high"]].to_numpy())


def test_min_videos_lists_small_classes_apart():
    log = planted_log(n_classes=6, videos_per_class=4, seed=1)
    names = sorted(set(log["class_name"]))
    keep = ~log["video_id"].isin(log.loc[log["class_name"] == names[0], "video_id"].unique()[1:])
    log = log[keep]  # class 0 keeps one video
    r = ranking(log, by="bins", k=2, min_videos=2, n_boot=100)
    assert names[0] not in set(r["class_name"])
    assert r.attrs["below_min_videos"] == {names[0]: 1} and r.attrs["n_ranked"] == 5
    assert list(r[r["end"] == "lowest"]["class_name"]) == names[1:3]
    small = below_min_videos(log, 2)
    assert small.to_dict("records") == [{"class_name": names[0], "videos": 1}]


def test_ranking_few_classes_split_between_ends():
    r = ranking(planted_log(n_classes=3, videos_per_class=3), by="bins", k=5, n_boot=50)
    assert list(r["end"]) == ["lowest", "lowest", "highest"] and r["class_name"].is_unique
    r1 = ranking(planted_log(n_classes=1, videos_per_class=3), by="bins", k=5, n_boot=50)
    assert list(r1["end"]) == ["lowest"] and not r1["overlaps_other_end"].any()


# ----------------------------------------------------------------------------------- tables
def _plain_log(gmacs, n_videos=2, views=2, C=3, layers=None):
    vids = [
        {"label": i % C, "views": [{"bins": 2, "gmacs": g, "scores": one_hot(C, i % C)} for g in gmacs[:views]]}
        for i in range(n_videos)
    ]
    return build_log(vids, [f"k{i}" for i in range(C)], layers=layers, meta={"static_gmacs": 4.0})


def test_paper_table_gmacs_x_views_and_reduction():
    atfr = _plain_log([1.0, 2.0], layers={LAYER: 8})  # per video 3.0 over 2 views
    base = _plain_log([4.0, 4.0])  # per video 8.0
    t = paper_table(atfr)
    row = t.iloc[0]
    assert row["kind"] == "ATFR" and row["views"] == 2
    assert row["gmacs_x_views"] == pytest.approx(3.0) and row["gmacs_per_view"] == pytest.approx(1.5)
    assert row["reduction_pct"] == pytest.approx(100 * (1 - 3.0 / 8.0)) and "static" in row["reduction_ref"]
    t = paper_table([atfr], baselines=base)
    assert list(t["kind"]) == ["baseline", "ATFR"]
    assert t.iloc[1]["reduction_pct"] == pytest.approx(62.5) and "baseline" in t.iloc[1]["reduction_ref"]
    assert np.isnan(t.iloc[0]["reduction_pct"])
    assert t.iloc[1]["top1"] == 100.0 and t.iloc[1]["params_m"] == pytest.approx(3.79)
    foot = t.attrs["footer"]
    assert "conv_fc" in foot and "160x160 crop counted" in foot and "sum over the video's views" in foot
    assert format_paper_table(t)["GFLOPs × views"].tolist() == ["4.00 × 2", "1.50 × 2 (↓62%)"]  # 3 significant digits
    md = to_markdown(t)
    assert "| x3d_s_atfr |" in md and "(↓62%)" in md and "conv_fc" in md
    tex = to_latex(t)
    assert r"$\times$" in tex and r"\toprule" in tex and r"x3d\_s\_atfr" in tex
    # several runs, a baseline already among them is not repeated
    t = paper_table([base, atfr], baselines=[None, base])
    assert list(t["kind"]) == ["baseline", "ATFR"]


def test_accuracy_vs_views():
    log = planted_log(n_classes=6, videos_per_class=4, views=4, crops=3, failed_views=2, seed=2)
    sw = accuracy_vs_views(log)
    assert list(sw["temporal_views"]) == [1, 2, 3, 4] and list(sw["views"]) == [3, 6, 9, 12]
    overall = per_class(log).set_index("class_name").loc["overall"]
    last = sw.iloc[-1]
    assert last["top1"] == pytest.approx(overall["top1"]) and last["top5"] == pytest.approx(overall["top5"])
    assert last["gmacs_x_views"] == pytest.approx(paper_table(log).iloc[0]["gmacs_x_views"])
    first = _independent_topk(log[log["temporal_index"] == 0])
    assert sw.iloc[0]["top1"] == pytest.approx(100 * np.mean([a for a, _ in first.values()]))
    assert sw.iloc[0]["videos"] == len(first)
    assert sw["gmacs_x_views"].is_monotonic_increasing


# ---------------------------------------------------------------------------------- reports
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_report(path, figures):
    out = path.parent
    text = path.read_text()
    for f in (
        "per_class.csv",
        "ranking.csv",
        "unranked_classes.csv",
        "videos.csv",
        "paper_table.md",
        "paper_table.csv",
        "paper_table.tex",
        "accuracy_vs_views.csv",
    ):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    rank = pd.read_csv(out / "ranking.csv")
    assert {"end", "rank", "class_name", "value", "ci_low", "ci_high"} <= set(rank.columns)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == sorted(figures)
    import matplotlib.image as mpimg

    for f in linked:
        p = out / f
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.01  # not blank
    return text


ALL_FIGS = [
    "bins_hist.png",
    "class_distributions.png",
    "gmacs_vs_accuracy.png",
    "gmacs_distribution.png",
    "accuracy_vs_views.png",
    "confusion.png",
]


def test_report_with_failed_rows_and_baseline(tmp_path):
    log = planted_log(n_classes=7, videos_per_class=4, views=3, crops=1, failed_views=5, seed=4)
    base = planted_log(n_classes=7, videos_per_class=4, views=3, crops=1, baseline=True, seed=9)
    p = write_report(log, tmp_path / "r", baseline=base, by="bins", k=3, n_boot=100)
    assert p == tmp_path / "r" / "report.md"
    text = _check_report(p, ALL_FIGS + ["delta_vs_reduction.png", "accuracy_by_bins.png"])
    assert "5 failed" in text and "lowest" in text and "highest" in text
    assert "## Paper-style table" in text and "(↓" in text
    pc = pd.read_csv(tmp_path / "r" / "per_class.csv")
    assert pc["class_name"].iloc[-1] == "overall" and pc["failures"].iloc[-1] == 5
    assert "top1_delta" in pc.columns


def test_report_single_class(tmp_path):
    log = planted_log(n_classes=1, videos_per_class=3, views=2, seed=0)
    p = write_report(log, tmp_path, k=5, n_boot=50)
    _check_report(p, ALL_FIGS)
    assert len(pd.read_csv(tmp_path / "ranking.csv")) == 1


def test_report_baseline_run_without_bins(tmp_path):
    log = planted_log(n_classes=4, videos_per_class=3, views=2, baseline=True)
    assert not any(c.startswith("bins.") for c in log.columns)
    p = write_report(log, tmp_path, n_boot=50)
    text = _check_report(p, [f for f in ALL_FIGS if f != "bins_hist.png"])
    assert "No SGS layers" in text
    with pytest.raises(AnalysisError, match="bins"):
        write_report(log, tmp_path / "b", by="bins")


# ------------------------------------------------------------------------------- bad input
def _one_line(e):
    return "\n" not in str(e.value) and str(e.value)


def test_bad_inputs_raise_analysis_error(tmp_path):
    log = hand_log()
    failed = log.assign(status="failed")
    for bad, what in (
        (log.iloc[:0], "empty"),
        (failed, "no ok"),
        ("not a frame", "DataFrame"),
        (log.drop(columns=["gmacs"]), "gmacs"),
    ):
        with pytest.raises(AnalysisError, match=what) as e:
            write_report(bad, tmp_path / "x")
        assert _one_line(e)
        with pytest.raises(AnalysisError):
            per_class(bad)
    with pytest.raises(AnalysisError, match="'gmacs', 'bins'") as e:
        write_report(log, tmp_path / "x", by="frames")
    assert _one_line(e)
    with pytest.raises(AnalysisError):
        ranking(log, by="frames")
    assert not (tmp_path / "x").exists()  # nothing written on bad input
    assert issubclass(AnalysisError, ValueError)


def test_log_round_trip_through_parquet(tmp_path):
    """A log written with the profiler's writer and read back by load_run analyses the same."""
    from atfr_analysis.profile.log import load_run, write_meta, write_parts

    log = planted_log(n_classes=3, videos_per_class=2, views=2, failed_views=1, seed=6)
    rows = log.to_dict("records")
    vids = []
    for vid, g in log.groupby("video_id"):
        ok = g[g["status"] == "ok"]
        s = np.sum(np.stack(ok["scores"].tolist()), axis=0).astype("float32")
        vids.append(
            {
                "video_id": vid,
                "path": g["path"].iloc[0],
                "label": g["label"].iloc[0],
                "class_name": g["class_name"].iloc[0],
                "status": "ok",
                "error": None,
                "views_ok": len(ok),
                "scores_sum": s,
                "top1_id": int(np.argmax(s)),
            }
        )
    write_meta(tmp_path, log.attrs["meta"])
    write_parts(tmp_path, rows, vids, [LAYER], "test")
    back = load_run(tmp_path)
    pd.testing.assert_frame_equal(per_class(back), per_class(log))
