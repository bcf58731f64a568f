"""The family-independent half of the public forecasting API (tsfm/forecast.py)."""

import json

import numpy as np
import pytest

from tsfm.forecast import detect_family, load_forecaster, normalize_inputs


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
    with pytest.raises(ValueError, match="cannot tell the model family"):
        load_forecaster(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_forecaster(tmp_path)
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable tsfm checkpoint"):
        load_forecaster(bad)
