"""One forecaster contract, checked for every family: quantiles, samples where the family samples,
DataFrame in and out, unknown options refused by name, and the GluonTS adapter driven by GluonTS's own
evaluation code (which passes `num_samples` to every predictor)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAMILY_FIXTURES
from tsfm.forecast import load_forecaster

# the internal method whose keyword arguments are the family's forecast options
OPTION_SOURCES = {"chronos2": "predict_raw", "chronos": "sample_paths", "baseline": "sample_paths", "moirai": "_samples"}


@pytest.fixture(params=["chronos2", "moirai", "chronos", "baseline"])
def forecaster(request, fixtures_dir, baseline_export):
    path = baseline_export if request.param == "baseline" else fixtures_dir / FAMILY_FIXTURES[request.param]
    f = load_forecaster(path)
    assert f.family == request.param
    return f


def _series(n=3, t=80):
    rng = np.random.default_rng(0)  # noisy: a noiseless season makes MASE's scale (and MASE) degenerate
    return [(10 + 3 * np.sin(2 * np.pi * np.arange(t + i) / 12) + rng.normal(0, 0.3, t + i)).astype(np.float32)
            for i in range(n)]


def test_predict_quantiles_shapes_and_order(forecaster):
    q = forecaster.predict_quantiles(_series(), 7, [0.1, 0.5, 0.9])
    assert q.shape == (3, 7, 3) and np.isfinite(q).all()


def test_predict_samples_where_the_family_samples(forecaster):
    if forecaster.samples:
        s = forecaster.predict_samples(_series(2), 5, num_samples=11)
        assert s.shape == (2, 11, 5) and np.isfinite(s).all()
    else:
        with pytest.raises(NotImplementedError, match="predicts quantiles directly; use predict_quantiles"):
            forecaster.predict_samples(_series(2), 5)


def test_dataframe_in_and_out(forecaster):
    df = pd.concat([pd.DataFrame({"item_id": f"s{i}", "timestamp": pd.date_range("2020-01-01", periods=len(y), freq="MS"),
                                  "target": y}) for i, y in enumerate(_series())])
    out = forecaster.predict_quantiles(df, 6, [0.1, 0.5, 0.9])
    assert len(out) == 18 and list(out.columns[:4]) == ["item_id", "timestamp", "target_name", "predictions"]
    first = out[out.item_id == "s0"]
    assert first.timestamp.iloc[0] == pd.Timestamp("2026-09-01")  # 80 months after 2020-01: the next month


def test_unknown_options_are_refused_with_the_ones_the_family_takes(forecaster):
    with pytest.raises(TypeError, match=rf"unknown {forecaster.family} forecast option\(s\) \['bogus'\]; the "
                                        rf"{forecaster.family} family takes .*batch_size"):
        forecaster.predict_quantiles(_series(1), 4, bogus=1)
    declared = set(forecaster.forecast_options)
    source = inspect.signature(getattr(type(forecaster), OPTION_SOURCES[forecaster.family])).parameters
    if forecaster.family != "moirai":  # Moirai reads its options from **kw (checked by name there)
        assert declared <= set(source), f"declared options not accepted by {OPTION_SOURCES[forecaster.family]}"


def test_gluonts_evaluation_runs_on_the_adapter(forecaster):
    from gluonts.dataset.common import ListDataset
    from gluonts.dataset.split import split
    from gluonts.ev.metrics import MASE, MeanWeightedSumQuantileLoss
    from gluonts.evaluation import make_evaluation_predictions
    from gluonts.model.evaluation import evaluate_model

    data = ListDataset([{"start": pd.Period("2015-01", freq="M"), "target": y, "item_id": f"s{i}"}
                        for i, y in enumerate(_series(4, 96))], freq="M")
    predictor = forecaster.to_gluonts_predictor(prediction_length=6, freq="M")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecasts, tss = make_evaluation_predictions(data, predictor, num_samples=20)  # passes num_samples
        assert len(list(forecasts)) == 4 and len(list(tss)) == 4
        _, test_template = split(data, offset=-12)
        test = test_template.generate_instances(prediction_length=6, windows=2)
        res = evaluate_model(predictor, test_data=test, metrics=[MASE(), MeanWeightedSumQuantileLoss(
            quantile_levels=predictor.quantile_levels)], axis=None, seasonality=12)
    assert np.isfinite(res.to_numpy()).all() and res.shape == (1, 2)
