"""Chronos2Task: group samples with covariates, random cut points, collation."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.data.types import Series, TaskBuilder
from tsfm.models.chronos2.task import Chronos2Task


def _series(v=1, c=0, t=200, seed=0):
    rng = np.random.default_rng(seed)
    covs = rng.standard_normal((c, t)).astype(np.float32) if c else None
    return Series(rng.standard_normal((v, t)).astype(np.float32), "D", item_id=f"s{seed}", past_feat_dynamic_real=covs)


def test_univariate_sample_is_a_singleton_group():
    task = Chronos2Task(context_length=64, prediction_length=20, min_past=10)
    assert isinstance(task, TaskBuilder) and task.min_length == 30 and task.num_output_patches == 2
    s = _series(t=200)
    sample = task(s, np.random.default_rng(0))
    ctx, fut = sample["context"], sample["future_target"]
    assert ctx.shape[0] == 1 and 10 <= ctx.shape[1] <= 64 and fut.shape == (1, 20)
    # context and future are contiguous windows of the series at one cut point
    row = s.target[0]
    start = int(np.flatnonzero(np.isclose(row, fut[0, 0]))[0])
    np.testing.assert_array_equal(row[start - ctx.shape[1] : start], ctx[0])
    assert np.isnan(sample["future_covariates"]).all()


def test_covariates_past_only_and_known():
    s = _series(v=2, c=3)
    past = Chronos2Task(64, 16, known_covariate_prob=0.0)(s, np.random.default_rng(1))
    assert past["context"].shape[0] == 5 and past["n_targets"] == 2
    assert np.isnan(past["future_target"][2:]).all() and np.isfinite(past["future_target"][:2]).all()
    assert np.isnan(past["future_covariates"]).all()
    known = Chronos2Task(64, 16, known_covariate_prob=1.0)(s, np.random.default_rng(1))
    assert np.isfinite(known["future_covariates"][2:]).all() and np.isnan(known["future_covariates"][:2]).all()


def test_group_cap_and_too_short_series():
    task = Chronos2Task(64, 16, max_group_size=3)
    sample = task(_series(v=2, c=5), np.random.default_rng(0))
    assert sample["context"].shape[0] == 3 and sample["n_targets"] == 2
    assert task(_series(t=20), np.random.default_rng(0)) is None  # 20 < min_past 16 + 16


def test_random_cut_is_reproducible_and_varies():
    task = Chronos2Task(32, 8, min_past=8)
    s = _series(t=300)
    a = task(s, np.random.default_rng(5))["future_target"]
    b = task(s, np.random.default_rng(5))["future_target"]
    np.testing.assert_array_equal(a, b)
    firsts = {float(task(s, np.random.default_rng(i))["future_target"][0, 0]) for i in range(10)}
    assert len(firsts) > 5


def test_collate_left_pads_and_numbers_groups():
    task = Chronos2Task(64, 16, min_past=4, known_covariate_prob=1.0)
    samples = [task(_series(t=30, seed=0), np.random.default_rng(0)), task(_series(v=2, c=1, t=200, seed=1), np.random.default_rng(0))]
    batch = task.collate(samples)
    assert batch["context"].shape[0] == 4 and batch["group_ids"].tolist() == [0, 1, 1, 1]
    assert batch["future_target"].shape == (4, 16)
    n0 = samples[0]["context"].shape[1]
    assert np.isnan(batch["context"][0, : batch["context"].shape[1] - n0].numpy()).all()


def test_bad_series_and_options():
    with pytest.raises(ValueError, match="past_feat_dynamic_real has shape"):
        bad = Series(np.zeros((1, 50), np.float32), "D", item_id="x", past_feat_dynamic_real=np.zeros((1, 49), np.float32))
        Chronos2Task(32, 8)(bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match="known_covariate_prob must be in"):
        Chronos2Task(known_covariate_prob=2.0)
    with pytest.raises(ValueError, match="empty list"):
        Chronos2Task().collate([])


def test_min_future_admits_short_series_with_a_nan_padded_future():
    task = Chronos2Task(context_length=64, prediction_length=32, min_past=8, min_future=1)
    assert task.min_length == 9
    s = _series(t=20)
    cuts = set()
    for i in range(40):
        sample = task(s, np.random.default_rng(i))
        ctx, fut = sample["context"], sample["future_target"]
        assert fut.shape == (1, 32) and ctx.shape[1] >= 8
        observed = int(np.isfinite(fut).sum())
        assert observed == 20 - ctx.shape[1] >= 1  # the rest of the series, then NaN (masked in the loss)
        assert np.isnan(fut[0, observed:]).all()
        np.testing.assert_array_equal(fut[0, :observed], s.target[0, ctx.shape[1]:])
        cuts.add(ctx.shape[1])
    assert len(cuts) > 5
    with pytest.raises(ValueError, match=r"min_future must be in \[1, prediction_length=32\]"):
        Chronos2Task(64, 32, min_future=40)


def test_long_context_prob_draws_full_contexts_with_an_observed_horizon():
    long_series, short_series = _series(t=300), _series(t=50, seed=1)
    task = Chronos2Task(context_length=64, prediction_length=16, min_past=8, min_future=1, long_context_prob=1.0)
    for i in range(30):
        s = task(long_series, np.random.default_rng(i))  # a full 64-point window, anywhere its horizon fits
        assert s["context"].shape[1] == 64 and np.isfinite(s["future_target"]).all()
        s = task(short_series, np.random.default_rng(i))  # the whole history before the last 16 points
        assert s["context"].shape[1] == 34 and np.isfinite(s["future_target"]).all()
    uniform, mixed = Chronos2Task(64, 16, min_past=8), Chronos2Task(64, 16, min_past=8, long_context_prob=0.5)
    medium = _series(t=100, seed=2)
    mean_ctx = [np.mean([t(medium, np.random.default_rng(i))["context"].shape[1] for i in range(400)])
                for t in (uniform, mixed)]
    assert mean_ctx[0] < 48 and mean_ctx[1] > mean_ctx[0] + 6  # half the draws are full windows
    # the default draws no extra random number: runs of earlier versions keep their data stream
    a = uniform(long_series, np.random.default_rng(3))["future_target"]
    np.testing.assert_array_equal(a, Chronos2Task(64, 16, min_past=8, long_context_prob=0.0)(long_series, np.random.default_rng(3))["future_target"])
    with pytest.raises(ValueError, match="long_context_prob must be in"):
        Chronos2Task(long_context_prob=1.5)


@pytest.mark.parametrize(
    "opts",
    [{}, {"min_future": 4}, {"long_context_prob": 0.5}, {"min_future": 1, "long_context_prob": 0.3, "min_past": 3}],
)
def test_univariate_shortcut_gives_the_general_paths_samples_and_draws(opts):
    """The univariate shortcut (most of the synthetic corpus) must not change a single sample or random draw:
    series long and short, with missing values, all-missing ones rejected the same way."""
    fast = Chronos2Task(context_length=48, prediction_length=12, **opts)
    slow = Chronos2Task(context_length=48, prediction_length=12, **opts)
    slow.fast_univariate = False
    data = np.random.default_rng(7)
    for i in range(300):
        t = int(data.integers(5, 150))
        y = data.standard_normal((1, t)).astype(np.float32)
        if i % 3 == 0:
            y[0, data.random(t) < 0.6] = np.nan
        if i % 50 == 0:
            y[:] = np.nan
        s = Series(y, "M", item_id=f"u{i}")
        rf, rs = np.random.default_rng(i), np.random.default_rng(i)
        a, b = fast(s, rf), slow(s, rs)
        assert (a is None) == (b is None), i
        if a is not None:
            assert a.keys() == b.keys() and a["n_targets"] == b["n_targets"] == 1
            for k in ("context", "future_target", "future_covariates"):
                assert a[k].dtype == b[k].dtype == np.float32
                np.testing.assert_array_equal(a[k], b[k])
            assert not np.shares_memory(a["context"], y)  # a copy: the corpus pages may be released
        assert rf.random() == rs.random()  # the same number of draws
