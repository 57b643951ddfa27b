"""The bench's outputs: a plain-text summary, JSON, and the Markdown report's sections."""

from __future__ import annotations

import json
import math
from pathlib import Path

from atfr_analysis.bench.config import RESULT_KEYS
from atfr_analysis.bench.throughput import steady_cpu_seconds
from atfr_analysis.errors import InputError

__all__ = ["format_summary", "write_report", "dumps", "load_result", "section_key", "REPORT_HEAD"]


def _f(x, nd=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def _overhead_context(r: dict) -> str:
    t = r["times"]
    ab = t.get("overhead_paired")
    if not ab:
        return ""
    return (
        f"; median of {ab['pairs']} batch pairs timed A B B A"
        + (f", each timing {ab['repeats']} runs of the batch" if ab.get("repeats", 1) > 1 else "")
        + f" (quartiles {_f(ab['q1'], 3)} to {_f(ab['q3'], 3)}); "
        f"whole passes in rotating rounds: {_f(r['overhead_rounds'], 3)}, their A/A control (the plain forward "
        f"timed as a second mode) {_f(t['aa_control'], 3)}, rounds spread {100 * t['spread_exact']:.0f}%"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _gpu_target(r: dict) -> bool:
    return str(r["device"]).startswith("cuda") and int(r["batch_size"]) == 32


def _headline_rows(r: dict) -> list[tuple[str, str, str]]:
    t = r["times"]["videos_per_s"]
    g = r["gmacs"]
    rows = [
        (
            "overhead (instrumented profile / plain forward, exact batching)",
            _f(r["overhead"], 3),
            "target <= 1.02"
            + (f"; {_met(r['overhead'] <= 1.02)}" if r.get("overhead") is not None else "")
            + _overhead_context(r),
        ),
        (
            "speedup_exact_vs_baseline",
            _f(r["speedup_exact_vs_baseline"], 3),
            f"{_f(t['exact'])} vs {_f(t['baseline'])} videos/s",
        ),
        (
            "flop_ratio (baseline GMACs / ATFR GMACs)",
            _f(r["flop_ratio"], 3),
            f"{_f(g['baseline'], 3)} vs {_f(g['atfr_mean'], 3)} GMACs/clip",
        ),
        (
            "efficiency (speed-up / FLOP ratio)",
            _f(r["efficiency"], 3),
            "target >= 0.8 (GPU, batch 32)"
            + (f"; {_met(r['efficiency'] >= 0.8)}" if _gpu_target(r) else "; not a GPU run at batch 32"),
        ),
        (
            "speedup_exact_vs_padded",
            _f(r["speedup_exact_vs_padded"], 3),
            f"padded {_f(t['padded'])} videos/s, executes {_f(g['flop_ratio_padded_vs_exact'], 3)}x the exact GMACs",
        ),
        (
            "gmacs_lookup_vs_fvcore_trace (trace s / look-up s, per clip)",
            _f(r["gmacs_lookup_vs_fvcore_trace"], 0),
            f"{_f((g['lookup_s_per_clip'] or 0) * 1e6)} us vs {_f(g['fvcore_trace_s_per_clip'], 2)} s",
        ),
    ]
    if r.get("overhead_bookkeeping") is not None:
        rows.insert(
            1,
            (
                "overhead_bookkeeping (the profile's own work, timed alone)",
                _f(r["overhead_bookkeeping"], 4),
                f"{_f(r['times']['bookkeeping_s_per_pass'] * 1e3, 2)} ms per pass of "
                f"{_f(r['times']['median_s_per_pass']['exact'], 3)} s",
            ),
        )
    for w, v in r["decoding"].items():
        rows.append(
            (
                f"decoding, {w} worker(s) (videos/s)",
                _f(v),
                f"{r['decoding_details']['views_per_video']} views/video at {r['decoding_details']['crop']} px",
            )
        )
    return rows


def _scale_blocks(r: dict) -> list[list[str]]:
    """Cold-signature counting, profile throughput and peak memory, a block of lines each (absent
    in older results)."""
    blocks: list[list[str]] = []
    lines: list[str] = []
    cold = r.get("cold_signatures")
    if cold:
        fv, new = cold["fvcore"], cold.get("new")
        lines.append(
            f"Cold-signature counting ({cold['signatures']} signatures new to the counter): fvcore "
            f"{_f(fv['s_per_signature'], 3)} s/signature (set-up {_f(fv['setup_s'], 2)} s), new counter (meta device) "
            + (
                f"{_f(new['s_per_signature'], 4)} s/signature (set-up {_f(new['setup_s'], 2)} s), ratio "
                f"{_f(cold['ratio'], 1)}x, same GMACs: {cold['equal']}"
                if new
                else "not plugged in (no figure), ratio -"
            )
            + "."
        )
        blocks.append(lines)
    bs = r.get("batch_sizes")
    if bs:
        per = ", ".join(f"{b} {_f(bs['s_per_clip'][str(b)] * 1e3, 1)} ms" for b in bs["sizes"])
        vs = ", ".join(f"{b} {_f(bs['vs_largest'][str(b)], 2)}x" for b in bs["sizes"])
        blocks.append(
            [
                f"Batch sizes (exact forward at the profile's crop {bs.get('crop', '-')} px, seconds per clip, median "
                f"of "
                f"{bs['rounds']} rounds): {per}; "
                f"speed against batch {bs['sizes'][-1]}: {vs}; fastest: batch {bs['fastest']}"
                + (
                    f"; padded batching at batch {bs['sizes'][-1]} {_f(bs['padded_s_per_clip'] * 1e3, 1)} ms, exact vs "
                    f"padded "
                    f"{_f(bs['speedup_exact_vs_padded'], 3)}"
                    if bs.get("padded_s_per_clip")
                    else ""
                )
                + "."
            ]
        )
    tp = r.get("profile_throughput")
    if tp and not tp.get("skipped"):
        lines = []
        blocks.append(lines)
        sp = tp["split"]
        parts = ", ".join(f"{k} {_f(v, 3)}" for k, v in sp["parts_s_per_video"].items())
        batch_note = " (the profile's default here)" if tp.get("batch_size_default") else ""
        cpu = steady_cpu_seconds(sp)
        lines.append(
            f"Profile throughput (`profile()`, {tp['videos']} sample video(s) x {tp['views']} view(s) x "
            f"{tp['crops']} crop(s) at {tp['crop']} px, batch {tp['batch_size']}{batch_note}): seconds per video "
            f"decode "
            f"{_f(sp['decode_s_per_video'], 3)}, model {_f(sp['model_s_per_video'], 3)} ({parts}); new-signature "
            f"counting on first sight {_f(sp['counting_s_per_video'], 3)} (the runs then read these counts from their "
            f"cost "
            f"cache, as a long run's later videos do); bound by {tp['bound_by']}. Each run is a fresh process: its "
            f"whole "
            "loop also pays first-use costs (the first video's); the steady state runs from the first video logged to "
            "the last, against max(decode, model) of those videos"
            + (f" ({_f(sp['steady_bound_s_per_video'], 3)} s per video)" if sp.get("steady_bound_s_per_video") else "")
            + "."
            + (
                f" CPU time per video over those videos: decode {_f(cpu[0], 3)} s, model {_f(cpu[1], 3)} s; on "
                f"{sp['cores']} core(s) overlapping them takes "
                f"at least {_f(sp['cpu_bound_s_per_video'], 3)} s per video (the CPU bound)"
                + (
                    ": above max(decode, model), so decoding and the model compete for the cores and max(decode, "
                    "model) "
                    "is out of reach"
                    if (sp["cpu_bound_s_per_video"] or 0) > (sp.get("steady_bound_s_per_video") or 0)
                    else ""
                )
                + "."
                if cpu and sp.get("cpu_bound_s_per_video")
                else ""
            )
        )
        for w, run in tp["runs"].items():
            if run.get("error"):
                lines.append(f"- profile loop, {w} worker(s): {run['error']}")
                continue
            steady = (
                f"; steady state over {run['steady_videos']} video(s): {_f(run['steady_videos_per_s'], 3)} videos/s, "
                f"efficiency {_f(run['efficiency_steady'], 3)}"
                + (
                    f" (against the CPU bound {_f(run['efficiency_steady_cpu_bound'], 3)})"
                    if run.get("efficiency_steady_cpu_bound")
                    else ""
                )
                if run.get("efficiency_steady") is not None
                else ""
            )
            lines.append(
                f"- profile loop, {w} worker(s): {_f(run['videos_per_s'], 3)} videos/s, efficiency "
                f"{_f(run['efficiency'], 3)} of max(decode, model) (with counting "
                f"{_f(run['efficiency_with_counting'], 3)})"
                f"{steady}; peak RSS {_f(run['peak_rss_mib'], 0)} MiB (loader workers "
                f"{_f(run['loader_workers_peak_rss_mib'], 0)} MiB)"
                + (
                    f", CUDA peak {_f(run['cuda_max_allocated_mib'], 0)} MiB"
                    if run.get("cuda_max_allocated_mib")
                    else ""
                )
            )
    if r.get("training"):
        blocks.append(_training_lines(r["training"]))
    mem = r.get("memory")
    if mem:
        cuda = mem.get("cuda_max_allocated_mib")
        blocks.append(
            [
                f"Peak memory of the bench process: RSS {_f(mem['peak_rss_mib'], 0)} MiB ("
                + ", ".join(f"after {k} {_f(v, 0)}" for k, v in mem["peak_rss_mib_after"].items())
                + ")"
                + ("; CUDA max allocated " + ", ".join(f"{k} {_f(v, 0)} MiB" for k, v in cuda.items()) if cuda else "")
                + "."
            ]
        )
    return blocks


def _training_lines(tr: dict) -> list[str]:
    """The training phase: the train step's clips/s, and the train-time loading against it."""
    rates = ", ".join(f"{k} {_f(v, 2)}" for k, v in tr["clips_per_s"].items())
    load = tr.get("loading_s_per_clip")
    return [
        f"Train step (forward, backward, SGD; BN frozen; {tr['batch_per_process']} clips per process, median of "
        f"{tr['steps']} steps), clips/s: {rates}"
        + (
            f"; train-time loading (decode on the fly + augment) {_f(load, 3)} s per clip against the step's "
            f"{_f(tr['step_s_per_clip'], 3)}"
            if load
            else ""
        )
        + "."
    ]


def format_summary(r: dict) -> str:
    """A plain-text summary (what ``atfr bench`` prints without ``--json``)."""
    lines = [
        f"atfr bench: {r['model']} on {r['device']} ({r['device_name']}), torch {r['torch']}, "
        f"{r['precision']}, batch {r['batch_size']}, {r['clips']} clips, "
        f"{'+'.join(map(str, r['frames']))}x{r['crop']}x{r['crop']}",
    ]
    for name, val, note in _headline_rows(r):
        lines.append(f"  {name:64s} {val:>10s}   {note}")
    b = r["bins"]
    for name, d in b["layers"].items():
        lines.append(f"  B' {name}: mean {d['mean']:.2f} of {d['B']} (min {d['min']}, max {d['max']})")
    lines.append(f"  distinct signatures {b['distinct_signatures']}, groups per batch {b['groups_per_batch']}")
    ph = r["phases"]["share_of_exact"]
    lines.append("  exact forward time: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in ph.items()))
    c = r["exact_check"]
    if c.get("max_abs_diff_vs_batch1") is not None:
        lines.append(
            f"  exact vs batch-1 outputs: max |diff| {c['max_abs_diff_vs_batch1']:.2e} over {c['clips']} clips"
        )
    lines += [f"  {x}" for block in _scale_blocks(r) for x in block]
    for note in r["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def section_key(r: dict) -> str:
    dev = r["device"].split(":")[0]
    if dev == "cpu":
        dev += f"-t{r['settings']['threads']}"
    weights = Path(r["checkpoint"]).name if r.get("checkpoint") else "random"
    return f"{dev}|{r['model']}|b{r['batch_size']}|c{r['crop']}|{r['precision']}|{weights}"


def _section(r: dict, report_cmd: str | None) -> str:
    cmd = " ".join(r["command"])
    s = r["settings"]
    lines = [
        f"<!-- bench:{section_key(r)} -->",
        f"### {r['device_name']} ({r['device']}): {r['model']}, batch {r['batch_size']}, {r['precision']}, "
        + (f"trained weights {Path(r['checkpoint']).name}" if r.get("checkpoint") else "random weights"),
        "",
        f"Measured {r['date']} with torch {r['torch']}, {s['threads']} thread(s) of {s['cpu_count']} cores"
        + (f", load average {s['load_avg_start'][0]:.1f} at the start" if s.get("load_avg_start") else "")
        + f"; {r['clips']} clips of {'+'.join(map(str, r['frames']))}x{r['crop']}x{r['crop']}, "
        f"{s['warmup']} warm-up + {s['reps']} timed rounds"
        + (
            f"; CUDA graphs {'on' if s['cuda_graphs'] else 'off'}, cuDNN benchmark "
            f"{'on' if s['cudnn_benchmark'] else 'off'}, "
            f"TF32 convolutions {'on' if s['tf32_conv'] else 'off'}"
            if r["device"].startswith("cuda")
            else ""
        )
        + ".",
        "",
        f"Command: `{cmd}`" + (f"  (this section written by `{report_cmd}`)" if report_cmd else ""),
        "",
        "| figure | value | context |",
        "| --- | ---: | --- |",
    ]
    for name, val, note in _headline_rows(r):
        lines.append(f"| {name} | {val} | {note} |")
    t = r["times"]
    lines += [
        "",
        "Videos per second by mode: "
        + ", ".join(f"{k} {_f(v)}" for k, v in t["videos_per_s"].items())
        + (
            f"; profile without the DataFrame step: overhead {_f(t['overhead_run_only'], 3)}"
            if t.get("overhead_run_only")
            else ""
        )
        + (
            f"; CUDA graphs vs eager exact batching: {_f(t['speedup_exact_graphs_vs_eager'], 3)}x"
            if t.get("speedup_exact_graphs_vs_eager")
            else ""
        )
        + (
            f"; groups on {r['settings']['threads']} threads vs one after the other: "
            f"{_f(t['speedup_exact_threads_vs_sequential'], 3)}x"
            if t.get("speedup_exact_threads_vs_sequential")
            else ""
        )
        + ".",
    ]
    b = r["bins"]
    lines.append("")
    lines.append(
        f"B' distribution ({b['clip_source']}; {b['distinct_signatures']} distinct signatures, "
        f"groups per batch {b['groups_per_batch']}):"
    )
    lines.append("")
    for name, d in b["layers"].items():
        hist = ", ".join(f"{k}: {v}" for k, v in d["hist"].items())
        lines.append(f"- `{name}` (B = {d['B']}): mean {d['mean']:.2f}, min {d['min']}, max {d['max']}; counts {hist}")
    lines.append("- mean B' by clip kind: " + "; ".join(f"{k} {v}" for k, v in b["mean_by_kind"].items()))
    ph = r["phases"]
    med = ph["median_s_per_pass"]
    gp = ph["gmacs_per_clip"]
    lines += [
        "",
        "Where the exact forward's time goes (seconds per pass, synchronised between parts): "
        + ", ".join(f"{k} {med[k]:.4f} s" for k in ("pre", "sgs", "post_exact", "post_padded"))
        + "; shares of the exact forward: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in ph["share_of_exact"].items())
        + f". GMACs per clip: pre {gp['pre']:.3f}, SGS {gp['sgs']:.4f}, post {gp['post_exact']:.3f} "
        f"(baseline {gp['baseline']:.3f}).",
    ]
    an = ph.get("analysis")
    if an:
        lines += [
            "",
            f"Why the efficiency is what it is (phase times; the baseline's forward timed the same way: pre "
            f"{med['baseline_pre']:.4f} s, post {med['baseline_post']:.4f} s): pre runs in both models alike and takes "
            f"{100 * an['pre_share_of_baseline_time']:.0f}% of the baseline's time for "
            f"{100 * an['pre_share_of_baseline_gmacs']:.0f}% "
            f"of its GMACs; SGS takes {100 * an['sgs_share_of_exact_time']:.1f}% of the exact forward. The post part "
            f"runs "
            f"{_f(an['post_speedup'], 3)}x faster than the baseline's for {_f(an['post_flop_ratio'], 3)}x fewer GMACs "
            f"(post efficiency {_f(an['post_efficiency'], 3)}). With a FLOP-proportional post (post efficiency 1) the "
            f"efficiency would be {_f(an['efficiency_post_proportional'], 3)}: what pre and SGS leave; from these "
            f"phase times it is "
            f"{_f(an['efficiency_from_phases'], 3)} (end to end above: {_f(r['efficiency'], 3)}).",
        ]
    if ph.get("top_ops"):
        for name, rows in ph["top_ops"].items():
            lines.append("")
            what = (
                "exact pass (groups one after the other: the profiler sees one thread)"
                if name == "exact"
                else f"{name} pass"
            )
            lines.append(
                f"Top operators (self time), {what}: "
                + ", ".join(f"{x['op']} {100 * x['share']:.0f}% ({x['calls']} calls)" for x in rows)
            )
    c = r["exact_check"]
    if c.get("max_abs_diff_vs_batch1") is not None:
        extra = ""
        if c.get("max_abs_diff_eager_vs_graphs") is not None:
            extra = f"; graphs vs eager {c['max_abs_diff_eager_vs_graphs']:.2e}"
        if c.get("max_abs_diff_post_only") is not None:
            extra += (
                f"; grouping alone (same SGS outputs, grouped vs one clip at a time): {c['max_abs_diff_post_only']:.2e}"
            )
        if c.get("max_abs_diff_pre") is not None:
            extra += (
                f". Where a difference starts: pre's features differ by {c['max_abs_diff_pre']:.2e} between the batch "
                f"and one clip at a time (of values up to {c['max_abs_pre']:.3g}: float rounding of another batch "
                f"size), "
                f"the SGS outputs for them by {c['max_abs_diff_sgs_out']:.2e}"
                + ("" if c.get("bins_equal", True) else " (and some clips keep another number of bins)")
                + (
                    f"; SGS rescales each clip's distances by 2B / max(delta), up to {c['sgs_rescale_max']:.3g}x here, "
                    "which magnifies that rounding for clips whose frames are all close to their mean"
                    if c.get("sgs_rescale_max")
                    else ""
                )
            )
        lines += [
            "",
            f"Exact batching vs batch-1 outputs (softmax scores): max |diff| {c['max_abs_diff_vs_batch1']:.2e} over "
            f"{c['clips']} clips{extra}.",
        ]
    if c.get("cuda_graphs_error"):
        lines.append(f"CUDA graphs failed: {c['cuda_graphs_error']}")
    for block in _scale_blocks(r):
        lines += [""] + block
    for note in r["notes"]:
        lines.append(f"- note: {note}")
    lines.append(f"<!-- /bench:{section_key(r)} -->")
    return "\n".join(lines) + "\n"


REPORT_HEAD = """# Benchmarks: videos per second of ATFR inference

Generated by `atfr bench --report reports/benchmarks.md` (or `atfr bench --from-json RESULT.json
--report ...` for a result measured elsewhere); one section per device, model, batch size,
precision and weights, replaced when measured again. Every figure below was measured by the
command named in its section; none is typed in.

Figures (see `atfr_analysis/bench/`): **overhead** = wall time of the instrumented profile
(`Profiler.run` + `Profiler.frame`: bins, per-clip GMACs and scores logged) over the plain forward,
both with exact batching, timed batch by batch as A B B A (median over batches and rounds; the
ratio of whole-pass medians from the rotating rounds is given beside it); \
**speedup_exact_vs_baseline** = the backbone without SGS over the ATFR
model with exact batching, same clips; **flop_ratio** = their GMACs (conv_fc); **efficiency** =
speed-up / FLOP ratio; **speedup_exact_vs_padded** = official padded batching over exact;
**gmacs_lookup_vs_fvcore_trace** = seconds per clip of an fvcore trace over our cached look-up;
**decoding** = videos per second of the PyAV pipeline with 0, 1, 2 loader workers (steady state:
persistent workers, their start-up timed apart). GMACs do not depend on the precision.

What the time goes to (see each section's "where the time goes" and top-operator lines): the exact
forward is *pre* (stem and res2 at the full temporal resolution: the same work as the backbone's),
*SGS* (small) and *post*, run once per group of clips that share a signature (B' of every SGS
layer). Groups are small (see "groups per batch"; one-clip groups are common), so post is where
exact batching loses time against a FLOP-proportional ideal. On CPU, PyTorch runs one-clip 3D
convolutions below its oneDNN size threshold with its native kernel (`slow_conv3d`, parallel over
the batch only) and small operators gain little from several intra-op threads; exact batching
therefore runs the groups concurrently, one intra-op thread each (`VideoModel.exact_cpu_workers`),
measured in each CPU section as "groups on N threads vs one after the other". On CUDA a group costs
hundreds of kernel launches; exact batching replays one CUDA graph per signature and power-of-two
group size (`VideoModel.exact_cuda_graphs`), measured as "CUDA graphs vs eager exact batching".
Each section's "why the efficiency is what it is" splits it in two: pre (stem and res2 at the full
temporal resolution) costs the same time in both models but more time per GMAC than the rest, which
keeps the efficiency below 1 even with a FLOP-proportional post (the efficiency "a FLOP-proportional
post would give"); the post efficiency says how close exact batching's post comes to
FLOP-proportional (above 1: its small groups run faster per GMAC than the baseline's full batch).

Exactness: exact batching gives every clip its batch-1 result up to float rounding. The check runs
the same clips as one batch and one at a time and says where a difference starts: pre's features
differ by float rounding of another batch size; with trained weights SGS can magnify that, because it
rescales each clip's distances to its mean by 2B / max(distance): for a clip whose frames all lie
close to their mean that factor is large (stated per section). The grouping itself adds nothing
beyond rounding ("grouping alone").

Noise: on a shared CPU the load average (stated per section) moves every figure; ratios are taken
between modes timed in the same rounds, and short passes get more rounds (by default enough for 10 s
per mode on CPU). The overhead target is a difference of a few per cent between two passes that each
vary by several per cent from round to round on 2 cores: hence the A B B A pairing of each batch
(a linear drift cancels), the A/A control of the whole-pass rounds, and the profile's own work timed
alone (**overhead_bookkeeping**: GMACs look-ups, scores to the host and the DataFrame, on the
forward's outputs), which is what the instrumented profile adds to the plain forward.

Scale figures (sections measured since the bench became a package; older sections lack them):
**cold-signature counting** = seconds per signature new to the cost cache with fvcore's trace (the
`CostModel`) and with the new counter once one is plugged in (`bench/costs.py:new_counter_factory`),
and their ratio; **profile throughput** = videos per second of the real `profile()` loop (a child
process per loader-worker count) on the sample clips, at the model's test crop, against max(decode,
model) from the per-video split (decode, transfer, pre, SGS, post, bookkeeping; counting of new
signatures on first sight given apart); **peak memory** = peak RSS (`getrusage`) of the bench process
after each phase, of each profile run (`VmHWM` of its own process: Linux carries `ru_maxrss` over
`exec` from the parent) and its loader workers, and on CUDA `torch.cuda.max_memory_allocated`.

The CPU sections were measured on a machine whose 2 cores are shared with other work: the load
average at the start is stated per section, and only ratios of modes timed in the same rounds should
be compared.

GPU sections come from the prepared GPU run `atfr bench --suite gpu --out DIR --report
reports/benchmarks.md` (SlowFast 4x16 R50 ATFR and X3D-S ATFR at batch 32, fp32 and bf16, the models'
test crops, a short profile on the sample clips; sized for under 10 minutes on one H200; `--smoke`
runs the same steps at a tiny size on CPU), or from a saved result with `atfr bench --from-json
RESULT.json --report reports/benchmarks.md`.

"""


_NO_GPU = """ No GPU figure has been measured yet: the GPU machine was
not lent to the task that prepared the suite, so this file holds no `cuda` section.

"""


def write_report(result: dict, path: str | Path, report_cmd: str | None = None) -> Path:
    """Add or replace the result's section in the Markdown report at ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    # the head is rewritten (it describes the current bench); the sections are kept
    first = text.find("<!-- bench:")
    text = REPORT_HEAD + (text[first:] if first >= 0 else "")
    if "<!-- bench:cuda" not in text and not str(result["device"]).startswith("cuda"):
        text = text.replace(REPORT_HEAD, REPORT_HEAD.rstrip("\n") + _NO_GPU, 1)
    key = section_key(result)
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    sec = _section(result, report_cmd)
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end)
        if text[b : b + 1] == "\n":
            b += 1
        text = text[:a] + sec + text[b:]
    else:
        if not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        text += sec
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def dumps(result: dict) -> str:
    """The result as JSON, NaN and infinities written as null."""
    plain = json.loads(json.dumps(result, default=str), parse_constant=lambda _c: None)
    return json.dumps(plain, indent=1)


def load_result(path: str | Path) -> dict:
    """A saved bench result (``--json --out``), checked to hold every key of ``RESULT_KEYS``."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read bench result {path}: {e}") from None
    missing = [k for k in RESULT_KEYS if k not in result] if isinstance(result, dict) else list(RESULT_KEYS)
    if missing:
        raise InputError(f"{path} is not a bench result (missing {', '.join(missing)})")
    return result
