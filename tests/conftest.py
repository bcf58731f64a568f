"""Shared test fixtures: paths to the golden reference data and small deterministic settings."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread for the tests and the subprocesses they start: the models are tiny, and
# with 2 threads on a busy 2-core machine every small op can stall for milliseconds.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Golden fixtures live in ../shared/fixtures (overridable for other layouts).
FIXTURES = Path(os.environ.get("TSFM_FIXTURES", ROOT.parent / "shared" / "fixtures"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        raise FileNotFoundError(
            f"golden fixtures not found at {FIXTURES}; set TSFM_FIXTURES to the shared/fixtures directory"
        )
    return FIXTURES
