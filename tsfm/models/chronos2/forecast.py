"""Chronos-2 forecaster: univariate, multivariate and covariate-informed quantile forecasts.

Each input series becomes a *group* of rows ``[target variates | past-only covariates (sorted
by name) | known-future covariates (sorted by name)]`` cut to the last ``context_length``
steps; groups are packed greedily into batches of about ``batch_size`` rows, left-padded with
NaN, and forecast jointly within their group (``cross_learning=True``: one group per batch).
Horizons beyond ``max_output_patches × patch_size`` are unrolled autoregressively: the context
is repeated for 9 quantile levels, each path's quantile is appended, and the 9 × 21 outputs
are reduced with a weighted empirical quantile (the reference pipeline's heuristic).

Categorical covariates are rejected (the base class raises a TypeError asking for numeric
codes); the reference's target encoding of categories is not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from tsfm.checkpoint import inference_autocast
from tsfm.forecaster import Forecaster
from tsfm.inputs import ForecastInput
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.model import Chronos2Model

UNROLLED_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def interpolate_levels(query: torch.Tensor, levels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear quantile function at ``query`` levels.

    ``values`` [N, K] sorted along K at ``levels`` ([K] or [N, K]); below the first / above the
    last level the extreme value is repeated (levels 0 and 1 are added when absent).
    Returns [N, len(query)].
    """
    n = values.shape[0]
    levels = levels.expand(n, -1).float()
    values = values.float()
    if levels.min() > 0:
        levels = torch.cat([levels.new_zeros(n, 1), levels], dim=1)
        values = torch.cat([values[:, :1], values], dim=1)
    if levels.max() < 1:
        levels = torch.cat([levels, levels.new_ones(n, 1)], dim=1)
        values = torch.cat([values, values[:, -1:]], dim=1)
    q = query.float().to(values.device).expand(n, -1).contiguous()
    upper = torch.searchsorted(levels.contiguous(), q, right=True).clamp(max=levels.shape[1] - 1)
    lower = upper - 1
    lo_l, up_l = levels.gather(1, lower), levels.gather(1, upper)
    lo_v, up_v = values.gather(1, lower), values.gather(1, upper)
    w = torch.nan_to_num((q - lo_l) / (up_l - lo_l), nan=0.0)
    return lo_v + w * (up_v - lo_v)


def prob_mass(levels: torch.Tensor) -> torch.Tensor:
    """Normalised mass ``(q_{i+1} - q_{i-1}) / 2`` of each level, ``q_0 = 0``, ``q_{n+1} = 1``."""
    b = torch.cat([levels.new_zeros(1), levels, levels.new_ones(1)])
    m = (b[2:] - b[:-2]) / 2
    return m / m.sum()


def weighted_quantile(query: torch.Tensor, weights: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Quantiles of weighted samples: ``samples`` [..., K], ``weights`` [K] -> [..., len(query)]."""
    shape = samples.shape
    flat = samples.reshape(-1, shape[-1]).float()
    w = (weights / weights.sum()).to(flat.device).expand_as(flat)
    sorted_s, order = torch.sort(flat, dim=-1)
    cum = torch.cumsum(w.gather(1, order), dim=-1).clamp(0.0, 1.0)
    return interpolate_levels(query, cum, sorted_s).reshape(*shape[:-1], len(query))


class Chronos2Forecaster(Forecaster):
    """Quantile forecasts from a :class:`Chronos2Model` (``load_forecaster`` returns this)."""

    family = "chronos2"
    forecast_options = ("cross_learning", "batch_size", "context_length", "max_output_patches", "unrolled_quantiles", "dtype",
                        "context_ensemble")
    samples = False

    def __init__(self, model: Chronos2Model, device: str | torch.device = "cpu") -> None:
        super().__init__(model, device)
        self.config: Chronos2Config = model.config

    # -- batching -------------------------------------------------------------------------
    @staticmethod
    def _groups(inputs: ForecastInput, h: int, ctx_len: int) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
        """Per series: rows [R, T<=ctx_len], future rows [R, H] (None if no known covariate), n_targets."""
        out = []
        for i, target in enumerate(inputs.targets):
            past, fut = inputs.past_covariates[i], inputs.future_covariates[i]
            known = sorted(fut)
            past_only = sorted(set(past) - set(fut))
            rows = np.concatenate([target, *[past[k][None] for k in past_only + known]], axis=0)[:, -ctx_len:]
            future = None
            if known:
                future = np.full((rows.shape[0], h), np.nan, dtype=np.float32)
                future[rows.shape[0] - len(known):] = np.stack([fut[k] for k in known])
            out.append((rows, future, target.shape[0]))
        return out

    def _predict_step(self, context, group_ids, future, n) -> torch.Tensor:  # noqa: ANN001
        h = n * self.config.patch_size
        if future is not None:
            if future.shape[-1] < h:
                future = torch.nn.functional.pad(future, (0, h - future.shape[-1]), value=float("nan"))
            future = future[:, :h]
            if torch.isnan(future).all():
                future = None
        out = self.model(context, group_ids=group_ids, future_covariates=future, num_output_patches=n)
        return out.quantile_preds.float()  # [R, Q, n*P]

    def _predict_batch(self, context, group_ids, future, h, max_patches, ctx_len, unrolled) -> torch.Tensor:  # noqa: ANN001
        p, levels = self.config.patch_size, self.model.quantiles

        def n_patches(rem: int) -> int:
            return min(math.ceil(rem / p), max_patches)

        pred = self._predict_step(context, group_ids, future, n_patches(h))
        preds, remaining = [pred], h - pred.shape[-1]
        if remaining > 0:
            k = len(unrolled)
            context = context[:, None].expand(-1, k, -1)  # [R, K, T]
            future = future[:, None].expand(-1, k, -1) if future is not None else None
            group_ids = (group_ids[:, None] * k + torch.arange(k, device=group_ids.device)).reshape(-1)
            weights = torch.outer(prob_mass(unrolled), prob_mass(levels.cpu())).reshape(-1)
        while remaining > 0:
            r, q, step = pred.shape
            paths = interpolate_levels(unrolled, levels, pred.transpose(1, 2).reshape(-1, q))  # [R*step, K]
            paths = paths.view(r, step, -1).transpose(1, 2)  # [R, K, step]
            context = torch.cat([context, paths], dim=-1)[..., -ctx_len:]
            if future is not None:  # known covariate values replace their own predictions
                known = future[..., :step]
                context = context.clone()
                context[..., -step:] = torch.where(torch.isnan(known), context[..., -step:], known)
                future = future[..., step:]
            k = paths.shape[1]
            out = self._predict_step(
                context.reshape(r * k, -1), group_ids,
                future.reshape(r * k, -1) if future is not None else None, n_patches(remaining),
            )  # [R*K, Q, h']
            samples = out.view(r, k * q, -1).transpose(1, 2)  # [R, h', K*Q]
            pred = weighted_quantile(levels.cpu(), weights, samples).transpose(1, 2)  # [R, Q, h']
            preds.append(pred)
            remaining -= pred.shape[-1]
        return torch.cat(preds, dim=-1)[..., :h]

    @torch.no_grad()
    def predict_raw(
        self,
        inputs: ForecastInput,
        prediction_length: int,
        cross_learning: bool = False,
        batch_size: int = 256,
        context_length: int | None = None,
        max_output_patches: int | None = None,
        unrolled_quantiles: Sequence[float] = UNROLLED_QUANTILES,
        dtype: torch.dtype | str | None = None,
        context_ensemble: Sequence[int] | None = None,
    ) -> list[torch.Tensor]:
        """Per series the model's quantile grid ``[V, Q_model, H]`` in the original scale.

        ``context_ensemble`` (default: the config's, empty for official checkpoints): context lengths ``L``; the
        result averages, level by level, the forecast from the full context with those from its last ``L``
        points (each ``L`` shorter than the context used; an average of quantile functions stays one).
        """
        c = self.config
        ctx_len = min(context_length or c.context_length, c.context_length)
        max_patches = max_output_patches or c.max_output_patches
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        unrolled = torch.tensor(list(unrolled_quantiles), dtype=torch.float32)
        grid = self.model.quantiles.cpu()
        if not all(torch.isclose(grid, u).any() for u in unrolled):
            raise ValueError(f"unrolled_quantiles {list(unrolled_quantiles)} must be levels of the model: {c.quantiles}")
        ensemble = c.context_ensemble if context_ensemble is None else list(context_ensemble)
        if any(int(n) < 1 for n in ensemble):
            raise ValueError(f"context_ensemble={list(ensemble)} must list positive context lengths (e.g. [64]), or be "
                             "empty for the single full-context forecast")
        full = self._predict_raw_at(inputs, prediction_length, cross_learning, batch_size, ctx_len, max_patches,
                                    unrolled, dtype)
        views = sorted({int(n) for n in ensemble if int(n) < ctx_len}, reverse=True)
        if not views:
            return full
        total = [p.clone() for p in full]
        for n in views:
            # a series no longer than n gives the full forecast again: forecast only the others (with cross-learning
            # every series shares the batch, so all of them)
            idx = [i for i, t in enumerate(inputs.targets) if cross_learning or t.shape[-1] > n]
            sub = replace(inputs, targets=[inputs.targets[i] for i in idx],
                          past_covariates=[inputs.past_covariates[i] for i in idx],
                          future_covariates=[inputs.future_covariates[i] for i in idx])
            short = self._predict_raw_at(sub, prediction_length, cross_learning, batch_size, n, max_patches, unrolled,
                                         dtype) if idx else []
            part = dict(zip(idx, short))
            for i in range(len(full)):
                total[i] += part.get(i, full[i])
        return [t / (len(views) + 1) for t in total]

    def _predict_raw_at(self, inputs, prediction_length, cross_learning, batch_size, ctx_len, max_patches, unrolled,  # noqa: ANN001
                        dtype) -> list[torch.Tensor]:  # noqa: ANN001
        """:meth:`predict_raw` from the last ``ctx_len`` points of every context."""
        groups = self._groups(inputs, prediction_length, ctx_len)
        for i, (rows, _, _) in enumerate(groups):
            if rows.shape[0] > batch_size:
                raise ValueError(
                    f"series {i} forms a group of {rows.shape[0]} rows (targets + covariates), more than "
                    f"batch_size={batch_size}; raise batch_size to at least {rows.shape[0]}"
                )
        autocast = inference_autocast(self.device, dtype)  # validates dtype
        results: list[torch.Tensor] = []
        start = 0
        while start < len(groups):
            end, rows_in = start, 0
            while end < len(groups) and rows_in < batch_size and rows_in + groups[end][0].shape[0] <= batch_size:
                rows_in += groups[end][0].shape[0]
                end += 1
            batch = groups[start:end]
            length = max(g[0].shape[1] for g in batch)
            ctx = np.full((rows_in, length), np.nan, dtype=np.float32)
            fut = None
            if any(g[1] is not None for g in batch):
                fut = np.full((rows_in, prediction_length), np.nan, dtype=np.float32)
            gids = np.empty(rows_in, dtype=np.int64)
            r = 0
            for j, (rows, future, _) in enumerate(batch):
                ctx[r:r + rows.shape[0], length - rows.shape[1]:] = rows
                if future is not None:
                    fut[r:r + rows.shape[0]] = future  # type: ignore[index]
                gids[r:r + rows.shape[0]] = 0 if cross_learning else j
                r += rows.shape[0]
            dev = self.device
            with autocast:
                pred = self._predict_batch(
                    torch.from_numpy(ctx).to(dev), torch.from_numpy(gids).to(dev),
                    torch.from_numpy(fut).to(dev) if fut is not None else None,
                    prediction_length, max_patches, ctx_len, unrolled.to(dev),
                ).cpu()
            r = 0
            for rows, _, n_targets in batch:
                results.append(pred[r:r + n_targets])
                r += rows.shape[0]
            start = end
        return results

    def _quantiles(
        self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float], **kwargs: Any
    ) -> list[np.ndarray]:
        raw = self.predict_raw(inputs, prediction_length, **kwargs)
        grid = self.model.quantiles.cpu().tolist()
        exact = [next((j for j, g in enumerate(grid) if abs(g - x) < 1e-9), -1) for x in quantile_levels]
        query = torch.tensor(list(quantile_levels), dtype=torch.float32)
        sizes = [p.shape[0] for p in raw]
        stacked = torch.cat(raw, dim=0).transpose(1, 2)  # [sum V, H, Q_model]
        if all(i >= 0 for i in exact):
            sel = stacked[..., exact]
        else:
            n, h, q = stacked.shape
            sel = interpolate_levels(query, torch.tensor(grid), stacked.reshape(-1, q)).reshape(n, h, -1)
        return [a.numpy() for a in torch.split(sel, sizes, dim=0)]


