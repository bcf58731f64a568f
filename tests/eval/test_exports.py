"""GIFT-Eval and fev result layouts, the leaderboard in results.json, and `tsfm.evaluate compare`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tsfm.eval.compare import ProtocolMismatch, compare
from tsfm.eval.exports import GIFT_EVAL_COLUMNS, write_exports
from tsfm.eval.report import write_reports
from tsfm.eval.runner import evaluate_suite

from .conftest import LastValueForecaster, tiny_suite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def result(tmp_path):
    suite = tiny_suite(baselines=["seasonal_naive", "naive"])
    return evaluate_suite(LastValueForecaster(), suite, model_name="fake", cache_dir=tmp_path / "cache")


def test_gift_eval_layout_and_config(result, tmp_path):
    paths = write_exports(result, tmp_path / "out")
    df = pd.read_csv(paths["gift_eval"])
    assert list(df.columns) == GIFT_EVAL_COLUMNS
    assert list(df.dataset) == ["m3_yearly", "us_gasoline"] and set(df.model) == {"fake"}
    wql = result.datasets["us_gasoline"].scores["fake"].metrics["wql"]
    assert df.loc[df.dataset == "us_gasoline", "eval_metrics/mean_weighted_sum_quantile_loss"].item() == pytest.approx(wql)
    assert df["eval_metrics/MASE[0.5]"].notna().all() and df["eval_metrics/MSIS"].isna().all()  # not computed: empty
    cfg = json.loads(paths["gift_eval_config"].read_text())
    assert cfg["model_type"] == "pretrained" and cfg["testdata_leakage"] == "Unknown"  # no training record


def test_fev_rows_carry_task_fields_fingerprint_and_leakage(result, tmp_path):
    df = pd.read_csv(write_exports(result, tmp_path / "out")["fev"])
    row = df[df.dataset_name == "us_gasoline"].iloc[0]
    assert row.horizon == 13 and row.num_windows == 3 and row.seasonality == 1 and row.eval_metric == "WQL"
    assert row.test_error == pytest.approx(row.WQL) and row.inference_time_s >= 0
    assert len(row.dataset_fingerprint) == 40 and row.trained_on_this_dataset == False  # noqa: E712
    assert row["WQL_rel_seasonal_naive"] > 0


def test_results_json_holds_the_protocol_and_the_leaderboard(result, tmp_path):
    data = json.loads(write_reports(result, tmp_path / "r", result.quantile_levels, plot=False)["json"].read_text())
    assert data["protocol"]["datasets"]["us_gasoline"] == {"prediction_length": 13, "num_windows": 3,
                                                           "season_length": 1, "stride": None, "offset": None}
    board = data["leaderboard"]
    assert set(board) == {"fake", "seasonal_naive", "naive"}
    assert board["seasonal_naive"]["wql_skill"] == pytest.approx(0.0)
    assert 0.0 <= board["fake"]["wql_win_rate"] <= 1.0 and len(board["fake"]["wql_skill_ci"]) == 2
    assert "Leaderboard" in (tmp_path / "r" / "report.md").read_text()


def _results(tmp_path, name, **over) -> Path:
    suite = tiny_suite(**over)
    res = evaluate_suite(LastValueForecaster(), suite, model_name=name, cache_dir=tmp_path / "cache")
    return write_reports(res, tmp_path / name, suite["quantile_levels"], plot=False)["json"]


def test_compare_ranks_models_and_refuses_other_protocols(tmp_path):
    a, b = _results(tmp_path, "model_a"), _results(tmp_path, "model_b")
    board, png = compare([str(a), str(b)], tmp_path / "lb.png", n_boot=200)
    assert {"model_a", "model_b", "seasonal_naive"} == set(board["leaderboard"]) and png.stat().st_size > 1000
    other = _results(tmp_path, "other_h", datasets=[{"name": "m3_yearly", "source": "packaged", "freq": "YS",
                                                      "prediction_length": 4},
                                                     tiny_suite()["datasets"][1]])
    with pytest.raises(ProtocolMismatch, match=r"dataset 'm3_yearly': .*prediction_length=4 but .*prediction_length=6"):
        compare([str(a), str(other)])
    levels = _results(tmp_path, "other_q", quantile_levels=[0.1, 0.5, 0.9])
    with pytest.raises(ProtocolMismatch, match="quantile_levels"):
        compare([str(a), str(levels)])
    cli = subprocess.run([sys.executable, "-m", "tsfm.evaluate", "compare", str(a), str(b), "--out", str(tmp_path / "c.png")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "model_a" in cli.stdout and "WQL skill" in cli.stdout and (tmp_path / "c.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "tsfm.evaluate", "compare", str(a), str(other)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "prediction_length=4" in bad.stderr
