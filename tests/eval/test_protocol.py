"""Windows, skipping, failure handling, relative scores and aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.data.types import Series
from tsfm.eval.protocol import (
    Score,
    aggregate,
    geometric_mean,
    make_windows,
    relative_scores,
    score_forecasts,
)


def _s(n: int, item: str = "a") -> Series:
    return Series(np.arange(n, dtype=np.float32)[None], "D", item)


def test_windows_are_the_last_non_overlapping_blocks() -> None:
    w = make_windows([_s(20)], prediction_length=4, num_windows=3, season_length=1)
    assert w.num_windows == 3 and w.labels.shape == (3, 1, 4)
    np.testing.assert_array_equal(w.labels[:, 0, 0], [8, 12, 16])  # windows end at the series' end
    assert [c.shape[-1] for c in w.contexts] == [8, 12, 16]  # full history before each window
    np.testing.assert_allclose(w.season_error, 1.0)  # |y_t - y_{t-1}| = 1 everywhere


def test_covariates_are_cut_to_each_window_s_context_and_left_out_when_inconsistent(caplog) -> None:
    cov = np.stack([np.arange(20, dtype=np.float32) * 10, -np.arange(20, dtype=np.float32)])  # [2, 20]
    with_cov = Series(np.arange(20, dtype=np.float32)[None], "D", "a", past_feat_dynamic_real=cov)
    w = make_windows([with_cov], prediction_length=4, num_windows=2)
    assert [c.shape for c in w.past_covariates] == [(2, 12), (2, 16)]  # past-only: never the forecast window
    np.testing.assert_array_equal(w.past_covariates[1], cov[:, :16])
    assert make_windows([_s(20)], prediction_length=4).past_covariates is None
    mixed = make_windows([with_cov, _s(20, "b")], prediction_length=4)
    assert mixed.past_covariates is None and mixed.num_windows == 2
    assert "1 of 2 series have none" in caplog.text
    short = Series(np.arange(20, dtype=np.float32)[None], "D", "c", past_feat_dynamic_real=cov[:, :19])
    assert make_windows([short], prediction_length=4).past_covariates is None
    assert "'c' has 19 covariate values for 20 target values" in caplog.text


def test_arrow_datasets_give_their_covariates_only_when_the_suite_asks(tmp_path) -> None:
    from tsfm.data.format import write_dataset
    from tsfm.eval.sources import load_arrow

    cov = np.stack([np.linspace(0, 1, 30), np.linspace(5, 6, 30)]).astype(np.float32)
    write_dataset([Series(np.arange(30, dtype=np.float32)[None], "D", "a", start=np.datetime64("2020-01-01"),
                          past_feat_dynamic_real=cov)], tmp_path / "ds")
    assert load_arrow(tmp_path / "ds", "ds", {})[0].past_feat_dynamic_real is None  # published suites: targets only
    (s,) = load_arrow(tmp_path / "ds", "ds", {"covariates": True})
    np.testing.assert_allclose(s.past_feat_dynamic_real, cov)


def test_short_series_are_skipped_and_counted() -> None:
    w = make_windows([_s(20, "long"), _s(9, "short"), _s(13, "exact")], prediction_length=4, num_windows=3)
    # needs 1 + 3 * 4 = 13 points
    assert w.skipped == 1 and w.num_series == 2
    assert sorted(set(w.item_ids)) == ["exact", "long"]


def test_all_missing_context_is_counted() -> None:
    y = np.full((1, 10), np.nan, np.float32)
    y[0, -2:] = 1.0
    w = make_windows([Series(y, "D", "x"), _s(10, "ok")], prediction_length=2)
    assert w.skipped_unobserved == 1 and w.num_windows == 1


def test_mixed_variate_counts_rejected() -> None:
    with pytest.raises(ValueError, match="one variate count"):
        make_windows([_s(10), Series(np.zeros((2, 10), np.float32), "D", "b")], 2)


def test_nan_forecasts_fail_the_dataset_with_count() -> None:
    w = make_windows([_s(10, "a"), _s(10, "b"), _s(10, "c")], prediction_length=2)
    q = np.repeat(w.labels[..., None], 3, axis=-1).astype(np.float64)
    assert score_forecasts(w, q, [0.1, 0.5, 0.9]).metrics["wql"] == pytest.approx(0.0)
    q[1, 0, 0, 2] = np.inf
    q[2, 0, 1, 0] = np.nan
    s = score_forecasts(w, q, [0.1, 0.5, 0.9])
    assert s.failed == 2 and not s.ok and s.metrics == {}
    with pytest.raises(ValueError, match=r"\[N, V, H, Q\]"):
        score_forecasts(w, q[..., :2], [0.1, 0.5, 0.9])


def test_geometric_mean_and_relative() -> None:
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert np.isnan(geometric_mean([1.0, np.nan])) and np.isnan(geometric_mean([])) and np.isnan(geometric_mean([1.0, -1.0]))
    assert geometric_mean([0.0, 4.0]) == 0.0  # a perfect forecast: the product is 0
    assert relative_scores({"wql": 0.5, "mase": 2.0}, {"wql": 1.0, "mase": 0.0}) == pytest.approx(
        {"wql": 0.5, "mase": np.nan}, nan_ok=True)


def test_aggregate_excludes_and_names_failed_datasets() -> None:
    model = {"a": Score({"wql": 0.5}), "b": Score({"wql": 2.0}), "c": Score({}, failed=3)}
    ref = {"a": Score({"wql": 1.0}), "b": Score({"wql": 1.0}), "c": Score({"wql": 1.0})}
    agg = aggregate(model, ref, ["wql"])
    assert agg["rel_wql"] == pytest.approx(1.0)  # sqrt(0.5 * 2)
    assert agg["avg_wql"] == pytest.approx(1.25)
    assert agg["failed_datasets"] == ["c"] and agg["num_datasets"] == 2
    model["d"] = Score({})  # no window at all: empty, not failed
    ref["b"] = Score({}, failed=1)  # the reference failed on b: b leaves the relative scores only
    agg = aggregate(model, ref, ["wql"])
    assert agg["failed_datasets"] == ["c"] and agg["empty_datasets"] == ["d"] and agg["no_reference_datasets"] == ["b"]
    assert agg["rel_wql"] == pytest.approx(0.5) and agg["avg_wql"] == pytest.approx(1.25)
    assert agg["undefined_relative"] == {}
    model["e"], ref["e"] = Score({"wql": 0.3}), Score({"wql": 0.0})  # reference exact on e: ratio undefined
    agg = aggregate(model, ref, ["wql"])
    assert agg["rel_wql"] == pytest.approx(0.5) and agg["undefined_relative"] == {"wql": ["e"]}


def test_windows_that_cannot_fit_are_config_errors_and_zscore_uses_the_windows_span() -> None:
    from tsfm.data.types import Series
    from tsfm.eval.protocol import make_windows, window_span
    from tsfm.eval.suites import zscore

    s = [Series(np.arange(1000, dtype=np.float32)[None], "h")]
    with pytest.raises(ValueError, match=r"offset=-10 with 2 window\(s\) of H=6 .* offset must be <= -12"):
        make_windows(s, 6, num_windows=2, offset=-10)
    with pytest.raises(ValueError, match="offset=5"):
        make_windows(s, 6, offset=5)
    with pytest.raises(ValueError, match="stride must be a positive number"):
        make_windows(s, 6, stride=0)
    assert window_span(13, 100, stride=1) == 112 and window_span(24, 4) == 96 and window_span(24, 1, offset=-96) == 96
    y = np.concatenate([np.zeros(50), np.ones(50), np.full(112, 7.0)]).astype(np.float32)
    (z,) = zscore([Series(y[None], "h")], window_span(13, 100, stride=1))  # train part = first 100 points
    np.testing.assert_allclose(z.target[0, :100], np.r_[-np.ones(50), np.ones(50)], atol=1e-6)


def test_rolling_windows_with_stride_from_a_suite_spec():
    from tsfm.data.types import Series
    from tsfm.eval.protocol import make_windows
    from tsfm.eval.suites import parse_suite

    (spec,) = parse_suite({"datasets": [{"name": "x", "source": "packaged", "prediction_length": 4, "num_windows": 5,
                                         "stride": 1}]})
    assert spec.stride == 1
    s = Series(target=np.arange(20, dtype=np.float32)[None], freq="h", item_id="a")
    w = make_windows([s], spec.prediction_length, spec.num_windows, stride=spec.stride)
    starts = [float(lab[0, 0]) for lab in w.labels]
    assert starts == [12.0, 13.0, 14.0, 15.0, 16.0]  # last 5 windows of 4, one step apart
