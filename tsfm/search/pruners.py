"""A median pruner that also compares with a score the trial did not have to earn: the reference.

Fine-tuning has one: the zero-shot model, scored on the same held-out windows before any trial
trains. It is the learning rate 0 run, flat at its score at every step. Optuna's
:class:`~optuna.pruners.MedianPruner` compares a trial only with finished trials. On a dataset
where fine-tuning barely helps, those trials sit above the zero-shot score early on (a high rate
first hurts). A trial at a tiny rate then stays at the zero-shot score, "better than the median",
until early stopping ends it: it costs a full early-stopping run and can only return the zero-shot
model, which the guardrail keeps anyway.

:class:`ReferenceMedianPruner` counts the reference as one more finished trial. A trial is pruned
when its best report so far is worse than the median of the finished trials' reports at this step
together with the reference. With one finished trial, that median lies halfway between that trial
and the zero-shot score. A trial records its reference as the user attribute :data:`REFERENCE_ATTR`
(:meth:`tsfm.search.pruning.TrialPruning.set_reference`); it is also stored in the study. A trial
without one is judged as by ``MedianPruner``.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

REFERENCE_ATTR = "reference_value"


class ReferenceMedianPruner(optuna.pruners.BasePruner):
    """Median pruning in which the trial's reference score (user attribute ``reference_value``) counts as a
    finished trial with that score at every step. Arguments as :class:`optuna.pruners.MedianPruner`'s."""

    def __init__(self, n_startup_trials: int = 1, n_warmup_steps: int = 0, interval_steps: int = 1) -> None:
        for name, v, low in (("n_startup_trials", n_startup_trials, 0), ("n_warmup_steps", n_warmup_steps, 0),
                             ("interval_steps", interval_steps, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"hydra.sweeper.pruner.{name}={v!r} must be an integer >= {low}")
        self.n_startup_trials, self.n_warmup_steps, self.interval_steps = n_startup_trials, n_warmup_steps, interval_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps or (step - self.n_warmup_steps) % self.interval_steps:
            return False
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(finished) < self.n_startup_trials or not finished:
            return False
        values = [t.intermediate_values[step] for t in finished if step in t.intermediate_values]
        reference = trial.user_attrs.get(REFERENCE_ATTR)
        if isinstance(reference, (int, float)) and math.isfinite(reference):
            values.append(float(reference))
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return False
        reports = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        if not reports:
            return True  # only NaN so far: nothing to keep
        minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
        best = min(reports) if minimize else max(reports)
        median = float(np.median(values))
        return best > median if minimize else best < median
