"""FLOP regression tests: a model's cost as a golden JSON file, and what moved since it was written.

``golden(model, input_shapes)`` counts a model (a zoo model, one's own ``nn.Module`` with SGS
layers anywhere, or one without) and returns a small JSON-able record of exact integers:

* ``params`` and, per module down to ``depth``, ``{"conv_fc", "fvcore", "params"}`` (for an SGS
  model: at the signature where every layer keeps all its bins);
* ``signatures``: the total MACs of the model in both conventions at every signature of the grid
  (every signature when there are at most ``max_signatures``, else the diagonal of
  ``CostModel.grid``), or at the signatures the caller states; a model without SGS has one, ``[]``.

``compare(before, after)`` lists what moved as rows ``(module, convention, signature, before,
after)``: a field of the golden file that differs (``params``, ``num_bins``, the input, ...; module
``(settings)``), a module whose count or parameters changed, a signature whose total changed, an SGS
layer that appeared or went away (``convention`` ``"sgs layer"``), a signature counted in one file
only. Equal files give no row. ``read_golden`` checks every field of a file before it is used (one
line naming the file and the field). ``atfr flops MODEL --save FILE`` / ``--check FILE`` and the pytest
fixture ``flops_regression`` (:mod:`atfr_analysis.testing.pytest_plugin`) are built on these two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.flops.count import FlopCount
from atfr_analysis.flops.module_cost import cost_model
from atfr_analysis.flops.table import param_counts
from atfr_analysis.models.base import is_split_model

__all__ = [
    "GOLDEN_SCHEMA",
    "compare",
    "default_shapes",
    "dumps_golden",
    "format_rows",
    "golden",
    "golden_like",
    "parse_signatures",
    "read_golden",
    "validate_golden",
    "write_golden",
]

GOLDEN_SCHEMA = 1
CONVENTIONS = ("conv_fc", "fvcore")


def default_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    """One clip at the model's test input (``model.spec`` or ``model.input_spec``), batch 1."""
    from atfr_analysis.models.base import InputSpec, make_inputs

    spec = getattr(model, "spec", None) or getattr(model, "input_spec", None)
    if not isinstance(spec, InputSpec):
        raise InputError(f"{type(model).__name__} has no input spec: give input_shapes")
    return [tuple(x.shape) for x in make_inputs(spec)]


def _modules(fc: FlopCount, params: dict[str, int], depth: int) -> dict[str, dict[str, int]]:
    out = {}
    names = set(fc.by_module) | set(fc.by_module_fvcore) | set(params)
    for name in sorted(names, key=lambda n: (n.count(".") if n else -1, n)):
        if name and name.count(".") >= depth:
            continue
        row = {
            "conv_fc": int(fc.by_module.get(name, 0)),
            "fvcore": int(fc.by_module_fvcore.get(name, 0)),
            "params": int(params.get(name, 0)),
        }
        if any(row.values()) or name == "":
            out[name or "model"] = row
    return out


def golden(
    model: nn.Module,
    input_shapes: Sequence[Sequence[int]] | None = None,
    depth: int = 2,
    signatures: Iterable[Iterable[int]] | None = None,
    max_signatures: int = 64,
    name: str | None = None,
    cache=None,
    list_input: bool | None = None,
) -> dict[str, Any]:
    """The golden record of ``model`` at ``input_shapes`` (default: its spec's test input); see the
    module doc. Counted on the ``meta`` device (the model may live there)."""
    if depth < 0:
        raise InputError(f"depth must be >= 0, got {depth}")
    shapes = [tuple(int(d) for d in s) for s in (input_shapes or default_shapes(model))]
    shapes = [s if len(s) == 5 else (1,) + s for s in shapes]
    cm = cost_model(model, shapes, cache=cache, list_input=list_input)
    params = param_counts(model)
    record: dict[str, Any] = {
        "schema": GOLDEN_SCHEMA,
        "model": name or getattr(model, "model_name", "") or type(model).__name__,
        "input_shapes": [list(s) for s in shapes],
        "conventions": list(CONVENTIONS),
        "unit": "MACs (1 multiply-add = 1)",
        "depth": int(depth),
        "params": int(params.get("", 0)),
        "sgs_layers": list(cm.layer_names),
    }
    if cm.is_dynamic:
        record["num_bins"] = cm.num_bins
        if not is_split_model(model):
            record["placement"] = sgs_placement(model, cm)
        sigs = [tuple(int(b) for b in s) for s in signatures] if signatures is not None else _grid(cm, max_signatures)
        record["modules_at"] = list(cm.num_bins)
        record["modules"] = _modules(cm.cost(cm.num_bins), params, depth)
    else:
        sigs = [()]
        record["modules"] = _modules(cm.static(), params, depth)
    rows = []
    for sig in sigs:
        a, b = cm.exact_counts(sig)
        rows.append({"signature": list(sig), "conv_fc": a, "fvcore": b})
    record["signatures"] = rows
    return record


def sgs_placement(model: nn.Module, cm) -> dict[str, str]:
    """Where each SGS layer runs: ``"after <module>"``, the last module (not inside the layer) whose
    forward started before the layer's, in one ``meta`` run of the model with every bin kept."""
    from torch.nn.modules.module import register_module_forward_pre_hook

    from atfr_analysis.flops.meta import to_meta
    from atfr_analysis.sgs.tap import SgsTap

    names = {id(m): n for n, m in model.named_modules()}
    order: list[str] = []
    handle = register_module_forward_pre_hook(lambda m, a: order.append(names.get(id(m), "?")))
    state = {k: to_meta(v) for k, v in model.state_dict(keep_vars=True).items()}
    try:
        with torch.no_grad(), SgsTap(model, force="full"):
            torch.func.functional_call(model, state, (cm.meta_inputs(),), strict=False)
    finally:
        handle.remove()
    out = {}
    for layer in cm.layer_names:
        i = order.index(layer)
        prev = [n for n in order[:i] if _places(n, layer)]
        out[layer] = "after " + (prev[-1] if prev else "the input")
    return out


def _places(name: str, layer: str) -> bool:
    """A module that can place ``layer``: named, neither inside the layer nor one of its ancestors."""
    return bool(name) and name != "?" and not name.startswith(layer + ".") and not layer.startswith(name + ".")


def _grid(cm, max_points: int) -> list[tuple[int, ...]]:
    """The grid's signatures that the model can have (a layer after another SGS layer with
    ``num_bins=None`` has at most the earlier B' bins)."""
    out = []
    for sig in cm.grid(max_points):
        try:
            cm.exact_counts(sig)
        except InputError:
            continue
        out.append(tuple(sig))
    return out


#: the fields :func:`compare` reads one by one (layers, modules, signatures); it compares every other
#: field that ``before`` holds as a whole (``params``, ``num_bins``, ``input_shapes``, ``unit``, ...)
_COMPARED_BELOW = ("sgs_layers", "placement", "modules", "signatures")


def compare(before: dict, after: dict) -> list[dict[str, Any]]:
    """What moved from ``before`` to ``after`` (rows; empty when every field ``before`` holds is equal in
    ``after``: its settings and totals, each module's counts and parameters, each signature's total)."""
    rows: list[dict[str, Any]] = []

    def add(module, convention, signature, b, a):
        rows.append({"module": module, "convention": convention, "signature": signature, "before": b, "after": a})

    def in_table(rec, key):  # the total that the module table's "model" row shows (not repeated)
        return key == "params" and rec.get("modules", {}).get("model", {}).get("params") == rec.get("params")

    for key in [k for k in before if k not in _COMPARED_BELOW]:  # every other field the golden file holds
        if before.get(key) != after.get(key) and not (in_table(before, key) and in_table(after, key)):
            add("(settings)", key, "", before.get(key), after.get(key))
    old_l, new_l = before.get("sgs_layers", []), after.get("sgs_layers", [])
    for layer in [n for n in old_l if n not in new_l] + [n for n in new_l if n not in old_l]:
        state = ("present" if layer in old_l else "absent", "present" if layer in new_l else "absent")
        add(layer, "sgs layer", "", *state)
    bp, ap = before.get("placement", {}), after.get("placement", {})
    for layer in [n for n in bp if n in ap and bp[n] != ap[n]]:
        add(layer, "placement", "", bp[layer], ap[layer])
    at = after.get("modules_at")
    at_label = "full " + ",".join(map(str, at)) if at else ""
    bm, am = before.get("modules", {}), after.get("modules", {})
    for mod in list(bm) + [m for m in am if m not in bm]:
        for conv in ("params",) + CONVENTIONS:
            b, a = bm.get(mod, {}).get(conv), am.get(mod, {}).get(conv)
            if b != a:
                add(mod, conv, at_label if conv != "params" else "", b, a)
    bs = {tuple(r["signature"]): r for r in before.get("signatures", [])}
    as_ = {tuple(r["signature"]): r for r in after.get("signatures", [])}
    for sig in list(bs) + [s for s in as_ if s not in bs]:
        for conv in CONVENTIONS:
            b, a = bs.get(sig, {}).get(conv), as_.get(sig, {}).get(conv)
            if b != a:
                add("model", conv, ",".join(map(str, sig)) or "static", b, a)
    return rows


def format_rows(rows: list[dict[str, Any]], limit: int = 40) -> str:
    """The rows of :func:`compare` as a plain-text table (the first ``limit``)."""
    head = ("module", "convention", "signature", "before", "after")
    cells = [[str(r[k]) if r[k] is not None else "-" for k in head] for r in rows[:limit]]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)


def write_golden(path: str | Path, record: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_golden(record))
    return path


def dumps_golden(record: dict) -> str:
    """The record as JSON with one line per setting, module and signature (small, diff-friendly)."""

    def one(v) -> str:
        return json.dumps(v, separators=(", ", ": "))

    lines = []
    for k, v in record.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            inner = ",\n".join(f"  {one(n)}: {one(x)}" for n, x in v.items())
            lines.append(f" {one(k)}: {{\n{inner}\n }}")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            inner = ",\n".join(f"  {one(x)}" for x in v)
            lines.append(f" {one(k)}: [\n{inner}\n ]")
        else:
            lines.append(f" {one(k)}: {one(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def read_golden(path: str | Path) -> dict:
    """The golden record in ``path``, every field checked (:func:`validate_golden`)."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"golden file not found: {path} (write it with --save)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read golden file {path}: {e}") from None
    if not isinstance(rec, dict) or rec.get("schema") != GOLDEN_SCHEMA:
        raise InputError(f"{path} is not a golden FLOP file of schema {GOLDEN_SCHEMA}")
    problem = validate_golden(rec)
    if problem:
        field, why = problem
        raise InputError(f"golden file {path}: field {field!r} {why}")
    return rec


def _is_int(v, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _ints(v, low: int = 0) -> bool:
    return isinstance(v, list) and all(_is_int(x, low) for x in v)


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: what each top-level field must hold (a check and its wording); REQUIRED fields every file has
_FIELDS = {
    "schema": (lambda v: v == GOLDEN_SCHEMA, f"must be {GOLDEN_SCHEMA}"),
    "model": (lambda v: isinstance(v, str), "must be a string"),
    "input_shapes": (
        lambda v: bool(v) and isinstance(v, list) and all(_ints(s, 1) and s for s in v),
        "must be a non-empty list of shapes (lists of positive integers)",
    ),
    "conventions": (lambda v: v == list(CONVENTIONS), f"must be {list(CONVENTIONS)}"),
    "unit": (lambda v: isinstance(v, str), "must be a string"),
    "depth": (_is_int, "must be an integer >= 0"),
    "params": (_is_int, "must be an integer >= 0"),
    "num_classes": (lambda v: _is_int(v, 1), "must be an integer >= 1"),
    "sgs_layers": (_strs, "must be a list of layer names"),
    "num_bins": (lambda v: _ints(v, 1), "must be a list of integers >= 1"),
    "modules_at": (lambda v: _ints(v, 1), "must be a list of integers >= 1"),
    "placement": (
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        "must map layer names to strings",
    ),
    "modules": (
        lambda v: isinstance(v, dict) and all(_module_row(r) for r in v.values()),
        "must map module names to {conv_fc, fvcore, params} (integers >= 0)",
    ),
    "signatures": (
        lambda v: bool(v) and isinstance(v, list) and all(_signature_row(r) for r in v),
        "must be a non-empty list of {signature, conv_fc, fvcore} (integers >= 0)",
    ),
}
_REQUIRED = (
    "schema",
    "model",
    "input_shapes",
    "conventions",
    "unit",
    "depth",
    "params",
    "sgs_layers",
    "modules",
    "signatures",
)


def _module_row(r) -> bool:
    return isinstance(r, dict) and set(r) == {"params", *CONVENTIONS} and all(_is_int(x) for x in r.values())


def _signature_row(r) -> bool:
    return (
        isinstance(r, dict)
        and set(r) == {"signature", *CONVENTIONS}
        and _ints(r["signature"], 1)
        and all(_is_int(r[c]) for c in CONVENTIONS)
    )


def validate_golden(rec: dict) -> tuple[str, str] | None:
    """The first field of ``rec`` that a golden file cannot hold, as ``(field, why)``; None when valid."""
    for key in _REQUIRED:
        if key not in rec:
            return key, "is missing"
    for key, value in rec.items():
        if key not in _FIELDS:
            return key, f"is not a field of a golden FLOP file (fields: {', '.join(_FIELDS)})"
        ok, why = _FIELDS[key]
        if not ok(value):
            return key, why
    n = len(rec["sgs_layers"])
    for key in ("num_bins", "modules_at") if n else ():
        if len(rec.get(key, ())) != n:
            return key, f"must hold one number per SGS layer ({n})"
    if n == 0 and any(k in rec for k in ("num_bins", "modules_at", "placement")):
        return next(k for k in ("num_bins", "modules_at", "placement") if k in rec), "needs SGS layers"
    if any(len(r["signature"]) != n for r in rec["signatures"]):
        return "signatures", f"must hold signatures of one number per SGS layer ({n})"
    return None


def golden_like(model: nn.Module, before: dict, cache=None) -> dict:
    """``model`` counted with the settings of the golden record ``before`` (input, depth, signatures)."""
    sigs = [r["signature"] for r in before.get("signatures", [])] if before.get("sgs_layers") else None
    try:
        return golden(
            model, before["input_shapes"], depth=before["depth"], signatures=sigs, name=before.get("model"), cache=cache
        )
    except InputError:
        if sigs is None:
            raise
        # the SGS layers changed (count, placement): the grid of the model as it is now
        return golden(model, before["input_shapes"], depth=before["depth"], name=before.get("model"), cache=cache)


def parse_signatures(text: str | None) -> list[list[int]] | None:
    """``"8,4;4,2;1,1"``: signatures separated by ``;``, bins per layer by ``,``."""
    if text is None:
        return None
    try:
        return [[int(b) for b in part.split(",") if b.strip()] for part in text.split(";") if part.strip()]
    except ValueError:
        raise InputError(f"--signatures: expected 'B1,B2;B1,B2;...' (integers), got {text!r}") from None
