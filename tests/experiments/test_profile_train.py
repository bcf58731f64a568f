"""experiments/benchmarks/profile_train.py: a short profiled fit prints its step time and the profile lists."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_train_prints_the_step_time_and_where_it_goes(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "benchmarks" / "profile_train.py"), "--steps", "4", "--top", "15",
           "--data-dir", str(tmp_path / "data"), "model=chronos2_tiny", "data.series_scale=0.003",
           "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 steps in " in out.stdout and "ms/step" in out.stdout
    assert "Ordered by: internal time" in out.stdout and "Ordered by: cumulative time" in out.stdout
    assert "run_backward" in out.stdout  # the backward pass shows up in the lists
