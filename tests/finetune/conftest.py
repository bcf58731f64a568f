"""Small user data and tiny checkpoints of every family for the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FAMILY_CKPTS = {"chronos2": "chronos2_tiny/checkpoint", "moirai": "moirai_tiny/checkpoint", "chronos": "chronos_t5/checkpoint"}


def monthly_frame(n_items: int = 6, length: int = 72, seed: int = 0) -> pd.DataFrame:
    """Long frame of noisy monthly seasonal series (item_id, timestamp, target)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        t = np.arange(length)
        y = 50 + 10 * np.sin(2 * np.pi * t / 12 + i) + 0.2 * t + rng.normal(0, 1.0, length)
        rows.append(pd.DataFrame({"item_id": f"s{i}", "timestamp": pd.date_range("2015-01-01", periods=length,
                                                                                   freq="MS"), "target": y}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def frame() -> pd.DataFrame:
    return monthly_frame()


@pytest.fixture(scope="session")
def baseline_ckpt(tmp_path_factory) -> Path:
    """A tiny decoder baseline export (the family has no golden fixture directory)."""
    from tsfm.models.baseline.module import BaselineModule

    out = tmp_path_factory.mktemp("baseline") / "export"
    BaselineModule(config=dict(architecture="decoder", d_model=32, num_layers=2, num_heads=4, patch_size=8,
                               context_length=32, prediction_length=16)).save_pretrained(out)
    return out


@pytest.fixture
def family_ckpt(request, fixtures_dir, baseline_ckpt) -> Path:
    family = request.param
    return baseline_ckpt if family == "baseline" else fixtures_dir / FAMILY_CKPTS[family]
