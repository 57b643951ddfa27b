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
    state = {k: torch.zeros(v, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32) for k, v in ref["state_dict"].items()}
    cfg = (shared_dir / "fixtures" / "pyslowfast_cfg" / cfg_name).read_text()
    path = tmp_path / "ckpt.pyth"
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {}, "cfg": cfg}, path)
    return path, ref


def test_pyslowfast_format_loads_strictly(shared_dir, tmp_path):
    path, ref = _pyslowfast_checkpoint(shared_dir, tmp_path, "sgs_slowfast_4x16_r50_atfr.json", "sgs_slowfast_4x16_r50_atfr.yaml")
    ck = load_checkpoint(path)
    assert ck.num_classes() == 400 and ck.facts["alpha"] == 8
    m = build_model("slowfast_4x16_r50_atfr")
    assert load_state_into(m, ck.state_dict) == {"missing": []}


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
    # a raw pickle (not a torch file) is refused too, as unreadable
    q = tmp_path / "raw.pyth"
    q.write_bytes(pickle.dumps({"model_state": _Evil()}, protocol=4))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(q)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_files_are_refused(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pyth")
