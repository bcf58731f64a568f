"""Training monitoring: throughput, step time, gradient norm, memory, and model FLOPs use."""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping

from tsfm.training.parallelize import total_grad_norm

log = logging.getLogger(__name__)

# Dense matmul peaks measured on the development CPU (docs/architecture.md, "The development machine"), per process with 2 threads.
CPU_PEAK_FLOPS = {"32": 170e9, "bf16": 400e9}


class TrainingMonitor(L.Callback):
    """Logs ``perf/*`` (samples/s, tokens/s, step time, MFU when the module reports FLOPs),
    ``grad/norm_total`` before each optimizer step and ``mem/*`` peaks.

    A module may define ``tokens_in_batch(batch) -> int`` and ``flops_per_token() -> float``
    (forward+backward) to get tokens/s and MFU.

    Every ``print_every_n_steps`` steps (0: never) rank 0 also writes one console line,
    ``step k/total | loss | ema | best | lr | mem | steps/s | samples/s | eta | gnorm`` (``best``: the
    lowest benchmark WQL so far, ``mem``: peak resident / CUDA memory, ``gnorm``: the last gradient
    norm), so a run's progress and its remaining time show in any terminal or log file.
    """

    def __init__(self, log_every_n_steps: int = 10, peak_flops: float | None = None,
                 print_every_n_steps: int = 0) -> None:
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.print_every_n_steps = max(0, int(print_every_n_steps))
        self.peak_flops = peak_flops
        self._ema: torch.Tensor | None = None  # loss EMA, kept on the device
        self._gnorm: torch.Tensor | None = None  # the last total gradient norm (device tensor)
        self._best = float("inf")  # lowest benchmark */avg_wql seen
        self._start: tuple[float, int] | None = None  # (time, step) when this process started training
        self._print_t: tuple[float, int, int] | None = None  # (time, step, samples) at the last line
        self._print_samples = 0
        self._t0: float | None = None
        self._samples = 0
        self._tokens = 0
        self._steps = 0

    def _peak(self, trainer: L.Trainer) -> float | None:
        if self.peak_flops:
            return self.peak_flops
        if trainer.accelerator.__class__.__name__ == "CPUAccelerator":
            return CPU_PEAK_FLOPS["bf16" if "bf16" in str(trainer.precision) else "32"]
        return None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def _console(self, trainer: L.Trainer, outputs: Any, samples: int) -> None:
        if not self.print_every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:  # on device: no host sync per step
            cur_t = loss.detach().float().reshape(())
            prev = cur_t if self._ema is None else self._ema
            self._ema = torch.where(torch.isfinite(cur_t), 0.98 * prev + 0.02 * cur_t, prev)
        self._print_samples += samples
        step, now = trainer.global_step, time.perf_counter()
        if self._start is None:
            self._start = self._print_t = (now, step, 0)  # type: ignore[assignment]
            return
        if step % self.print_every_n_steps or not trainer.is_global_zero:
            return
        cur = float(loss.detach()) if isinstance(loss, torch.Tensor) and loss.numel() == 1 else float("nan")
        t_last, s_last, _ = self._print_t  # type: ignore[misc]
        rate = (step - s_last) / max(now - t_last, 1e-9)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        overall = (step - self._start[1]) / max(now - self._start[0], 1e-9)
        eta = f"{_clock((total - step) / overall)}" if total and overall > 0 else "?"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        for k, v in trainer.callback_metrics.items():  # the benchmark's score (benchmark/ or holdout/avg_wql)
            if k.endswith("/avg_wql") and "zero_shot" not in k and math.isfinite(float(v)):
                self._best = min(self._best, float(v))
        best = f"{self._best:.4f}" if math.isfinite(self._best) else "-"
        gnorm = f"{float(self._gnorm):.3g}" if self._gnorm is not None else "-"
        log.info("step %d/%s | loss %.4f | ema %.4f | best %s | lr %.2e | mem %.2f GiB | %.2f steps/s | "
                 "%.0f samples/s | eta %s | gnorm %s", step, total or "?", cur,
                 float(self._ema) if self._ema is not None else float("nan"), best, lr, _peak_memory_gib(), rate,
                 self._print_samples / max(now - t_last, 1e-9), eta, gnorm)
        self._print_t, self._print_samples = (now, step, 0), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._steps += 1
        n = 0
        if isinstance(batch, dict):
            first = next((v for v in batch.values() if isinstance(v, torch.Tensor) and v.ndim > 0), None)
            n = int(first.shape[0]) if first is not None else 0
            self._samples += n
            if hasattr(pl_module, "tokens_in_batch"):
                self._tokens += int(pl_module.tokens_in_batch(batch))
        self._console(trainer, outputs, n)
        if self._steps % self.log_every_n_steps:
            return
        dt = time.perf_counter() - (self._t0 or time.perf_counter())
        if dt <= 0:
            return
        metrics = {
            "perf/step_time_s": dt / self._steps,
            "perf/samples_per_s": self._samples / dt,
        }
        if self._tokens:
            metrics["perf/tokens_per_s"] = self._tokens / dt
            peak = self._peak(trainer)
            if peak and hasattr(pl_module, "flops_per_token"):
                metrics["perf/mfu"] = self._tokens / dt * pl_module.flops_per_token() / peak
        if torch.cuda.is_available():
            metrics["mem/cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        metrics["mem/max_rss_gib"] = _max_rss_gib()
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        self._t0, self._samples, self._tokens, self._steps = time.perf_counter(), 0, 0, 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step % self.log_every_n_steps == 0:
            # the full norm on every strategy: FSDP2 shards' norms are reduced across ranks
            # (collective: all ranks reach this hook at the same step)
            total = total_grad_norm(pl_module.parameters())
            if total is not None:
                self._gnorm = total.detach().float()
                pl_module.log("grad/norm_total", total.float(), on_step=True, on_epoch=False)


def _peak_memory_gib() -> float:
    """Peak CUDA memory allocated when on a GPU, else the process's peak resident set."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return _max_rss_gib()


def _max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class BenchmarkEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping`` on a benchmark metric (e.g. ``holdout/avg_wql``).

    The data stream has no epochs and the benchmark runs mid-epoch, every ``every_n_steps``
    optimizer steps (:class:`tsfm.eval.callback.BenchmarkCallback`, which must come earlier in
    the callback list), so the check runs right after each new value instead of at epoch or
    validation end.
    """

    def __init__(self, monitor: str, every_n_steps: int, patience: int = 3, mode: str = "min",
                 min_delta: float = 0.0, **kwargs: Any) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        super().__init__(monitor=monitor, patience=patience, mode=mode, min_delta=min_delta,
                         check_on_train_epoch_end=False, **kwargs)
        self.every_n_steps = int(every_n_steps)
        self._checked_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._checked_step:
            self._checked_step = step
            if self.monitor in trainer.callback_metrics:
                self._run_early_stopping_check(trainer)
                if trainer.should_stop:
                    log.info("early stopping at step %d: %s did not improve for %d evaluations (best %.4f)",
                             step, self.monitor, self.patience, float(self.best_score))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Not a validation metric: checked in :meth:`on_train_batch_end` only."""


class SaveOnException(L.Callback):
    """Write ``<dirpath>/on_exception.ckpt`` when training stops on an exception (Ctrl-C, a crash),
    so that rerunning the command resumes (``ckpt_path=auto``, :mod:`tsfm.training.resume`); the
    file is removed when a run ends normally.

    Not Lightning's ``OnExceptionCheckpoint``: with that callback present, Lightning 2.6 turns
    ``fit(ckpt_path=None)`` into ``ckpt_path="last"`` and silently resumes from any ``last.ckpt``
    in the checkpoint directory, so ``ckpt_path=null`` (start afresh) could not be honoured.
    Resuming is decided by ``tsfm.train`` alone.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception") -> None:
        if not filename:
            raise ValueError("filename cannot be empty")
        self.dirpath, self.filename = str(dirpath), filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + ".ckpt")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if type(exception).__name__ == "TrialPruned":  # an Optuna trial stopped on purpose: nothing to resume
            return
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)
