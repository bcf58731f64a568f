"""Baseline family: plain encoder-only / decoder-only patch Transformers with a Student-t mixture
head, for scaling-law studies (Yao et al. 2025). See :mod:`tsfm.models.baseline.model`."""

from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel
from tsfm.models.spec import FamilySpec, register

SPEC = register(FamilySpec(
    name="baseline",
    config="tsfm.models.baseline.config:BaselineConfig",
    model="tsfm.models.baseline.model:BaselineModel",
    module="tsfm.models.baseline.module:BaselineModule",
    task="tsfm.models.baseline.task:BaselineTask",
    forecaster="tsfm.models.baseline.forecast:BaselineForecaster",
    converter="tsfm.models.baseline.convert",
    model_config="baseline_dec_small",
    recognizes=lambda c: False,  # tsfm exports only: recognised by their "tsfm_family": "baseline"
    looks_for='a tsfm export whose config.json says "tsfm_family": "baseline"',
))

__all__ = ["SPEC", "BaselineConfig", "BaselineModel"]
