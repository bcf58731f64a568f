"""Chronos2Forecaster against the fixture pipeline cases, the public API and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.models.chronos2.conftest import pipeline_inputs
from tsfm.forecast import load_forecaster
from tsfm.models.chronos2.forecast import Chronos2Forecaster, interpolate_levels

CASES = ["pipe_univariate", "pipe_multivariate", "pipe_univariate_cross", "pipe_univariate_long"]


@pytest.fixture(scope="module")
def forecaster(fixtures_dir) -> Chronos2Forecaster:
    f = load_forecaster(fixtures_dir / "chronos2_tiny" / "checkpoint")
    assert isinstance(f, Chronos2Forecaster)
    return f


def _check(got, ref):
    # README tolerance for original-scale outputs: |d| <= 1e-4*scale*(1 + |pred-loc|/scale) + 1e-6*|pred|,
    # with the row scale bounded by the magnitude of its values
    bound = 1e-4 * np.abs(ref).max() + 1e-4 * np.abs(ref) + 1e-6
    assert np.all(np.abs(got - ref) <= bound), np.abs(got - ref).max()


@pytest.mark.parametrize("case", CASES)
def test_pipeline_cases_match_fixture(forecaster, c2_tensors, c2_meta, case):
    ctx, past, fut, call = pipeline_inputs(c2_tensors, c2_meta, case)
    kw = dict(past_covariates=past, future_covariates=fut, cross_learning=call["cross_learning"],
              batch_size=call["batch_size"])  # fmt: skip
    h = call["prediction_length"]
    grid = forecaster.predict_quantiles(ctx, h, quantile_levels=forecaster.config.quantiles, **kw)
    q9 = forecaster.predict_quantiles(ctx, h, **kw)
    qi = forecaster.predict_quantiles(ctx, h, quantile_levels=call["quantile_levels_interp"], **kw)
    for i in range(len(ctx)):
        ref = c2_tensors[f"{case}.predict.{i}"].numpy().transpose(0, 2, 1)  # [V, H, 21]
        def pick(a, i=i):
            return a[i] if a.ndim == 4 else a[i][None]

        _check(pick(grid), ref)
        _check(pick(q9), c2_tensors[f"{case}.quantiles.{i}"].numpy())
        _check(pick(qi), c2_tensors[f"{case}.quantiles_interp.{i}"].numpy())
        _check(pick(q9)[..., 4], c2_tensors[f"{case}.mean.{i}"].numpy())


def test_batches_and_packing_do_not_change_results(forecaster, c2_tensors, c2_meta):
    ctx, past, fut, _ = pipeline_inputs(c2_tensors, c2_meta, "pipe_univariate")
    a = forecaster.predict_quantiles(ctx, 40, past_covariates=past, future_covariates=fut)
    b = forecaster.predict_quantiles(ctx, 40, past_covariates=past, future_covariates=fut, batch_size=3)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)


def test_univariate_numpy_shapes_and_context_length(forecaster):
    rng = np.random.default_rng(0)
    ctx = [rng.standard_normal(n).cumsum().astype(np.float32) for n in (30, 300, 77)]
    q = forecaster.predict_quantiles(ctx, 24, quantile_levels=(0.1, 0.5, 0.9))
    assert q.shape == (3, 24, 3) and np.isfinite(q).all()
    short = forecaster.predict_quantiles(ctx, 24, quantile_levels=(0.5,), context_length=32)
    cut = forecaster.predict_quantiles([c[-32:] for c in ctx], 24, quantile_levels=(0.5,))
    np.testing.assert_allclose(short, cut, rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="predicts quantiles directly"):
        forecaster.predict_samples(ctx, 24)


def test_context_ensemble_averages_the_full_and_the_short_context_forecasts(fixtures_dir, tmp_path):
    from tsfm.models.chronos2.convert import load_model, save_pretrained

    rng = np.random.default_rng(2)
    ctx = [rng.standard_normal(n).cumsum().astype(np.float32) for n in (300, 40, 150)]
    plain = load_forecaster(fixtures_dir / "chronos2_tiny" / "checkpoint")
    assert plain.config.context_ensemble == []  # official checkpoints: the reference's single forecast
    full = plain.predict_quantiles(ctx, 24)
    last64 = plain.predict_quantiles([c[-64:] for c in ctx], 24)
    ens = plain.predict_quantiles(ctx, 24, context_ensemble=[64])
    np.testing.assert_allclose(ens, (full + last64) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ens[1], full[1], rtol=1e-5, atol=1e-5)  # 40 points: both views are the whole series
    # a setting of the checkpoint: written to config.json (the reference ignores the key), read back, switchable off
    model = load_model(fixtures_dir / "chronos2_tiny" / "checkpoint", overrides={"context_ensemble": [64]})
    out = save_pretrained(model, tmp_path / "ens")
    assert '"tsfm_context_ensemble": [\n    64\n  ]' in (out / "config.json").read_text()
    stored = load_forecaster(out)
    assert stored.config.context_ensemble == [64]
    np.testing.assert_allclose(stored.predict_quantiles(ctx, 24), ens, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(load_forecaster(out, context_ensemble=[]).predict_quantiles(ctx, 24), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="context_ensemble=\\[0\\] must list positive context lengths"):
        plain.predict_quantiles(ctx, 24, context_ensemble=[0])
    with pytest.raises(ValueError, match="context_ensemble=\\[-4\\] must list positive context lengths"):
        load_forecaster(fixtures_dir / "chronos2_tiny" / "checkpoint", context_ensemble=[-4])


def test_dataframe_with_future_covariates(forecaster):
    rng = np.random.default_rng(1)
    rows, fut_rows = [], []
    for item in ("a", "b"):
        ts = pd.date_range("2024-01-01", periods=60, freq="D")
        rows.append(pd.DataFrame({"item_id": item, "timestamp": ts, "target": rng.standard_normal(60).cumsum(),
                                  "price": rng.standard_normal(60)}))  # fmt: skip
        fts = pd.date_range(ts[-1], periods=13, freq="D")[1:]
        fut_rows.append(pd.DataFrame({"item_id": item, "timestamp": fts, "price": rng.standard_normal(12)}))
    df, fdf = pd.concat(rows), pd.concat(fut_rows)
    out = forecaster.predict_quantiles(df, 12, future_covariates=fdf)
    assert isinstance(out, pd.DataFrame) and len(out) == 24
    assert set(out["item_id"]) == {"a", "b"} and {"predictions", "0.1", "0.9"} <= set(out.columns)
    arr = forecaster.predict_quantiles(
        [g["target"].to_numpy() for _, g in df.groupby("item_id")], 12,
        past_covariates=[{"price": g["price"].to_numpy()} for _, g in df.groupby("item_id")],
        future_covariates=[{"price": g["price"].to_numpy()} for _, g in fdf.groupby("item_id")],
    )
    np.testing.assert_allclose(out["0.5"].to_numpy(), arr[..., 4].reshape(-1), rtol=1e-5)


def test_bad_input_errors_name_the_series(forecaster):
    ctx = [np.arange(50, dtype=np.float32), np.arange(40, dtype=np.float32)]
    with pytest.raises(ValueError, match=r"series 1: past covariate 'x' has shape \(39,\), expected \(40,\)"):
        forecaster.predict_quantiles(ctx, 8, past_covariates=[{"x": np.zeros(50)}, {"x": np.zeros(39)}])
    with pytest.raises(ValueError, match="series 1 declares known-future covariates"):
        forecaster.predict_quantiles(ctx, 8, past_covariates=[{"x": np.zeros(50)}, {"x": np.zeros(40)}],
                                     future_covariates=[{"x": np.zeros(8)}, {}])  # fmt: skip
    with pytest.raises(ValueError, match="series 0: future covariate 'x' has no past values"):
        forecaster.predict_quantiles(ctx, 8, future_covariates=[{"x": np.zeros(8)}, {"x": np.zeros(8)}])
    with pytest.raises(ValueError, match=r"series 0: future covariate 'x' has shape \(5,\)"):
        forecaster.predict_quantiles(ctx, 8, past_covariates=[{"x": np.zeros(50)}, {"x": np.zeros(40)}],
                                     future_covariates=[{"x": np.zeros(5)}, {"x": np.zeros(8)}])  # fmt: skip
    with pytest.raises(TypeError, match=r"past_covariates\[0\]\['kind'\].*encode categorical"):
        forecaster.predict_quantiles(ctx, 8, past_covariates=[{"kind": np.array(["a"] * 50)}, {"kind": np.zeros(40)}])
    multi = [np.zeros((3, 50), dtype=np.float32)]
    with pytest.raises(ValueError, match="series 0 forms a group of 4 rows.*batch_size=2"):
        forecaster.predict_quantiles(multi, 8, past_covariates=[{"c": np.zeros(50)}], batch_size=2)
    with pytest.raises(ValueError, match="unrolled_quantiles"):
        forecaster.predict_quantiles(ctx, 80, unrolled_quantiles=(0.33,))


def test_interpolate_levels_clamps_and_is_linear():
    import torch

    levels = torch.tensor([0.1, 0.5, 0.9])
    values = torch.tensor([[1.0, 5.0, 9.0]])
    out = interpolate_levels(torch.tensor([0.0, 0.1, 0.3, 0.5, 0.95, 1.0]), levels, values)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 3.0, 5.0, 9.0, 9.0]]))
