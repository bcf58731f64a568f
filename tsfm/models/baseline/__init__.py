"""Baseline family: plain encoder-only / decoder-only patch Transformers with a Student-t mixture
head, for scaling-law studies (Yao et al. 2025). See :mod:`tsfm.models.baseline.model`."""

from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel

__all__ = ["BaselineConfig", "BaselineModel"]
