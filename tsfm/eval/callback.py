"""Lightning callback: a lite benchmark every N training steps, logged to every logger.

Rank 0 evaluates ``pl_module.forecaster()`` (a Forecaster over the current weights) on a lite
suite, the other ranks wait at a barrier, and the metrics are broadcast so every rank logs the
same values — a ``ModelCheckpoint(monitor="benchmark/avg_wql", mode="min")`` then keeps the
top-K checkpoints consistently on all ranks (TSM-Trainer behaviour; see
``conf/callbacks/benchmark.yaml``).

Logged: ``benchmark/avg_wql`` and ``benchmark/avg_mase`` — the geometric mean over datasets of
the scores relative to Seasonal Naive when the suite has a reference baseline (so datasets of
different scales weigh alike), else the arithmetic mean of raw scores — and per dataset
``benchmark/<dataset>/wql`` / ``.../mase``. A failed dataset (NaN/inf forecasts) makes the
averages ``inf``, which ``ModelCheckpoint(mode="min")`` ranks last. With a tsfm datamodule,
datasets its corpus draws on are marked (:mod:`tsfm.eval.leakage`) and
``benchmark/zero_shot_avg_wql`` / ``..._mase`` average over the others only.

With ``probes`` (the default) the same weights also run the sanity probes of :mod:`tsfm.eval.probes`
(under a second), logged as ``probe/<name>``: ``probe/rough_season_mae_over_amplitude`` shows when a run learns
to copy a rough seasonal pattern, a skill the lite suite barely rewards and that some seeds never reach
(experiments/recipes/README.md, session 24).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import lightning as L
import torch

from tsfm.eval.leakage import TrainingData
from tsfm.eval.runner import evaluate_suite

log = logging.getLogger(__name__)


def _training_data(pl_module: L.LightningModule) -> TrainingData | None:
    """The running datamodule's corpus (``None`` when it records none, e.g. a plain DataLoader)."""
    trainer = getattr(pl_module, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None or not hasattr(dm, "corpus_summary"):
        return None
    return TrainingData.from_summary(dm.corpus_summary(), "the training corpus")


class BenchmarkCallback(L.Callback):
    """Evaluate the model on ``suite`` every ``every_n_steps`` optimizer steps (and optionally at the end)."""

    def __init__(
        self,
        suite: dict,
        every_n_steps: int = 1000,
        cache_dir: str | None = None,
        batch_size: int = 256,
        forecast_kwargs: dict | None = None,
        prefix: str = "benchmark",
        on_train_end: bool = False,
        pass_freq: bool | None = None,
        probes: bool = True,
    ) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        if not suite or not suite.get("datasets"):
            raise ValueError("BenchmarkCallback needs a suite with datasets (e.g. conf/eval/lite.yaml)")
        self.suite = dict(suite)
        self.every_n_steps = int(every_n_steps)
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.forecast_kwargs = forecast_kwargs or {}
        self.prefix = prefix
        self.run_on_train_end = on_train_end
        self.pass_freq = pass_freq
        self.probes = bool(probes)
        self._last_step = -1
        self.history: list[dict[str, float]] = []

    # -- evaluation ----------------------------------------------------------------------
    def compute(self, pl_module: L.LightningModule) -> dict[str, float]:
        """Run the suite on the current weights; returns the metrics to log (rank-local)."""
        was_training = pl_module.training
        t0 = time.perf_counter()
        try:
            with torch.no_grad():  # not inference_mode: caches built here may be reused in training
                forecaster = pl_module.forecaster()
                res = evaluate_suite(forecaster, self.suite, model_name="model", cache_dir=self.cache_dir,
                                     batch_size=self.batch_size, forecast_kwargs=self.forecast_kwargs, plot_series=0,
                                     pass_freq=self.pass_freq, training_data=_training_data(pl_module))
                probes = _probes(forecaster, self.forecast_kwargs) if self.probes else {}
        finally:
            pl_module.train(was_training)
        agg = res.aggregates.get("model", {})
        rel = res.reference is not None
        out: dict[str, float] = {}
        for m in ("wql", "mase"):
            v = agg.get(f"rel_{m}" if rel else f"avg_{m}", float("nan"))
            out[f"{self.prefix}/avg_{m}"] = float("inf") if agg.get("failed_datasets") or not math.isfinite(v) else v
        zs = res.zero_shot_aggregates.get("model", {})
        for m in ("wql", "mase"):
            v = zs.get(f"rel_{m}" if rel else f"avg_{m}", float("nan"))
            out[f"{self.prefix}/zero_shot_avg_{m}"] = float("inf") if zs.get("failed_datasets") or not math.isfinite(v) else v
        for name, d in res.datasets.items():
            s = d.scores.get("model")
            for m in ("wql", "mase"):
                v = s.metrics.get(m, float("nan")) if s is not None and s.ok else float("inf")
                out[f"{self.prefix}/{name}/{m}"] = float(v)
        out.update({f"probe/{k}": v for k, v in probes.items()})
        out[f"{self.prefix}/seconds"] = time.perf_counter() - t0
        return out

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics: dict[str, float] | None = None
        with _full_weights(pl_module) as module:  # collective under FSDP2
            if trainer.is_global_zero:
                metrics = self.compute(module)
        if trainer.is_global_zero:
            log.info("step %d: %s", trainer.global_step,
                     {k: round(v, 4) for k, v in metrics.items() if "/avg_" in k or k.startswith("probe/") or k.endswith("seconds")})
        trainer.strategy.barrier("benchmark")
        metrics = trainer.strategy.broadcast(metrics, src=0)
        self._publish(trainer, metrics)

    def _publish(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        # Straight to the loggers (once, at this step; `self.log` would re-log the value at later
        # steps) and into callback_metrics, where ModelCheckpoint(monitor=...) reads it on every rank.
        self.history.append({"step": trainer.global_step, **metrics})
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v, dtype=torch.float32) for k, v in metrics.items()})

    # -- hooks -----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run_on_train_end and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            with _full_weights(pl_module) as module:  # collective under FSDP2
                metrics = self.compute(module) if trainer.is_global_zero else None
            trainer.strategy.barrier("benchmark")
            metrics = trainer.strategy.broadcast(metrics, src=0)
            self._publish(trainer, metrics)


def _probes(forecaster: Any, forecast_kwargs: dict) -> dict[str, float]:
    """:func:`tsfm.eval.probes.run_probes` on ``forecaster``; a forecaster that cannot run them (a failure is
    logged with its reason, never raised: the probes are a monitor, the suite is what checkpoints rank by)
    gets none."""
    from tsfm.eval.probes import run_probes

    try:
        return run_probes(forecaster, **forecast_kwargs)
    except Exception as e:  # noqa: BLE001 - reported, and the benchmark's own metrics still log
        log.warning("sanity probes skipped at this evaluation: %s: %s", type(e).__name__, e)
        return {}


def _full_weights(pl_module: L.LightningModule):
    """``pl_module.unsharded()`` (tsfm modules: a plain copy of FSDP2-sharded weights on rank 0),
    or the module itself for any other LightningModule."""
    unsharded = getattr(pl_module, "unsharded", None)
    return unsharded() if unsharded is not None else contextlib.nullcontext(pl_module)
