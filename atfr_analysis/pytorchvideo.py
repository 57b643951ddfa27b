"""PyTorchVideo model-zoo checkpoints (``torch.hub`` ``x3d_*``, ``slow_r50``, ``slowfast_r50``) read
into the zoo models of the same architecture.

A PyTorchVideo ``.pyth`` is a ``torch.save`` dict whose ``model_state`` is the state dict of the
model ``pytorchvideo.models.hub.<name>()`` builds (the state dict alone, and keys prefixed
``model.``, are accepted too). Its keys follow PyTorchVideo's layout: a flat list of ``blocks.N``
(``blocks.0`` the stem, ``blocks.1`` .. ``blocks.4`` res2 .. res5, then the head; SlowFast nests
each pathway in ``multipathway_blocks.P`` and the fast-to-slow lateral in ``multipathway_fusion``).
Such a file is recognised when every key starts with ``blocks.`` (``is_pytorchvideo_state``).

Naming (the rule, in words, see ``ptv_key_to_ours``): a key is a *place* and a *module path*.
Places: ``blocks.0[.multipathway_blocks.P]`` is ``s1.pathway{P}_stem``;
``blocks.I[.multipathway_blocks.P].res_blocks.J`` is ``s{I+1}.pathway{P}_res{J}``;
``blocks.I.multipathway_fusion`` is ``s{I+1}_fuse``; the last ``blocks.I`` (the one with ``proj``)
is ``head``. Module paths are renamed per place by one small dict each (``_STEM``, ``_RES`` /
``_X3D_RES``, ``_FUSE``, ``_HEAD``): ``conv_a`` -> ``a``, ``norm_a`` -> ``a_bn``, ``branch1_conv`` -> ``branch1``,
``branch1_norm`` -> ``branch1_bn``, ``conv_fast_to_slow`` -> ``conv_f2s``, ``proj`` ->
``projection``, ... X3D differs in three places (facts checked on the key tables):

* its stem names the spatial 1x3x3 conv ``conv.conv_t`` (ours ``conv_xy``) and the depthwise
  temporal conv ``conv.conv_xy`` (ours ``conv``);
* squeeze-excitation sits inside ``branch2.norm_b``: ``norm_b.0`` is the norm (ours ``b_bn``),
  ``norm_b.1.block.0`` / ``.2`` the two 1x1x1 convs (ours ``se.fc1`` / ``se.fc2``);
* the head's ``pool.pre_conv`` / ``pool.pre_norm`` / ``pool.post_conv`` are ours ``conv_5`` /
  ``conv_5_bn`` / ``lin_5``.

The shortcut without normalisation. PyTorchVideo adds a norm to a block's shortcut conv only when
the channel count changes, so X3D's first res2 block (24 -> 24 channels, stride 1x2x2) has
``branch1_conv`` and no ``branch1_norm``, while ours (PySlowFast's) has ``branch1_bn`` there. A
shortcut conv without a norm gets an *identity* norm (``IDENTITY_NORM``): weight 1, bias 0,
running mean 0, and a running variance ``v`` chosen so that ``v + eps`` is exactly 1 in fp32 (and
``1 / sqrt(v + eps)`` rounds to exactly 1 in fp32 when computed in fp64). Batch norm in eval
mode computes ``(x - mean) * invstd * weight + bias`` (or ``x * a + b`` with ``a = weight *
invstd``, ``b = bias - mean * a``); with ``invstd == 1``, ``weight == 1``, ``mean == 0`` and
``bias == 0`` each step is an exact IEEE operation (``x * 1``, ``x - 0``, ``x + 0``), so the
shortcut's output is the conv output bit for bit, which is PyTorchVideo's function
(``tests/test_pytorchvideo.py`` checks it bit for bit). The model keeps our architecture and state
dict (a saved fine-tuned model reloads as any zoo model); in *train* mode that norm normalises
with batch statistics like any other, so fine-tuning trains PySlowFast's architecture from
PyTorchVideo's weights.

Architectures. The layout is identified from the keys and shapes (``identify``): blocks per stage,
the stem conv's shape, the temporal kernel of res4's first conv, depthwise or factorised
``conv_b``, attention keys. X3D with width 2.0 and stage depths 3/5/11/7 is PyTorchVideo's
``x3d_xs`` / ``x3d_s`` / ``x3d_m`` (one state dict, ours ``x3d_xs``, ``x3d_s``, ``x3d_m``), 5/10/25/15
is ``x3d_l``; the single-pathway R50 with a 1x7x7 stem and temporal kernels in res4/res5 is
``slow_r50`` (ours ``slow_8x8_r50``); SlowFast R50 with a 7-frame fusion kernel is ``slowfast_r50``
(ours ``slowfast_8x8_r50``). Others (SlowFast R101, MViT, CSN, R(2+1)D, I3D, C2D, X3D of another
size) are refused by name (``PyTorchVideoError``). ``check_fits`` compares the identified layout
and the keys with the model asked for and names PyTorchVideo's key of any missing, unexpected or
mis-shaped tensor; the load itself stays ``checkpoint.load_state_into``'s (strict).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "IDENTITY_NORM",
    "PtvLayout",
    "PyTorchVideoError",
    "check_fits",
    "describe",
    "identify",
    "is_pytorchvideo_state",
    "our_key_to_ptv",
    "ptv_key_to_ours",
    "pytorchvideo_state_dict",
    "strip_prefix",
]

_PREFIX = "model."
#: the top-level names of PyTorchVideo's zoo models (``blocks`` everywhere; MViT's embeddings and head)
_TOP_LEVEL = ("blocks.", "patch_embed.", "cls_positional_encoding.", "norm_embed.", "head.")
_EPS = 1e-5  # the batch-norm eps of both layouts (PyTorchVideo's default, ours BN_EPS)


class PyTorchVideoError(Exception):
    """Raised inside this module; the loader turns it into a one-line ``CheckpointError``."""


def _identity_var(eps: float = _EPS) -> float:
    """The fp32 running variance ``v`` nearest ``1 - eps`` with ``fl32(v + eps) == 1``."""
    v = torch.tensor(1.0 - eps, dtype=torch.float32)
    one = torch.tensor(1.0, dtype=torch.float32)
    for _ in range(4):  # at most a few ulps away
        if v + torch.tensor(eps, dtype=torch.float32) == one:
            return float(v)
        v = torch.nextafter(v, one if v + eps < 1 else -one)
    raise AssertionError("no fp32 variance gives var + eps == 1")  # pragma: no cover


#: the values of a norm that is the identity in eval mode (see the module doc)
IDENTITY_NORM = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": _identity_var()}

# ----------------------------------------------------------------------------- names
#: module paths renamed per place (PyTorchVideo -> ours); parameter names are kept
_R_STEM = {"conv": "conv", "norm": "bn"}
_X3D_STEM = {"conv.conv_t": "conv_xy", "conv.conv_xy": "conv", "norm": "bn"}  # PyTorchVideo's names swapped
_STEM = {**_R_STEM, **_X3D_STEM}  # as a forward rule the two never collide
_RES = {
    "branch1_conv": "branch1",
    "branch1_norm": "branch1_bn",
    **{f"branch2.conv_{x}": f"branch2.{x}" for x in "abc"},
    **{f"branch2.norm_{x}": f"branch2.{x}_bn" for x in "abc"},
}
#: X3D: squeeze-excitation inside norm_b (the norm, then the SE's two convs); in the inverse,
#: ``norm_b.0`` replaces the ResNets' ``norm_b`` (later entries win)
_X3D_RES = {
    **_RES,
    "branch2.norm_b.0": "branch2.b_bn",
    "branch2.norm_b.1.block.0": "branch2.se.fc1",
    "branch2.norm_b.1.block.2": "branch2.se.fc2",
}
_FUSE = {"conv_fast_to_slow": "conv_f2s", "norm": "bn"}
_HEAD = {"proj": "projection", "pool.pre_conv": "conv_5", "pool.pre_norm": "conv_5_bn", "pool.post_conv": "lin_5"}

_PARAM = r"(?P<mod>.+)\.(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"
_PATHWAY = r"(?:multipathway_blocks\.(?P<p>\d+)\.)?"
_PTV_RES = re.compile(rf"blocks\.(?P<i>\d+)\.{_PATHWAY}res_blocks\.(?P<j>\d+)\.{_PARAM}")
_PTV_STEM = re.compile(rf"blocks\.0\.{_PATHWAY}{_PARAM}")
_PTV_FUSE = re.compile(rf"blocks\.(?P<i>\d+)\.multipathway_fusion\.{_PARAM}")
_PTV_OTHER = re.compile(rf"blocks\.(?P<i>\d+)\.{_PARAM}")
_OUR_RES = re.compile(rf"s(?P<s>\d+)\.pathway(?P<p>\d+)_res(?P<j>\d+)\.{_PARAM}")
_OUR_STEM = re.compile(rf"s1\.pathway(?P<p>\d+)_stem\.{_PARAM}")
_OUR_FUSE = re.compile(rf"s(?P<s>\d+)_fuse\.{_PARAM}")
_OUR_HEAD = re.compile(rf"head\.{_PARAM}")


def strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state without a ``model.`` prefix that every key carries (a Lightning-style wrapper)."""
    if state and all(k.startswith(_PREFIX) for k in state):
        return {k[len(_PREFIX) :]: v for k, v in state.items()}
    return dict(state)


def is_pytorchvideo_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is in PyTorchVideo's layout: after ``model.``, every key under ``blocks.``
    (its ResNets and X3D), or under ``blocks.`` and MViT's own top-level names (to refuse it by name)."""
    keys = list(strip_prefix(state))
    if not keys or not any(k.startswith("blocks.") for k in keys):
        return False
    return all(k.startswith(_TOP_LEVEL) for k in keys)


def ptv_key_to_ours(key: str, head_block: int) -> str | None:
    """Our state-dict key of PyTorchVideo's ``key`` (``head_block``: the index of the head's
    ``blocks.I``), or ``None`` when it follows no rule."""
    m = _PTV_RES.fullmatch(key)
    if m:
        mod = _X3D_RES.get(m["mod"])
        return mod and f"s{int(m['i']) + 1}.pathway{int(m['p'] or 0)}_res{int(m['j'])}.{mod}.{m['param']}"
    m = _PTV_FUSE.fullmatch(key)
    if m:
        mod = _FUSE.get(m["mod"])
        return mod and f"s{int(m['i']) + 1}_fuse.{mod}.{m['param']}"
    m = _PTV_STEM.fullmatch(key)
    if m:
        mod = _STEM.get(m["mod"])
        return mod and f"s1.pathway{int(m['p'] or 0)}_stem.{mod}.{m['param']}"
    m = _PTV_OTHER.fullmatch(key)
    if m and int(m["i"]) == head_block:
        mod = _HEAD.get(m["mod"])
        return mod and f"head.{mod}.{m['param']}"
    return None


def our_key_to_ptv(key: str, layout: PtvLayout) -> str | None:
    """PyTorchVideo's key of our ``key`` in ``layout`` (the inverse of ``ptv_key_to_ours``)."""
    inv = {
        name: {v: k for k, v in table.items()}
        for name, table in (
            ("res", _X3D_RES if layout.x3d else _RES),
            ("fuse", _FUSE),
            ("head", _HEAD),
            ("stem", _X3D_STEM if layout.x3d else _R_STEM),
        )
    }
    multi = layout.pathways > 1

    def pw(p: str) -> str:
        return f"multipathway_blocks.{int(p)}." if multi else ""

    m = _OUR_RES.fullmatch(key)
    if m and m["mod"] in inv["res"]:
        return f"blocks.{int(m['s']) - 1}.{pw(m['p'])}res_blocks.{m['j']}.{inv['res'][m['mod']]}.{m['param']}"
    m = _OUR_STEM.fullmatch(key)
    if m and m["mod"] in inv["stem"]:
        return f"blocks.0.{pw(m['p'])}{inv['stem'][m['mod']]}.{m['param']}"
    m = _OUR_FUSE.fullmatch(key)
    if m and m["mod"] in inv["fuse"]:
        return f"blocks.{int(m['s']) - 1}.multipathway_fusion.{inv['fuse'][m['mod']]}.{m['param']}"
    m = _OUR_HEAD.fullmatch(key)
    if m and m["mod"] in inv["head"]:
        return f"blocks.{layout.head_block}.{inv['head'][m['mod']]}.{m['param']}"
    return None


# ----------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class PtvLayout:
    """What the keys and shapes say: PyTorchVideo's hub name, the zoo models that take it
    (empty: refused), pathways, the head's block index, X3D or not."""

    ptv_name: str
    models: tuple[str, ...]
    pathways: int
    head_block: int
    x3d: bool

    def accepts(self, model_name: str) -> bool:
        base = model_name.removesuffix("_atfr")
        return base in self.models


def _depths(keys, p: int | None) -> tuple[int, ...]:
    """Blocks per residual stage (``blocks.1`` .. ``blocks.4``) of pathway ``p``."""
    out = []
    for i in range(1, 5):
        m = re.compile(rf"blocks\.{i}\.{'' if p is None else f'multipathway_blocks.{p}.'}res_blocks\.(\d+)\.")
        found = {int(mm.group(1)) for k in keys if (mm := m.match(k))}
        out.append(max(found) + 1 if found else 0)
    return tuple(out)


def _head_block(keys) -> int:
    heads = {int(k.split(".")[1]) for k in keys if re.fullmatch(r"blocks\.\d+\.proj\.weight", k)}
    if len(heads) != 1:
        raise PyTorchVideoError("no classifier (blocks.N.proj.weight) found: not a PyTorchVideo classification model")
    return heads.pop()


def _refusal(keys, shapes: Mapping[str, tuple]) -> str | None:
    """PyTorchVideo's name of an architecture the zoo does not have, from its telltale keys."""
    text = " ".join(keys)
    if any(s in text for s in ("attn.", "patch_embed", "cls_positional_encoding", "pos_embed")):
        return "MViT (a vision transformer)"
    if ".branch2.conv_b.conv_t." in text or ".branch2.conv_b.conv_xy." in text:
        return "R(2+1)D (r2plus1d_r50)"
    if ".conv.conv_t." not in text:  # a ResNet: CSN has depthwise 3x3x3 conv_b without X3D's stem
        dw = [s for k, s in shapes.items() if k.endswith("branch2.conv_b.weight") and len(s) == 5 and s[1] == 1]
        if dw:
            return "CSN (csn_r101, channel-separated)"
    return None


def identify(state: Mapping[str, torch.Tensor]) -> PtvLayout:
    """PyTorchVideo's model behind ``state`` (our names for it), or ``PyTorchVideoError`` naming it."""
    keys = list(state)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    refused = _refusal(keys, shapes)
    if refused:
        raise PyTorchVideoError(f"PyTorchVideo's {refused} is not in the model zoo")
    head = _head_block(keys)
    multi = any(".multipathway_blocks." in k for k in keys)
    if multi:
        return _identify_slowfast(keys, shapes, head)
    depths = _depths(keys, None)
    if "blocks.0.conv.conv_t.weight" in shapes:
        width = shapes["blocks.0.conv.conv_t.weight"][0]
        names = {
            (3, 5, 11, 7): ("x3d_xs/x3d_s/x3d_m", ("x3d_xs", "x3d_s", "x3d_m")),
            (5, 10, 25, 15): ("x3d_l", ("x3d_l",)),
        }
        if width != 24 or depths not in names:
            raise PyTorchVideoError(
                f"a PyTorchVideo X3D with stem width {width} and {'/'.join(map(str, depths))} blocks per stage "
                "is not in the model zoo (x3d_xs, x3d_s, x3d_m: 24, 3/5/11/7; x3d_l: 24, 5/10/25/15)"
            )
        ptv, models = names[depths]
        return PtvLayout(ptv, models, 1, head, True)
    return _identify_resnet(shapes, depths, head)


def _identify_resnet(shapes, depths, head: int) -> PtvLayout:
    stem = shapes.get("blocks.0.conv.weight", ())
    res4 = shapes.get("blocks.3.res_blocks.0.branch2.conv_a.weight", ())
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}.get(depths)
    if depth != 50:
        raise PyTorchVideoError(
            f"a PyTorchVideo ResNet with {'/'.join(map(str, depths))} blocks per stage (R{depth or '?'}) is not in the "
            "model zoo (slow_r50: 3/4/6/3)"
        )
    if len(stem) == 5 and stem[2] != 1:
        kernel = "x".join(map(str, stem[2:]))
        raise PyTorchVideoError(f"PyTorchVideo's i3d_r50 (stem kernel {kernel}) is not in the model zoo")
    if len(res4) == 5 and res4[2] == 1:
        raise PyTorchVideoError("PyTorchVideo's c2d_r50 (no temporal kernels in res4/res5) is not in the model zoo")
    return PtvLayout("slow_r50", ("slow_8x8_r50",), 1, head, False)


def _identify_slowfast(keys, shapes, head: int) -> PtvLayout:
    depths = {_depths(keys, 0), _depths(keys, 1)}
    fuse = shapes.get("blocks.0.multipathway_fusion.conv_fast_to_slow.weight", ())
    if depths != {(3, 4, 6, 3)}:
        shown = "/".join(map(str, max(depths)))
        depth = "R101" if max(depths)[2] == 23 else f"{shown} blocks per stage"
        raise PyTorchVideoError(
            f"PyTorchVideo's SlowFast {depth} (e.g. slowfast_r101, slowfast_16x8_r101_50_50) is not in the model zoo "
            "(slowfast_r50 only)"
        )
    if len(fuse) != 5 or fuse[2] != 7:
        kernel = fuse[2] if len(fuse) == 5 else "?"
        raise PyTorchVideoError(f"a PyTorchVideo SlowFast R50 with fusion kernel {kernel} is not in the model zoo (7)")
    return PtvLayout("slowfast_r50", ("slowfast_8x8_r50",), 2, head, False)


# ----------------------------------------------------------------------------- state dicts
def _identity_norms(state: dict[str, torch.Tensor], counters: bool) -> list[str]:
    """Insert an identity ``branch1_bn`` for every shortcut conv without a norm; their prefixes."""
    added = []
    for key in [k for k in state if k.endswith(".branch1.weight")]:
        block = key[: -len("branch1.weight")]
        if f"{block}branch1_bn.weight" in state:
            continue
        n = state[key].shape[0]
        for param, value in IDENTITY_NORM.items():
            state[f"{block}branch1_bn.{param}"] = torch.full((n,), value, dtype=torch.float32)
        if counters:
            state[f"{block}branch1_bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        added.append(f"{block}branch1_bn")
    return added


def pytorchvideo_state_dict(state: Mapping[str, torch.Tensor]):
    """``(our_state, layout, info)`` of a PyTorchVideo state dict (with or without ``model.``).

    ``info``: ``source`` (our key -> PyTorchVideo's), ``identity_norms`` (the norms inserted for
    shortcuts without one). Raises ``PyTorchVideoError`` for a model the zoo lacks (by name), a
    key that follows no rule, or two keys landing on one.
    """
    state = strip_prefix(state)
    layout = identify(state)
    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, value in state.items():
        ours = ptv_key_to_ours(key, layout.head_block)
        if ours is None:
            unknown.append(key)
            continue
        if ours in out:
            raise PyTorchVideoError(f"keys {source[ours]} and {key} both land on {ours}")
        out[ours], source[ours] = value, key
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise PyTorchVideoError(
            f"{len(unknown)} key(s) follow no rule of PyTorchVideo's {layout.ptv_name} layout: "
            f"{', '.join(unknown[:3])}{more}"
        )
    counters = any(k.endswith("num_batches_tracked") for k in out)
    added = _identity_norms(out, counters) if layout.x3d else []
    return out, layout, {"source": source, "identity_norms": added}


def check_fits(model_name: str, model: torch.nn.Module, state: Mapping[str, torch.Tensor], meta: Mapping) -> list[str]:
    """Problems of loading a converted PyTorchVideo ``state`` into ``model``, in PyTorchVideo's
    names (empty when it fits); the SGS parameters of an ``_atfr`` model are not listed (they are
    ``load_state_into``'s to allow or refuse)."""
    layout: PtvLayout = meta["pytorchvideo_layout"]
    if not layout.accepts(model_name):
        models = ", ".join(layout.models)
        what = f"it is PyTorchVideo's {layout.ptv_name}, which loads into {models} (or _atfr variants)"
        return [f"{what}, not {model_name}"]
    source: Mapping[str, str] = meta["pytorchvideo_source"]
    own = model.state_dict()
    missing = [our_key_to_ptv(k, layout) or k for k in own if k not in state and "ts_layer." not in k]
    unexpected = [source.get(k, k) for k in state if k not in own]
    mismatched = [
        f"{source.get(k, k)} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    out = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
        if items:
            more = f", ... (+{len(items) - 3})" if len(items) > 3 else ""
            out.append(f"{len(items)} {what} ({', '.join(items[:3])}{more})")
    return out


def describe(meta: Mapping) -> str:
    """``Checkpoint.describe()`` of a PyTorchVideo file (the profiler's summary and ``run.json``)."""
    norms = meta.get("pytorchvideo_identity_norms", [])
    extra = f", identity norm on {len(norms)} shortcut conv(s) without one: {', '.join(norms)}" if norms else ""
    return (
        f"pytorchvideo (PyTorchVideo model-zoo .pyth of {meta['pytorchvideo_layout'].ptv_name}: "
        f"{len(meta['pytorchvideo_source'])} tensors mapped onto state-dict keys{extra})"
    )
