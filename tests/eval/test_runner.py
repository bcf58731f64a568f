"""The runner and the `python -m tsfm.evaluate` CLI: models and baselines alike, bad input reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tsfm.eval.baselines import StatsBaseline
from tsfm.eval.report import to_dict, to_markdown, write_reports
from tsfm.eval.resolve import resolve_forecaster
from tsfm.eval.runner import evaluate_suite

from .conftest import LastValueForecaster, tiny_suite

ROOT = Path(__file__).resolve().parents[2]


def test_fake_model_vs_baseline(tmp_path) -> None:
    f = LastValueForecaster()
    res = evaluate_suite(f, tiny_suite(), model_name="fake", cache_dir=tmp_path)
    d = res.datasets["us_gasoline"]
    assert d.num_series == 1 and d.num_windows == 3 and d.skipped == 0
    s, ref = d.scores["fake"], d.scores["seasonal_naive"]
    assert s.ok and ref.ok and s.metrics["wql"] > 0 and s.metrics["mase"] > 0
    # weekly season = 1: the fake's median (last value) equals Seasonal Naive's forecast -> same MASE
    assert s.metrics["mase"] == pytest.approx(ref.metrics["mase"], rel=1e-6)
    agg = res.aggregates["fake"]
    rels = [res.datasets[n].relative("fake", "seasonal_naive")["wql"] for n in res.datasets]
    assert agg["rel_wql"] == pytest.approx(float(np.exp(np.mean(np.log(rels)))))
    out = write_reports(res, tmp_path / "out", tiny_suite()["quantile_levels"])
    data = json.loads(out["json"].read_text())
    assert set(data["datasets"]["m3_yearly"]["scores"]) == {"fake", "seasonal_naive"}
    assert {"wql", "mase", "rel_wql", "rel_mase"} <= set(data["datasets"]["m3_yearly"]["scores"]["fake"])
    assert out["png"].stat().st_size > 1000 and "| us_gasoline |" in out["markdown"].read_text()


def test_short_series_are_skipped_and_reported(tmp_path) -> None:
    suite = tiny_suite()
    suite["datasets"][0]["num_windows"] = 4  # 4 x 6 yearly points: the shortest M3 series are skipped
    suite["max_series"] = 40
    res = evaluate_suite(LastValueForecaster(), suite, model_name="fake", cache_dir=tmp_path)
    d = res.datasets["m3_yearly"]
    assert d.skipped > 0 and d.num_series == 40 - d.skipped
    assert to_dict(res)["datasets"]["m3_yearly"]["skipped_short_series"] == d.skipped
    assert f"{d.skipped} series shorter than 4×6" in to_markdown(res)


def test_nan_forecasts_fail_dataset_and_aggregate_says_so(tmp_path) -> None:
    res = evaluate_suite(LastValueForecaster(nan_every=4), tiny_suite(), model_name="bad", cache_dir=tmp_path)
    d = res.datasets["m3_yearly"]
    assert d.scores["bad"].failed == 2 and not d.scores["bad"].ok  # series 0 and 4 of 6
    assert res.datasets["us_gasoline"].scores["bad"].failed == 1  # 1 series x 3 windows, batch index 0
    assert res.aggregates["bad"]["failed_datasets"] == ["m3_yearly", "us_gasoline"]
    md = to_markdown(res)
    assert "FAILED (2 NaN/inf)" in md and "bad: aggregate over 0 datasets; FAILED" in md
    assert to_dict(res)["datasets"]["m3_yearly"]["scores"]["bad"]["status"] == "failed"


def test_baseline_as_model_uses_cache(tmp_path) -> None:
    suite = tiny_suite(baselines=[], reference=None)
    r1 = evaluate_suite(StatsBaseline("auto_theta"), suite, model_name="auto_theta", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*auto_theta*.npz"))) == 2
    r2 = evaluate_suite(StatsBaseline("auto_theta"), suite, model_name="auto_theta", cache_dir=tmp_path)
    assert r1.datasets["m3_yearly"].scores["auto_theta"].metrics == r2.datasets["m3_yearly"].scores["auto_theta"].metrics


def test_resolve_forecaster_errors() -> None:
    assert isinstance(resolve_forecaster("auto_ets"), StatsBaseline)
    with pytest.raises(FileNotFoundError, match="neither a baseline"):
        resolve_forecaster("no/such/model.ckpt")


def test_cli_baseline_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    """`python -m tsfm.evaluate model=naive eval=lite` (in-process: the same Hydra app, no interpreter start-up)."""
    from tsfm import evaluate

    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["tsfm.evaluate", "model=naive", "eval=lite", "eval.max_series=3",
                                      "progress=false", f"cache_dir={tmp_path / 'cache'}"])
    evaluate.main()
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    data = json.loads(Path(last).read_text())
    assert data["model"] == "naive" and data["suite"] == "lite" and len(data["datasets"]) == 15
    run_dir = Path(last).parent
    assert run_dir.is_relative_to(tmp_path)
    assert {"results.csv", "results.json", "report.md", "forecasts.png"} <= {f.name for f in run_dir.iterdir()}
    assert "aggregate" in out and "rel_wql" in out


@pytest.mark.slow
def test_cli_subprocess_help_and_run(tmp_path) -> None:
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    h = subprocess.run([sys.executable, "-m", "tsfm.evaluate", "--help"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert h.returncode == 0 and "model=<ckpt | checkpoint dir | baseline>" in h.stdout
    p = subprocess.run([sys.executable, "-m", "tsfm.evaluate", "model=seasonal_naive", "eval=dev", "eval.max_series=3",
                        "progress=false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(Path(p.stdout.strip().splitlines()[-1]).read_text())["suite"] == "dev"


def test_model_label() -> None:
    from tsfm.eval.resolve import model_label

    assert model_label("auto_ets") == "auto_ets"
    assert model_label("/x/chronos2_tiny/checkpoint") == "chronos2_tiny/checkpoint"
    assert model_label("logs/train/runs/2024-01-01_00-00-00/checkpoints/last.ckpt") == "2024-01-01_00-00-00/last"
    assert model_label("/models/chronos-2") == "chronos-2"


def test_freq_is_passed_only_to_forecasters_that_declare_it(tmp_path) -> None:
    class FreqAware(LastValueForecaster):
        accepts_freq = True
        seen: list = []

        def _quantiles(self, inputs, prediction_length, quantile_levels, **kw):
            self.seen.append(kw.pop("freq"))
            return super()._quantiles(inputs, prediction_length, quantile_levels, **kw)

    f = FreqAware()
    evaluate_suite(f, tiny_suite(baselines=[], reference=None), model_name="f", cache_dir=tmp_path)
    assert f.seen == ["YS", "W-MON"]
    plain = LastValueForecaster()  # would raise TypeError on an unexpected freq= in a strict family
    evaluate_suite(plain, tiny_suite(baselines=[], reference=None), model_name="p", cache_dir=tmp_path)


def test_nll_for_a_family_with_a_distribution(tmp_path, fixtures_dir) -> None:
    """Moirai reports NLL of the observed labels; a baseline (no distribution) simply has none."""
    from tsfm.forecast import load_forecaster

    f = load_forecaster(fixtures_dir / "moirai_tiny" / "checkpoint")
    suite = tiny_suite(metrics=["wql", "mase", "nll"])
    res = evaluate_suite(f, suite, model_name="moirai", cache_dir=tmp_path, forecast_kwargs={"num_samples": 20})
    for d in res.datasets.values():
        assert np.isfinite(d.scores["moirai"].metrics["nll"])
        assert "nll" not in d.scores["seasonal_naive"].metrics
    # a worse future (shifted far away) is less likely under the same predictive distribution
    ctx = [np.sin(np.arange(200) / 5).astype(np.float32) * 10 + 50]
    good, bad = [np.sin(np.arange(200, 224) / 5) * 10 + 50], [np.sin(np.arange(200, 224) / 5) * 10 + 150]
    assert f.mean_nll(ctx, bad, patch_size=16)[0] > f.mean_nll(ctx, good, patch_size=16)[0]
    assert np.isnan(f.mean_nll([np.full(40, np.nan, np.float32)], [np.ones(8)])[0])
    with pytest.raises(ValueError, match="one future per context"):
        f.mean_nll(ctx, [])


@pytest.mark.parametrize("fixture", ["moirai_tiny", "chronos_t5"])
def test_sampling_models_evaluate_reproducibly(tmp_path, fixtures_dir, fixture) -> None:
    from tsfm.forecast import load_forecaster

    f = load_forecaster(fixtures_dir / fixture / "checkpoint")
    assert f.samples
    suite = tiny_suite(max_series=3)
    runs = [evaluate_suite(f, suite, model_name="m", cache_dir=tmp_path, forecast_kwargs={"num_samples": 20}).datasets
            for _ in range(2)]
    for name, d in runs[0].items():
        assert d.scores["m"].metrics == runs[1][name].scores["m"].metrics  # bitwise: seeded per batch
    other = evaluate_suite(f, suite, model_name="m", cache_dir=tmp_path, forecast_kwargs={"num_samples": 20, "seed": 7})
    assert any(other.datasets[n].scores["m"].metrics != d.scores["m"].metrics for n, d in runs[0].items())
