"""Shipped baseline scores: used only on an exact key match, written by the evaluate CLI's option."""

from __future__ import annotations

import json

import pytest

from tsfm.eval import precomputed
from tsfm.eval.baselines import StatsBaseline
from tsfm.eval.runner import evaluate_suite

from .conftest import LastValueForecaster, tiny_suite


def test_shipped_scores_replace_the_computation_only_on_an_exact_match(tmp_path, monkeypatch):
    suite = tiny_suite()
    first = evaluate_suite(LastValueForecaster(), suite, model_name="fake", cache_dir=None)
    assert len(first.baseline_scores) == 2  # seasonal_naive on both datasets
    monkeypatch.setattr(precomputed, "DIR", tmp_path)
    precomputed.save("tiny", first.baseline_scores)

    def boom(*a, **k):
        raise AssertionError("a shipped score should have been used")

    monkeypatch.setattr(StatsBaseline, "predict_quantiles", boom)
    second = evaluate_suite(LastValueForecaster(), suite, model_name="fake", cache_dir=None)
    for name, d in second.datasets.items():
        assert d.scores["seasonal_naive"].metrics == pytest.approx(first.datasets[name].scores["seasonal_naive"].metrics)
    assert second.aggregates["fake"]["rel_wql"] == pytest.approx(first.aggregates["fake"]["rel_wql"])
    # other windows (another horizon) -> another key: computed, never served a stale score
    changed = tiny_suite()
    changed["datasets"][0]["prediction_length"] = 4
    with pytest.raises(AssertionError, match="shipped score"):
        evaluate_suite(LastValueForecaster(), changed, model_name="fake", cache_dir=None)
    # the switch turns shipped scores off
    with pytest.raises(AssertionError, match="shipped score"):
        evaluate_suite(LastValueForecaster(), tiny_suite(use_precomputed=False), model_name="fake", cache_dir=None)


def test_unreadable_shipped_file_is_ignored_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(precomputed, "DIR", tmp_path)
    (tmp_path / "tiny.json").write_text("{not json")
    assert precomputed.load("tiny") == {}
    assert "ignoring unreadable precomputed baseline scores" in caplog.text


@pytest.mark.parametrize(("suite", "num_datasets"), [("dev", 15), ("holdout", 6)])
def test_the_shipped_suites_ship_every_baseline_score(suite, num_datasets):
    table = precomputed.load(suite)
    pairs = {(v["dataset"], v["baseline"]) for v in table.values()}
    assert len(pairs) == num_datasets * 3 and {b for _, b in pairs} == {"seasonal_naive", "auto_ets", "auto_theta"}
    assert all(set(v["metrics"]) == {"wql", "mase"} for v in table.values())
    json.dumps(table)  # plain data


def test_the_holdout_suites_shipped_scores_match_its_windows(tmp_path, monkeypatch):
    """conf/eval/holdout.yaml evaluates without computing a baseline: every shipped key matches today's windows."""
    from pathlib import Path

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "eval" / "holdout.yaml")
    suite = OmegaConf.to_container(cfg, resolve=False)
    suite["data_dir"] = str(tmp_path)  # packaged datasets are built there from the installed packages

    def boom(*a, **k):
        raise AssertionError("a holdout baseline was computed instead of read from tsfm/eval/precomputed/holdout.json")

    monkeypatch.setattr(StatsBaseline, "predict_quantiles", boom)
    res = evaluate_suite(LastValueForecaster(), suite, model_name="last", cache_dir=None, plot_series=0)
    res.summarize()
    assert set(res.datasets) == {"tourism_monthly", "tourism_quarterly", "tourism_yearly", "aus_retail", "au_tourism", "pbs"}
    assert res.aggregates["auto_ets"]["rel_wql"] == pytest.approx(0.885, abs=5e-4)  # the README's figures
    assert res.aggregates["auto_theta"]["rel_mase"] == pytest.approx(0.955, abs=5e-4)
