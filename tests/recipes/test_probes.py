"""Sanity probes of the quickstart recipe (issue 11): a tiny model of the quickstart's family, trained
for a few minutes on a toy version of the default corpus, must continue a clean sine and a linear
trend and widen its interval for noise. `slow`: minutes of training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsfm.eval.probes import run_probes
from tsfm.forecast import load_forecaster

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_family_learns_to_continue_a_sine_and_a_trend(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "tsfm.train", f"hydra.run.dir={tmp_path}/run", "final_eval=null",
           "model.module.config.d_model=128", "model.module.config.d_ff=512", "model.module.config.num_layers=3",
           # 5,000 steps: at 2,500 the current recipe's 3-layer model still forecasts the sine flat (session 23: sine
           # MAE 0.60 of the amplitude; 0.57 on the previous trend mix, 0.59 at lr 2e-3); at 5,000 it is 0.06 (~6 min)
           "model.context_length=256", "data.series_scale=0.1", "trainer.max_steps=5000",
           "trainer.val_check_interval=2500", "callbacks.progress_bar.refresh_rate=0"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = run_probes(load_forecaster(tmp_path / "run" / "export"))
    assert probes["sine_mae_over_amplitude"] < 0.2, probes
    assert probes["trend_mae_over_level"] < 0.05, probes
    assert probes["interval80_clean"] < probes["interval80_noisy"], probes
