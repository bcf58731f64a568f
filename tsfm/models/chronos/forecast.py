"""Chronos forecasts through the public :class:`tsfm.forecast.Forecaster` API.

Chronos is univariate: every variate of every input series becomes one row, all rows are
tokenised together, and ``num_samples`` paths per row are drawn in one KV-cached decoding loop
(:meth:`ChronosModel.sample_tokens`). Quantiles are empirical quantiles of the samples
(linear interpolation, as ``torch.quantile``). Horizons beyond the model's ``prediction_length``
(64) follow the paper: forecast 64 steps, append the per-step sample median to the context,
repeat; a warning is logged once per forecaster.
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
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.model import ChronosModel
from tsfm.models.chronos.tokenizer import left_pad_stack

log = logging.getLogger(__name__)


class ChronosForecaster(Forecaster):
    """Sampled Chronos-T5 forecasts. Options: ``num_samples`` (default from the config, 20),
    ``temperature``, ``top_k``, ``top_p``, ``batch_size`` (series per decoding batch), ``seed``."""

    family = "chronos"
    forecast_options = ("num_samples", "temperature", "top_k", "top_p", "batch_size", "seed", "dtype")
    samples = True

    def __init__(self, model: ChronosModel, device: str | torch.device = "cpu") -> None:
        super().__init__(model, device)
        self.model: ChronosModel
        self.config: ChronosConfig = model.config
        self._warned_long_horizon = False

    # -- sampling -------------------------------------------------------------------------
    def _check_options(self, num_samples: int, temperature: float, top_k: int, top_p: float) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {top_k}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")

    @torch.no_grad()
    def sample_paths(
        self,
        context: torch.Tensor,  # [N, T] NaN = missing / left padding
        prediction_length: int,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        batch_size: int = 64,
        seed: int | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> torch.Tensor:
        """Sample paths ``[N, S, H]`` in the original scale for a left-padded batch of rows.

        ``dtype="bfloat16"`` runs the network under bf16 autocast (faster on bf16 CPUs/GPUs; the
        logits, hence the distribution, then differ slightly from the float32 reference).
        """
        cfg = self.config
        s = cfg.num_samples if num_samples is None else int(num_samples)
        temperature = cfg.temperature if temperature is None else float(temperature)
        top_k = cfg.top_k if top_k is None else int(top_k)
        top_p = cfg.top_p if top_p is None else float(top_p)
        self._check_options(s, temperature, top_k, top_p)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if prediction_length > cfg.prediction_length and not self._warned_long_horizon:
            log.warning(
                "prediction_length=%d exceeds the model's %d: forecasting autoregressively by appending the "
                "sample median to the context (quality may degrade)", prediction_length, cfg.prediction_length,
            )  # fmt: skip
            self._warned_long_horizon = True
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        amp = inference_autocast(self.device, dtype)
        chunks = []
        for start in range(0, context.shape[0], batch_size):
            rows = context[start : start + batch_size, -cfg.context_length :]  # [b, T]
            preds, remaining = [], prediction_length
            while remaining > 0:
                step = min(remaining, cfg.prediction_length)
                ids, mask, scale = self.model.tokenizer.context_input_transform(rows)
                with amp:
                    tokens = self.model.sample_tokens(
                        ids, mask, step, s, temperature, top_k, top_p, generator=gen
                    )
                pred = self.model.tokenizer.output_transform(tokens.cpu(), scale)  # [b, S, step]
                preds.append(pred)
                remaining -= step
                if remaining > 0:  # the paper's continuation: append the median path
                    rows = torch.cat([rows, pred.median(dim=1).values], dim=-1)[:, -cfg.context_length :]
            chunks.append(torch.cat(preds, dim=-1))
        return torch.cat(chunks).to(torch.float32)  # [N, S, H]

    def _rows(self, inputs: ForecastInput) -> tuple[torch.Tensor, list[int]]:
        """All variates of all series as left-padded rows ``[sum V, T]`` and the variate counts."""
        counts = [t.shape[0] for t in inputs.targets]
        rows = [r for t in inputs.targets for r in t]
        return left_pad_stack(rows, max_length=self.config.context_length), counts

    def _samples(
        self, inputs: ForecastInput, prediction_length: int, num_samples: int, **kwargs: Any
    ) -> list[np.ndarray]:
        _reject_covariates(inputs)
        context, counts = self._rows(inputs)
        return per_series_samples(self.sample_paths(context, prediction_length, num_samples, **kwargs), counts)

    def _quantiles(
        self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float], **kwargs: Any
    ) -> list[np.ndarray]:
        _reject_covariates(inputs)
        context, counts = self._rows(inputs)
        num_samples = kwargs.pop("num_samples", None)
        paths = self.sample_paths(context, prediction_length, num_samples, **kwargs)  # [R, S, H]
        return per_series_quantiles(paths, quantile_levels, counts)


def _reject_covariates(inputs: ForecastInput) -> None:
    if any(inputs.past_covariates) or any(inputs.future_covariates):
        raise ValueError(
            "Chronos (T5) does not use covariates; drop past_covariates/future_covariates or use chronos2"
        )


