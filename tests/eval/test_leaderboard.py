"""Leaderboard statistics: skill score with clipping, win rates, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsfm.eval.leaderboard import bootstrap_ci, gmean_clipped, leaderboard, skill_score, win_rates


def test_skill_score_is_one_minus_the_clipped_geometric_mean():
    assert skill_score([0.5, 2.0]) == pytest.approx(0.0)
    assert skill_score([0.8, 0.8, 0.8]) == pytest.approx(0.2)
    # a degenerate dataset (relative error 1e-6 or 1e6) counts as 0.01 / 100, not more
    assert gmean_clipped([1e-6, 1.0]) == pytest.approx(math.sqrt(0.01))
    assert gmean_clipped([1e6, 1.0]) == pytest.approx(math.sqrt(100.0))
    assert gmean_clipped([1.0, float("nan"), None, float("inf")]) == pytest.approx(1.0)  # non-finite left out
    assert math.isnan(skill_score([]))


def test_win_rates_count_ties_as_halves_over_common_datasets():
    scores = {"a": {"d1": 0.5, "d2": 1.0, "d3": 2.0}, "b": {"d1": 1.0, "d2": 1.0, "d3": 1.0}, "c": {"d1": 3.0}}
    overall, pair = win_rates(scores)
    assert pair["a"]["b"] == pytest.approx((1 + 0.5 + 0) / 3) and pair["b"]["a"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert pair["a"]["c"] == 1.0 and pair["c"]["b"] == 0.0  # only d1 in common
    assert overall["a"] == pytest.approx((0.5 + 1.0) / 2)


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_datasets():
    rng = np.random.default_rng(0)
    few, many = np.exp(rng.normal(-0.1, 0.3, 8)), np.exp(rng.normal(-0.1, 0.3, 200))
    lo, hi = bootstrap_ci(few)
    assert lo < gmean_clipped(few) < hi
    lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci(few, seed=1) != (lo, hi) and bootstrap_ci(few) == (lo, hi)  # seeded: reproducible
    assert all(math.isnan(v) for v in bootstrap_ci([0.9]))


def test_leaderboard_rows_hold_skill_intervals_and_win_rates():
    rel = {"model": {"wql": {"a": 0.8, "b": 0.9, "c": 0.7}, "mase": {"a": 0.9, "b": 1.1, "c": 0.8}},
           "seasonal_naive": {"wql": {"a": 1.0, "b": 1.0, "c": 1.0}, "mase": {"a": 1.0, "b": 1.0, "c": 1.0}}}
    board = leaderboard(rel, n_boot=500)
    m = board["model"]
    assert m["wql_skill"] == pytest.approx(1 - (0.8 * 0.9 * 0.7) ** (1 / 3))
    assert m["wql_skill_ci"][0] <= m["wql_skill"] <= m["wql_skill_ci"][1]
    assert m["wql_win_rate"] == 1.0 and board["seasonal_naive"]["wql_win_rate"] == 0.0
    assert m["mase_win_rate"] == pytest.approx(2 / 3) and m["wql_datasets"] == 3
    assert board["seasonal_naive"]["wql_skill"] == pytest.approx(0.0)
