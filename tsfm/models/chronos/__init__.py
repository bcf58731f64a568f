"""Chronos (T5): mean-scale uniform-bin tokenizer over ``transformers.T5ForConditionalGeneration``.

``config`` (shape + tokenizer/sampling settings), ``tokenizer`` (batched torch tokenizer),
``model`` (T5 wrapper with a KV-cached sampler), ``convert`` (official checkpoint layout),
``task`` (training windows), ``module`` (LightningModule), ``forecast`` (public forecaster).
"""

from tsfm.models.chronos.config import ChronosConfig

__all__ = ["ChronosConfig"]
