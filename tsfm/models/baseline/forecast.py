"""Baseline forecasts through the public :class:`tsfm.forecast.Forecaster` API.

The models are univariate: every variate of every series becomes one row. Rows are cut to the
last ``context_length`` steps (default: the training context) and left-padded with NaN to a
multiple of the patch size (fully padded patches are hidden from attention). Encoders forecast
all ``ceil(H / P)`` patches in one pass; decoders sample patch by patch. Quantiles are empirical
quantiles of ``num_samples`` paths (default from the config, 100).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tsfm.checkpoint import inference_autocast
from tsfm.forecaster import Forecaster, per_series_quantiles, per_series_samples
from tsfm.inputs import ForecastInput
from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel

log = logging.getLogger(__name__)


class BaselineForecaster(Forecaster):
    """Sampled forecasts. Options: ``num_samples``, ``context_length``, ``batch_size`` (rows per
    forward), ``seed``, ``dtype`` (``"bfloat16"`` runs under autocast)."""

    family = "baseline"
    forecast_options = ("num_samples", "batch_size", "seed", "dtype")
    samples = True

    def __init__(self, model: BaselineModel, device: str | torch.device = "cpu") -> None:
        super().__init__(model, device)
        self.model: BaselineModel
        self.config: BaselineConfig = model.config
        self._warned = False

    # -- sampling -------------------------------------------------------------------------
    def _rows(self, inputs: ForecastInput, context_length: int) -> tuple[torch.Tensor, list[int]]:
        """All variates as NaN-left-padded rows ``[R, T]`` (T a multiple of P) and variate counts."""
        p = self.config.patch_size
        counts = [t.shape[0] for t in inputs.targets]
        rows = [r[-context_length:] for t in inputs.targets for r in t]
        width = -(-max(len(r) for r in rows) // p) * p
        out = np.full((len(rows), width), np.nan, dtype=np.float32)
        for i, r in enumerate(rows):
            out[i, width - len(r) :] = r
        return torch.from_numpy(out), counts

    @torch.no_grad()
    def sample_paths(
        self,
        context: torch.Tensor,  # [R, T] NaN-left-padded, T multiple of P
        prediction_length: int,
        num_samples: int | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> torch.Tensor:
        """Paths ``[R, S, H]`` in data space."""
        s = self.config.num_samples if num_samples is None else int(num_samples)
        if s <= 0:
            raise ValueError(f"num_samples must be positive, got {s}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        num_patches = -(-prediction_length // self.config.patch_size)
        if not self.model.is_decoder and num_patches > self.config.prediction_patches and not self._warned:
            log.warning(
                "prediction_length=%d needs %d mask patches but this encoder was trained with %d: the extra "
                "patches are extrapolated (quality unknown)", prediction_length, num_patches,
                self.config.prediction_patches,
            )  # fmt: skip
            self._warned = True
        rows_per_batch = max(1, batch_size // s) if self.model.is_decoder else batch_size
        chunks = []
        # gamma draws use the global RNG (see StudentTMixture.sample): seed it inside a fork so
        # the caller's global random state is left as it was
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None), inference_autocast(self.device, dtype):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, context.shape[0], rows_per_batch):
                ctx = context[start : start + rows_per_batch].to(self.device)
                chunks.append(self.model.sample_paths(ctx, num_patches, s, generator=gen).float().cpu())
        return torch.cat(chunks)[..., :prediction_length]

    def _paths(self, inputs: ForecastInput, prediction_length: int, num_samples: int | None, **kwargs: Any):
        if any(inputs.past_covariates) or any(inputs.future_covariates):
            raise ValueError("baseline models do not use covariates; drop past_covariates/future_covariates")
        context_length = int(kwargs.pop("context_length", None) or self.config.context_length)
        if context_length <= 0:
            raise ValueError(f"context_length must be positive, got {context_length}")
        unknown = sorted(set(kwargs) - {"batch_size", "seed", "dtype"})
        if unknown:
            raise TypeError(
                f"unknown baseline forecast options {unknown}; use num_samples, context_length, batch_size, seed, dtype"
            )
        context, counts = self._rows(inputs, context_length)
        return self.sample_paths(context, prediction_length, num_samples, **kwargs), counts

    def _samples(
        self, inputs: ForecastInput, prediction_length: int, num_samples: int, **kwargs: Any
    ) -> list[np.ndarray]:
        paths, counts = self._paths(inputs, prediction_length, num_samples, **kwargs)  # [R, S, H]
        return per_series_samples(paths, counts)

    def _quantiles(
        self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float], **kwargs: Any
    ) -> list[np.ndarray]:
        num_samples = kwargs.pop("num_samples", None)
        paths, counts = self._paths(inputs, prediction_length, num_samples, **kwargs)  # [R, S, H]
        return per_series_quantiles(paths, quantile_levels, counts)


