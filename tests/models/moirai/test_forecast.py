"""Checkpoint conversion and the forecasting API for Moirai (official dirs and our checkpoints)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from tsfm.forecast import load_forecaster
from tsfm.models.moirai.convert import load_model, save_pretrained
from tsfm.models.moirai.forecast import MoiraiForecaster


@pytest.fixture(scope="module")
def ckpt_dir(fixtures_dir):
    return fixtures_dir / "moirai_tiny" / "checkpoint"


@pytest.fixture(scope="module")
def forecaster(ckpt_dir) -> MoiraiForecaster:
    f = load_forecaster(ckpt_dir)
    assert isinstance(f, MoiraiForecaster)
    return f


def _series(n: int, t: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(10 + np.sin(np.arange(t) / 4 + i) * 3 + rng.normal(0, 0.3, t)).astype(np.float32) for i in range(n)]


def test_export_roundtrip_is_identical(ckpt_dir, tmp_path):
    model = load_model(ckpt_dir)
    out = save_pretrained(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text()) == json.loads((ckpt_dir / "config.json").read_text())
    again = load_model(out)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_corrupted_safetensors_names_file(ckpt_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"bad/model\.safetensors.*truncated or corrupt"):
        load_forecaster(bad)


def test_other_family_or_missing_keys_is_clear_error(ckpt_dir, tmp_path):
    d = tmp_path / "chronos_like"
    shutil.copytree(ckpt_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["d_model"] = 128  # weights no longer fit the config
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="weights do not match the config"):
        load_model(d)
    (d / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 64}))
    with pytest.raises(ValueError, match=r"config\.json.*not a Moirai config"):
        load_model(d)


def test_univariate_quantiles_shape_order_and_seed(forecaster):
    ctx = _series(3, 150)
    q = forecaster.predict_quantiles(ctx, 20, quantile_levels=(0.1, 0.5, 0.9), patch_size=16, seed=0, num_samples=200)
    assert q.shape == (3, 20, 3) and np.isfinite(q).all()
    assert (np.diff(q, axis=-1) >= 0).all()
    q2 = forecaster.predict_quantiles(ctx, 20, quantile_levels=(0.1, 0.5, 0.9), patch_size=16, seed=0, num_samples=200)
    np.testing.assert_array_equal(q, q2)
    # forecasts follow the series' level (scaling works end to end)
    shifted = forecaster.predict_quantiles([c + 1000 for c in ctx], 20, (0.5,), patch_size=16, seed=0, num_samples=200)
    np.testing.assert_allclose(shifted[..., 0], q[..., 1] + 1000, rtol=1e-3)


def test_multivariate_with_covariates(forecaster):
    rng = np.random.default_rng(1)
    ctx = [rng.normal(size=(2, 90)).astype(np.float32) for _ in range(2)] + [rng.normal(size=(2, 40)).astype(np.float32)]
    past = [{"known": rng.normal(size=c.shape[1]), "past_only": rng.normal(size=c.shape[1])} for c in ctx]
    fut = [{"known": rng.normal(size=12)} for _ in ctx]
    s = forecaster.predict_samples(ctx, 12, num_samples=8, past_covariates=past, future_covariates=fut, patch_size=16)
    assert s.shape == (3, 8, 2, 12) and np.isfinite(s).all()
    # the known-future covariate's future values reach the forecast
    fut2 = [{"known": f["known"] + 50} for f in fut]
    s2 = forecaster.predict_samples(ctx, 12, num_samples=8, past_covariates=past, future_covariates=fut2, patch_size=16, seed=3)
    s1 = forecaster.predict_samples(ctx, 12, num_samples=8, past_covariates=past, future_covariates=fut, patch_size=16, seed=3)
    assert not np.allclose(s1, s2)


def test_auto_patch_size_picks_lowest_backtest_loss(forecaster):
    ctx = _series(2, 300)
    nll = {}
    for ps in (16, 32):  # what the backtest compares, computed directly
        arrays = [forecaster._prepare(_inputs(ctx), i, 24, 4096, backtest=True) for i in range(2)]
        nll[ps] = forecaster._run(arrays, 24, ps, 0, None, backtest=True)
    chosen = forecaster._choose_patch_sizes(_inputs(ctx), [0, 1], 24, 4096, [16, 32], None)
    for i in range(2):
        assert chosen[i] == (16 if nll[16][i] <= nll[32][i] else 32)
    q = forecaster.predict_quantiles(ctx, 24, patch_size="auto", freq="D", num_samples=20)
    assert q.shape == (2, 24, 9)


def test_bad_patch_size_and_all_nan(forecaster):
    with pytest.raises(ValueError, match=r"allowed patch sizes: \[32, 64\]"):
        forecaster.predict_quantiles(_series(1, 100), 10, patch_size=16, freq="h")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        q = forecaster.predict_quantiles([np.full(60, np.nan, np.float32), _series(1, 60)[0]], 10, patch_size=16)
    assert np.isnan(q[0]).all() and np.isfinite(q[1]).all()
    assert any("no observed value" in str(x.message) for x in w)


def _inputs(ctx):
    from tsfm.forecast import normalize_inputs

    return normalize_inputs(ctx, 24)
