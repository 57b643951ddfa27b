"""NaN and inf are never a result (issue 21): a checkpoint with non-finite weights is refused on
load naming the tensor (``allow_nonfinite_weights`` / ``--allow-nonfinite-weights`` loads it);
``profile`` then logs every view with non-finite scores as a failed row, the video as failed, and
exits non-zero without a top-1 made from NaN; NaN or inf that reaches SGS is one line naming the
layer (Python API and CLI, ``profile`` and ``explain``). Also: bad training numbers, a directory
given as the checkpoint, an empty class name.

The models are the demo's shipped tiny checkpoints (7 classes), the videos the real sample clips
(one view, one crop each), so every test runs in seconds.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from profile_helpers import assert_one_line_error, run_cli, sample_list, torch_threads

import atfr_analysis
from atfr_analysis.checkpoint import (
    NonFiniteWeightsError,
    check_finite_weights,
    load_checkpoint,
)
from atfr_analysis.demo import DEMO, checkpoint_path
from atfr_analysis.errors import AtfrError, InputError, NonFiniteError
from atfr_analysis.loading import load_model_from_checkpoint
from atfr_analysis.profile.log import load_videos, read_meta
from atfr_analysis.profile.schema import NONFINITE_SCORES
from atfr_analysis.profile.summary import EXIT_NONE_PROFILED
from atfr_analysis.sgs import SimilarityGuidedSampling

BASE, ATFR = DEMO["baseline"], DEMO["atfr"]  # slow_tiny, slow_tiny_atfr
SGS = "s2.ts_layer"  # the SGS layer of slow_tiny_atfr
RES3 = "s3.pathway0_res0.branch2.a.weight"  # a res3 convolution (after SGS)
HEAD = "head.projection.weight"
STEM_VAR = "s1.pathway0_stem.bn.running_var"  # a BN buffer before SGS
RES3_VAR = "s3.pathway0_res0.branch2.a_bn.running_var"  # a BN buffer after SGS
SGS_MLP = f"{SGS}.fc.0.weight"
VIDEOS = ("bikes", "carphone_pristine")


def poisoned(tmp_path, model: str, key: str, value: float = math.nan, where=(0,)) -> Path:
    """The shipped checkpoint of ``model`` with ``value`` written into ``key`` at the flat
    positions ``where`` (same format: PySlowFast dict, fp16 storage, cfg)."""
    obj = torch.load(checkpoint_path(model), map_location="cpu", weights_only=True)
    t = obj["model_state"][key].float().clone()
    assert t.is_floating_point() and bool(torch.isfinite(t).all())
    t.view(-1)[list(where)] = value
    obj["model_state"][key] = t
    path = tmp_path / f"{model}-{key}.pyth"
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return sample_list(tmp_path_factory.mktemp("nonfinite") / "list.csv", VIDEOS)


def _profile(ck, model, videos, out, **kw):
    with torch_threads(1):
        return atfr_analysis.profile(ck, model, videos, out, views=1, crops=1, device="cpu", quiet=True, **kw)


# ----------------------------------------------------------------------------- refused on load
@pytest.mark.parametrize(
    "model, key", [(BASE, RES3), (ATFR, RES3), (ATFR, HEAD), (ATFR, STEM_VAR), (ATFR, RES3_VAR), (ATFR, SGS_MLP)]
)
def test_nonfinite_weight_is_refused_on_load_naming_the_tensor(tmp_path, model, key):
    ck = poisoned(tmp_path, model, key)
    with pytest.raises(NonFiniteWeightsError) as e:
        load_model_from_checkpoint(ck, model)
    msg = str(e.value)
    assert "\n" not in msg and key in msg and "1 NaN of its" in msg and "--allow-nonfinite-weights" in msg
    assert isinstance(e.value, NonFiniteError) and isinstance(e.value, AtfrError)
    # with the opt-in the weights load as they are, and the model says which tensors hold NaN
    net, _ck, info = load_model_from_checkpoint(ck, model, allow_nonfinite_weights=True)
    assert info["nonfinite"] == [key]
    assert bool(torch.isnan(net.state_dict()[key]).any())


def test_refusal_counts_nan_and_inf_and_names_the_other_tensors():
    state = {
        "a": torch.tensor([1.0, math.nan, math.inf, -math.inf]),
        "b": torch.zeros(3),
        "c": torch.tensor([math.nan]),
        "n": torch.tensor(3),  # an integer counter: not a weight
    }
    with pytest.raises(NonFiniteWeightsError, match=r"a has 1 NaN and 2 inf of its 4 values; 1 more tensor too \(c\)"):
        check_finite_weights(state)
    assert check_finite_weights(state, allow=True) == ["a", "c"]
    assert check_finite_weights({"b": torch.zeros(3), "n": torch.tensor(1)}) == []


def test_plain_state_dict_format_is_checked_too(tmp_path):
    obj = torch.load(checkpoint_path(BASE), map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in obj["model_state"].items()}
    state[HEAD][2, 3] = math.inf
    torch.save(state, tmp_path / "sd.pt")
    assert load_checkpoint(tmp_path / "sd.pt").format == "state_dict"
    with pytest.raises(NonFiniteWeightsError, match=r"head\.projection\.weight has 1 inf"):
        load_model_from_checkpoint(tmp_path / "sd.pt", BASE)


@pytest.mark.slow  # builds slow_8x8_r50 (seconds)
def test_caffe2_format_is_checked_too(shared_dir, tmp_path):
    import json

    fx = json.loads((shared_dir / "fixtures" / "caffe2" / "slow_8x8_r50.json").read_text())
    rng = np.random.default_rng(0)
    blobs = {b: rng.standard_normal(v["shape"], dtype=np.float32) * 0.01 for b, v in fx["blobs"].items()}
    blob = next(b for b, v in fx["blobs"].items() if v["key"].endswith("bn.running_var"))
    blobs[blob] = np.abs(blobs[blob]) + 1
    blobs[blob][0] = np.nan
    path = tmp_path / "SLOW_8x8_R50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    assert load_checkpoint(path).format == "caffe2"
    with pytest.raises(NonFiniteWeightsError, match=fx["blobs"][blob]["key"].replace(".", r"\.") + " has 1 NaN"):
        load_model_from_checkpoint(path, "slow_8x8_r50")


def test_cli_profile_refuses_nonfinite_weights_before_writing(tmp_path, capsys, videos):
    ck = poisoned(tmp_path, BASE, RES3)
    out = tmp_path / "run"
    code, _out, err = run_cli(capsys, "profile", ck, "--model", BASE, "--data", videos, "--out", out, "--quiet")
    assert_one_line_error(code, err, RES3, "non-finite", "--allow-nonfinite-weights")
    assert not out.exists()


# ----------------------------------------------------------------------------- profile: failed rows
def _assert_all_failed_nonfinite(out, summary):
    views, vids = atfr_analysis.load_run(out), load_videos(out)
    assert len(vids) == len(VIDEOS) and (vids["status"] == "failed").all()
    assert vids["error"].str.startswith(NONFINITE_SCORES).all()
    assert vids["scores_sum"].isna().all() and (vids["top1_id"] == -1).all()
    assert len(views) == len(VIDEOS) and (views["status"] == "failed").all()
    assert views["error"].str.startswith(NONFINITE_SCORES).all()
    assert views["scores"].isna().all() and views["top5_ids"].isna().all()
    assert summary.videos_ok == 0 and summary.videos_failed == len(VIDEOS)
    assert summary.failure_reasons == {NONFINITE_SCORES: len(VIDEOS)}
    assert summary.top1 is None and summary.top5 is None and summary.mean_class_acc is None
    assert summary.exit_code == EXIT_NONE_PROFILED
    assert NONFINITE_SCORES in summary.verdict()
    assert not any("top-1" in line for line in summary.lines())


@pytest.mark.parametrize(
    "model, key",
    [(BASE, RES3), (ATFR, RES3), (ATFR, HEAD), (ATFR, RES3_VAR)],
    ids=["baseline-res3-conv", "atfr-res3-conv", "atfr-head", "atfr-bn-running-var"],
)
def test_opt_in_profile_logs_nonfinite_views_as_failed(tmp_path, videos, model, key):
    ck = poisoned(tmp_path, model, key)
    summary = _profile(ck, model, videos, tmp_path / "run", allow_nonfinite_weights=True)
    _assert_all_failed_nonfinite(tmp_path / "run", summary)
    assert read_meta(tmp_path / "run")["checkpoint_nonfinite_allowed"] == [key]


def test_cli_profile_nonfinite_scores_exit_non_zero_without_a_top1(tmp_path, capsys, videos):
    ck = poisoned(tmp_path, ATFR, HEAD)
    out = tmp_path / "run"
    with torch_threads(1):
        code, stdout, err = run_cli(
            capsys,
            "profile",
            ck,
            "--model",
            ATFR,
            "--data",
            videos,
            "--out",
            out,
            "--views",
            "1",
            "--crops",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--allow-nonfinite-weights",
        )
    assert code == EXIT_NONE_PROFILED, err
    assert "top-1" not in stdout and "top-5" not in stdout
    assert f"{len(VIDEOS)} x {NONFINITE_SCORES}" in err and "Traceback" not in err
    assert (load_videos(out)["status"] == "failed").all()


def test_a_finite_model_is_unchanged_and_an_old_nan_log_gets_no_top1(tmp_path, videos):
    """The same list through the shipped checkpoint: every video ok. A log written before
    non-finite views were failed rows (NaN in an ok video's scores) gets no top-1 from NaN."""
    import pandas as pd

    from atfr_analysis.profile.summary import summarize

    summary = _profile(checkpoint_path(ATFR), ATFR, videos, tmp_path / "run")
    assert summary.videos_ok == len(VIDEOS) and summary.videos_failed == 0 and summary.top1 is not None
    part = next((tmp_path / "run").glob("videos-*.parquet"))
    df = pd.read_parquet(part)
    df["scores_sum"] = df["scores_sum"].map(lambda s: [math.nan] * len(s))
    df.to_parquet(part)
    again = summarize(tmp_path / "run")
    assert again.videos_ok == len(VIDEOS) and again.top1 is None and again.top5 is None
    assert not any("top-1" in line for line in again.lines())


# ----------------------------------------------------------------------------- SGS names the layer
@pytest.mark.parametrize("key, where", [(SGS_MLP, "its embedding is not"), (STEM_VAR, "its input features hold")])
def test_sgs_raises_one_line_naming_the_layer_through_profile(tmp_path, videos, key, where):
    ck = poisoned(tmp_path, ATFR, key)
    with pytest.raises(NonFiniteError) as e:
        _profile(ck, ATFR, videos, tmp_path / "run", allow_nonfinite_weights=True)
    msg = str(e.value)
    assert "\n" not in msg and f"SGS layer {SGS}" in msg and where in msg, msg


def test_cli_profile_and_explain_report_the_sgs_layer(tmp_path, capsys, videos):
    from atfr_analysis.data.samples import sample_videos

    ck = poisoned(tmp_path, ATFR, SGS_MLP)
    with torch_threads(1):
        code, _out, err = run_cli(
            capsys,
            "profile",
            ck,
            "--model",
            ATFR,
            "--data",
            videos,
            "--out",
            tmp_path / "run",
            "--views",
            "1",
            "--crops",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--allow-nonfinite-weights",
        )
        assert_one_line_error(code, err, f"SGS layer {SGS}", "NaN or inf")
        video = sample_videos()["bikes"]
        code, _out, err = run_cli(
            capsys,
            "explain",
            video,
            "--checkpoint",
            ck,
            "--model",
            ATFR,
            "--views",
            "1",
            "--crops",
            "1",
            "--out",
            tmp_path / "x",
            "--allow-nonfinite-weights",
        )
    assert_one_line_error(code, err, f"SGS layer {SGS}", "NaN or inf")
    assert "active bins" not in err
    assert not (tmp_path / "x.json").exists()
    # without the opt-in, explain refuses the checkpoint itself
    code, _out, err = run_cli(capsys, "explain", video, "--checkpoint", ck, "--model", ATFR, "--out", tmp_path / "y")
    assert_one_line_error(code, err, SGS_MLP, "--allow-nonfinite-weights")


def test_explain_api_names_the_layer(tmp_path):
    from atfr_analysis.analysis.explain import ExplainConfig, explain_video
    from atfr_analysis.data.samples import sample_videos

    ck = poisoned(tmp_path, ATFR, f"{SGS}.bn.running_var")
    cfg = ExplainConfig(ck, ATFR, sample_videos()["carphone_pristine"], views=1, crops=1, allow_nonfinite_weights=True)
    with pytest.raises(NonFiniteError, match=rf"SGS layer {SGS}: .* its embedding is not"):
        explain_video(cfg)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_sgs_layer_given_nonfinite_features(bad):
    torch.manual_seed(0)
    layer = SimilarityGuidedSampling(8, num_bins=4).eval()
    x = torch.randn(2, 8, 6, 3, 3)
    _out, _mask, ok_bins = layer(x, return_bins=True)
    assert (ok_bins >= 1).all()
    x[1, 3, 2, 1, 1] = bad
    with pytest.raises(NonFiniteError, match=r"an SGS layer: \d+ of its 12 frame distances are NaN or inf; its input"):
        layer(x)
    layer.name = "s2.pathway0_sgs"
    with pytest.raises(NonFiniteError, match=r"SGS layer s2\.pathway0_sgs"):
        layer(x)
    # a forced count (cost counting, also on the meta device) reads no value: no check, no sync
    assert layer(x, force_bins=2)[0].shape[2] == 2


def test_model_names_its_sgs_layers():
    from atfr_analysis import build_model

    m = build_model(ATFR, num_classes=3).eval()
    assert [layer.name for layer in m.sgs_layers()] == m.sgs_layer_names() == [SGS]
    with torch.no_grad():
        m.s1.pathway0_stem.conv.weight.view(-1)[0] = math.nan
        with pytest.raises(NonFiniteError, match=f"SGS layer {SGS}"):
            m(torch.randn(1, 3, 16, 64, 64))


# ----------------------------------------------------------------------------- training numbers
@pytest.mark.parametrize(
    "opt, value, needle",
    [
        ("lr", -1.0, "--lr must be"),
        ("lr", 0.0, "--lr must be"),
        ("lr", math.nan, "--lr must be"),
        ("lr", math.inf, "--lr must be"),
        ("weight_decay", -1e-4, "--weight-decay must be"),
        ("momentum", math.nan, "momentum must be"),
        ("warmup_epochs", -1.0, "--warmup-epochs must be"),
        ("clip_grad", 0.0, "--clip-grad must be"),
        ("epochs", 0, "--epochs must be"),
    ],
)
def test_train_config_refuses_bad_numbers(opt, value, needle):
    from atfr_analysis.train import TrainConfig

    with pytest.raises(InputError, match=needle) as e:
        TrainConfig(BASE, "list.txt", **{opt: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "1e400"])
def test_cli_train_refuses_a_bad_lr(tmp_path, capsys, value):
    code, _out, err = run_cli(
        capsys, "train", BASE, "--data", tmp_path / "nope.txt", "--out", tmp_path / "m.pyth", f"--lr={value}"
    )
    assert_one_line_error(code, err, "--lr must be a finite number > 0")
    assert not (tmp_path / "m.pyth").exists()


# ----------------------------------------------------------------------------- smaller items
def test_a_directory_as_the_checkpoint_says_so(tmp_path, capsys, videos):
    from atfr_analysis.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    code, _out, err = run_cli(capsys, "profile", tmp_path, "--model", BASE, "--data", videos, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "is a directory")
    code, _out, err = run_cli(
        capsys, "explain", videos, "--checkpoint", tmp_path, "--model", ATFR, "--out", tmp_path / "x"
    )
    assert_one_line_error(code, err, "is a directory")


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("labels.json", '{\n  "walk": 0,\n  "": 1\n}\n', "line 3: class id 1 has an empty name"),
        ("labels.json", '{"walk": 0, "  ": 1}', "class id 1 has an empty name"),
        ("labels.txt", 'walk\n""\n', "line 2: an empty class name"),
    ],
)
def test_an_empty_class_name_in_a_label_map_is_refused(tmp_path, name, text, needle):
    from atfr_analysis.data import LabelMapError
    from atfr_analysis.data.datasets import read_label_map

    (tmp_path / name).write_text(text)
    with pytest.raises(LabelMapError, match=needle):
        read_label_map(tmp_path / name)


def test_an_empty_class_name_in_a_video_list_is_refused(tmp_path, capsys):
    from atfr_analysis.data import ListError
    from atfr_analysis.data.datasets import read_video_list

    lst = tmp_path / "list.txt"
    lst.write_text('a.mp4 walk\nb.mp4 ""\n')
    with pytest.raises(ListError, match=r"line 2: an empty class name"):
        read_video_list(lst)
    code, _out, err = run_cli(
        capsys, "profile", checkpoint_path(BASE), "--model", BASE, "--data", lst, "--out", tmp_path / "r"
    )
    assert_one_line_error(code, err, "line 2: an empty class name")
