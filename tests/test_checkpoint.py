"""Checkpoints are untrusted: weights_only loading, strict key checks, PySlowFast cfg facts."""

import json
import pickle

import pytest
import torch

from atfr_analysis import build_model
from atfr_analysis.checkpoint import (
    CheckpointError,
    cfg_facts,
    check_cfg,
    load_checkpoint,
    load_state_into,
    parse_cfg,
    save_checkpoint,
)

CFG_MODELS = {
    "x3d_s.yaml": "x3d_s",
    "slow_8x8_r50.yaml": "slow_8x8_r50",
    "slowfast_4x16_r50.yaml": "slowfast_4x16_r50",
    "slowfast_8x8_r50.yaml": "slowfast_8x8_r50",
    "sgs_3dresnet50_atfr.yaml": "resnet3d_50_atfr",
    "sgs_slowfast_4x16_r50_atfr.yaml": "slowfast_4x16_r50_atfr",
}


@pytest.mark.parametrize("fname,model", sorted(CFG_MODELS.items()))
def test_pyslowfast_cfg_facts_match_our_models(shared_dir, fname, model):
    cfg = parse_cfg((shared_dir / "fixtures" / "pyslowfast_cfg" / fname).read_text())
    facts = cfg_facts(cfg)
    assert facts["arch"] in ("x3d", "slow", "slowfast", "3dresnet")
    assert facts["atfr"] == fname.startswith("sgs_")
    m = build_model(model, num_classes=facts["num_classes"])
    assert check_cfg(facts, m) == []


def test_cfg_mismatch_is_reported(shared_dir):
    cfg = parse_cfg((shared_dir / "fixtures" / "pyslowfast_cfg" / "slowfast_8x8_r50.yaml").read_text())
    problems = check_cfg(cfg_facts(cfg), build_model("slowfast_4x16_r50"))
    assert any("SLOWFAST.ALPHA" in p for p in problems)


def _pyslowfast_checkpoint(shared_dir, tmp_path, fixture, cfg_name):
    ref = json.loads((shared_dir / "fixtures" / "reference_keys" / fixture).read_text())
    state = {
        k: torch.zeros(v, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
        for k, v in ref["state_dict"].items()
    }
    cfg = (shared_dir / "fixtures" / "pyslowfast_cfg" / cfg_name).read_text()
    path = tmp_path / "ckpt.pyth"
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {}, "cfg": cfg}, path)
    return path, ref


def test_pyslowfast_format_loads_strictly(shared_dir, tmp_path):
    path, ref = _pyslowfast_checkpoint(
        shared_dir, tmp_path, "sgs_slowfast_4x16_r50_atfr.json", "sgs_slowfast_4x16_r50_atfr.yaml"
    )
    ck = load_checkpoint(path)
    assert ck.num_classes() == 400 and ck.facts["alpha"] == 8
    m = build_model("slowfast_4x16_r50_atfr")
    assert load_state_into(m, ck.state_dict) == {"missing": [], "nonfinite": []}


def test_baseline_into_atfr_needs_allow_missing(tmp_path):
    base = build_model("x3d_xs", num_classes=5)
    path = save_checkpoint(tmp_path / "b.pyth", base, {"MODEL": {"ARCH": "x3d"}})
    ck = load_checkpoint(path)
    atfr = build_model("x3d_xs_atfr", num_classes=5)
    with pytest.raises(CheckpointError, match="missing.*allow_missing='sgs'"):
        load_state_into(atfr, ck.state_dict)
    info = load_state_into(atfr, ck.state_dict, allow_missing="sgs")
    assert info["missing"] and all("ts_layer." in k for k in info["missing"])
    # everything else was loaded
    for k, v in base.state_dict().items():
        assert torch.equal(atfr.state_dict()[k], v)


def test_mismatched_checkpoint_refused_with_short_report(tmp_path):
    m = build_model("x3d_xs", num_classes=5)
    state = m.state_dict()
    state["head.projection.weight"] = torch.zeros(3, state["head.projection.weight"].shape[1])
    state["extra.weight"] = torch.zeros(1)
    del state["s1.pathway0_stem.bn.weight"]
    with pytest.raises(CheckpointError) as e:
        load_state_into(build_model("x3d_xs", num_classes=5), state)
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 missing" in msg and "1 unexpected" in msg and "1 shape-mismatched" in msg


def test_fp16_round_trip(tmp_path):
    m = build_model("x3d_xs", num_classes=4)
    p = save_checkpoint(tmp_path / "h.pyth", m, {"note": "x"}, half=True)
    ck = load_checkpoint(p)
    assert all(v.dtype != torch.float16 for v in ck.state_dict.values())
    m2 = build_model("x3d_xs", num_classes=4)
    load_state_into(m2, ck.state_dict)
    w, w2 = m.state_dict()["head.projection.weight"], m2.state_dict()["head.projection.weight"]
    assert torch.allclose(w, w2, atol=1e-3) and not torch.equal(w, w2)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_needing_code_execution_is_refused(tmp_path):
    p = tmp_path / "evil.pyth"
    torch.save({"model_state": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refusing.*arbitrary code.*print") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)
    # a raw pickle (not a torch file) goes to the restricted unpickler and is refused there
    q = tmp_path / "raw.pyth"
    q.write_bytes(pickle.dumps({"model_state": _Evil()}, protocol=4))
    with pytest.raises(CheckpointError, match=r"refusing.*arbitrary code.*imports builtins\.print") as e:
        load_checkpoint(q)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_files_are_refused(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pyth")


# ----------------------------------------------------------------------------- Caffe2 .pkl
CAFFE2_MODELS = ["slow_8x8_r50", "slowfast_4x16_r50", "slowfast_8x8_r50"]


def _caffe2_fixture(shared_dir, model):
    return json.loads((shared_dir / "fixtures" / "caffe2" / f"{model}.json").read_text())


@pytest.mark.parametrize("model", CAFFE2_MODELS)
def test_caffe2_blob_names_map_onto_our_keys(shared_dir, model):
    """Every blob of the fixture lands on its key, and the keys cover our model (shapes equal)."""
    from atfr_analysis.caffe2 import caffe2_key, is_training_state

    fx = _caffe2_fixture(shared_dir, model)
    assert fx["model"] in (model, model.upper()) or model in fx["model"].lower()
    wrong = {b: (caffe2_key(b), v["key"]) for b, v in fx["blobs"].items() if caffe2_key(b) != v["key"]}
    assert wrong == {}
    own = build_model(model).state_dict()
    for b, v in fx["blobs"].items():
        assert list(own[v["key"]].shape) == v["shape"], b
    keys = {v["key"] for v in fx["blobs"].values()}
    assert len(keys) == len(fx["blobs"])  # one-to-one
    assert {k for k in own if not k.endswith("num_batches_tracked")} == keys
    for ex in fx["ignored_blob_examples"]:
        assert caffe2_key(ex["blob"]) is None or caffe2_key(ex["blob"]) not in own, ex
        assert is_training_state(ex["blob"]) == ex["silently_skipped"], ex


def test_caffe2_fuse_block_index_is_ignored():
    from atfr_analysis.caffe2 import caffe2_key

    assert (
        caffe2_key("t_res3_0_branch2c_bn_subsample_w")
        == caffe2_key("t_res3_3_branch2c_bn_subsample_w")
        == "s3_fuse.conv_f2s.weight"
    )
    assert caffe2_key("t_res4_5_branch2c_bn_subsample_bn_riv") == "s4_fuse.bn.running_var"
    # a lateral exists on the fast pathway only; a slow-pathway spelling is no name
    assert caffe2_key("res3_3_branch2c_bn_subsample_w") is None and caffe2_key("pool1_subsample_w") is None


def test_caffe2_sample_loads_with_checksums(shared_dir):
    fx = _caffe2_fixture(shared_dir, "slowfast_4x16_r50")
    path = shared_dir / "fixtures" / "caffe2" / fx["sample"]["file"]
    ck = load_checkpoint(path)
    assert ck.format == "caffe2" and ck.cfg is None and ck.num_classes() == 400
    prefixes = ("s1.", "s1_fuse.", "s2.", "s2_fuse.", "head.")
    expected = {v["key"] for v in fx["blobs"].values() if v["key"].startswith(prefixes)}
    assert set(ck.state_dict) == expected and len(expected) == fx["sample"]["weight_blobs"] == 122
    assert ck.meta["caffe2_skipped"] == sorted(fx["sample"]["extra_blobs"])
    assert ck.describe().startswith("caffe2") and "122 weight blobs" in ck.describe()
    for key, want in fx["sample"]["sums_after_upstream_load"].items():
        t = ck.state_dict[key]
        assert t.dtype == torch.float32 and list(t.shape) == want["shape"]
        assert t.double().sum().item() == pytest.approx(want["sum_float64"], rel=1e-6, abs=0)
    # the values reach the model unchanged (a strict load is refused: the sample is partial)
    model = build_model("slowfast_4x16_r50")
    with pytest.raises(CheckpointError, match="missing") as e:
        load_state_into(model, ck.state_dict)
    assert "s3." in str(e.value) and "\n" not in str(e.value)
    # Python 3's default (ASCII) decoding of Python 2 strings fails: the reader must use latin-1
    with open(path, "rb") as f, pytest.raises(UnicodeDecodeError):
        pickle.load(f)


def _write_blobs(path, blobs, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs, "epoch": 3}, f, protocol=protocol)
    return path


def _full_blobs(shared_dir, model, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    fx = _caffe2_fixture(shared_dir, model)
    blobs = {b: rng.standard_normal(v["shape"], dtype=np.float32) * 0.01 for b, v in fx["blobs"].items()}
    blobs.update(
        conv1_w_momentum=np.zeros([64, 3, 1, 7, 7], np.float32),
        lr=np.array([0.1], np.float32),
        model_iter=np.array([196000], np.int64),
    )
    return fx, blobs


@pytest.mark.parametrize("protocol", [2, 4])
def test_caffe2_full_blob_set_loads_strictly_and_into_atfr(shared_dir, tmp_path, protocol):
    fx, blobs = _full_blobs(shared_dir, "slow_8x8_r50")
    path = _write_blobs(tmp_path / "SLOW_8x8_R50.pkl", blobs, protocol)
    ck = load_checkpoint(path)
    assert ck.format == "caffe2" and len(ck.state_dict) == len(fx["blobs"])
    model = build_model("slow_8x8_r50")
    assert load_state_into(model, ck.state_dict) == {"missing": [], "nonfinite": []}
    sd = model.state_dict()
    for b, v in fx["blobs"].items():
        assert torch.equal(sd[v["key"]], torch.from_numpy(blobs[b])), b
    # the baseline into its _atfr variant: exactly the SGS weights may stay missing
    atfr = build_model("slow_8x8_r50_atfr")
    with pytest.raises(CheckpointError, match="allow_missing='sgs'"):
        load_state_into(atfr, ck.state_dict)
    info = load_state_into(atfr, ck.state_dict, allow_missing="sgs")
    assert info["missing"] and all("ts_layer." in k for k in info["missing"])
    assert torch.equal(atfr.state_dict()["head.projection.weight"], torch.from_numpy(blobs["pred_w"]))


def test_caffe2_blob_set_that_misses_a_key_is_refused_naming_it(shared_dir, tmp_path):
    _fx, blobs = _full_blobs(shared_dir, "slow_8x8_r50")
    del blobs["res4_2_branch2b_bn_riv"]
    ck = load_checkpoint(_write_blobs(tmp_path / "c.pkl", blobs, 4))
    with pytest.raises(CheckpointError, match=r"1 missing \(s4\.pathway0_res2\.branch2\.b_bn\.running_var\)"):
        load_state_into(build_model("slow_8x8_r50"), ck.state_dict)
    # a blob set of another model is refused too (a SlowFast file into Slow)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_state_into(
            build_model("slow_8x8_r50"),
            load_checkpoint(
                _write_blobs(tmp_path / "sf.pkl", {"t_conv1_w": blobs["conv1_w"][:8], **blobs}, 4)
            ).state_dict,
        )


def test_caffe2_unknown_blob_and_bad_contents_are_refused(tmp_path):
    import numpy as np

    w = np.zeros([4], np.float32)
    cases = [
        (
            {"blobs": {"conv1_w": w, "res9_0_branch2a_bn_rm": w}},
            "follow no PySlowFast naming rule: res9_0_branch2a_bn_rm",
        ),
        ({"blobs": {"conv1_w": np.array(["a", 1], dtype=object)}}, "not a numeric numpy array"),
        ({"weights": {"conv1_w": w}}, "expected a dict with 'blobs'"),
        ({"blobs": {"lr": np.array([0.1])}}, "no weight blob"),
        ([1, 2, 3], "expected a dict with 'blobs'"),
    ]
    for i, (obj, needle) in enumerate(cases):
        p = tmp_path / f"c{i}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
            load_checkpoint(p)
        assert needle in str(e.value) and "\n" not in str(e.value)
    truncated = tmp_path / "t.pkl"
    truncated.write_bytes(pickle.dumps({"blobs": {"conv1_w": w}}, protocol=2)[:40])
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        load_checkpoint(truncated)


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_caffe2_pickle_that_runs_code_is_refused_without_running(tmp_path, protocol):
    import numpy as np

    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(
        pickle.dumps({"blobs": {"conv1_w": np.zeros(3, np.float32), "x": _System(marker)}}, protocol=protocol)
    )
    with pytest.raises(
        CheckpointError,
        match=r"refusing .*evil\.pkl: it needs arbitrary code to unpickle \(imports (posix|os|nt)\.system\)",
    ) as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value) and not marker.exists()
    # numpy, but not one of the three array pieces: refused as well
    q = tmp_path / "np.pkl"
    q.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.float32(1.0)}}, protocol=protocol))
    with pytest.raises(CheckpointError, match=r"imports numpy\."):
        load_checkpoint(q)


def test_format_is_reported(tmp_path):
    m = build_model("x3d_xs", num_classes=3)
    assert load_checkpoint(save_checkpoint(tmp_path / "a.pyth", m, {"x": 1})).format == "pyslowfast"
    torch.save(m.state_dict(), tmp_path / "b.pt")
    assert load_checkpoint(tmp_path / "b.pt").format == "state_dict"
    torch.save({"model_state": m.state_dict()}, tmp_path / "c.pt", _use_new_zipfile_serialization=False)
    assert load_checkpoint(tmp_path / "c.pt").format == "pyslowfast"  # torch's legacy format


def test_unreadable_checkpoint_is_an_environment_failure(tmp_path, monkeypatch):
    import errno

    from atfr_analysis.errors import EnvironmentFailure

    p = save_checkpoint(tmp_path / "a.pyth", build_model("x3d_xs", num_classes=3), {"x": 1})
    real_open = open

    def deny(file, *a, **k):
        if str(file) == str(p):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(EnvironmentFailure, match=r"cannot read .*a\.pyth: Permission denied"):
        load_checkpoint(p)
