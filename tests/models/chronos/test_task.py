"""ChronosTask: windows, missing-value augmentation, tokenised batches with ignored labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsfm.data.types import Series, TaskBuilder
from tsfm.models.chronos.task import ChronosTask


def _series(t: int, v: int = 1, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    return Series(target=(rng.normal(size=(v, t)).cumsum(-1) + 10).astype(np.float32), freq="h", item_id="x")


def test_is_a_task_builder_and_skips_short_series():
    task = ChronosTask(context_length=32, prediction_length=8, min_past=8)
    assert isinstance(task, TaskBuilder) and task.min_length == 16
    assert task(_series(15), np.random.default_rng(0)) is None
    assert task(_series(16), np.random.default_rng(0)) is not None


def test_window_is_contiguous_and_left_padded():
    task = ChronosTask(context_length=32, prediction_length=8, min_past=4, drop_prob=0.0)
    s = _series(20)
    x = s.target[0]
    for seed in range(20):
        out = task(s, np.random.default_rng(seed))
        ctx, fut = out["context"], out["future"]
        assert ctx.shape == (32,) and fut.shape == (8,)
        n = int((~np.isnan(ctx)).sum())
        assert 4 <= n <= 12 and np.isnan(ctx[: 32 - n]).all()
        window = np.concatenate([ctx[32 - n :], fut])
        # the observed context starts at the beginning of this short series, the future follows it
        np.testing.assert_array_equal(window, x[: n + 8])


def test_long_series_context_is_full_and_last_window_is_deterministic():
    task = ChronosTask(context_length=16, prediction_length=4, min_past=4, drop_prob=0.0, last_window=True)
    s = _series(100)
    a, b = task(s, np.random.default_rng(0)), task(s, np.random.default_rng(1))
    np.testing.assert_array_equal(a["context"], s.target[0, 80:96])
    np.testing.assert_array_equal(a["future"], s.target[0, 96:])
    np.testing.assert_array_equal(a["context"], b["context"])


def test_missing_value_augmentation_rate():
    task = ChronosTask(context_length=256, prediction_length=64, min_past=256, drop_prob=0.2)  # no padding
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(200):
        out = task(_series(400), rng)
        rates.append(np.isnan(np.concatenate([out["context"], out["future"]])).mean())
    rates = np.array(rates)
    assert 0.07 < rates.mean() < 0.13  # p ~ U(0, 0.2) -> mean 0.1
    assert rates.max() < 0.3 and rates.min() < 0.02


def test_multivariate_picks_one_variate_with_the_rng():
    task = ChronosTask(context_length=16, prediction_length=4, min_past=4, drop_prob=0.0, last_window=True)
    s = Series(target=np.stack([np.full(30, float(i + 1), np.float32) for i in range(3)]), freq="D")
    picked = {float(task(s, np.random.default_rng(seed))["future"][0]) for seed in range(30)}
    assert picked == {1.0, 2.0, 3.0}
    a = task(s, np.random.default_rng(7))["future"][0]
    assert a == task(s, np.random.default_rng(7))["future"][0]


def test_collate_tokenises_and_ignores_missing_labels():
    task = ChronosTask(context_length=16, prediction_length=4, min_past=4, drop_prob=0.0, last_window=True)
    samples = [task(_series(40, seed=i), np.random.default_rng(i)) for i in range(3)]
    samples[1]["future"][2] = np.nan
    batch = task.collate(samples)
    assert batch["input_ids"].shape == (3, 17) and batch["attention_mask"].dtype == torch.bool
    assert batch["labels"].shape == (3, 5)
    assert batch["labels"][1, 2] == -100 and (batch["labels"][:, -1] == 1).all()  # EOS kept in the loss
    assert (batch["labels"][[0, 2], :-1] >= 2).all()
    with pytest.raises(ValueError, match="no samples"):
        task.collate([])


def test_bad_options():
    with pytest.raises(ValueError, match="min_past"):
        ChronosTask(context_length=16, min_past=32)
    with pytest.raises(ValueError, match="drop_prob"):
        ChronosTask(drop_prob=1.5)
