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
