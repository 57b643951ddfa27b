"""``atfr bench``: a smoke run with tiny settings (every key present, ratios positive; no timing
assertions) and the report's section bookkeeping. Exact batching's CUDA-graph and thread-pool
bookkeeping is tested in ``test_models_exact.py``."""

import json
import math

import pytest
import torch

from atfr_analysis import bench
from atfr_analysis.models import build_model

pytest.importorskip("av")

TINY = dict(
    model="x3d_xs_atfr",
    device="cpu",
    crop=32,
    clips=4,
    batch_size=2,
    reps=1,
    warmup=1,
    trace_clips=1,
    check_clips=2,
    decode_videos=1,
    decode_workers=(0, 1),
    decode_names=("carphone_pristine",),
    quiet=True,
    profile_videos=2,
    profile_views=2,
    profile_crops=1,
    profile_workers=(0,),
)


@pytest.fixture(scope="module")
def result():
    return bench.run_bench(bench.BenchConfig(**TINY), command=["test"])


def test_training_phase_measures_the_train_step(result):
    """Issue 24: the train step's clips/s (1 process fp32 and bf16, 2 gloo processes on the CPU)."""
    tr = result["training"]
    assert set(tr["clips_per_s"]) == {"1 process fp32", "1 process bf16", "2 processes fp32"}
    assert all(v > 0 for v in tr["clips_per_s"].values()) and tr["step_s_per_clip"] > 0


def test_every_key_present_and_ratios_positive(result):
    for k in bench.RESULT_KEYS:
        assert k in result, k
    for k in (
        "overhead",
        "speedup_exact_vs_baseline",
        "flop_ratio",
        "efficiency",
        "speedup_exact_vs_padded",
        "gmacs_lookup_vs_fvcore_trace",
    ):
        assert isinstance(result[k], float) and result[k] > 0 and math.isfinite(result[k]), k
    assert set(result["decoding"]) == {"0", "1"}
    assert all(v > 0 for v in result["decoding"].values())
    assert result["device"] == "cpu" and result["batch_size"] == 2 and result["clips"] == 4
    assert result["model"] == "x3d_xs_atfr" and result["torch"] == torch.__version__
    # the B' distribution covers every clip; GMACs of the ATFR model never exceed the baseline's
    (layer,) = result["bins"]["layers"].values()
    assert sum(layer["hist"].values()) == 4 and 1 <= layer["min"] <= layer["max"] <= layer["B"]
    assert result["gmacs"]["atfr_mean"] <= result["gmacs"]["baseline"]
    assert result["gmacs"]["fvcore_trace_equals_lookup"] is True
    assert result["exact_check"]["max_abs_diff_vs_batch1"] < 1e-5
    assert result["exact_check"]["max_abs_diff_post_only"] < 1e-5
    # where a difference would start: pre's features, then the SGS outputs (random weights: rounding)
    assert result["exact_check"]["max_abs_diff_pre"] < 1e-3 and result["exact_check"]["bins_equal"] is True
    assert result["exact_check"]["max_abs_diff_sgs_out"] < 1e-3 and result["exact_check"]["sgs_rescale_max"] > 0
    assert any("crop 32" in n for n in result["notes"])  # the reduced crop is stated
    json.loads(bench.dumps(result))  # JSON-able


def test_report_sections_are_replaced_not_duplicated(result, tmp_path):
    path = tmp_path / "benchmarks.md"
    bench.write_report(result, path, "cmd one")
    bench.write_report(result, path, "cmd two")
    text = path.read_text()
    assert text.count("<!-- bench:") == 1 and "cmd two" in text and "cmd one" not in text
    other = dict(result, batch_size=3)
    bench.write_report(other, path)
    assert path.read_text().count("<!-- bench:") == 2
    # --from-json writes the same section from a saved result
    saved = tmp_path / "r.json"
    saved.write_text(bench.dumps(result))
    path2 = tmp_path / "b2.md"
    from atfr_cli.main import main

    main(["bench", "--from-json", str(saved), "--report", str(path2)])
    assert "overhead" in path2.read_text() and "| speedup_exact_vs_padded |" in path2.read_text()


def test_build_clips_spread_redundancy():
    spec = build_model("x3d_xs_atfr").spec
    clips, recs = bench.build_clips(spec, 32, 10, seed=0)
    assert clips.shape == (10, 3, spec.clip_frames, 32, 32)
    kinds = [r["kind"] for r in recs]
    assert set(kinds) == set(bench.CLIP_KINDS)
    still = kinds.index("still")
    assert len(set(recs[still]["frames"])) == 1
    assert torch.equal(clips[still, :, 0], clips[still, :, -1])


def test_bad_options_fail_before_any_work():
    with pytest.raises(ValueError, match="CUDA only"):
        bench.run_bench(bench.BenchConfig(device="cpu", precision="bf16", quiet=True))
    with pytest.raises(ValueError, match="decode-workers"):
        bench.parse_workers("0,x")


def test_profile_bookkeeping_and_efficiency_analysis_reported(result, tmp_path):
    # the profile's own work, timed alone, is what it adds to the plain forward
    assert result["overhead_bookkeeping"] >= 1.0 and math.isfinite(result["overhead_bookkeeping"])
    assert result["times"]["bookkeeping_s_per_pass"] > 0
    ab = result["times"]["overhead_paired"]
    assert ab["pairs"] == 2 and ab["median"] == result["overhead"] and ab["q1"] <= ab["median"] <= ab["q3"]
    assert result["overhead_rounds"] > 0 and result["times"]["aa_control"] > 0
    an = result["phases"]["analysis"]
    assert 0 < an["pre_share_of_baseline_gmacs"] < 1 and 0 < an["pre_share_of_baseline_time"] < 1
    assert an["post_flop_ratio"] >= 1 and an["efficiency_post_proportional"] > 0
    med = result["phases"]["median_s_per_pass"]
    assert med["baseline_pre"] > 0 and med["baseline_post"] > 0
    path = tmp_path / "b.md"
    bench.write_report(result, path, "cmd")
    text = path.read_text()
    assert "overhead_bookkeeping" in text and "Why the efficiency is what it is" in text
    # a CPU run is not held to the GPU target; the overhead target says met or missed
    assert "not a GPU run at batch 32" in text and (
        "target <= 1.02; met" in text or "target <= 1.02; **missed**" in text
    )


def test_efficiency_analysis_time_proportional_to_gmacs_is_one():
    # every part runs at 1 s per GMAC: the measured efficiency and the post-proportional one are exactly 1
    g = {"pre": 2.0, "sgs": 0.1, "post_exact": 3.0, "baseline": 8.0}
    t = {"pre": 2.0, "sgs": 0.1, "post_exact": 3.0, "baseline_pre": 2.0, "baseline_post": 6.0}
    an = bench.efficiency_analysis({"median_s_per_pass": t}, g)
    for k in ("post_efficiency", "efficiency_from_phases", "efficiency_post_proportional"):
        assert an[k] == pytest.approx(1.0), k
    # pre twice as slow per GMAC in both models: below 1 although post is FLOP-proportional
    t2 = dict(t, pre=4.0, baseline_pre=4.0)
    an2 = bench.efficiency_analysis({"median_s_per_pass": t2}, g)
    assert an2["post_efficiency"] == pytest.approx(1.0)
    assert an2["efficiency_post_proportional"] < 0.95
    assert an2["efficiency_from_phases"] == pytest.approx(an2["efficiency_post_proportional"])
    # a slow post (half as efficient) sits below the post-proportional efficiency
    an3 = bench.efficiency_analysis({"median_s_per_pass": dict(t, post_exact=6.0)}, g)
    assert (
        an3["post_efficiency"] == pytest.approx(0.5)
        and an3["efficiency_from_phases"] < an3["efficiency_post_proportional"]
    )


def test_auto_reps_more_rounds_for_short_passes():
    assert bench.auto_reps(2.0, 10.0, 5, 50) == 5
    assert bench.auto_reps(0.1, 10.0, 5, 50) == 50
    assert bench.auto_reps(0.5, 10.0, 5, 50) == 20
    calls = {"a": 0, "b": 0}

    def fn(k):
        def f():
            calls[k] += 1

        return f

    from atfr_analysis.bench.timing import timed_rounds

    times = timed_rounds(
        {"a": fn("a"), "b": fn("b")}, None, 0, torch.device("cpu"), min_time=1e-9, min_reps=3, max_reps=9
    )
    # reps=None forces one warm-up round; min_time is met at once, so min_reps timed rounds follow
    assert len(times["a"]) == len(times["b"]) == 3 and calls["a"] == 4


def test_cli_is_one_parser_and_bad_options_exit_2(capsys):
    from atfr_cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--device", "cpu", "--precision", "bf16", "--quiet"])
    assert e.value.code == 2 and "CUDA only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--decode-workers", "0,x"])
    assert e.value.code == 2 and "decode-workers" in capsys.readouterr().err
    assert not hasattr(bench, "main") and not hasattr(bench, "add_arguments")  # no second command line


def test_scale_figures_cold_counting_throughput_memory(result, tmp_path):
    cold = result["cold_signatures"]
    assert cold["signatures"] == result["bins"]["distinct_signatures"] and cold["fvcore"]["s_per_signature"] > 0
    # the meta-device counter is plugged in by default: the same GMACs as fvcore's trace
    assert cold["new"] is not None and cold["equal"] is True and cold["ratio"] > 0
    tp = result["profile_throughput"]
    (run,) = tp["runs"].values()
    assert run["error"] is None and run["processed"] == 2 and run["videos_per_s"] > 0 and run["efficiency"] > 0
    # the steady state spans the videos after the first
    assert run["steady_videos"] == 1 and run["steady_videos_per_s"] > 0 and run["efficiency_steady"] > 0
    assert run["peak_rss_mib"] > 0 and tp["split"]["decode_s_per_video"] > 0
    sp = tp["split"]
    assert set(sp["parts_s_per_video"]) == {"transfer", "pre", "sgs", "post", "bookkeeping"}
    # every batch of a video is counted (2 views in batches of 1 here): the parts add up to the per-video sums
    assert tp["batch_size"] == 1 and tp["batch_size_default"] is True and len(sp["model_s"]) == 2
    assert sum(sp["parts_s_per_video"].values()) == pytest.approx(sum(sp["model_s"]) / 2)
    assert sp["steady_bound_s_per_video"] == max(sp["decode_s"][1], sp["model_s"][1])
    bs = result["batch_sizes"]
    assert bs["sizes"] == [1, 2] and all(v > 0 for v in bs["s_per_clip"].values()) and bs["fastest"] in (1, 2)
    assert bs["padded_s_per_clip"] > 0 and bs["speedup_exact_vs_padded"] > 0
    mem = result["memory"]
    assert mem["peak_rss_mib"] >= max(mem["peak_rss_mib_after"].values()) > 0 and mem["cuda_max_allocated_mib"] is None
    path = tmp_path / "b.md"
    bench.write_report(result, path, "cmd")
    text = path.read_text()
    assert "Cold-signature counting" in text and "new counter" in text and "same GMACs: True" in text
    assert "profile loop, 0 worker(s)" in text and "Peak memory of the bench process" in text
    assert "steady state over 1 video(s)" in text and "Batch sizes (exact forward" in text
    assert "(the CPU bound)" in text and sp["cores"] >= 1 and len(sp["model_cpu_s"]) == 2


def test_cold_signatures_take_any_counter():
    from atfr_analysis.bench.costs import cold_signatures, count_cold, fvcore_counter
    from atfr_analysis.flops.cost import CostModel

    torch.manual_seed(0)
    model = build_model("x3d_xs_atfr").eval()
    shapes = [(1, 3, model.spec.clip_frames, 32, 32)]
    sigs = [(2,), (3,)]
    _cm, ref = count_cold(fvcore_counter, model, shapes, sigs)
    same = cold_signatures(ref, model, shapes, sigs, new_counter=lambda m, s: CostModel(m, s))
    assert same["equal"] is True and same["new"]["signatures"] == 2 and same["ratio"] > 0

    class Off:
        def __init__(self, m, s):
            self.cm = CostModel(m, s)

        def gmacs(self, sig):
            a, b = self.cm.gmacs(sig)
            return a * (1 + 1e-6), b

    assert cold_signatures(ref, model, shapes, sigs, new_counter=Off)["equal"] is False


@pytest.mark.slow
def test_gpu_suite_smoke_runs_on_cpu(tmp_path):
    from atfr_analysis.bench.suite import SUITE_MODELS, run_suite

    out, md = tmp_path / "suite", tmp_path / "b.md"
    res = run_suite("gpu", device="cpu", smoke=True, out=out, report=md, quiet=True, command=["test"])
    assert [r["model"] for r in res["runs"]] == list(SUITE_MODELS) and len(res["skipped"]) == 2
    assert all(r["profile_throughput"]["runs"]["0"]["error"] is None for r in res["runs"])
    assert (out / "suite.json").exists() and len(list(out.glob("cpu-*.json"))) == 2
    assert md.read_text().count("<!-- bench:") == 2
    with pytest.raises(ValueError, match="CUDA device"):
        run_suite("gpu", device="cpu")


def test_steady_state_rates_leave_the_first_video_out():
    from atfr_analysis.bench.throughput import _rates, _steady_bound

    split = {"decode_s": [9.0, 1.0, 1.0, 1.0], "model_s": [2.0, 2.0, 2.0, 2.0]}
    assert _steady_bound(split) == 2.0  # model-bound once the first (slow) decode is left out
    # 4 videos logged at 10, 12, 14, 16 s from the first: 2 s per video in the steady state
    r = _rates({"processed": 4, "loop_s": 16.0, "video_done_s": [0.0, 2.0, 4.0, 6.0]}, 3.0, 3.0, 2.0)
    assert r["videos_per_s"] == 0.25 and r["efficiency"] == 0.75
    assert r["steady_videos"] == 3 and r["steady_videos_per_s"] == 0.5 and r["efficiency_steady"] == 1.0
    one = _rates({"processed": 1, "loop_s": 4.0, "video_done_s": [0.0]}, 2.0, 2.0, None)
    assert one["efficiency_steady"] is None and one["steady_videos"] == 0


def test_cpu_bound_is_the_cores_share_of_decode_and_model_cpu_time():
    from atfr_analysis.bench.throughput import _cpu_bound, _rates

    # decode 1 CPU-s and the model 3 CPU-s per video (2 threads): on 2 cores at least 2 s per video,
    # above max(decode, model) = 1.5 s wall
    split = {"decode_cpu_s": [5.0, 1.0, 1.0], "model_cpu_s": [3.0, 3.0, 3.0], "cores": 2}
    assert _cpu_bound(split) == 2.0 and _cpu_bound({"decode_cpu_s": [1.0], "model_cpu_s": [1.0], "cores": 2}) is None
    r = _rates({"processed": 3, "loop_s": 6.0, "video_done_s": [0.0, 2.5, 5.0]}, 1.5, 1.5, 1.5, 2.0)
    assert r["efficiency_steady"] == 0.6 and r["efficiency_steady_cpu_bound"] == 0.8


#: ``atfr bench`` with its defaults (model, device, weights, clips, every phase) at a reduced size:
#: smaller crops, fewer clips, rounds and steps; nothing skipped (issue 30: the defaults' training
#: phase sent NaN into SGS after 10 minutes, and nothing caught it)
REDUCED_CLI = [
    "--crop", 32, "--clips", 2, "--batch-size", 2, "--reps", 1, "--warmup", 0, "--min-time", 0.05,
    "--trace-clips", 1, "--check-clips", 1, "--decode-videos", 1, "--decode-workers", 0,
    "--profile-videos", 2, "--profile-views", 1, "--profile-workers", 0, "--quiet",
]  # fmt: skip
#: the same through the config (no option of their own): the profile runs' crop, the training
#: steps, the smallest sample video for decoding and the profile loop
REDUCED_CONFIG = dict(profile_crop=32, train_steps=1, decode_names=("carphone_pristine",))


@pytest.mark.slow
def test_default_bench_runs_every_phase_at_a_reduced_size(capsys, tmp_path, monkeypatch):
    import functools

    from profile_helpers import run_cli

    monkeypatch.setattr(bench, "BenchConfig", functools.partial(bench.BenchConfig, **REDUCED_CONFIG))
    out, md = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    code, _stdout, err = run_cli(capsys, "bench", "--out", out, "--report", md, *REDUCED_CLI)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["model"] == bench.DEFAULT_MODEL and r["checkpoint"] is None and r["device"] == "cpu"
    for k in bench.RESULT_KEYS:
        assert k in r, k
    # every phase ran: the training phase with its 2 gloo processes, the profile loop, decoding
    assert set(r["training"]["clips_per_s"]) == {"1 process fp32", "1 process bf16", "2 processes fp32"}
    assert all(v > 0 and math.isfinite(v) for v in r["training"]["clips_per_s"].values())
    assert r["profile_throughput"]["runs"]["0"]["error"] is None and r["profile_throughput"]["crop"] == 32
    assert r["decoding"] and r["exact_check"]["clips"] == 1
    assert "<!-- bench:" in md.read_text()


def test_training_phase_keeps_the_weights():
    """The training phase times steps, it does not train: every timed step starts from the weights
    of the first, so no update of random weights can carry a non-finite gradient into the next
    forward (issue 30)."""
    from atfr_analysis.bench.training import _model, _time_steps

    dev = torch.device("cpu")
    m = _model("x3d_xs_atfr", 4, dev)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 4, 32, 32, generator=g)]
    assert _time_steps(m, xs, torch.tensor([0, 1]), dev, "fp32", 2) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # a real backward ran
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_phase_survives_a_frozen_clip_in_bf16():
    """The default bench's failure, reproduced: random SlowFast ATFR weights on a frozen clip (every
    frame the same, as the bench's sample clips hold) give non-finite gradients under bf16 autocast;
    an SGD step with them makes the weights NaN at any learning rate, and the next step's forward
    ended in `non-finite values reach SGS layer s2.pathway0_ts_layer`."""
    from atfr_analysis.bench.training import _model, _time_steps

    dev = torch.device("cpu")
    m = _model("slowfast_4x16_r50_atfr", 4, dev)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 1, 32, 32, generator=g).expand(-1, -1, t, -1, -1).contiguous() for t in m.spec.frames]
    assert _time_steps(m, xs, torch.tensor([0, 1]), dev, "bf16", 2) > 0


def test_bench_config_is_frozen_and_checked_when_built():
    """A BenchConfig is a value: a bad setting is refused when it is built (not when a run reaches
    it), and ``resolved`` returns a copy with the device's defaults (issue 31)."""
    import dataclasses

    from atfr_analysis.errors import InputError

    for bad, needle in (
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(precision="fp8"), "--precision must be one of"),
        (dict(profile_crops=2), "--profile-crops must be 1 or 3"),
        (dict(min_reps=60), "must not exceed max_reps"),
        (dict(decode_workers=(-1,)), "workers must be >= 0"),
    ):
        with pytest.raises(InputError, match=needle):
            bench.BenchConfig(**bad)
    cfg = bench.BenchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 4
    r = cfg.resolved(torch.device("cpu"))
    assert (r.batch_size, r.clips, r.profile_crops, r.train_steps) == (8, 16, 1, 3) and cfg.batch_size is None
    assert bench.BenchConfig(batch_size=4).resolved(torch.device("cpu")).clips == 8
