"""ChronosForecaster through the public API: shapes, sampling options, long horizons, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tsfm.forecast import load_forecaster
from tsfm.models.chronos.forecast import ChronosForecaster


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    return load_file(str(fixtures_dir / "chronos_t5" / "cases.safetensors"))


@pytest.fixture()
def fc(fixtures_dir) -> ChronosForecaster:
    return load_forecaster(fixtures_dir / "chronos_t5" / "checkpoint")


def test_reproduces_reference_pipeline_outputs(fc, cases):
    ctx = [cases["pipeline.context.0"].numpy(), cases["pipeline.context.1"].numpy()]
    torch.manual_seed(0)
    samples = fc.predict_samples(ctx, prediction_length=8, num_samples=5)
    assert samples.shape == (2, 5, 8)
    np.testing.assert_array_equal(samples, cases["pipeline.predict.samples"].numpy())
    torch.manual_seed(0)
    q = fc.predict_quantiles(ctx, prediction_length=8, quantile_levels=(0.1, 0.5, 0.9), num_samples=5)
    np.testing.assert_allclose(q, cases["pipeline.predict_quantiles.quantiles"].numpy(), rtol=1e-6, atol=1e-6)


def test_quantiles_are_sample_quantiles_and_seeded(fc):
    rng = np.random.default_rng(0)
    ctx = [rng.normal(size=50).cumsum(), rng.normal(size=30) + 5]
    s = fc.predict_samples(ctx, prediction_length=6, num_samples=7, seed=11)
    q = fc.predict_quantiles(ctx, prediction_length=6, quantile_levels=(0.2, 0.5), num_samples=7, seed=11)
    assert s.shape == (2, 7, 6) and q.shape == (2, 6, 2)
    np.testing.assert_allclose(q, np.quantile(s, [0.2, 0.5], axis=1).transpose(1, 2, 0), rtol=1e-5, atol=1e-6)
    again = fc.predict_samples(ctx, prediction_length=6, num_samples=7, seed=11)
    np.testing.assert_array_equal(s, again)
    assert fc.predict_quantiles(ctx, prediction_length=6).shape == (2, 6, 9)  # default 20 samples, 9 levels


def test_greedy_limits_are_respected(fc):
    ctx = [np.sin(np.arange(60) / 3.0)]
    s = fc.predict_samples(ctx, prediction_length=5, num_samples=4, top_k=1, seed=0)
    assert (s == s[:, :1]).all()  # top_k=1 is greedy: all paths agree
    with pytest.raises(ValueError, match="temperature"):
        fc.predict_samples(ctx, prediction_length=5, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        fc.predict_samples(ctx, prediction_length=5, top_p=1.5)
    with pytest.raises(ValueError, match="num_samples"):
        fc.predict_samples(ctx, prediction_length=5, num_samples=0)


def test_multivariate_rows_are_independent_univariate(fc):
    x = np.stack([np.arange(40.0), -np.arange(40.0)])  # [V=2, T]
    q = fc.predict_quantiles([x, x], prediction_length=4, num_samples=3, seed=0)
    assert q.shape == (2, 2, 4, 9)
    s = fc.predict_samples([x], prediction_length=4, num_samples=3, seed=0)
    assert s.shape == (1, 3, 2, 4)


def test_bad_and_degenerate_inputs(fc):
    with pytest.raises(ValueError, match="context is empty"):
        fc.predict_quantiles([], prediction_length=4)
    nan, zero = np.full(20, np.nan), np.zeros(20)
    long = np.random.default_rng(0).normal(size=2000)
    with pytest.warns(UserWarning, match=r"series \[0\]: the context has no observed value; their forecasts are NaN"):
        q = fc.predict_quantiles([nan, zero, long], prediction_length=4, num_samples=3, seed=0)
    assert q.shape == (3, 4, 9) and np.isnan(q[0]).all() and np.isfinite(q[1:]).all()
    assert np.abs(q[1]).max() <= 15.0  # scale 1 for an all-zero context
    with pytest.raises(ValueError, match="covariates"):
        fc.predict_quantiles([zero], prediction_length=4, past_covariates=[{"x": zero}])


def test_long_horizon_continues_with_median_and_warns_once(fc, caplog):
    ctx = [np.sin(np.arange(80) / 4.0), np.arange(30.0)]
    with caplog.at_level(logging.WARNING, logger="tsfm.models.chronos.forecast"):
        s = fc.predict_samples(ctx, prediction_length=70, num_samples=3, seed=1)
        fc.predict_samples(ctx, prediction_length=70, num_samples=3, seed=1)
    assert s.shape == (2, 3, 70) and np.isfinite(s).all()
    warnings = [r for r in caplog.records if "autoregressively" in r.getMessage()]
    assert len(warnings) == 1
    # greedy (top_k=1): the continuation must equal a second forecast from context + first 64 steps
    g = fc.predict_samples(ctx[:1], prediction_length=70, num_samples=2, top_k=1)
    head = fc.predict_samples(ctx[:1], prediction_length=64, num_samples=2, top_k=1)
    tail = fc.predict_samples(
        [np.concatenate([ctx[0], head[0, 0]])], prediction_length=6, num_samples=2, top_k=1
    )
    np.testing.assert_array_equal(g[0, :, :64], head[0])
    np.testing.assert_allclose(g[0, :, 64:], tail[0], rtol=1e-6)


def test_batch_size_does_not_change_results_shape(fc):
    ctx = [np.arange(10.0) + i for i in range(5)]
    a = fc.predict_quantiles(ctx, prediction_length=3, num_samples=2, batch_size=2, seed=0)
    assert a.shape == (5, 3, 9)
    with pytest.raises(ValueError, match="batch_size"):
        fc.predict_quantiles(ctx, prediction_length=3, batch_size=0)


def test_bf16_option_and_bad_dtype(fc):
    ctx = [np.sin(np.arange(60) / 3.0) * 10]
    s = fc.predict_samples(ctx, prediction_length=5, num_samples=3, seed=0, dtype="bfloat16")
    assert s.shape == (1, 3, 5) and np.isfinite(s).all() and s.dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        fc.predict_samples(ctx, prediction_length=5, dtype="int8")
