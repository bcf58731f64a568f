"""Chronos training samples: context/horizon windows, missing-value augmentation, tokenised batches.

Follows the paper's training pipeline:

* a univariate series (one variate picked at random from a multivariate :class:`Series`);
* missing-value augmentation: a drop rate ``p ~ U(0, drop_prob)`` is drawn per series and each
  value becomes NaN with probability ``p`` (drop_prob 0.2 in the paper's recipe);
* one window per draw: a cut point uniform over positions with at least ``min_past`` observed
  steps before it and ``prediction_length`` after it; the context is the (up to)
  ``context_length`` steps before the cut, left-padded with NaN, the future the next
  ``prediction_length`` steps;
* ``collate`` tokenises the batch with the context's mean scale; label positions that are NaN
  get -100 (ignored by the cross-entropy), EOS stays in the loss.

``last_window=True`` gives the deterministic validation split (the last window, no dropping).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tsfm.data.types import Batch, Sample, Series
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.tokenizer import MeanScaleUniformBins


class ChronosTask:
    """:class:`tsfm.data.types.TaskBuilder` for Chronos-T5."""

    def __init__(
        self,
        context_length: int = 512,
        prediction_length: int = 64,
        min_past: int = 64,
        drop_prob: float = 0.2,
        last_window: bool = False,
        tokenizer: dict[str, Any] | None = None,
    ) -> None:
        if context_length <= 0 or prediction_length <= 0:
            raise ValueError(
                f"context_length={context_length} and prediction_length={prediction_length} must be positive"
            )
        if not 1 <= min_past <= context_length:
            raise ValueError(f"min_past={min_past} must be in [1, context_length={context_length}]")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob={drop_prob} must be in [0, 1)")
        self.context_length = context_length
        self.prediction_length = prediction_length
        self.min_past = min_past
        self.drop_prob = drop_prob
        self.last_window = last_window
        # tokenizer fields of ChronosConfig (n_tokens, low_limit, high_limit, ...); the T5 shape is irrelevant here
        self.config = ChronosConfig(
            context_length=context_length, prediction_length=prediction_length, **(tokenizer or {})
        )
        self.tokenizer = MeanScaleUniformBins(self.config)
        self.min_length = min_past + prediction_length

    def __call__(self, series: Series, rng: np.random.Generator) -> Sample | None:
        target = series.target
        if target.ndim != 2:
            raise ValueError(f"series {series.item_id!r}: target must be [V, T], got shape {target.shape}")
        if target.shape[-1] < self.min_length:
            return None
        v = int(rng.integers(target.shape[0])) if target.shape[0] > 1 else 0
        x = target[v]  # [T] (read-only view)
        length = x.shape[0]
        if self.last_window:
            cut = length - self.prediction_length
        else:
            cut = int(rng.integers(self.min_past, length - self.prediction_length + 1))
        lo = max(0, cut - self.context_length)
        window = np.array(x[lo : cut + self.prediction_length], dtype=np.float32)  # copy: we write NaNs
        if self.drop_prob > 0 and not self.last_window:
            p = rng.uniform(0.0, self.drop_prob)
            window[rng.random(window.shape[0]) < p] = np.nan
        context = np.full(self.context_length, np.nan, dtype=np.float32)  # [C], NaN left padding
        n_ctx = cut - lo
        context[self.context_length - n_ctx :] = window[:n_ctx]
        return {"context": context, "future": window[n_ctx:]}  # [C], [H]

    def collate(self, samples: list[Sample]) -> Batch:
        """Stack and tokenise: ``input_ids``/``attention_mask`` ``[B, C+1]``, ``labels`` ``[B, H+1]``."""
        if not samples:
            raise ValueError("collate got no samples")
        context = torch.from_numpy(np.stack([s["context"] for s in samples]))  # [B, C]
        future = torch.from_numpy(np.stack([s["future"] for s in samples]))  # [B, H]
        ids, mask, scale = self.tokenizer.context_input_transform(context)
        labels, label_mask = self.tokenizer.label_input_transform(future, scale)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels.masked_fill(~label_mask, -100),
            "scale": scale,
        }
