"""The per-module cost table of ``atfr flops MODEL --depth N``, in the manner of fvcore's
``flop_count_table``: the module tree down to depth ``N`` (the model itself is depth 0), each row
with its parameters and its GMACs in both conventions, and for an ATFR model the same module's
GMACs in the backbone without SGS, so that one sees which stages SGS makes cheaper.

A module's count includes its submodules'. Where an expanded module runs operators outside its
submodules (e.g. the SGS layer's aggregation in the layer itself), a row ``NAME (own ops)`` holds
them, so the rows marked ``leaf`` (the tree cut at depth ``N``) add up to the model's total
exactly, at every depth.
"""

from __future__ import annotations

from torch import nn

from atfr_analysis.flops.count import FlopCount

__all__ = ["module_table", "param_counts"]


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per module name (a module counts its submodules'; ``""`` is the model)."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")[:-1]
        for i in range(len(parts) + 1):
            k = ".".join(parts[:i])
            out[k] = out.get(k, 0) + p.numel()
    return out


def module_table(fc: FlopCount, model: nn.Module, depth: int, static: FlopCount | None = None) -> list[dict]:
    """Rows of the module tree down to ``depth`` (>= 0), in the model's module order.

    Each row: ``module`` (``"model"`` for the root), ``depth``, ``params``, ``macs`` (conv_fc),
    ``macs_fvcore``, ``static_macs`` (ATFR: the module in the backbone without SGS; ``None`` when
    it has no counterpart or no ``static`` was given), ``leaf`` (the row belongs to the cut at
    ``depth``: the ``leaf`` rows sum to the total) and ``own`` (an ``(own ops)`` row). Modules
    with neither parameters nor GMACs are left out (they add nothing).
    """
    if depth < 0:
        raise ValueError(f"--depth must be >= 0, got {depth}")
    names: list[str] = []
    seen = set()
    for name, m in model.named_modules():
        if id(m) not in seen:
            seen.add(id(m))
            names.append(name)
    children: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        if n:
            parent = n.rsplit(".", 1)[0] if "." in n else ""
            children.setdefault(parent, []).append(n)
    params = param_counts(model)
    conv = fc.by_module
    fv = fc.by_module_fvcore
    st = static.by_module if static is not None else None
    rows: list[dict] = []

    def static_of(name: str):
        if st is None:
            return None
        if name == "":
            return static.count_conv_fc
        return st.get(name)

    def add(name, d, leaf, own=False, macs=None, macs_fv=None, static_macs=None, nparams=None):
        c = conv.get(name, 0) if macs is None else macs
        f = fv.get(name, 0) if macs_fv is None else macs_fv
        p = params.get(name, 0) if nparams is None else nparams
        s = static_of(name) if static_macs is None and not own else static_macs
        if c or f or p or (s or 0) or name == "":
            label = "model" if name == "" else name
            rows.append(
                {
                    "module": label + (" (own ops)" if own else ""),
                    "depth": d,
                    "params": int(p),
                    "macs": int(c),
                    "macs_fvcore": int(f),
                    "static_macs": None if s is None else int(s),
                    "leaf": leaf,
                    "own": own,
                }
            )

    def visit(name: str, d: int) -> None:
        kids = children.get(name, [])
        expand = d < depth and bool(kids)
        add(name, d, leaf=not expand)
        if not expand:
            return
        for k in kids:
            visit(k, d + 1)
        rest = conv.get(name, 0) - sum(conv.get(k, 0) for k in kids)
        rest_fv = fv.get(name, 0) - sum(fv.get(k, 0) for k in kids)
        rest_p = params.get(name, 0) - sum(params.get(k, 0) for k in kids)
        if rest or rest_fv or rest_p:
            s = None
            if st is not None and static_of(name) is not None:
                s = static_of(name) - sum(st.get(k, 0) for k in kids)
            add(name, d + 1, leaf=True, own=True, macs=rest, macs_fv=rest_fv, static_macs=s, nparams=rest_p)

    visit("", 0)
    return rows
