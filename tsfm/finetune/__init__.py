"""Fine-tuning on your own data: ``python -m tsfm.finetune`` and ``Forecaster.fit``.

See :mod:`tsfm.finetune.run` for the workflow (held-out windows, zero-shot and baseline scores,
fine-tuning with early stopping, the guardrail). The Optuna learning-rate search
(``hparams_search=optuna``) is :mod:`tsfm.search`.
"""

from tsfm.finetune.data import Holdout, hold_out, load_series
from tsfm.finetune.run import FinetuneResult, finetune

__all__ = ["FinetuneResult", "Holdout", "finetune", "hold_out", "load_series"]
