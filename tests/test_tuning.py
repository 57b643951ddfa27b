"""The inference settings ``profile`` and ``bench`` share (``atfr_analysis.tuning``), the device
defaults of ``ProfileConfig``, and the normalisation on the model's device."""

import torch

from atfr_analysis.data.transforms import normalize, normalize_views
from atfr_analysis.models import build_model
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.tuning import (
    CPU_BATCH_SIZE,
    CUDA_BATCH_SIZE,
    HeapRelease,
    configure_inference,
    default_batch_size,
    default_workers,
    local_cores,
)


def test_default_batch_size_and_workers_follow_the_device_and_the_local_rank():
    assert (
        default_batch_size("cpu") == CPU_BATCH_SIZE == 1
        and default_batch_size(torch.device("cuda:1")) == CUDA_BATCH_SIZE
    )
    assert default_workers("cpu", {}, cores=2) == 0 and default_workers("cpu", {}, cores=64) == 0
    assert default_workers("cuda", {}, cores=16) == 8  # at most 8
    assert default_workers("cuda", {"LOCAL_WORLD_SIZE": "8"}, cores=16) == 1  # 2 cores a rank, one for the main process
    assert default_workers("cuda", {"LOCAL_WORLD_SIZE": "4"}, cores=16) == 3
    assert (
        local_cores({"LOCAL_WORLD_SIZE": "32"}, cores=16) == 1 and local_cores({"LOCAL_WORLD_SIZE": "x"}, cores=6) == 6
    )


def test_profile_config_leaves_batch_and_workers_to_the_device_unless_asked():
    cfg = ProfileConfig("c.pyth", "x3d_xs_atfr", "v.txt", "out")
    assert cfg.batch_size is None and cfg.workers is None and "--batch-size" not in cfg.command_line()
    cpu = cfg.for_device(torch.device("cpu"))
    assert cpu.batch_size == 1 and cpu.workers == default_workers("cpu")
    asked = cfg.replace(batch_size=8, workers=0).for_device(torch.device("cpu"))
    assert (asked.batch_size, asked.workers) == (8, 0)
    line = cfg.replace(cuda_graphs=False).command_line()
    assert "--no-cuda-graphs" in line and "--cudnn-benchmark" not in line


def test_configure_inference_touches_cuda_settings_only_on_cuda():
    model = build_model("x3d_xs_atfr")
    before = torch.backends.cudnn.benchmark
    got = configure_inference(model, "cpu", cuda_graphs=True, cudnn_benchmark=not before)
    assert got == {"cuda_graphs": False, "cudnn_benchmark": None}
    assert model.exact_cuda_graphs is False and torch.backends.cudnn.benchmark == before


def test_heap_release_runs_at_most_once_per_interval():
    heap = HeapRelease("cpu", min_interval=3600.0)
    if not heap.active:  # no glibc here: a no-op
        assert heap.after_video(force=True) is False
        return
    assert heap.after_video() is False  # the interval has not passed
    assert heap.after_video(force=True) is True and heap.stats["calls"] == 1
    assert heap.after_video() is False and heap.stats["calls"] == 1
    assert not HeapRelease("cuda").active and not HeapRelease("cpu", enabled=False).active


def test_normalisation_on_the_device_is_in_place_and_bit_identical():
    x = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    ref = (x.float() / 255.0 - torch.full((1, 3, 1, 1, 1), 0.45)) / torch.full((1, 3, 1, 1, 1), 0.225)
    assert torch.equal(normalize(x, channel_dim=1), ref)
    f = x.float()
    assert torch.equal(normalize(f, channel_dim=1), ref) and torch.equal(f, x.float())  # the input is left alone
    # another device than the host's: mean and std go there too (this failed for CUDA before)
    (y,) = normalize_views([x], device="meta")
    assert y.device.type == "meta" and y.dtype == torch.float32 and y.shape == x.shape


def test_decoders_yield_to_the_model_on_the_cpu_only():
    import functools
    import multiprocessing as mp
    import pickle

    from atfr_analysis.tuning import DECODER_NICENESS_CPU, decoder_niceness, lower_priority

    assert decoder_niceness("cpu") == DECODER_NICENESS_CPU > 0 and decoder_niceness("cuda") == 0
    init = pickle.loads(pickle.dumps(functools.partial(lower_priority, 3)))  # a forkserver worker gets it pickled
    ctx = mp.get_context("forkserver")
    with ctx.Pool(1) as pool:
        before, after = pool.apply(_niceness_after, (init,))
    assert after == before + 3


def _niceness_after(init):
    import os

    before = os.nice(0)
    init(0)
    return before, os.nice(0)
