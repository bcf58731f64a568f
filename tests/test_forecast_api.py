"""The family-independent half of the public forecasting API (tsfm/forecast.py)."""

import json

import numpy as np
import pytest

from tsfm.forecast import Forecaster, detect_family, load_forecaster, normalize_inputs


def test_normalize_univariate_and_multivariate():
    inp = normalize_inputs([np.arange(5.0), np.arange(3.0)], prediction_length=2)
    assert inp.univariate and [t.shape for t in inp.targets] == [(1, 5), (1, 3)]
    assert inp.targets[0].dtype == np.float32
    inp = normalize_inputs([np.ones((2, 4))], prediction_length=2)
    assert not inp.univariate and inp.targets[0].shape == (2, 4)
    inp = normalize_inputs(np.ones((3, 7)), prediction_length=1)  # 2-D array = batch of univariate
    assert inp.univariate and len(inp.targets) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(context=[]), "context is empty"),
        (dict(context=[np.array([])]), "is empty"),
        (dict(context=[np.ones((2, 2, 2))]), "must be 1-D"),
        (dict(context=[np.array([1.0, np.inf])]), "inf"),
        (dict(context=[np.ones(4)], prediction_length=0), "prediction_length"),
        (dict(context=[np.ones(4)], past_covariates=[{"a": np.ones(3)}]), "expected \\(4,\\)"),
        (dict(context=[np.ones(4)], past_covariates=[{"a": np.ones(4)}], future_covariates=[{"b": np.ones(2)}]),
         "no past values"),
        (dict(context=[np.ones(4)], past_covariates=[{"a": np.ones(4)}], future_covariates=[{"a": np.ones(3)}]),
         "prediction_length"),
        (dict(context=[np.ones(4)], past_covariates=[{"a": np.array(["x"] * 4)}]), "encode categorical"),
        (dict(context=[np.ones(4), np.ones(4)], past_covariates=[{}]), "one dict per series"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    kwargs.setdefault("prediction_length", 2)
    with pytest.raises((ValueError, TypeError), match=match):
        normalize_inputs(**kwargs)


def test_detect_family_on_official_layouts(fixtures_dir):
    expected = {"moirai_tiny": "moirai", "chronos_t5": "chronos", "chronos2_tiny": "chronos2"}
    for name, fam in expected.items():
        cfg = json.loads((fixtures_dir / name / "checkpoint" / "config.json").read_text())
        assert detect_family(cfg) == fam
    assert detect_family({"tsfm_family": "moirai"}) == "moirai"
    assert detect_family({"model_type": "bert"}) is None


def test_load_forecaster_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_forecaster(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_forecaster(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"no model family recognises this checkpoint. What each looks for: baseline: .*chronos2: config.json with chronos_config and a Chronos2Model.*moirai: "):
        load_forecaster(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_forecaster(tmp_path)
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable tsfm checkpoint"):
        load_forecaster(bad)


def _last_value():
    from tests.test_serve import LastValue

    return LastValue()


def _frame(ids):
    import pandas as pd

    ts = pd.date_range("2024-01-01", periods=6, freq="D")
    return pd.DataFrame({"item_id": np.repeat(ids, 6), "timestamp": np.tile(ts, len(ids)),
                         "target": np.arange(6 * len(ids), dtype=float)})


def test_dataframe_round_trip_keeps_id_type_and_dates():
    import pandas as pd

    out = _last_value().predict_quantiles(_frame([3, 7]), prediction_length=2, quantile_levels=[0.5])
    assert out["item_id"].tolist() == [3, 3, 7, 7]  # ints stay ints: results merge back on item_id
    assert out["timestamp"].iloc[0] == pd.Timestamp("2024-01-07")
    np.testing.assert_allclose(out["0.5"].to_numpy(), [5.5, 5.5, 11.5, 11.5])
    np.testing.assert_allclose(out["predictions"].to_numpy(), out["0.5"].to_numpy())


def test_dataframe_with_list_covariates_is_an_error():
    with pytest.raises(ValueError, match="covariates are columns"):
        _last_value().predict_quantiles(_frame(["a"]), prediction_length=2, future_covariates=[{"c": np.ones(2)}])


def test_dataframe_item_too_short_for_a_frequency():
    df = _frame(["a"]).iloc[:2]
    with pytest.raises(ValueError, match="at least 3 regular steps"):
        _last_value().predict_quantiles(df, prediction_length=2)


def test_fine_tuning_from_a_checkpoint_of_another_family_or_a_missing_path_names_the_file(tmp_path):
    """Every family's ``pretrained=`` goes through the same checkpoint reader."""
    import torch

    from tsfm.models.chronos.module import ChronosModule
    from tsfm.models.chronos2.module import Chronos2Module
    from tsfm.models.moirai.module import MoiraiModule

    other = tmp_path / "baseline.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"family": "baseline", "config": {}}}, other)
    no_config = tmp_path / "no_config.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"family": "chronos"}}, no_config)
    with pytest.raises(ValueError, match=r"no_config.ckpt: a chronos checkpoint without hyper_parameters\['config'\]"):
        ChronosModule(pretrained=str(no_config))
    no_state = tmp_path / "no_state.ckpt"
    torch.save({"hyper_parameters": {"family": "moirai"}}, no_state)
    modules = {"moirai": lambda p: MoiraiModule(mode="finetune", pretrained=p),
               "chronos": lambda p: ChronosModule(pretrained=p), "chronos2": lambda p: Chronos2Module(pretrained=p)}
    for family, make in modules.items():
        with pytest.raises(ValueError, match=rf"baseline.ckpt: checkpoint of family 'baseline', expected '{family}'"):
            make(str(other))
        with pytest.raises(ValueError, match="no_state.ckpt: not a tsfm Lightning checkpoint"):
            make(str(no_state))
        with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
            make(str(tmp_path / "missing"))


def test_dataframe_median_is_interpolated_from_unsorted_levels():
    # LastValue: quantile q = last value + q, so the median column must be last value + 0.5
    out = _last_value().predict_quantiles(_frame([1]), prediction_length=2, quantile_levels=[0.9, 0.1, 0.4, 0.6])
    np.testing.assert_allclose(out["predictions"].to_numpy(), [5.5, 5.5])
    np.testing.assert_allclose(out["0.9"].to_numpy(), [5.9, 5.9])


def test_ragged_multivariate_results_are_object_arrays():
    out = Forecaster._stack([np.zeros((4, 3, 8)), np.zeros((4, 2, 8))], univariate=False, axis=1)
    assert out.dtype == object and out.shape == (2,) and out[0].shape == (4, 3, 8) and out[1].shape == (4, 2, 8)
    q = _last_value().predict_quantiles([np.ones((3, 10)), np.ones((2, 7))], 4, quantile_levels=[0.5])
    assert q.shape == (2,) and q[0].shape == (3, 4, 1) and q[1].shape == (2, 4, 1)


def test_non_integer_horizon_and_dataframe_samples_are_rejected_clearly():
    with pytest.raises(ValueError, match="prediction_length must be a positive integer, got 8.0"):
        normalize_inputs([np.ones(10)], 8.0)
    with pytest.raises(TypeError, match="use predict_quantiles for long DataFrames"):
        normalize_inputs(_frame(["a"]), 2)
    assert len(normalize_inputs([np.ones(10)], np.int64(3)).targets) == 1  # numpy ints are fine


def test_chronos2_dtype_is_validated(fixtures_dir):
    f = load_forecaster(fixtures_dir / "chronos2_tiny" / "checkpoint")
    with pytest.raises(ValueError, match="dtype='int8': use float32, bfloat16 or float16"):
        f.predict_quantiles([np.arange(40.0)], 4, dtype="int8")


def test_dataframe_covariate_errors_name_the_item():
    import pandas as pd

    df = _frame(["a", "b"]).assign(promo=1.0)
    ts = pd.date_range("2024-01-07", periods=2, freq="D")
    future = pd.DataFrame({"item_id": ["a", "a", "b"], "timestamp": [ts[0], ts[1], ts[0]], "promo": [1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match=r"item 'b': future covariate 'promo' has shape \(1,\), expected \(2,\)"):
        _last_value().predict_quantiles(df, prediction_length=2, future_covariates=future)


def test_future_covariates_must_start_right_after_the_context():
    import pandas as pd

    df = _frame(["a"]).assign(promo=1.0)
    late = pd.date_range("2024-01-08", periods=2, freq="D")  # context ends 2024-01-06: skips a day
    future = pd.DataFrame({"item_id": "a", "timestamp": late, "promo": [1.0, 0.0]})
    with pytest.raises(ValueError, match=r"item 'a': future DataFrame timestamps 2024-01-08 .*\(expected 2024-01-07"):
        _last_value().predict_quantiles(df, prediction_length=2, future_covariates=future)
    ok = future.assign(timestamp=pd.date_range("2024-01-07", periods=2, freq="D"))
    assert len(_last_value().predict_quantiles(df, prediction_length=2, future_covariates=ok)) == 2


@pytest.mark.parametrize("family", ["chronos2", "moirai"])
def test_a_context_without_observed_values_gets_nan_and_a_warning_not_a_made_up_forecast(family, fixtures_dir):
    from tsfm.forecast import load_forecaster

    path = fixtures_dir / ("chronos2_tiny" if family == "chronos2" else "moirai_tiny") / "checkpoint"
    f = load_forecaster(path)
    ok = np.sin(np.arange(64) / 3).astype(np.float32)
    with pytest.warns(UserWarning, match=r"series \[1\]: the context has no observed value"):
        q = f.predict_quantiles([ok, np.full(64, np.nan, np.float32)], prediction_length=8)
    assert np.isfinite(q[0]).all() and np.isnan(q[1]).all()
    # a one-point context is not refused: a flat forecast at that value (documented fallback)
    one = f.predict_quantiles([np.array([5.0], np.float32)], prediction_length=4)
    assert np.isfinite(one).all() and np.allclose(one[0, :, 4], 5.0, atol=0.5)
