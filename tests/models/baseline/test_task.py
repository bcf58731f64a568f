"""BaselineTask: patch-aligned windows, skips, collation and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsfm.data.types import Series, TaskBuilder
from tsfm.models.baseline.task import BaselineTask


def test_windows_are_contiguous_slices_of_one_variate():
    task = BaselineTask(context_length=32, prediction_length=16, patch_size=8)
    assert isinstance(task, TaskBuilder) and task.min_length == 48 and task.tokens_per_sample == 6
    target = np.stack([np.arange(100, dtype=np.float32), 1000 + np.arange(100, dtype=np.float32)])  # [2, 100]
    rng = np.random.default_rng(0)
    samples = [task(Series(target, "h"), rng) for _ in range(20)]
    batch = task.collate(samples)
    assert batch["past_target"].shape == (20, 32) and batch["future_target"].shape == (20, 16)
    window = torch.cat([batch["past_target"], batch["future_target"]], 1)  # [B, 48]
    assert torch.all(torch.diff(window, dim=1) == 1)  # consecutive steps of a single variate
    assert {int(w[0] >= 1000) for w in window} == {0, 1}  # both variates get drawn


def test_short_or_unobserved_series_give_none():
    task = BaselineTask(context_length=32, prediction_length=16, patch_size=8)
    rng = np.random.default_rng(0)
    assert task(Series(np.zeros((1, 40), np.float32), "h"), rng) is None
    x = np.full((1, 48), np.nan, np.float32)
    x[0, 40:] = 1.0  # observed only in the horizon
    assert task(Series(x, "h"), rng) is None


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(context_length=30), "context_length=30 must be a positive multiple of patch_size=8"),
        (dict(prediction_length=0), "prediction_length=0 must be a positive multiple"),
        (dict(patch_size=0), "patch_size=0 must be positive"),
    ],
)
def test_bad_lengths_are_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        BaselineTask(**{**dict(context_length=32, prediction_length=16, patch_size=8), **kw})


def test_collate_rejects_an_empty_list():
    with pytest.raises(ValueError, match="no samples"):
        BaselineTask(32, 16, 8).collate([])
