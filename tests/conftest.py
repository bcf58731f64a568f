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
# Golden fixtures: tests/fixtures (see its README); TSFM_FIXTURES points elsewhere (e.g. new fixtures).
FIXTURES = Path(os.environ.get("TSFM_FIXTURES", ROOT / "tests" / "fixtures"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        raise FileNotFoundError(
            f"golden fixtures not found at {FIXTURES}; restore tests/fixtures from git or set TSFM_FIXTURES"
        )
    return FIXTURES
