"""Training samples of the baseline family: fixed context/horizon windows of whole patches.

Both architectures see the same windows, so a scaling study compares them on equal data: a
random window of ``context_length + prediction_length`` steps (multiples of ``patch_size``) from
one random variate of a :class:`~tsfm.data.types.Series` (the baseline models are univariate).
Cropping is the data layer's :class:`~tsfm.data.tasks.FixedWindowTask`; this class checks the
patch alignment and names the batch fields the model reads.
"""

from __future__ import annotations

import numpy as np
import torch

from tsfm.data.tasks import FixedWindowTask
from tsfm.data.types import Batch, Sample, Series


class BaselineTask:
    """:class:`tsfm.data.types.TaskBuilder` for :class:`~tsfm.models.baseline.module.BaselineModule`.

    Windows whose context has no observed value are rejected (``None``, counted by the sampler).
    ``collate`` returns ``past_target`` ``[B, C]`` and ``future_target`` ``[B, H]`` float32
    with NaN for missing values.
    """

    def __init__(self, context_length: int = 512, prediction_length: int = 64, patch_size: int = 32) -> None:
        if patch_size <= 0:
            raise ValueError(f"patch_size={patch_size} must be positive")
        for name, value in (("context_length", context_length), ("prediction_length", prediction_length)):
            if value <= 0 or value % patch_size:
                raise ValueError(
                    f"{name}={value} must be a positive multiple of patch_size={patch_size} "
                    "(the baseline models read whole patches)"
                )
        self.context_length = int(context_length)
        self.prediction_length = int(prediction_length)
        self.patch_size = int(patch_size)
        self._window = FixedWindowTask(self.context_length, self.prediction_length)
        self.min_length = self._window.min_length

    @property
    def tokens_per_sample(self) -> int:
        """Patches (tokens) in one window: the ``D`` unit of a scaling study."""
        return self.min_length // self.patch_size

    def __call__(self, series: Series, rng: np.random.Generator) -> Sample | None:
        if series.target.ndim != 2:
            raise ValueError(
                f"series {series.item_id!r}: target must be [V, T], got shape {series.target.shape}"
            )
        return self._window(series, rng)

    def collate(self, samples: list[Sample]) -> Batch:
        if not samples:
            raise ValueError("collate got no samples")
        windows = torch.from_numpy(np.stack([s["window"] for s in samples]))  # [B, C + H]
        c = self.context_length
        return {"past_target": windows[:, :c].contiguous(), "future_target": windows[:, c:].contiguous()}
