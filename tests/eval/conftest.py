"""Shared helpers of the evaluation tests: a tiny fake Forecaster and a tiny offline suite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import norm

from tsfm.forecast import Forecaster, ForecastInput


class LastValueForecaster(Forecaster):
    """Last observed value as the median, Gaussian spread from the context's std (deterministic)."""

    family = "fake"

    def __init__(self, nan_every: int = 0) -> None:
        super().__init__(torch.nn.Identity())
        self.nan_every = nan_every  # every k-th series gets a NaN forecast (bad-input tests)
        self.calls = 0

    @classmethod
    def from_pretrained(cls, path, **kwargs):  # pragma: no cover - not loaded from disk
        return cls()

    @classmethod
    def from_checkpoint(cls, ckpt, **kwargs):  # pragma: no cover
        return cls()

    def _quantiles(self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float],
                   **kw: Any) -> list[np.ndarray]:
        self.calls += 1
        z = norm.ppf(np.asarray(quantile_levels))  # [Q]
        out = []
        for i, t in enumerate(inputs.targets):  # [V, T]
            last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else 0.0 for row in t])
            sd = np.nan_to_num(np.nanstd(t, axis=-1)) + 1e-3
            q = last[:, None, None] + sd[:, None, None] * z[None, None, :] * np.ones((1, prediction_length, 1))
            if self.nan_every and i % self.nan_every == 0:
                q[:] = np.nan
            out.append(q.astype(np.float32))  # [V, H, Q]
        return out


@pytest.fixture
def fake_forecaster() -> LastValueForecaster:
    return LastValueForecaster()


def tiny_suite(**over: Any) -> dict:
    """Two packaged datasets, 6 series each: fast enough for the default test run."""
    suite = {
        "name": "tiny",
        "quantile_levels": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "metrics": ["wql", "mase"],
        "baselines": ["seasonal_naive"],
        "reference": "seasonal_naive",
        "max_context": 2500,
        "max_series": 6,
        "data_dir": None,
        "datasets": [
            {"name": "m3_yearly", "source": "packaged", "freq": "YS", "prediction_length": 6},
            {"name": "us_gasoline", "source": "packaged", "freq": "W-MON", "prediction_length": 13, "num_windows": 3},
        ],
    }
    suite.update(over)
    return suite
