"""GluonTSPredictor: gluonts QuantileForecasts from any tsfm forecaster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gluonts.model.forecast import QuantileForecast

from tsfm.eval.baselines import StatsBaseline

from .conftest import LastValueForecaster


def test_univariate_forecasts_start_after_the_target() -> None:
    f = LastValueForecaster()
    pred = f.to_gluonts_predictor(prediction_length=5, freq="D", quantile_levels=[0.1, 0.5, 0.9], batch_size=2)
    data = [{"start": pd.Period("2021-01-01", freq="D"), "target": np.arange(10.0 + i), "item_id": f"s{i}"}
            for i in range(3)]
    out = list(pred.predict(data))
    assert [o.item_id for o in out] == ["s0", "s1", "s2"] and f.calls == 2  # batches of 2
    assert all(isinstance(o, QuantileForecast) for o in out)
    assert out[1].start_date == pd.Period("2021-01-12", freq="D")  # 11 points -> next day
    np.testing.assert_allclose(out[2].quantile(0.5), np.full(5, 11.0), rtol=1e-6)
    assert (out[0].quantile(0.1) < out[0].quantile(0.9)).all()


def test_multivariate_layout_and_baselines() -> None:
    from tsfm.eval.gluonts_adapter import GluonTSPredictor

    g = GluonTSPredictor(StatsBaseline("naive"), 3, "h", quantile_levels=[0.5])
    y = np.stack([np.arange(8.0), 10 * np.arange(8.0)])  # [V=2, T=8]
    (fc,) = list(g.predict([{"start": pd.Period("2021-01-01 00:00", freq="h"), "target": y}]))
    assert fc.forecast_array.shape == (1, 3, 2)  # [Q, H, V]
    np.testing.assert_allclose(fc.forecast_array[0, :, 1], [70, 70, 70])  # a baseline works like a model


def test_rejects_bad_horizon() -> None:
    from tsfm.eval.gluonts_adapter import GluonTSPredictor

    with pytest.raises(ValueError, match="prediction_length must be positive"):
        GluonTSPredictor(LastValueForecaster(), 0, "D")
