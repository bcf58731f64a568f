"""Small user data for the fine-tuning tests (the families' tiny checkpoints: tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


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
