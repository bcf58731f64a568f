"""Training steps per second of ``python -m tsfm.train`` under config overrides, one variant per process.

Each variant composes conf/train.yaml with its overrides (the default: the quickstart), trains ``--steps``
steps without the lite benchmark, checkpoints, logger or export, and times steps ``--warmup`` to the end
with a Lightning callback, so data-loader start-up and ``torch.compile``'s first compilation are left out.
The variants run one after the other in fresh processes, so compare them within one invocation (this
machine's absolute speed drifts with the load).

    python experiments/benchmarks/train_speed.py "" "model.compile=true" "data.length_groups=8"
    OMP_NUM_THREADS=2 python experiments/benchmarks/train_speed.py --steps 900 "" "model.compile=true"

A variant is one string of space-separated overrides; "" is the configuration as shipped.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_fit(overrides: list[str], steps: int, data_dir: str, fixed: list[str]) -> tuple:
    """(module, datamodule, trainer, output dir) of ``python -m tsfm.train`` composed with ``fixed + overrides``,
    ``steps`` steps, no export or final evaluation, Lightning's files in a fresh temporary directory."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tsfm.training.build import build
    from tsfm.utils.config import register_resolvers

    register_resolvers()
    base = [f"paths.data_dir={data_dir}", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
            "export=false", "final_eval=null", "ckpt_path=null"]  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=base + fixed + overrides)
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = tempfile.mkdtemp(prefix="tsfm-train-speed-")  # Lightning's checkpoints land here
    return (*build(cfg), cfg.paths.output_dir)


def measure(overrides: list[str], steps: int, warmup: int, data_dir: str) -> tuple[float, float]:
    """(steps/s over steps warmup..steps-1, wall seconds of the whole fit) of one variant, in this process."""
    import lightning.pytorch as pl

    class Clock(pl.Callback):
        t0 = t1 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            if trainer.global_step == warmup:
                self.t0 = time.perf_counter()
            if trainer.global_step == steps - 1:
                self.t1 = time.perf_counter()

    module, datamodule, trainer, output_dir = build_fit(overrides, steps, data_dir, ["callbacks=none", "logger=none"])
    clock = Clock()
    trainer.callbacks.append(clock)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    wall = time.perf_counter() - start
    shutil.rmtree(output_dir, ignore_errors=True)
    return (steps - 1 - warmup) / (clock.t1 - clock.t0), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="*", default=[""], help='override strings, e.g. "" "model.compile=true"')
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--warmup", type=int, default=300, help="steps left out of the timing")
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="the corpus cache (built on first use)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this variant here and print it
    a = p.parse_args()
    if a.warmup >= a.steps - 1:
        sys.exit(f"--warmup {a.warmup} leaves no timed steps of --steps {a.steps}")
    if a.one is not None:
        rate, wall = measure(shlex.split(a.one), a.steps, a.warmup, a.data_dir)
        print(f"RESULT {rate:.2f} {wall:.1f}")
        return
    print(f"{'variant':<50} {'steps/s':>8} {'fit wall s':>10}")
    for v in a.variants:
        cmd = [sys.executable, __file__, "--one", v, "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--data-dir", a.data_dir]  # fmt: skip
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            print(f"{v or '(as shipped)':<50} failed (rc {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
            continue
        rate, wall = line.split()[1:]
        print(f"{v or '(as shipped)':<50} {float(rate):>8.2f} {float(wall):>10.1f}", flush=True)


if __name__ == "__main__":
    main()
