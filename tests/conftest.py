import os
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker: CI runs `pytest -n 2` on 2 cores
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def _private_cost_cache(tmp_path_factory):
    """The CLI keeps counted costs in the user cache: tests use a private one, never the home folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ATFR_CACHE_DIR", str(tmp_path_factory.mktemp("atfr-cache")))
    yield
    mp.undo()
