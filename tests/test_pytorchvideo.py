"""PyTorchVideo model-zoo checkpoints (``atfr_analysis.pytorchvideo``) against the recorded forward
passes of PyTorchVideo's own models (``shared/fixtures/pytorchvideo_forward``).

Each fixture holds PyTorchVideo's key table; the weights are rebuilt from its README's recipe *in
PyTorchVideo's key names*, written as a ``.pyth`` in PyTorchVideo's layout, and read back through
the public path (``load_model_from_checkpoint``). A fixture matches when, per clip, ``max
|softmax(ref) - ours| <= 1e-5 * max softmax(ref)`` (our eval output is a softmax) and the logits
(the projection's output, averaged over positions) agree to ``1e-4`` relative.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import pytest
import torch

from atfr_analysis.checkpoint import CheckpointError, load_checkpoint
from atfr_analysis.loading import load_model_from_checkpoint
from atfr_analysis.models.registry import list_models
from atfr_analysis.pytorchvideo import (
    IDENTITY_NORM,
    PtvLayout,
    identify,
    our_key_to_ptv,
    ptv_key_to_ours,
    pytorchvideo_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "pytorchvideo_forward"
PATHS = sorted(FIXTURES.glob("*.pt")) if FIXTURES.is_dir() else []
PUBLIC = {"x3d_xs", "x3d_s", "slow_r50", "slowfast_r50"}
#: over a few seconds on 2 cores (one forward each); X3D-XS stays in the fast run
SLOW = {"x3d_s", "slow_r50", "slowfast_r50"}
SOFTMAX_TOL = 1e-5  # the README's: per clip, relative to the clip's largest probability
LOGITS_TOL = 1e-4
_X3D = PtvLayout("x3d", (), 1, 5, True)  # enough of a layout to name X3D keys in PyTorchVideo's layout


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def recipe_tensor(salt: str, key: str, shape: tuple) -> torch.Tensor:
    """The README's weight recipe for PyTorchVideo's ``key`` (one generator per key)."""
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0)
    g = torch.Generator().manual_seed(zlib.crc32((salt + key).encode("utf-8")))
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 1 + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape) // shape[0]
    return torch.randn(shape, generator=g) * math.sqrt(1 / fan_in)


def ptv_state(fx: dict) -> dict[str, torch.Tensor]:
    return {k: recipe_tensor(fx["salt"], k, tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])}


def fixture_input(fx: dict) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(int(fx["input_seed"]))
    x = torch.rand(tuple(fx["input_shape"]), generator=g)
    if fx.get("slow_index") is None:
        return [x]
    return [x.index_select(2, torch.tensor(fx["slow_index"])), x]


def write_ptv(path: Path, state: dict, wrap: str = "model_state", prefix: str = "") -> Path:
    state = {prefix + k: v for k, v in state.items()}
    torch.save({"model_state": state} if wrap == "model_state" else state, path)
    return path


def run_fixture(tmp_path: Path, name: str) -> tuple[float, float]:
    """``(softmax error / max prob, logits error / max |logit|)``, worst clip, through the public path."""
    fx = _fixture(name)
    ckpt = write_ptv(tmp_path / f"{name}.pyth", ptv_state(fx))
    model, ck, _ = load_model_from_checkpoint(ckpt, fx["model"])
    assert ck.format == "pytorchvideo" and ck.describe().startswith("pytorchvideo")
    model.eval()
    logits = []
    hook = model.head.projection.register_forward_hook(lambda _m, _i, out: logits.append(out))
    with torch.no_grad():
        probs = model(fixture_input(fx))
    hook.remove()
    ref = fx["output"]
    lg = logits[0].reshape(ref.shape[0], -1, ref.shape[1]).mean(1)
    ref_p = torch.softmax(ref, dim=-1)
    p_err = ((probs - ref_p).abs().amax(1) / ref_p.amax(1)).max()
    l_err = (lg - ref).abs().max() / ref.abs().max()
    return float(p_err), float(l_err)


# ----------------------------------------------------------------------------- fixtures
def test_public_fixtures_present():
    assert PUBLIC <= {p.stem for p in PATHS}, f"missing fixtures under {FIXTURES}"


def _marks(p: Path):
    return pytest.param(p, marks=pytest.mark.slow, id=p.stem) if p.stem in SLOW else pytest.param(p, id=p.stem)


@pytest.mark.parametrize("path", [_marks(p) for p in PATHS])
def test_fixture_matches_pytorchvideo(tmp_path, path):
    p_err, l_err = run_fixture(tmp_path, path.stem)
    assert p_err <= SOFTMAX_TOL, f"{path.stem}: softmax {p_err:.2e} relative"
    assert l_err <= LOGITS_TOL, f"{path.stem}: logits {l_err:.2e} relative"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_key_tables_map_one_to_one(name):
    """Every PyTorchVideo key lands on one of our model's keys with the same shape; ours has exactly
    the inserted identity norm more (X3D's res2 shortcut) and nothing else; the rule inverts."""
    fx = _fixture(name)
    state = {k: torch.zeros(tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])}
    ours, layout, info = pytorchvideo_state_dict(state)
    from atfr_analysis.models import build_model

    own = build_model(fx["model"], num_classes=fx["num_classes"]).state_dict()
    assert set(ours) == set(own)
    assert all(tuple(ours[k].shape) == tuple(own[k].shape) for k in own)
    inserted = {f"{n}.{p}" for n in info["identity_norms"] for p in ("weight", "bias", "running_mean", "running_var")}
    inserted |= {f"{n}.num_batches_tracked" for n in info["identity_norms"]}
    assert len(own) - len(fx["keys"]) == len(inserted)
    if layout.x3d:
        assert info["identity_norms"] == ["s2.pathway0_res0.branch1_bn"]
        assert ptv_key_to_ours("blocks.0.conv.conv_t.weight", layout.head_block) == "s1.pathway0_stem.conv_xy.weight"
        assert ptv_key_to_ours("blocks.0.conv.conv_xy.weight", layout.head_block) == "s1.pathway0_stem.conv.weight"
    else:
        assert info["identity_norms"] == []
    for k, src in info["source"].items():
        assert our_key_to_ptv(k, layout) == src
    assert fx["model"] in layout.models


# ----------------------------------------------------------------------------- the shortcut
def test_identity_norm_is_exact_in_fp32():
    """Why the inserted norm is the identity bit for bit: its scale ``weight / sqrt(var + eps)`` is
    exactly 1 whether computed in fp32 or fp64 (then rounded), its shift ``bias - mean * scale``
    exactly 0, and ``x * 1 + 0 == x`` in IEEE arithmetic."""
    eps = 1e-5
    var32 = torch.tensor(IDENTITY_NORM["running_var"], dtype=torch.float32)
    assert var32 + torch.tensor(eps, dtype=torch.float32) == 1.0
    inv64 = 1 / torch.sqrt(var32.double() + eps)
    assert inv64.float() == 1.0
    assert 1 / torch.sqrt(var32 + eps) == 1.0
    assert IDENTITY_NORM["weight"] == 1.0 and IDENTITY_NORM["bias"] == 0.0 and IDENTITY_NORM["running_mean"] == 0.0


def test_x3d_res2_shortcut_equals_its_conv_bit_for_bit(tmp_path):
    fx = _fixture("x3d_xs")
    model, _, _ = load_model_from_checkpoint(write_ptv(tmp_path / "x.pyth", ptv_state(fx)), "x3d_xs")
    model.eval()
    blk = model.s2.pathway0_res0
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, blk.branch1.in_channels, 4, 40, 40, generator=g) * 1e3
    x[0, 0, 0, 0, :4] = torch.tensor([0.0, -0.0, 1e-40, -3e38])  # zeros, a subnormal, a large value
    with torch.no_grad():
        conv = blk.branch1(x)
        assert torch.equal(blk.branch1_bn(conv), conv)
        # the norm's folded scale and shift, as batch norm computes them in eval
        bn = blk.branch1_bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        assert torch.equal(scale, torch.ones_like(scale))
        assert torch.equal(bn.bias - bn.running_mean * scale, torch.zeros_like(scale))


@pytest.mark.slow
def test_fixture_check_sees_the_shortcut_norm(tmp_path, monkeypatch):
    """Negative control: PySlowFast's function (a real norm on that shortcut, with the recipe's
    statistics) instead of PyTorchVideo's is far outside the tolerance."""
    import atfr_analysis.pytorchvideo as ptv

    real_norm = {"weight": 1.1, "bias": 0.1, "running_mean": 0.1, "running_var": 0.7}
    monkeypatch.setattr(ptv, "IDENTITY_NORM", real_norm)
    p_err, l_err = run_fixture(tmp_path, "x3d_xs")
    assert l_err > 100 * LOGITS_TOL and p_err > SOFTMAX_TOL


# ----------------------------------------------------------------------------- variants
VARIANTS = [("model_state", ""), ("bare", ""), ("model_state", "model."), ("bare", "model.")]


@pytest.mark.parametrize("wrap,prefix", VARIANTS)
def test_layout_variants_load(tmp_path, wrap, prefix):
    fx = _fixture("x3d_xs")
    path = write_ptv(tmp_path / "x.pyth", ptv_state(fx), wrap=wrap, prefix=prefix)
    model, ck, _ = load_model_from_checkpoint(path, "x3d_xs")
    assert ck.format == "pytorchvideo"
    ref = torch.load(path, weights_only=True)
    ref = ref.get("model_state", ref)
    w = ref[prefix + "blocks.0.conv.conv_t.weight"]
    assert torch.equal(model.s1.pathway0_stem.conv_xy.weight, w)


def _error(tmp_path, state: dict, model: str = "x3d_xs", **kw) -> str:
    path = write_ptv(tmp_path / "bad.pyth", state)
    with pytest.raises(CheckpointError) as e:
        load_model_from_checkpoint(path, model, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_extra_misshaped_named(tmp_path):
    fx = _fixture("x3d_xs")
    state = ptv_state(fx)
    gone = "blocks.2.res_blocks.1.branch2.conv_a.weight"
    msg = _error(tmp_path, {k: v for k, v in state.items() if k != gone})
    assert "1 missing" in msg and gone in msg
    extra = "blocks.2.res_blocks.1.branch2.norm_b.1.block.0.weight"  # SE in a block that has none
    msg = _error(tmp_path, {**state, extra: torch.zeros(8, 108, 1, 1, 1)})
    assert "1 unexpected" in msg and extra in msg
    odd = "blocks.5.proj.bias"
    msg = _error(tmp_path, {**state, odd: torch.zeros(7)})
    assert "shape-mismatched" in msg and odd in msg
    msg = _error(tmp_path, {**state, "blocks.2.res_blocks.0.branch2.bogus.weight": torch.zeros(3)})
    assert "follow no rule" in msg and "branch2.bogus" in msg


def test_wrong_model_named(tmp_path):
    msg = _error(tmp_path, ptv_state(_fixture("x3d_xs")), model="slow_8x8_r50")
    assert "x3d_xs/x3d_s/x3d_m" in msg and "slow_8x8_r50" in msg


def _slowfast_r101_table() -> dict[str, torch.Tensor]:
    """SlowFast R101's layout: SlowFast R50's with 23 res4 blocks per pathway."""
    fx = _fixture("slowfast_r50")
    state = {k: torch.zeros(tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])}
    for p in (0, 1):
        pre = f"blocks.3.multipathway_blocks.{p}.res_blocks."
        block1 = {k[len(pre) + 2 :]: v for k, v in state.items() if k.startswith(pre + "1.")}
        for j in range(6, 23):
            state.update({f"{pre}{j}.{k}": v for k, v in block1.items()})
    return state


@pytest.mark.parametrize("kind", ["slowfast_r101", "mvit", "csn", "r2plus1d", "i3d", "x3d_xl"])
def test_unsupported_models_refused_by_name(tmp_path, kind):
    if kind == "slowfast_r101":
        state, name = _slowfast_r101_table(), "SlowFast R101"
    elif kind == "mvit":
        state = {
            "patch_embed.patch_model.weight": torch.zeros(96, 3, 3, 7, 7),
            "cls_positional_encoding.cls_token": torch.zeros(1, 1, 96),
            "blocks.0.attn.qkv.weight": torch.zeros(288, 96),
            "head.proj.weight": torch.zeros(400, 768),
        }
        name = "MViT"
    elif kind == "csn":
        state = {
            "blocks.0.conv.weight": torch.zeros(64, 3, 3, 7, 7),
            "blocks.1.res_blocks.0.branch2.conv_b.weight": torch.zeros(64, 1, 3, 3, 3),
            "blocks.5.proj.weight": torch.zeros(400, 2048),
        }
        name = "CSN"
    elif kind == "r2plus1d":
        state = {
            "blocks.1.res_blocks.0.branch2.conv_b.conv_t.weight": torch.zeros(64, 64, 3, 1, 1),
            "blocks.5.proj.weight": torch.zeros(400, 2048),
        }
        name = "R(2+1)D"
    elif kind == "i3d":
        fx = _fixture("slow_r50")
        state = {k: torch.zeros(tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])}
        state["blocks.0.conv.weight"] = torch.zeros(64, 3, 5, 7, 7)
        name = "i3d_r50"
    else:
        fx = _fixture("x3d_s")
        state = {k: torch.zeros(tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])}
        state["blocks.0.conv.conv_t.weight"] = torch.zeros(32, 3, 1, 3, 3)
        name = "stem width 32"
    msg = _error(tmp_path, state)
    assert name in msg and "not in the model zoo" in msg


def test_x3d_s_into_atfr_needs_allow_missing(tmp_path):
    fx = _fixture("x3d_s")
    path = write_ptv(tmp_path / "s.pyth", ptv_state(fx))
    with pytest.raises(CheckpointError, match="allow-missing sgs"):
        load_model_from_checkpoint(path, "x3d_s_atfr")
    model, ck, info = load_model_from_checkpoint(path, "x3d_s_atfr", allow_missing="sgs")
    assert info["missing"] and all("ts_layer." in k for k in info["missing"])
    assert torch.equal(model.s2.pathway0_res0.branch1_bn.weight, torch.ones(24))
    assert ck.num_classes() == 400


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slow_r50", "slowfast_r50"])
def test_resnets_into_atfr_variants(tmp_path, name):
    fx = _fixture(name)
    state = {k: torch.full(tuple(s), 0.5) for k, s in zip(fx["keys"], fx["shapes"])}
    path = write_ptv(tmp_path / "r.pyth", state)
    model, _, info = load_model_from_checkpoint(path, fx["model"] + "_atfr", allow_missing="sgs")
    assert info["missing"] and all("ts_layer." in k for k in info["missing"])
    assert torch.equal(model.head.projection.bias, torch.full((400,), 0.5))


def test_zoo_names_exist():
    names = set(list_models())
    for m in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "slow_8x8_r50", "slowfast_8x8_r50"):
        assert m in names and f"{m}_atfr" in names
    fx = _fixture("x3d_s")
    layout = identify({k: torch.zeros(tuple(s)) for k, s in zip(fx["keys"], fx["shapes"])})
    assert layout.accepts("x3d_m_atfr") and not layout.accepts("x3d_l")


def test_load_checkpoint_generic_path(tmp_path):
    """A model built by the caller (training's ``--init-from``): ``loading.load_into`` checks and loads
    a read PyTorchVideo file; plain ``load_checkpoint`` + ``load_state_into`` take it too."""
    from atfr_analysis.checkpoint import load_state_into
    from atfr_analysis.loading import load_into
    from atfr_analysis.models import build_model

    path = write_ptv(tmp_path / "s.pyth", ptv_state(_fixture("x3d_s")))
    ck = load_checkpoint(path)
    assert load_into(build_model("x3d_s_atfr"), "x3d_s_atfr", ck, allow_missing="sgs")["missing"]
    assert load_state_into(build_model("x3d_s_atfr"), ck.state_dict, allow_missing="sgs")["missing"]
    with pytest.raises(CheckpointError, match="it is PyTorchVideo's x3d_xs/x3d_s/x3d_m"):
        load_into(build_model("slow_8x8_r50"), "slow_8x8_r50", ck)


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.slow
@pytest.mark.parametrize("model", ["x3d_xs", "x3d_s_atfr"])
def test_profile_cli_on_real_footage(tmp_path, capsys, model):
    from profile_helpers import run_cli, sample_list

    name = "x3d_s" if model.startswith("x3d_s") else "x3d_xs"
    ckpt = write_ptv(tmp_path / f"{name}.pyth", ptv_state(_fixture(name)))
    data = sample_list(tmp_path / "list.csv", names=("bikes",))
    out = tmp_path / "run"
    args = ["profile", ckpt, "--model", model, "--data", data, "--out", out, "--device", "cpu", "--views", "1"]
    args += ["--crops", "1", "--workers", "0"] + (["--allow-missing", "sgs"] if model.endswith("_atfr") else [])
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    meta = json.loads((out / "run.json").read_text())
    assert meta["checkpoint_format"].startswith("pytorchvideo (PyTorchVideo model-zoo .pyth of x3d_xs/x3d_s/x3d_m")
    assert meta["summary"]["videos_ok"] == 1
    assert meta["summary"]["checkpoint_format"] == meta["checkpoint_format"]
    assert "checkpoint: pytorchvideo" in stdout + err


@pytest.mark.slow
def test_explain_cli_on_real_footage(tmp_path, capsys):
    from profile_helpers import run_cli

    from atfr_analysis.data.samples import sample_videos

    ckpt = write_ptv(tmp_path / "x3d_s.pyth", ptv_state(_fixture("x3d_s")))
    out = tmp_path / "explain"
    code, _, err = run_cli(
        capsys,
        "explain",
        sample_videos()["bikes"],
        "--checkpoint",
        ckpt,
        "--model",
        "x3d_s_atfr",
        "--allow-missing",
        "sgs",
        "--views",
        "1",
        "--crops",
        "1",
        "--out",
        out,
    )
    assert code == 0, err
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["model"] == "x3d_s_atfr" and len(res["views"]) == 1
    assert 1 <= res["views"][0]["signature"][0] <= 13  # B' of the SGS layer (13 frames at res2)


@pytest.mark.parametrize("model", ["x3d_m", pytest.param("x3d_l", marks=pytest.mark.slow)])
def test_other_x3d_sizes_round_trip(tmp_path, model):
    """X3D-M and X3D-L (no fixture): our state written in PyTorchVideo's names (the inverse rule,
    without the res2 shortcut norm PyTorchVideo lacks) reads back into the same model, tensor for tensor."""
    from atfr_analysis.models import build_model

    src = build_model(model).state_dict()
    layout = identify({our_key_to_ptv(k, _X3D) or k: v for k, v in src.items()})
    ptv = {our_key_to_ptv(k, layout): v for k, v in src.items() if ".s2.pathway0_res0.branch1_bn." not in f".{k}"}
    assert None not in ptv
    assert layout.ptv_name == ("x3d_l" if model == "x3d_l" else "x3d_xs/x3d_s/x3d_m")
    loaded, _, _ = load_model_from_checkpoint(write_ptv(tmp_path / "m.pyth", ptv), model)
    got = loaded.state_dict()
    for k, v in src.items():
        if "s2.pathway0_res0.branch1_bn." not in k:
            assert torch.equal(got[k], v), k


def test_cli_refusal_is_one_line_exit_2(tmp_path, capsys):
    from profile_helpers import assert_one_line_error, run_cli, sample_list

    fx = _fixture("slowfast_r50")
    ckpt = write_ptv(tmp_path / "r101.pyth", _slowfast_r101_table())
    data = sample_list(tmp_path / "list.csv", names=("bikes",))
    code, _, err = run_cli(capsys, "profile", ckpt, "--model", fx["model"], "--data", data, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "PyTorchVideo's SlowFast R101", "not in the model zoo")
    assert not (tmp_path / "run" / "run.json").exists()
