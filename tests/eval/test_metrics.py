"""Metrics agree with gluonts.ev (evaluate_forecasts, axis=None) on the same forecasts to 1e-6."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gluonts.dataset.common import ListDataset
from gluonts.dataset.split import split
from gluonts.ev.metrics import MAE, MAPE, MASE, MSE, MSIS, RMSE, SMAPE, MeanWeightedSumQuantileLoss
from gluonts.model.evaluation import evaluate_forecasts

from tsfm.data.types import Series
from tsfm.eval import metrics as M
from tsfm.eval.gluonts_adapter import GluonTSPredictor
from tsfm.eval.protocol import make_windows, score_forecasts

from .conftest import LastValueForecaster

LEVELS = [0.025, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.975]


def _series(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for i in range(12):
        t = int(rng.integers(30, 80))
        y = 10 + 3 * np.sin(np.arange(t) * 2 * np.pi / 12) + rng.normal(0, 1 + i % 3, t)
        if i == 3:
            y[5:9] = np.nan  # missing values in the history
        if i == 4:
            y[-2] = np.nan  # a missing label
        if i == 5:
            y[:] = 7.0  # constant history: zero seasonal error, masked out of MASE/MSIS
        if i == 6:
            y[-3] = 0.0  # a zero label: masked out of MAPE
        out.append(y.astype(np.float32))
    return out


@pytest.mark.parametrize("windows", [1, 3])
def test_metrics_match_gluonts(windows: int) -> None:
    rng = np.random.default_rng(0)
    h, m = 6, 12
    ys = _series(rng)
    f = LastValueForecaster()

    # gluonts: split + rolling windows, forecasts from our adapter, evaluate_forecasts(axis=None)
    ds = ListDataset([{"start": pd.Period("2000-01", freq="M"), "target": y, "item_id": str(i)}
                      for i, y in enumerate(ys)], freq="M")
    _, template = split(ds, offset=-h * windows)
    test = template.generate_instances(prediction_length=h, windows=windows)
    fc = list(GluonTSPredictor(f, h, "M", quantile_levels=LEVELS).predict(test.input))
    q9 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    gl = evaluate_forecasts(
        fc, test_data=test, seasonality=m,
        metrics=[MeanWeightedSumQuantileLoss(LEVELS), MASE(), MSIS(),
                 MAE(), MSE(), RMSE(), SMAPE(), MAPE()],
    )
    # CRPS = WQL over 0.1-0.9 (a second WQL would share the first one's column name)
    gl_crps = evaluate_forecasts(fc, test_data=test, seasonality=m, metrics=[MeanWeightedSumQuantileLoss(q9)])
    ref = gl.iloc[0]

    # ours: same windows, same forecasts
    w = make_windows([Series(y[None], "M", str(i)) for i, y in enumerate(ys)], h, windows, season_length=m)
    assert w.num_windows == len(fc)
    q = np.stack([np.asarray(x.forecast_array).T for x in fc])[:, None]  # [N, 1, H, Q]
    ours = score_forecasts(w, q, LEVELS, ["wql", "crps", "mase", "msis", "mae", "mse", "rmse", "smape", "mape"]).metrics

    np.testing.assert_allclose(ours["wql"], ref["mean_weighted_sum_quantile_loss"], rtol=1e-6)
    np.testing.assert_allclose(ours["crps"], gl_crps.iloc[0]["mean_weighted_sum_quantile_loss"], rtol=1e-6)
    np.testing.assert_allclose(ours["mase"], ref["MASE[0.5]"], rtol=1e-6)
    np.testing.assert_allclose(ours["msis"], ref["MSIS"], rtol=1e-6)
    np.testing.assert_allclose(ours["mae"], ref["MAE[0.5]"], rtol=1e-6)
    np.testing.assert_allclose(ours["mse"], ref["MSE[mean]"], rtol=1e-6)
    np.testing.assert_allclose(ours["rmse"], ref["RMSE[mean]"], rtol=1e-6)
    np.testing.assert_allclose(ours["smape"], ref["sMAPE[0.5]"], rtol=1e-6)
    np.testing.assert_allclose(ours["mape"], ref["MAPE[0.5]"], rtol=1e-6)
    assert np.isfinite(list(ours.values())).all()


def test_seasonal_errors_at_equals_direct() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=60)
    y[[3, 17, 40]] = np.nan
    cuts = [5, 12, 13, 30, 59, 60]
    for m in (1, 4, 12, 24):
        fast = M.seasonal_errors_at(y, cuts, m)
        slow = [M.seasonal_error(y[:c], m) for c in cuts]
        np.testing.assert_allclose(fast, slow, rtol=1e-12)
    # seasonality longer than the history falls back to 1 (gluonts)
    assert M.seasonal_error(np.array([1.0, 3.0, 6.0]), 12) == pytest.approx(2.5)


def test_wql_hand_computed() -> None:
    y = np.array([[1.0, 2.0]])
    q = np.array([[[0.0, 1.0], [3.0, 3.0]]])  # [N=1, H=2, Q=2] at levels 0.5, 0.9
    # QL = 2 |(y - q)(1{q >= y} - tau)|; level 0.5: 1 + 1 = 2; level 0.9: 0 + 2 * 1 * 0.1 = 0.2; sum |y| = 3
    assert M.wql(y, q, [0.5, 0.9]) == pytest.approx((2 / 3 + 0.2 / 3) / 2)


def test_nll_and_missing_levels() -> None:
    assert M.nll(np.array([[-1.0, -3.0]])) == pytest.approx(2.0)
    assert M.nll(np.array([[-1.0, -3.0]]), labels=np.array([[0.0, np.nan]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="add \\[0.025, 0.975\\]"):
        M.compute_metrics(np.zeros((1, 2)), np.zeros((1, 2, 1)), [0.5], np.ones(1), ["msis"])
    with pytest.raises(ValueError, match="unknown metrics"):
        M.compute_metrics(np.zeros((1, 2)), np.zeros((1, 2, 1)), [0.5], np.ones(1), ["foo"])
