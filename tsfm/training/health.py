"""A periodic health report of a training run: is the loss still falling, are the gradients sane,
is the data pipeline serving what it should, and where does the lite benchmark stand.

Every ``every_n_steps`` steps :class:`HealthReport` gathers, over the steps since the last report:

* **loss trend**: a fast and a slow exponential moving average (the fast one below the slow one
  means the loss is still falling), and a sparkline of the loss over the window;
* **gradients**: the total norm's mean / median / p95 / max before clipping, and the clip rate
  (the fraction of steps whose norm exceeded ``trainer.gradient_clip_val``);
* **data pipeline**: windows served and batches, the task's rejected draws, series too short to
  ever be drawn, and the unobserved fraction of the model inputs (padding plus missing values),
  summed over every rank (see :meth:`tsfm.data.datamodule.TSDataModule.pipeline_stats`);
* **lite benchmark**: the latest ``benchmark/*`` scores (average and the three worst datasets).

The counters are reduced across ranks (a collective every rank reaches at the same step); only
rank 0 prints the report and appends it to ``<run dir>/health.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from tsfm.training.parallelize import total_grad_norm

log = logging.getLogger(__name__)

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """``values`` as ``width`` (or fewer) block characters, each the mean of a run of values."""
    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if vals.size == 0:
        return ""
    chunks = np.array_split(vals, min(width, vals.size))
    means = np.array([c.mean() for c in chunks])
    lo, hi = means.min(), means.max()
    if hi - lo < 1e-12:
        return SPARK[0] * len(means)
    idx = np.round((means - lo) / (hi - lo) * (len(SPARK) - 1)).astype(int)
    return "".join(SPARK[i] for i in idx)


class HealthReport(L.Callback):
    """Print and record a health report every ``every_n_steps`` training steps (module docstring)."""

    def __init__(self, every_n_steps: int = 1000, fast: float = 0.1, slow: float = 0.01,
                 filename: str = "health.jsonl") -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if not 0 < slow < fast <= 1:
            raise ValueError(f"need 0 < slow < fast <= 1 for the loss EMAs, got fast={fast}, slow={slow}")
        self.every_n_steps, self.fast, self.slow, self.filename = int(every_n_steps), float(fast), float(slow), filename
        self._losses: list[torch.Tensor] = []  # device scalars since the last report: no host sync per step
        self._norms: list[torch.Tensor] = []
        self._ema_fast: float | None = None
        self._ema_slow: float | None = None
        self.reports: list[dict[str, Any]] = []  # rank 0's reports of this process (also in health.jsonl)
        self._due = False  # a report is due; written once every callback of that step has run
        self._snapshot: dict[str, int] = {}
        self._last_step = -1

    # -- collection -------------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        norm = total_grad_norm(pl_module.parameters())  # collective under FSDP2: every rank calls it
        if norm is not None:
            self._norms.append(norm.detach().float())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().float().reshape(()))
        step = trainer.global_step
        # once per optimizer step: with gradient accumulation several batches end at the same step
        self._due = step > 0 and step % self.every_n_steps == 0 and step != self._last_step
        if self._due:
            self._last_step = step  # the counters as of this step (the next batch is fetched before the report is written)
            dm = getattr(trainer, "datamodule", None)
            self._snapshot = dm.pipeline_stats() if dm is not None and hasattr(dm, "pipeline_stats") else {}

    # the report of step N is written when step N+1 starts (or training ends), so it includes what other
    # callbacks computed at step N (the lite benchmark); every rank reaches these hooks at the same step
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._due:
            self._due = False
            self.report(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._due:
            self._due = False
            self.report(trainer)

    # -- the report ---------------------------------------------------------------------------------
    def _data(self, trainer: L.Trainer) -> dict[str, float]:
        stats = self._snapshot
        keys = ("windows", "batches", "rejected_by_task", "unobserved_values", "input_values")
        # on the strategy's device: NCCL (multi-GPU) reduces CUDA tensors only
        local = torch.tensor([float(stats.get(k, 0.0)) for k in keys], dtype=torch.float64,
                             device=trainer.strategy.root_device)
        total = (trainer.strategy.reduce(local, reduce_op="sum") if trainer.world_size > 1 else local).cpu()
        out = dict(zip(keys, (float(v) for v in total)))
        out["too_short_series"] = float(stats.get("too_short_series", 0))  # the same on every rank
        out["unobserved_fraction"] = out["unobserved_values"] / out["input_values"] if out["input_values"] else float("nan")
        return out

    def report(self, trainer: L.Trainer) -> dict[str, Any] | None:
        losses = torch.stack(self._losses).cpu().tolist() if self._losses else []
        norms = torch.stack(self._norms).cpu().numpy() if self._norms else np.zeros(0)
        self._losses, self._norms = [], []
        data = self._data(trainer)  # collective: before any rank returns
        for v in losses:
            if math.isfinite(v):
                self._ema_fast = v if self._ema_fast is None else (1 - self.fast) * self._ema_fast + self.fast * v
                self._ema_slow = v if self._ema_slow is None else (1 - self.slow) * self._ema_slow + self.slow * v
        if not trainer.is_global_zero:
            return None
        clip = trainer.gradient_clip_val
        finite = norms[np.isfinite(norms)]
        grads = {
            "steps": int(norms.size),
            "nonfinite": int(norms.size - finite.size),
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "median": float(np.median(finite)) if finite.size else float("nan"),
            "p95": float(np.percentile(finite, 95)) if finite.size else float("nan"),
            "max": float(finite.max()) if finite.size else float("nan"),
            "clip_value": float(clip) if clip else None,
            "clip_rate": float((finite > float(clip)).mean()) if clip and finite.size else 0.0,
        }
        fast, slow = self._ema_fast, self._ema_slow
        trend = "-" if fast is None or slow is None else (
            "falling" if fast < slow * 0.995 else "rising" if fast > slow * 1.005 else "flat")
        bench = {k.removeprefix("benchmark/"): float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith("benchmark/") and torch.as_tensor(v).numel() == 1}
        per_dataset = {k.removesuffix("/wql"): v for k, v in bench.items() if k.endswith("/wql") and "/" in k
                       and not k.startswith("zero_shot")}
        worst = sorted(per_dataset.items(), key=lambda kv: -kv[1] if math.isfinite(kv[1]) else math.inf)[:3]
        rep = {
            "step": int(trainer.global_step),
            "loss": {"last": losses[-1] if losses else None, "ema_fast": fast, "ema_slow": slow, "trend": trend,
                     "sparkline": sparkline(losses)},
            "grad_norm": grads,
            "data": data,
            "benchmark": {"avg_wql": bench.get("avg_wql"), "avg_mase": bench.get("avg_mase"),
                          "worst_wql": dict(worst)},
        }
        self.reports.append(rep)
        log.info("%s", format_report(rep))
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / self.filename, "a") as f:
            f.write(json.dumps(rep) + "\n")
        return rep


def _num(v: float | None, fmt: str = ".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def format_report(rep: dict[str, Any]) -> str:
    """The report as a few readable lines (what the console shows)."""
    lo, g, d, b = rep["loss"], rep["grad_norm"], rep["data"], rep["benchmark"]
    clip = f"{g['clip_rate']:.0%} of steps clipped at {g['clip_value']:g}" if g["clip_value"] else "no clipping"
    worst = ", ".join(f"{k} {v:.3f}" for k, v in b["worst_wql"].items()) or "-"
    return "\n".join([
        f"health at step {rep['step']}",
        f"  loss   {_num(lo['last'])} | ema fast {_num(lo['ema_fast'])} / slow {_num(lo['ema_slow'])} ({lo['trend']}) "
        f"| {lo['sparkline']}",
        f"  grads  norm mean {_num(g['mean'])} median {_num(g['median'])} p95 {_num(g['p95'])} max {_num(g['max'])} "
        f"over {g['steps']} steps ({g['nonfinite']} non-finite) | {clip}",
        f"  data   {d['windows']:.0f} windows in {d['batches']:.0f} batches | {d['rejected_by_task']:.0f} draws rejected "
        f"by the task | {d['too_short_series']:.0f} series too short to draw | unobserved inputs "
        f"{_num(d['unobserved_fraction'], '.1%')}",
        f"  bench  WQL {_num(b['avg_wql'])} MASE {_num(b['avg_mase'])} relative to Seasonal Naive | highest dataset "
        f"WQL: {worst}",
    ])
