"""FSDP2 vs DDP on CPU processes (gloo): per-rank parameter + optimizer-state memory and step time,
and the cost of Chronos-2's fix for DDP (q/k of group attention joined to the graph with a zero
gradient when every group is a singleton; see ``GroupSelfAttention.touch_unused``).

    python experiments/benchmarks/distributed.py                 # the tables (about 5 minutes on 2 cores)
    python experiments/benchmarks/distributed.py --steps 12 --models moirai_small chronos2_small

Each configuration runs in its own ``python`` process (Lightning starts the second rank), on the
real training path: the default corpus (toy scale), the family's task, AdamW, bf16-mixed, the default
TrainingMonitor, no checkpoints. Step time is the median of the steps after the first two. With 2
processes each rank gets one thread (2 cores here), the single process gets both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker(model: str, strategy: str, devices: int, steps: int, touch: bool, batch: int, out: str) -> None:
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy
    from torch.distributed.tensor import DTensor

    from tsfm.models.chronos2.model import GroupSelfAttention
    from tsfm.training.callbacks import TrainingMonitor
    from tsfm.utils.config import register_resolvers, to_plain

    GroupSelfAttention.touch_unused = touch
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=[f"model={model}", f"data.batch_size={batch}", "data.series_scale=0.003",
                                          "data.val_batches=0"])
    L.seed_everything(0)
    task = instantiate(cfg.model.task, _convert_="all")
    dm = instantiate(cfg.data, task=task, _convert_="all")
    module = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
    strat = {"single": "auto", "ddp": DDPStrategy(find_unused_parameters=not touch and model.startswith("chronos2")),
             "fsdp": ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1)}[strategy]

    def local_bytes(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.mem: dict[str, float] = {}

        def on_train_batch_start(self, *args) -> None:  # noqa: ANN002
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # noqa: ANN001, ANN002
            self.times.append(time.perf_counter() - self.t)
            opt = trainer.optimizers[0]
            self.mem = {
                "params_mib": sum(local_bytes(p) for p in pl_module.parameters()) / 2**20,
                "optim_mib": sum(local_bytes(v) for s in opt.state.values() for v in s.values()
                                 if isinstance(v, torch.Tensor) and v.ndim > 0) / 2**20,
            }

    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strat, precision="bf16-mixed", max_steps=steps,
                        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[TrainingMonitor(log_every_n_steps=10), timer])
    trainer.fit(module, datamodule=dm)
    if trainer.is_global_zero:
        Path(out).write_text(json.dumps({"step_s": statistics.median(timer.times[2:]), **timer.mem}))


def run(model: str, strategy: str, devices: int, steps: int, touch: bool, batch: int, root: Path) -> dict:
    out = root / f"{model}-{strategy}{devices}-{int(touch)}.json"
    env = {**os.environ, "PROJECT_ROOT": str(root), "OMP_NUM_THREADS": "1" if devices > 1 else os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, __file__, "--worker", model, strategy, str(devices), str(steps), str(int(touch)), str(batch), str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["moirai_small", "chronos2_small"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16, help="series per rank per step")
    ap.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        m, s, d, n, t, b, out = args.worker
        return worker(m, s, int(d), int(n), bool(int(t)), int(b), out)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"FSDP2 vs DDP, 2 gloo processes, batch {args.batch} series per rank, bf16-mixed, {args.steps} steps")
        print(f"{'model':<16}{'strategy':<10}{'params MiB/rank':>17}{'optim MiB/rank':>16}{'step s':>9}")
        for model in args.models:
            for strategy in ("ddp", "fsdp"):
                r = run(model, strategy, 2, args.steps, True, args.batch, root)
                print(f"{model:<16}{strategy:<10}{r['params_mib']:>17.1f}{r['optim_mib']:>16.1f}{r['step_s']:>9.3f}")
        print("\nChronos-2 under DDP: q/k of group attention joined with a zero gradient (touch) vs find_unused_parameters")
        print(f"{'model':<16}{'run':<30}{'step s':>9}")
        for devices, strategy in ((1, "single"), (2, "ddp")):
            for touch in (False, True):
                r = run("chronos2_small", strategy, devices, args.steps, touch, args.batch, root)
                how = ("touch" if touch else ("untouched" if devices == 1 else "find_unused_parameters"))
                print(f"{'chronos2_small':<16}{f'{strategy} x{devices}, {how}':<30}{r['step_s']:>9.3f}")


if __name__ == "__main__":
    main()
