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


# The golden fixture checkpoint directory of each family that has one (tests/fixtures/README.md)
FAMILY_FIXTURES = {"chronos2": "chronos2_tiny/checkpoint", "moirai": "moirai_tiny/checkpoint",
                   "chronos": "chronos_t5/checkpoint"}


@pytest.fixture(scope="session")
def baseline_export(tmp_path_factory) -> Path:
    """A tiny decoder baseline export (the baseline family has no golden fixture directory)."""
    from tsfm.models.baseline.module import BaselineModule

    out = tmp_path_factory.mktemp("baseline") / "export"
    BaselineModule(config=dict(architecture="decoder", d_model=32, num_layers=2, num_heads=4, patch_size=8,
                               context_length=32, prediction_length=16)).save_pretrained(out)
    return out


@pytest.fixture
def family_ckpt(request, fixtures_dir, baseline_export) -> Path:
    """A checkpoint directory of the family named by the test's parameter (``indirect=True``)."""
    family = request.param
    return baseline_export if family == "baseline" else fixtures_dir / FAMILY_FIXTURES[family]
