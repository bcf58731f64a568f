"""The in-training benchmark callback + top-K ModelCheckpoint from conf/callbacks/benchmark.yaml."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from tsfm.eval.callback import BenchmarkCallback
from tsfm.training.module import TSFMModule
from tsfm.utils.config import register_resolvers

from .conftest import LastValueForecaster, tiny_suite

CONF = Path(__file__).resolve().parents[2] / "conf"
register_resolvers()  # conf/callbacks/benchmark.yaml uses ${when:...}; alone, this file must not rely on another test's import


class ScaledLastValue(LastValueForecaster):
    """Median = weight x last value, so the benchmark depends on the current weights."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = w

    def _quantiles(self, inputs, prediction_length, quantile_levels, **kw):
        return [q * self.w for q in super()._quantiles(inputs, prediction_length, quantile_levels)]


class TinyModule(TSFMModule):
    family = "fake"

    def __init__(self) -> None:
        super().__init__(optim={"lr": 0.2, "warmup_steps": 0})
        self.save_hyperparameters({"family": "fake"})
        self.model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(self.model.weight, 3.0)

    def compute_loss(self, batch):
        return ((self.model(batch["x"]) - batch["x"]) ** 2).mean()  # drives the weight towards 1

    def forecaster(self):
        return ScaledLastValue(float(self.model.weight.detach()))


def _loader():
    x = torch.ones(64, 1)
    return torch.utils.data.DataLoader([{"x": x[i]} for i in range(64)], batch_size=8)


def _callbacks(tmp_path, every: int):
    cfg = OmegaConf.create({
        "eval": tiny_suite(max_series=3),
        "paths": {"root_dir": str(tmp_path), "output_dir": str(tmp_path / "run")},
        "trainer": {"val_check_interval": every},
        "callbacks": OmegaConf.load(CONF / "callbacks" / "benchmark.yaml"),
    })
    return [instantiate(cfg.callbacks[k], _convert_="all") for k in ("benchmark", "model_checkpoint")]


def test_benchmark_logs_and_keeps_top_k(tmp_path) -> None:
    bench, ckpt = _callbacks(tmp_path, every=2)
    assert isinstance(bench, BenchmarkCallback) and ckpt.monitor == "benchmark/avg_wql" and ckpt.mode == "min"
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv"),
                        callbacks=[bench, ckpt], enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1)
    trainer.fit(TinyModule(), train_dataloaders=_loader())
    steps = [h["step"] for h in bench.history]
    assert steps == [2, 4, 6]
    wql = [h["benchmark/avg_wql"] for h in bench.history]
    assert all(np.isfinite(wql)) and wql[-1] < wql[0]  # the weight moves from 3 towards 1
    assert {"benchmark/m3_yearly/wql", "benchmark/us_gasoline/mase"} <= set(bench.history[0])
    # the sanity probes ride along (on by default in the config): the median w x last value follows the last
    # value of a random walk better as the weight moves towards 1
    rw = [h["probe/random_walk_last_weight"] for h in bench.history]
    assert abs(rw[-1] - 1) < abs(rw[0] - 1)
    # logged to the logger ...
    metrics = pd.read_csv(Path(trainer.logger.log_dir) / "metrics.csv")
    logged = metrics.dropna(subset=["benchmark/avg_wql"])
    np.testing.assert_allclose(logged["benchmark/avg_wql"].to_numpy(), wql, rtol=1e-5)
    np.testing.assert_allclose(logged["probe/random_walk_last_weight"].to_numpy(), rw, rtol=1e-5)
    # ... and top-K (3 by default) + last kept by the monitored value
    assert ckpt.best_model_score is not None and float(ckpt.best_model_score) == pytest.approx(min(wql), rel=1e-5)
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in files and len(files) == 4


def test_callback_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="every_n_steps must be positive"):
        BenchmarkCallback(tiny_suite(), every_n_steps=0)
    with pytest.raises(ValueError, match="needs a suite with datasets"):
        BenchmarkCallback({"datasets": []})


class UnitModule(TinyModule):
    def __init__(self) -> None:
        super().__init__()
        torch.nn.init.constant_(self.model.weight, 1.0)  # the forecaster is LastValueForecaster exactly


def test_probes_are_those_of_the_current_weights(tmp_path) -> None:
    from tsfm.eval.probes import run_probes

    out = BenchmarkCallback(tiny_suite(max_series=2), every_n_steps=1, cache_dir=str(tmp_path)).compute(UnitModule())
    expected = run_probes(LastValueForecaster())
    assert {f"probe/{k}" for k in expected} <= set(out)
    for k, v in expected.items():
        assert out[f"probe/{k}"] == pytest.approx(v, rel=1e-6), k
    assert out["probe/random_walk_last_weight"] == pytest.approx(1.0, abs=1e-4)  # the last value, exactly
    assert out["probe/rough_season_mae_over_amplitude"] > 0.5  # a last-value forecast does not copy a pattern
    off = BenchmarkCallback(tiny_suite(max_series=2), every_n_steps=1, cache_dir=str(tmp_path), probes=False)
    assert not any(k.startswith("probe/") for k in off.compute(UnitModule()))


def test_failing_probes_are_reported_not_raised(tmp_path, monkeypatch, caplog) -> None:
    import tsfm.eval.probes

    def broken(*a, **k):
        raise RuntimeError("this forecaster cannot do a horizon of 1")

    monkeypatch.setattr(tsfm.eval.probes, "run_probes", broken)
    with caplog.at_level("WARNING", logger="tsfm.eval.callback"):
        out = BenchmarkCallback(tiny_suite(max_series=2), every_n_steps=1, cache_dir=str(tmp_path)).compute(UnitModule())
    assert np.isfinite(out["benchmark/avg_wql"]) and not any(k.startswith("probe/") for k in out)
    assert "sanity probes skipped" in caplog.text and "horizon of 1" in caplog.text


def test_failed_forecasts_rank_last(tmp_path) -> None:
    class NaNModule(TinyModule):
        def forecaster(self):
            return LastValueForecaster(nan_every=1)

    bench = BenchmarkCallback(tiny_suite(max_series=2), every_n_steps=1, cache_dir=str(tmp_path))
    out = bench.compute(NaNModule())
    assert out["benchmark/avg_wql"] == float("inf") and out["benchmark/m3_yearly/wql"] == float("inf")


@pytest.mark.dist
def test_ddp_rank0_evaluates_all_ranks_checkpoint(tmp_path) -> None:
    """2 gloo processes: rank 0 runs the suite, rank 1 waits, both see the same monitored value."""
    bench, ckpt = _callbacks(tmp_path, every=2)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=2, strategy="ddp_spawn",
                        logger=CSVLogger(tmp_path, name="csv"), callbacks=[bench, ckpt],
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(TinyModule(), train_dataloaders=_loader())
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in files and len(files) == 3  # steps 2 and 4 (top-3) + last
    (csv,) = list((tmp_path / "csv").glob("version_*/metrics.csv"))  # written by rank 0 of the spawned group
    assert pd.read_csv(csv)["benchmark/avg_wql"].notna().sum() == 2
