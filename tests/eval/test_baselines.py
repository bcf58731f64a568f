"""statsforecast baselines: quantile layout, fallbacks, missing values and the disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.eval.baselines import StatsBaseline, cached_predict

LEVELS = [0.1, 0.5, 0.9]


def test_seasonal_naive_repeats_last_season() -> None:
    y = np.tile(np.arange(4, dtype=np.float32), 5) + 10  # period 4
    q = StatsBaseline("seasonal_naive").predict_quantiles([y], 6, LEVELS, season_length=4)
    assert q.shape == (1, 6, 3)
    np.testing.assert_allclose(q[0, :, 1], [10, 11, 12, 13, 10, 11])
    assert (q[0, :, 0] <= q[0, :, 1]).all() and (q[0, :, 1] <= q[0, :, 2]).all()


def test_max_context_is_respected() -> None:
    y = np.concatenate([np.full(100, 1000.0), np.arange(10.0)]).astype(np.float32)
    q_cut = StatsBaseline("auto_ets", max_context=10).predict_quantiles([y], 3, LEVELS)
    assert np.abs(q_cut[0, :, 1]).max() < 50  # the 1000s before the last 10 points are not seen


def test_fallback_on_tiny_series_is_counted_and_finite() -> None:
    b = StatsBaseline("auto_ets")
    q = b.predict_quantiles([np.array([1.0, 2.0, 4.0, 3.0], np.float32)], 3, LEVELS, season_length=12)
    assert np.isfinite(q).all() and b.fallbacks == 1


def test_missing_values_filled_and_multivariate_shape() -> None:
    y = np.array([[np.nan, 1, 2, np.nan, 4, 5, 6, 7], [3, 3, 3, 3, 3, 3, 3, np.nan]], np.float32)
    q = StatsBaseline("naive").predict_quantiles([y], 2, LEVELS)
    assert q.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(q[0, :, :, 1], [[7, 7], [3, 3]])
    from tsfm.eval.baselines import _fill

    np.testing.assert_array_equal(_fill(np.array([np.nan, np.nan, 1.0, np.nan, 3.0])), [1.0, 1.0, 3.0])


def test_unknown_baseline() -> None:
    with pytest.raises(ValueError, match="unknown baseline 'ets'"):
        StatsBaseline("ets")


def test_cache_is_reused_and_keyed_on_content(tmp_path) -> None:
    ctx = [np.arange(30, dtype=np.float32)[None] % 7]
    b = StatsBaseline("auto_theta")
    q1, hit1, fb1 = cached_predict(b, ctx, 4, LEVELS, 7, tmp_path, "ds")
    q2, hit2, fb2 = cached_predict(b, ctx, 4, LEVELS, 7, tmp_path, "ds")
    assert fb1 == fb2 == 0
    assert (hit1, hit2) == (False, True) and q1.shape == (1, 1, 4, 3)
    np.testing.assert_array_equal(q1, q2)
    ctx2 = [ctx[0] + 1]
    _, hit3, _ = cached_predict(b, ctx2, 4, LEVELS, 7, tmp_path, "ds")
    assert not hit3 and len(list(tmp_path.glob("ds__auto_theta__*.npz"))) == 2


def test_parallel_equals_sequential() -> None:
    rng = np.random.default_rng(0)
    ctx = [rng.normal(size=(1, int(n))).astype(np.float32).cumsum(-1) for n in rng.integers(20, 60, 9)]
    seq = StatsBaseline("auto_theta").predict_quantiles(ctx, 4, LEVELS, season_length=4)
    par = StatsBaseline("auto_theta", n_jobs=2).predict_quantiles(ctx, 4, LEVELS, season_length=4)
    np.testing.assert_array_equal(seq, par)


def test_fallbacks_are_cached_and_reported(tmp_path) -> None:
    ctx = [np.array([[1.0, 2.0, 4.0]], np.float32), np.arange(40, dtype=np.float32)[None] % 5]
    _, _, fb = cached_predict(StatsBaseline("auto_ets"), ctx, 2, LEVELS, 12, tmp_path, "ds")
    _, hit, fb_cached = cached_predict(StatsBaseline("auto_ets"), ctx, 2, LEVELS, 12, tmp_path, "ds")
    assert fb == fb_cached == 1 and hit


def test_baseline_quantiles_never_cross() -> None:
    """AutoTheta on exactly one season of history gives an upper interval below its mean."""
    b = StatsBaseline("auto_theta")
    levels = [0.9, 0.1, 0.5]  # any order: values follow the levels
    q = b.predict_quantiles([np.arange(12.0)], 3, levels, season_length=12)[0]  # [H, Q]
    assert np.all(q[:, 1] <= q[:, 2]) and np.all(q[:, 2] <= q[:, 0])
