"""Resuming: ckpt_path=auto finds an interrupted run of the same command; Ctrl-C then rerun continues it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tsfm.training.resume import interrupted_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _run(root: Path, name: str, overrides: list[str], ckpts: tuple[str, ...] = (), exported: bool = False) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    for c in ckpts:
        (run / "checkpoints").mkdir(exist_ok=True)
        (run / "checkpoints" / c).write_bytes(b"x")
        time.sleep(0.01)
    if exported:
        (run / "export").mkdir()
        (run / "export" / "config.json").write_text("{}")
    time.sleep(0.01)
    return run


def test_interrupted_checkpoint_follows_the_same_command_only(tmp_path):
    ov = ["model=chronos2_tiny", "trainer.max_steps=9"]
    old = _run(tmp_path, "a", ov, ("last.ckpt", "on_exception.ckpt"))
    _run(tmp_path, "b", ["model=moirai_tiny"], ("last.ckpt",))  # another command
    _run(tmp_path, "c", list(reversed(ov)))  # same command, failed before its first checkpoint
    current = _run(tmp_path, "d", ov)
    assert interrupted_checkpoint(current, tmp_path, ov) == old / "checkpoints" / "on_exception.ckpt"
    assert interrupted_checkpoint(current, tmp_path, ["model=chronos2_tiny"]) is None
    _run(tmp_path, "e", ov, ("last.ckpt",), exported=True)  # the newest run of the command finished
    assert interrupted_checkpoint(current, tmp_path, ov) is None
    assert interrupted_checkpoint(current, tmp_path / "missing", ov) is None


def test_ctrl_c_then_rerun_resumes_from_the_interrupted_run(tmp_path):
    # unbuffered: with a block-buffered pipe "step 6/400" could reach us only after the fast steps
    # had finished, and the Ctrl-C came too late; 400 steps leave the signal seconds to land (~65 steps/s)
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tsfm.train", "model=chronos2_tiny", "trainer.max_steps=400",
           "trainer.val_check_interval=1000",  # default callbacks; the lite benchmark just does not come due
           "callbacks.monitor.print_every_n_steps=2", "data.batch_size=8", "data.series_scale=0.003",
           "callbacks.progress_bar.refresh_rate=0", "final_eval=null"]  # the evaluation is tested in test_train
    # a Ctrl-C reaches the run even when the tests themselves run in the background: there the shell
    # starts them with SIGINT ignored, the child would inherit that, and the "interrupted" run would finish
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stdout:  # wait until training is under way, then press Ctrl-C
        lines.append(line)
        if "step 6/400" in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) != 0, "".join(lines[-20:])
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "export").exists()
    saved = runs[0] / "checkpoints" / "on_exception.ckpt"
    assert saved.is_file()
    step = torch.load(saved, weights_only=True, map_location="cpu")["global_step"]
    assert step >= 6
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming the interrupted run {runs[0]}" in out.stderr + out.stdout
    printed = [int(m) for m in re.findall(r"step (\d+)/400 \|", out.stderr + out.stdout)]
    assert printed and min(printed) > step and max(printed) == 400  # continued, not restarted
    new = [r for r in (tmp_path / "logs" / "train" / "runs").iterdir() if r != runs[0]]
    assert len(new) == 1 and (new[0] / "export" / "config.json").exists()
    # the finished command is not resumed again: a third run starts afresh
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming" not in again.stderr + again.stdout


def test_ckpt_path_null_starts_afresh_even_beside_an_old_last_ckpt(tmp_path):
    """With Lightning's OnExceptionCheckpoint in the callbacks, Lightning 2.6 resumed `fit(ckpt_path=None)`
    from any last.ckpt in the checkpoint directory; the default callbacks must honour ckpt_path=null."""
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tsfm.train", "model=chronos2_tiny", "trainer.max_steps=4",
           "trainer.val_check_interval=1000", "callbacks.monitor.print_every_n_steps=1", "data.batch_size=8",
           "data.series_scale=0.003", "callbacks.progress_bar.refresh_rate=0", "final_eval=null",
           "ckpt_path=null", f"hydra.run.dir={run}"]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    printed = [int(m) for m in re.findall(r"step (\d+)/4 \|", again.stderr + again.stdout)]
    assert printed and min(printed) <= 2 and max(printed) == 4  # trained from the start again, not resumed at step 4
