"""The job side of an Optuna search: report the benchmark metric to the trial, stop when pruned.

The sweeper (:mod:`tsfm.search.sweeper`) launches each trial as a Hydra job with
``+optuna_trial=<trial id>``; :func:`pruning_callback` turns that into a Lightning callback that
reports ``monitor`` (e.g. ``holdout/avg_wql`` or ``benchmark/avg_wql``) to the trial whenever
the benchmark callback publishes it, and raises ``optuna.TrialPruned`` when the pruner says so.
The exception ends the job; the sweeper records the trial as pruned.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class TrialPruning(L.Callback):
    """Report ``monitor`` every ``every_n_steps`` steps to an Optuna trial; prune on its verdict."""

    def __init__(self, storage: str | None, study_name: str, trial_id: int, monitor: str, every_n_steps: int,
                 pruner: Any = None) -> None:
        import optuna

        self.study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(self.study, int(trial_id))
        self.monitor, self.every_n_steps = monitor, int(every_n_steps)
        self._reported = -1

    def set_reference(self, value: float) -> None:
        """The score this trial must beat to be worth anything (fine-tuning: the zero-shot model's held-out
        score, in ``monitor``'s units), stored on the trial; a ``reference: true`` pruner counts it as a
        finished trial (:class:`tsfm.search.pruners.ReferenceMedianPruner`)."""
        from tsfm.search.pruners import REFERENCE_ATTR

        v = float(value)
        if math.isfinite(v):
            self.trial.set_user_attr(REFERENCE_ATTR, v)
            log.info("trial %d: reference %s = %.4f", self.trial.number, self.monitor, v)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        import optuna

        step = trainer.global_step
        if step <= 0 or step % self.every_n_steps or step == self._reported:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self._reported = step
        v = float(value)
        self.trial.report(v if math.isfinite(v) else float("inf"), step)
        if self.trial.should_prune():
            log.info("trial %d pruned at step %d (%s = %.4f)", self.trial.number, step, self.monitor, v)
            raise optuna.TrialPruned(f"pruned at step {step} ({self.monitor} = {v:.4f})")


def pruning_callback(cfg: DictConfig, monitor: str, every_n_steps: int) -> TrialPruning | None:
    """The callback for a job launched by the Optuna sweeper (``cfg.optuna_trial`` set), else None."""
    trial_id = cfg.get("optuna_trial")
    if trial_id is None:
        return None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from tsfm.search.sweeper import make_pruner

    sweeper = HydraConfig.get().sweeper
    # the job's own config holds the pruner settings the sweeper was given (hparams_search/optuna.yaml)
    settings = cfg.get("search_pruner")
    pruner = make_pruner(OmegaConf.to_container(settings, resolve=True) if settings is not None else None)
    return TrialPruning(sweeper.get("storage"), str(cfg.optuna_study), int(trial_id), monitor, every_n_steps, pruner)
