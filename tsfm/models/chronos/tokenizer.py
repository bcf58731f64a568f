"""Chronos mean-scale uniform-bin tokenizer (batched torch, no per-series Python).

A context row is divided by its mean absolute observed value (scale 1 when that is 0 or NaN),
then bucketed into ``n_tokens - n_special_tokens - 1`` uniform bins on ``[low, high]``; ids 0
and 1 are PAD and EOS. NaN becomes PAD with the attention mask off, EOS is appended with the
mask on. Decoding maps an id to its bin centre times the scale.

Numerics follow the reference exactly (golden fixture ``chronos_t5``): centres come from a
float32 ``torch.linspace`` on CPU (not a float64 linspace cast down: 207 centres differ), the
boundaries are float32 midpoints bracketed by ±1e20, ``bucketize(right=True)`` sends a value on
a boundary to the upper bin, and values are divided by the scale (not multiplied by 1/scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tsfm.models.chronos.config import ChronosConfig


def left_pad_stack(
    series: Sequence[np.ndarray | torch.Tensor], max_length: int | None = None
) -> torch.Tensor:
    """Stack 1-D series into ``[B, T]`` float32, left-padded with NaN to the longest.

    With ``max_length`` only the last ``max_length`` steps of each series are kept (the
    tokenizer would drop the rest anyway), so a very long history costs no padding memory.
    """
    if len(series) == 0:
        raise ValueError("no series given: pass a non-empty list of 1-D arrays")
    arrays = [
        np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s, dtype=np.float32) for s in series
    ]
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise ValueError(f"series {i} has shape {a.shape}; the Chronos tokenizer takes 1-D series")
    if max_length is not None:
        arrays = [a[-max_length:] for a in arrays]
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    width = int(lengths.max()) if len(arrays) else 0
    out = np.full((len(arrays), max(width, 1)), np.nan, dtype=np.float32)  # [B, T]
    # one flat scatter instead of a Python loop of row assignments
    flat = np.concatenate(arrays) if width > 0 else np.zeros(0, np.float32)
    rows = np.repeat(np.arange(len(arrays)), lengths)
    cols = (
        np.arange(flat.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths) + (width - lengths)[rows]
    )
    out[rows, cols] = flat
    return torch.from_numpy(out)


class MeanScaleUniformBins:
    """Batched, vectorised equivalent of the reference ``MeanScaleUniformBins`` tokenizer."""

    def __init__(self, config: ChronosConfig) -> None:
        self.config = config
        # float32 linspace on CPU: bit-identical to the reference (see module docstring)
        self.centers = torch.linspace(
            config.low_limit, config.high_limit, config.num_bins, dtype=torch.float32
        )
        self.boundaries = torch.cat(
            (
                torch.tensor([-1e20], dtype=torch.float32),
                (self.centers[1:] + self.centers[:-1]) / 2,
                torch.tensor([1e20], dtype=torch.float32),
            )
        )  # [num_bins + 1]

    def to(self, device: torch.device | str) -> MeanScaleUniformBins:
        self.centers = self.centers.to(device)
        self.boundaries = self.boundaries.to(device)
        return self

    # -- encoding -------------------------------------------------------------------------
    def _ids(
        self, values: torch.Tensor, scale: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values = values.to(dtype=torch.float32)  # [B, T]
        mask = ~torch.isnan(values)  # [B, T]
        if scale is None:
            # mean |x| over observed values; 0 (all zero) or NaN (all missing) -> 1
            total = torch.where(mask, values.abs(), 0.0).sum(-1)
            scale = total / mask.sum(-1)
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # [B]
        ids = torch.bucketize(values / scale.unsqueeze(-1), self.boundaries.to(values.device), right=True)
        ids = (ids + self.config.n_special_tokens).clamp_(0, self.config.n_tokens - 1)
        ids = ids.masked_fill_(~mask, self.config.pad_token_id)  # [B, T] int64
        return ids, mask, scale

    def _append_eos(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eos = torch.full_like(ids[:, :1], self.config.eos_token_id)
        return torch.cat((ids, eos), 1), torch.cat((mask, torch.ones_like(mask[:, :1])), 1)

    def context_input_transform(
        self, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``context [B, T]`` (NaN = missing/left padding) -> ``(ids [B, T'+1], mask [B, T'+1], scale [B])``.

        ``T' = min(T, context_length)``: longer contexts keep their last ``context_length`` steps,
        and the scale is computed over that truncated window.
        """
        if context.ndim != 2:
            raise ValueError(f"context must be [batch, time], got shape {tuple(context.shape)}")
        context = context[:, -self.config.context_length :]
        ids, mask, scale = self._ids(context, None)
        if self.config.use_eos_token:
            ids, mask = self._append_eos(ids, mask)
        return ids, mask, scale

    def label_input_transform(
        self, label: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``label [B, H]`` tokenised with the context ``scale [B]`` -> ``(ids [B, H+1], mask [B, H+1])``."""
        if label.ndim != 2:
            raise ValueError(f"label must be [batch, horizon], got shape {tuple(label.shape)}")
        ids, mask, _ = self._ids(label, scale.to(label.device, torch.float32))
        if self.config.use_eos_token:
            ids, mask = self._append_eos(ids, mask)
        return ids, mask

    # -- decoding -------------------------------------------------------------------------
    def output_transform(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, ..., T]`` -> values: bin centre times the row scale ``[B]``.

        Special ids (PAD, EOS) and the unused id 2 decode to the lowest centre, like the reference.
        """
        idx = (ids - self.config.n_special_tokens - 1).clamp(0, self.config.num_bins - 1)
        centers = self.centers.to(ids.device)
        return centers[idx] * scale.reshape(scale.shape[0], *([1] * (ids.ndim - 1))).to(centers.device)
