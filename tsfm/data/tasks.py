"""A generic task builder: fixed context/horizon windows (for tests, benchmarks and simple models).

Model families bring their own task builders (patching, packing, masking); this one only crops a
random ``context_length + prediction_length`` window of one random variate.
"""

from __future__ import annotations

import numpy as np
import torch

from tsfm.data.types import Batch, Sample, Series


class FixedWindowTask:
    """Random window of ``context_length`` past + ``prediction_length`` future steps.

    A series shorter than the window is never drawn (``min_length``); a window whose context has
    no observed value is rejected (``None``: counted by the sampler as a skip).
    """

    def __init__(self, context_length: int, prediction_length: int) -> None:
        if context_length < 1 or prediction_length < 0:
            raise ValueError(
                f"context_length must be >= 1 and prediction_length >= 0, got {context_length}, {prediction_length}"
            )
        self.context_length = int(context_length)
        self.prediction_length = int(prediction_length)
        self.min_length = self.context_length + self.prediction_length

    def __call__(self, series: Series, rng: np.random.Generator) -> Sample | None:
        v, t = series.target.shape
        w = self.min_length
        if t < w:
            return None
        off = int(rng.random() * (t - w + 1))
        var = int(rng.integers(v)) if v > 1 else 0
        window = series.target[
            var, off : off + w
        ].copy()  # [C + H]; a copy, so collation reads no mapped page
        c = self.context_length
        if np.isnan(window[:c]).all():
            return None
        return {"window": window, "item_id": series.item_id, "dataset": series.dataset, "offset": off}

    def collate(self, samples: list[Sample]) -> Batch:
        """``context`` [B, C], ``target`` [B, H] float32 (NaN = missing) and their observed masks."""
        windows = torch.from_numpy(np.stack([s["window"] for s in samples]))  # [B, C + H] (a copy)
        c = self.context_length
        context, target = windows[:, :c], windows[:, c:]
        return {
            "context": context,
            "context_mask": ~torch.isnan(context),
            "target": target,
            "target_mask": ~torch.isnan(target),
        }
