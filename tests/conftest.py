"""Shared test fixtures: paths to the golden reference data and small deterministic settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Golden fixtures live in ../shared/fixtures (overridable for other layouts).
FIXTURES = Path(os.environ.get("TSFM_FIXTURES", ROOT.parent / "shared" / "fixtures"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        raise FileNotFoundError(
            f"golden fixtures not found at {FIXTURES}; set TSFM_FIXTURES to the shared/fixtures directory"
        )
    return FIXTURES
