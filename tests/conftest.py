"""Shared fixtures: the ../shared data (real Caffe outputs and the prototxt corpus)."""
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("FILLERS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the checkout (or $FILLERS_SHARED); skips when absent."""
    if not (SHARED / "caffe_vectors").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FILLERS_SHARED to its path)")
    return SHARED
