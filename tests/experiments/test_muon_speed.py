"""experiments/benchmarks/muon_speed.py: every optimizer variant timed, and the two Muon implementations agree."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_muon_speed_times_every_optimizer_and_compares_the_two_muons():
    cmd = [sys.executable, str(ROOT / "experiments" / "benchmarks" / "muon_speed.py"), "--steps", "2", "--warmup", "1",
           "model=chronos2_tiny"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("AdamW fused", "torch.optim.Muon", "BatchedMuon", "optim.optimizer=muon"):
        line = next(x for x in out.stdout.splitlines() if x.startswith(name))
        assert float(line.split()[-1]) > 0, line
    diff = float(re.search(r"after 3 steps: (\S+)", out.stdout).group(1))
    assert diff <= 1e-6  # the batched iterations repeat torch's arithmetic
    assert re.search(r"[1-9]\d* hidden matrices", out.stdout)
