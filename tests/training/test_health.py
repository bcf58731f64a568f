"""The periodic health report (tsfm.training.health): loss trend, gradient statistics and clip rate, data
pipeline counters and the lite benchmark, written by the training command with its default callbacks.
Under DDP (two ranks, one writer, counters summed): tests/training/test_distributed.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsfm.training.health import HealthReport, format_report, sparkline

ROOT = Path(__file__).resolve().parents[2]


def test_sparkline_follows_the_values():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], width=8) == "▁▂▃▄▅▆▇█"
    assert sparkline([8, 1], width=8) == "█▁"
    assert sparkline([3.0] * 5) == "▁▁▁▁▁"
    assert sparkline([float("nan"), float("inf")]) == ""
    assert len(sparkline(list(range(1000)), width=24)) == 24


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="every_n_steps"):
        HealthReport(every_n_steps=0)
    with pytest.raises(ValueError, match="slow < fast"):
        HealthReport(fast=0.01, slow=0.1)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("health")
    run = tmp / "run"
    cmd = [sys.executable, "-m", "tsfm.train", f"hydra.run.dir={run}", "model=chronos2_tiny", "trainer.max_steps=4",
           "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "data.batch_size=8", "data.val_batches=1",
           "data.series_scale=0.003", "eval.max_series=3", "final_eval=null", "ckpt_path=null",
           "trainer.gradient_clip_val=0.5", "callbacks.progress_bar.refresh_rate=0"]  # default callbacks otherwise
    with open(tmp / "out.log", "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PROJECT_ROOT": str(tmp)}, stdout=f,
                            stderr=subprocess.STDOUT, timeout=600).returncode
    assert rc == 0, (tmp / "out.log").read_text()[-4000:]
    return run


def test_the_training_command_writes_a_health_report_every_interval(run):
    lines = [json.loads(x) for x in (run / "health.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    for r in lines:
        steps = r["step"]
        d = r["data"]
        assert d["batches"] == steps and d["windows"] == 8 * steps  # cumulative, one rank
        assert 0.0 <= d["unobserved_fraction"] < 1.0  # left-padded contexts and NaN-padded futures
        assert d["rejected_by_task"] >= 0 and d["too_short_series"] >= 0
        g = r["grad_norm"]
        assert g["steps"] == 2 and g["nonfinite"] == 0  # the steps since the last report
        assert 0 < g["median"] <= g["p95"] <= g["max"]
        assert g["clip_value"] == 0.5 and 0.0 <= g["clip_rate"] <= 1.0
        assert len(r["loss"]["sparkline"]) == 2 and r["loss"]["trend"] in ("falling", "flat", "rising")
    # the report of step N is written after every callback of step N ran: it holds that step's lite benchmark
    metrics = next(run.glob("csv/version_*/metrics.csv")).read_text().splitlines()
    header = metrics[0].split(",")
    col = header.index("benchmark/avg_wql")
    bench = {int(row.split(",")[header.index("step")]): float(row.split(",")[col])
             for row in metrics[1:] if row.split(",")[col]}
    assert lines[0]["benchmark"]["avg_wql"] == pytest.approx(bench[2], rel=1e-5)
    assert lines[1]["benchmark"]["avg_wql"] == pytest.approx(bench[4], rel=1e-5)
    assert len(lines[1]["benchmark"]["worst_wql"]) == 3
    text = (run / "train.log").read_text() if (run / "train.log").exists() else ""
    assert "health at step 4" in text


def test_format_report_is_readable():
    rep = {"step": 10, "loss": {"last": 1.0, "ema_fast": 0.9, "ema_slow": 1.2, "trend": "falling", "sparkline": "█▅▁"},
           "grad_norm": {"steps": 10, "nonfinite": 0, "mean": 1.0, "median": 0.9, "p95": 2.0, "max": 3.0,
                         "clip_value": 1.0, "clip_rate": 0.2},
           "data": {"windows": 80, "batches": 10, "rejected_by_task": 1, "too_short_series": 2,
                    "unobserved_fraction": 0.25},
           "benchmark": {"avg_wql": 0.95, "avg_mase": 1.01, "worst_wql": {"m1_yearly": 1.5}}}
    text = format_report(rep)
    assert "health at step 10" in text and "(falling)" in text and "20% of steps clipped at 1" in text and "relative to Seasonal Naive" in text
    assert "80 windows in 10 batches" in text and "unobserved inputs 25.0%" in text and "m1_yearly 1.500" in text
