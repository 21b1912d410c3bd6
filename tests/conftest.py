"""Shared fixtures: the ../shared data (real Caffe outputs and the prototxt corpus)."""
import csv
import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests are deterministic: the same examples on every run and machine (set HYPOTHESIS_PROFILE=explore
# for fresh random examples while developing).
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

SHARED = Path(os.environ.get("FILLERS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the checkout (or $FILLERS_SHARED); skips when absent."""
    if not (SHARED / "caffe_vectors").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FILLERS_SHARED to its path)")
    return SHARED


def corpus_rows() -> list[dict]:
    """Rows of ../shared/corpus/MANIFEST.tsv (empty when the corpus is absent)."""
    manifest = SHARED / "corpus" / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


CORPUS_FIXTURES = {"corpus_net": {"v0", "v1", "v2", "mixed"}, "corpus_solver": {"solver"}}


def pytest_generate_tests(metafunc):
    """Parametrize ``corpus_net`` / ``corpus_solver`` (paths) over the shared corpus."""
    for name, formats in CORPUS_FIXTURES.items():
        if name not in metafunc.fixturenames:
            continue
        params = [pytest.param(SHARED / "corpus" / row["file"], id=Path(row["file"]).name)
                  for row in corpus_rows() if row["format"] in formats]
        if not params:
            params = [pytest.param(None, marks=pytest.mark.skip(
                reason=f"prototxt corpus not found at {SHARED / 'corpus'} (set FILLERS_SHARED)"))]
        metafunc.parametrize(name, params)
