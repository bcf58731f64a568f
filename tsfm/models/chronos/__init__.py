"""Chronos (T5): mean-scale uniform-bin tokenizer over ``transformers.T5ForConditionalGeneration``.

``config`` (shape + tokenizer/sampling settings), ``tokenizer`` (batched torch tokenizer),
``model`` (T5 wrapper with a KV-cached sampler), ``convert`` (official checkpoint layout),
``task`` (training windows), ``module`` (LightningModule), ``forecast`` (public forecaster).
"""

from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.spec import FamilySpec, register

SPEC = register(FamilySpec(
    name="chronos",
    config="tsfm.models.chronos.config:ChronosConfig",
    model="tsfm.models.chronos.model:ChronosModel",
    module="tsfm.models.chronos.module:ChronosModule",
    task="tsfm.models.chronos.task:ChronosTask",
    forecaster="tsfm.models.chronos.forecast:ChronosForecaster",
    converter="tsfm.models.chronos.convert",
    model_config="chronos_small",
    recognizes=lambda c: ("chronos_config" in c and "Chronos2Model" not in (c.get("architectures") or [])
                          and c.get("chronos_pipeline_class") != "Chronos2Pipeline"
                          and ("T5ForConditionalGeneration" in (c.get("architectures") or []) or c.get("model_type") == "t5")),
    looks_for="config.json with chronos_config and a T5ForConditionalGeneration architecture (amazon/chronos-t5-*)",
))

__all__ = ["SPEC", "ChronosConfig"]
