"""Chronos-T5 teacher-forced training step: tsfm (Lightning) vs a plain transformers T5 loop.

Both sides train the same shape on the same tokenised batch (batch 32, context 512, horizon 64,
built by :class:`ChronosTask`), AdamW lr 1e-3 wd 0.01, no gradient clipping:

* ``plain HF T5``: ``T5ForConditionalGeneration`` (default attention), ``loss.backward()``,
  ``AdamW.step()``, ``zero_grad()`` in a bare Python loop;
* ``tsfm``: :class:`ChronosModule` driven by ``lightning.Trainer.fit`` (its optimizer recipe,
  non-finite guard and logging included), step time measured between batch start and end hooks.

Each is measured in fp32 and with bf16 autocast (Lightning ``precision="bf16-mixed"``).
Run under the shared lock:
    flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/chronos_train_step.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import T5Config, T5ForConditionalGeneration

from tsfm.data.types import Series
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.module import ChronosModule
from tsfm.models.chronos.task import ChronosTask


def make_batch(batch_size: int, context: int, horizon: int) -> dict[str, torch.Tensor]:
    task = ChronosTask(context_length=context, prediction_length=horizon, min_past=horizon)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(batch_size):
        x = (rng.normal(size=(1, context + horizon + 200)).cumsum(-1) + 50).astype(np.float32)
        samples.append(task(Series(x, "h"), rng))
    return task.collate(samples)


def plain_hf(cfg: ChronosConfig, batch: dict, steps: int, warmup: int, bf16: bool) -> list[float]:
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**cfg.t5_kwargs())).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t)


def tsfm_lightning(cfg: ChronosConfig, batch: dict, steps: int, warmup: int, bf16: bool) -> list[float]:
    torch.manual_seed(0)
    module = ChronosModule(
        config=cfg.to_dict(), optim={"lr": 1e-3, "weight_decay": 0.01, "scheduler": "linear"}
    )
    timer = _StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=warmup + steps, precision="bf16-mixed" if bf16 else "32-true",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader([batch] * (warmup + steps), batch_size=None))
    return timer.times[warmup:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ChronosConfig.from_name(args.size, context_length=args.context, prediction_length=args.horizon)
    batch = make_batch(args.batch, args.context, args.horizon)
    rows = []
    for bf16 in (False, True):
        hf = plain_hf(cfg, batch, args.steps, args.warmup, bf16)
        ours = tsfm_lightning(cfg, batch, args.steps, args.warmup, bf16)
        rows.append(("bf16 autocast" if bf16 else "fp32", statistics.median(hf), statistics.median(ours)))
    print(f"\nChronos-T5 {args.size} training step: batch {args.batch}, context {args.context}, horizon "
          f"{args.horizon}, {args.threads} thread(s), CPU (shared machine), median of {args.steps} steps")  # fmt: skip
    print(f"{'precision':<16}{'plain HF T5 s':>15}{'tsfm s':>10}{'tsfm/HF':>10}")
    for name, hf, ours in rows:
        print(f"{name:<16}{hf:>15.2f}{ours:>10.2f}{ours / hf:>10.3f}")
    print(f"bf16 speed-up (tsfm): {rows[0][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
    main()
