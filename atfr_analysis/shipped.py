"""The checkpoints shipped in the package (``atfr_analysis/checkpoints/``): where they are, what
they were trained on, and their model card (``MODEL_CARD.md``, written from the records the
checkpoints carry).

``slow_tiny_stage1`` (stage 1, from scratch), ``slow_tiny`` (the baseline, stage 2) and
``slow_tiny_atfr`` (SGS after res2, stage 2), trained on the train split of the demo's synthetic
data set (``TRAINING_DATA``; ``atfr_analysis.demo.demo_data``).
"""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path, PurePath

__all__ = [
    "CHECKPOINT_DIR",
    "TRAINING_DATA",
    "STAGE1",
    "BASELINE",
    "ATFR",
    "DATA_ROOT",
    "REBUILD_COMMAND",
    "checkpoint_path",
    "portable_command",
    "readme_recipe",
    "README_RECIPE_BEGIN",
    "README_RECIPE_END",
    "training_command",
    "write_model_card",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: the synthetic data set (``SyntheticConfig`` fields) whose train split the checkpoints were trained on
TRAINING_DATA = {
    "seed": 0,
    "frames": 16,
    "size": 72,
    "clips_per_class_train": 160,
    "clips_per_class_test": 20,
}
#: the shipped models, by registry name (their files: ``<name>.pyth``)
STAGE1, BASELINE, ATFR = "slow_tiny_stage1", "slow_tiny", "slow_tiny_atfr"
#: the heading of each model's section in the model card, by role
_ROLE_TITLES = {
    "stage 1": "stage 1, from scratch",
    "baseline": "baseline, stage 2",
    "atfr": "with SGS after res2, stage 2",
}


#: where the card's commands keep the train split: ``demo_data(DATA_ROOT, train=True)`` writes it to
#: ``DATA_ROOT/<its folder name>``, relative to the folder the commands run in
DATA_ROOT = "demo-data"
#: the command that rebuilds the train split the checkpoints were trained on (deterministic for its seed)
REBUILD_COMMAND = f"python -c \"from atfr_analysis.demo import demo_data; demo_data('{DATA_ROOT}', train=True)\""
#: the options of ``atfr train`` whose value is a path
_PATH_OPTIONS = ("--data", "--labels", "--val", "--data-root", "--init-from", "--out", "--tensorboard")


def checkpoint_path(model: str) -> Path:
    """The shipped checkpoint file of ``model``."""
    return CHECKPOINT_DIR / f"{model}.pyth"


def _data_folder() -> str:
    from atfr_analysis.data.synthetic import SyntheticConfig, folder_name

    return folder_name(SyntheticConfig(**TRAINING_DATA))


def _portable_path(path: str, data_folder: str) -> str:
    """A path in the train split's folder: the same file under ``DATA_ROOT``; any other (a
    checkpoint one stage writes and the next reads): its file name, in the folder the commands run in."""
    parts = PurePath(path).parts
    if data_folder in parts:
        return "/".join((DATA_ROOT,) + parts[parts.index(data_folder) :])
    return PurePath(path).name


def portable_command(command: list[str]) -> list[str]:
    """A recorded training command as it runs on any machine: its paths rewritten by
    :func:`_portable_path` (run in one folder, after :data:`REBUILD_COMMAND`, stage by stage)."""
    folder, out = _data_folder(), []
    for i, arg in enumerate(command):
        opt, eq, value = arg.partition("=")
        if i and command[i - 1] in _PATH_OPTIONS:
            arg = _portable_path(arg, folder)
        elif eq and opt in _PATH_OPTIONS:
            arg = f"{opt}={_portable_path(value, folder)}"
        out.append(arg)
    return out


def _record(name: str) -> dict:
    from atfr_analysis.checkpoint import load_checkpoint

    return (load_checkpoint(checkpoint_path(name)).cfg or {}).get("ATFR_ANALYSIS", {})


def training_command(name: str) -> str:
    """The shipped checkpoint ``name``'s training command, portable (:func:`portable_command`), as one line."""
    return shlex.join(portable_command(_record(name).get("command", [])))


def _short(v: float) -> str:
    """1e-4 as the commands write it (not 0.0001); 0.1 as 0.1."""
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}".replace("e-0", "e-")


README_RECIPE_BEGIN = (
    "<!-- recipe: generated from the shipped checkpoints' records by atfr_analysis.shipped.readme_recipe; "
    "tests/test_model_card.py checks it -->"
)
README_RECIPE_END = "<!-- /recipe -->"


def readme_recipe() -> str:
    """docs/training.md's "Reference recipes" paragraph: the official recipe (``OFFICIAL_RECIPE``) and the
    demo ATFR model's training options, from its checkpoint's record (those the model card quotes)."""
    from atfr_analysis.train.recipe import OFFICIAL_RECIPE as r

    args = portable_command(_record(ATFR).get("command", []))
    keep, skip = [], {"--data", "--labels", "--out"}
    for i, a in enumerate(args[3:], 3):  # atfr train MODEL ...
        if a not in skip and args[i - 1] not in skip and a != "--quiet":
            keep.append(a)
    text = (
        f"Reference recipes. The official ATFR code trains from scratch: lr {r['lr_per_64_clips']:g} per 64 clips, "
        f"{r['epochs']} epochs with {r['warmup_epochs']} warm-up epochs, {r['lr_policy']}, weight decay "
        f"{_short(r['weight_decay'])}, momentum {r['momentum']:g}, dropout {r['dropout']:g} "
        f"(`atfr_analysis.train.OFFICIAL_RECIPE`). The demo's `{ATFR}` was fine-tuned from `{STAGE1}` (stage 1, "
        f"trained from scratch) with `{shlex.join(keep)}` (its model card, `atfr_analysis/checkpoints/MODEL_CARD.md`, "
        "has every stage's command, runnable on any machine)."
    )
    body = textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False)
    return f"{README_RECIPE_BEGIN}\n{body}\n{README_RECIPE_END}\n"


def _stage_numbers(rec: dict) -> dict:
    """Per-stage numbers of a checkpoint's record (``None`` where the record has none)."""
    val = rec.get("val_acc") or []
    return {
        "final_train_loss": rec.get("final_train_loss"),
        "final_train_acc": rec.get("final_train_acc"),
        "val_acc": val[-1] if val else None,
        "val_videos": rec.get("val_videos"),
        "seconds": rec.get("seconds"),
        "device": rec.get("device"),
    }


def _fmt(v, spec: str, none: str = "not recorded") -> str:
    return none if v is None else format(v, spec)


def write_model_card(path: Path | None = None, test_numbers: dict | None = None) -> Path:
    """``checkpoints/MODEL_CARD.md`` from the records stored in the shipped checkpoints."""
    path = Path(path) if path else CHECKPOINT_DIR / "MODEL_CARD.md"
    data = TRAINING_DATA
    recs = {name: _record(name) for name in (STAGE1, BASELINE, ATFR)}
    lines = [
        "# Model card: the demo's shipped checkpoints",
        "",
        "Three checkpoints of one backbone (`slow_tiny`), trained on the train split of the demo data set",
        f"(`atfr_analysis.data.synthetic`, seed {data['seed']}, {data['frames']} frames, {data['size']} px high, "
        f"{data['clips_per_class_train']} clips per class; the dataset",
        "card is `DATASET_CARD.md` beside this file) with one recipe. Stage 1 trains `slow_tiny` from scratch",
        "(`slow_tiny_stage1.pyth`, shipped too). Stage 2 continues it twice with the same settings: as it is",
        "(`slow_tiny`, the baseline), and with the SGS layer inserted after res2",
        "(`slow_tiny_atfr`, the ATFR model), so that the two differ only in SGS. Each stage's exact settings are",
        "its training command below. PySlowFast checkpoint format (`model_state` + a `cfg` YAML record), weights",
        "stored in fp16 where they fit and loaded back to fp32. The commands below run on any machine, in one",
        "empty folder, in order, after",
        "",
        f"    {REBUILD_COMMAND}",
        "",
        "which rebuilds the train split there (`atfr_analysis.demo.demo_data`, deterministic for its seed:",
        f"`{DATA_ROOT}/{_data_folder()}/`); stage 1 writes the checkpoint that stage 2 reads. The",
        "checkpoints' records keep the paths the commands ran with; the card names them relative to that",
        "folder. The validation top-1 is measured on the centre view of the",
        "videos every stage held out of it (`--val-fraction`, stratified, drawn with the same seed in every",
        "stage, never trained on), never on the test split. Loss: cross-entropy only (as the official ATFR",
        "code). Written from the checkpoints' own records and `atfr demo`'s numbers by",
        "`atfr_analysis.shipped.write_model_card` (`atfr demo --model-card`).",
        "",
        "## Per stage",
        "",
        "| stage | checkpoint | final training loss | final training top-1 (%) | validation top-1 (%) | wall time (s) "
        "| device |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    titles = {STAGE1: "1 (from scratch)", BASELINE: "2, baseline", ATFR: "2, with SGS after res2"}
    for name, rec in recs.items():
        st = _stage_numbers(rec)
        val = _fmt(st["val_acc"], ".1f") + (f" ({st['val_videos']} videos)" if st["val_acc"] is not None else "")
        lines.append(
            f"| {titles[name]} | `{name}` | {_fmt(st['final_train_loss'], '.4f')} | "
            f"{_fmt(st['final_train_acc'], '.1f')} "
            f"| {val} | {_fmt(st['seconds'], '.1f')} | {st['device'] or 'not recorded'} |"
        )
    lb, la = recs[BASELINE].get("final_train_loss"), recs[ATFR].get("final_train_loss")
    if lb and la is not None:
        lines += [
            "",
            f"Final training loss of stage 2: {la:.4f} with SGS, {lb:.4f} without (on augmented clips, dropout "
            "on); the validation and test top-1 compare the two models.",
        ]
    lines.append("")
    for role, name in (("stage 1", STAGE1), ("baseline", BASELINE), ("atfr", ATFR)):
        rec = recs[name]
        tr = rec.get("train", {})
        size = checkpoint_path(name).stat().st_size
        lines += [
            f"## `{name}` ({_ROLE_TITLES[role]})",
            "",
            f"- training command: `{shlex.join(portable_command(rec.get('command', [])))}`",
            f"- seed {tr.get('seed')}, {rec.get('epochs_run')} epochs, {rec.get('steps')} steps, batch "
            f"{tr.get('batch_size')}, "
            f"base lr {tr.get('lr')} (per 64, scaled linearly), weight decay {tr.get('weight_decay')}, "
            f"warm-up {tr.get('warmup_epochs')} epochs + cosine, gradient L2-norm clipping {tr.get('clip_grad')}",
            f"- trained on {rec.get('device')} with torch {rec.get('torch')} in {rec.get('seconds')} s",
            f"- final training loss {_fmt(rec.get('final_train_loss'), '.4f')}, training top-1 "
            f"{_fmt(rec.get('final_train_acc'), '.1f')}% (on augmented clips, dropout on)",
        ]
        if rec.get("val_acc"):
            lines.append(
                "- validation top-1 per epoch (%): "
                + ", ".join(f"{v:.1f}" for v in rec["val_acc"])
                + (f" ({rec['val_videos']} held-out videos)" if rec.get("val_videos") else "")
            )
        elif "val_split" in rec:
            lines.append(
                "- validation: none (trained without `--val-fraction`; a stage that starts from a checkpoint "
                "trained on the whole train split has no unseen part of it to validate on)"
            )
        else:
            lines.append("- validation: none recorded (trained before the trainer held out a validation split)")
        if "failed_videos" in rec:
            lines.append(
                f"- videos: {rec.get('videos_trained')} trained on of {rec.get('videos_listed')} listed; "
                f"{rec['failed_videos']} undecodable, skipped"
            )
        if tr.get("temporal_diff_init"):
            lines.append(
                f"- initialisation: {tr['temporal_diff_init']:g} of each temporal conv's output channels "
                "start as zero-sum (temporal-difference) kernels (`--temporal-diff-init`)"
            )
        lines.append(f"- file: {size / 1e6:.2f} MB")
        pbn = rec.get("precise_bn")
        if pbn:
            lines.append(
                "- BatchNorm statistics recomputed afterwards (precise BN, as "
                f"`atfr_analysis.train.precise_bn` does it) over "
                f"{pbn['batches']} training batches of {pbn['batch_size']}, seed {pbn['seed']}"
            )
        elif tr.get("precise_bn"):
            lines.append(
                f"- BatchNorm statistics recomputed after training over {tr['precise_bn']} training batches (precise "
                f"BN)"
            )
        if tr.get("init_from"):
            lines.append(
                f"- initialised from `{Path(tr['init_from']).name}` when it ran"
                + ("; the SGS layer starts from its official initialisation" if role == "atfr" else "")
            )
        if tr.get("freeze_bn"):
            lines.append("- BatchNorm statistics frozen (eval mode) while training (`--freeze-bn`)")
        if tr.get("precise_bn_first"):
            lines.append(
                f"- BatchNorm statistics recomputed before the first step over {tr['precise_bn_first']} training "
                "batches (`--precise-bn-first`, population statistics)"
                + (", after SGS was inserted" if role == "atfr" else "")
            )
        if role == "atfr":
            lines.append(
                f"- batching after SGS while training: "
                f"{tr.get('batching', 'padded (the official code; before the option existed)')}"
            )
            clamp = tr.get("sgs_grad_clamp")
            if clamp is None:
                how = "official (untouched)"
            elif clamp == 0:
                how = (
                    "no gradient into the SGS embedding (`--sgs-grad-clamp 0`): the embedding keeps its official "
                    "initialisation, the frames get their gradient through the bins' aggregation; the forward is the "
                    "official one"
                )
            else:
                how = (
                    f"gradient into the SGS embedding clamped to [-{clamp:g}, {clamp:g}] "
                    "(`--sgs-grad-clamp`; the forward is the official one)"
                )
            lines.append(f"- SGS backward: {how}")
        lines.append("")
    if test_numbers:
        n = test_numbers
        lines += [
            "## Test split (measured by `atfr demo`)",
            "",
            f"- top-1: baseline {n['top1_baseline']:.1f}%, ATFR {n['top1_atfr']:.1f}%; top-5: "
            f"{n['top5_baseline']:.1f}% / {n['top5_atfr']:.1f}%",
            f"- GFLOPs x views: {n['gmacs_x_views_baseline']:.3f} / {n['gmacs_x_views_atfr']:.3f} "
            f"({n['reduction_pct']:.1f}% less)",
            "- top-1 per class (%), baseline / ATFR: "
            + "; ".join(
                f"`{c}` {n['per_class_top1_baseline'][c]:.1f} / {n['per_class_top1_atfr'][c]:.1f}"
                for c in n["class_order"]
            ),
        ]
        if "other_seed" in n:
            lines.append(
                f"- seed {n['other_seed']}'s test clips ({n['other_seed_videos']} videos no model saw): top-1 "
                f"baseline {n['other_seed_top1_baseline']:.1f}%, ATFR {n['other_seed_top1_atfr']:.1f}%"
            )
        lines.append("")
    path.write_text("\n".join(lines))
    return path
