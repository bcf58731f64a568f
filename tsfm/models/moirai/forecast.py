"""Moirai forecaster: official or tsfm checkpoints -> sample paths and quantiles.

Each series (univariate or multivariate ``[V, T]``, NaN = missing) becomes one packed sample
(layout in :mod:`tsfm.models.moirai.forecast_layout`); known-future covariates are those named
in ``future_covariates``, the other past covariates are past-only. Only the predicted tokens go
through the output head and the sampler. ``patch_size="auto"`` backtests every allowed patch
size on the last ``prediction_length`` steps of the context and keeps, per series, the one with
the lowest NLL (the paper's procedure).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tsfm.forecaster import Forecaster
from tsfm.inputs import ForecastInput, normalize_inputs
from tsfm.models.moirai.config import allowed_patch_sizes, check_patch_size
from tsfm.models.moirai.forecast_layout import convert_series, forecast_layout, stack_rows
from tsfm.models.moirai.model import MoiraiModel

log = logging.getLogger(__name__)
DEFAULT_MAX_CONTEXT = 4096


class MoiraiForecaster(Forecaster):
    """Forecaster over a :class:`MoiraiModel`. Options: ``num_samples``, ``patch_size`` (int or
    ``"auto"``), ``freq`` (restricts/validates patch sizes), ``context_length``, ``batch_size``, ``seed``."""

    family = "moirai"
    forecast_options = ("num_samples", "patch_size", "freq", "context_length", "batch_size", "seed", "device")
    samples = True
    accepts_freq = True

    init_options = ("patch_size",)  # the default patch size of every forecast ("auto": by frequency)

    def __init__(self, model: MoiraiModel, device: str | torch.device = "cpu", patch_size: int | str = "auto") -> None:
        super().__init__(model, device)
        self.default_patch_size = patch_size

    # -- core ---------------------------------------------------------------------------------
    def _prepare(self, inputs: ForecastInput, i: int, h: int, context_length: int, backtest: bool) -> dict[str, np.ndarray] | None:
        """Imputed arrays of series ``i``; ``backtest`` holds out its last ``h`` steps as the future."""
        tgt = inputs.targets[i]
        names_known = list(inputs.future_covariates[i])
        names_past = [n for n in inputs.past_covariates[i] if n not in inputs.future_covariates[i]]
        t_end = tgt.shape[1] - (h if backtest else 0)
        if t_end < 1:
            return None
        c = min(context_length, t_end)
        past = tgt[:, t_end - c : t_end]
        out = {"target": np.nan_to_num(past), "observed": ~np.isnan(past), "is_pad": np.zeros(c, bool)}
        if backtest:
            fut = tgt[:, t_end : t_end + h]
            out["future"], out["future_observed"] = np.nan_to_num(fut), ~np.isnan(fut)
        if names_known:
            pc = np.stack([inputs.past_covariates[i][n] for n in names_known])
            if backtest:
                known = pc[:, t_end - c : t_end + h]
            else:
                known = np.concatenate([pc[:, t_end - c :], np.stack([inputs.future_covariates[i][n] for n in names_known])], 1)
            out["known"], out["known_observed"] = np.nan_to_num(known), ~np.isnan(known)
        if names_past:
            po = np.stack([inputs.past_covariates[i][n] for n in names_past])[:, t_end - c : t_end]
            out["past_only"], out["past_only_observed"] = np.nan_to_num(po), ~np.isnan(po)
        return out

    @torch.no_grad()
    def _run(self, arrays: list[dict[str, np.ndarray]], h: int, ps: int, num_samples: int, gen: torch.Generator | None, backtest: bool):
        """Per request: samples ``[S, D, H]`` (or backtest NLL per series when ``backtest``)."""
        packed = [
            convert_series(a["target"], a["observed"], a["is_pad"], h, ps, a.get("known"), a.get("known_observed"),
                           a.get("past_only"), a.get("past_only_observed"))
            for a in arrays
        ]
        if backtest:  # put the held-out values in the future target tokens
            for a, p in zip(arrays, packed):
                n0 = int(p["num_context_tokens"])
                fut_vals = np.pad(a["future"], ((0, 0), (0, -h % ps))).reshape(-1, ps)
                fut_obs = np.pad(a["future_observed"], ((0, 0), (0, -h % ps))).reshape(-1, ps)
                p["target"][n0 : n0 + fut_vals.shape[0]] = fut_vals
                p["observed_mask"][n0 : n0 + fut_vals.shape[0]] = fut_obs
        batch = {k: torch.from_numpy(v).to(self.device) for k, v in stack_rows(packed, ps).items()}
        model: MoiraiModel = self.model  # type: ignore[assignment]
        h_enc, loc, scale, series_id = model.encode(**batch)
        pred = batch["prediction_mask"]
        idx = pred.reshape(-1).nonzero().squeeze(1)
        distr = model.distribution(h_enc.reshape(-1, h_enc.shape[-1])[idx], ps)
        loc_p, scale_p = loc.reshape(-1, 1)[idx], scale.reshape(-1, 1)[idx]
        if backtest:
            tgt = batch["target"].reshape(-1, ps)[idx]
            m = batch["observed_mask"].reshape(-1, ps)[idx]
            nll = torch.where(m, -distr.log_prob(tgt, loc_p, scale_p), 0.0).sum(-1)
            rows = torch.arange(pred.shape[0], device=pred.device)[:, None].expand_as(pred).reshape(-1)[idx]
            sid = series_id.reshape(-1)[idx]
            return _per_request_nll(nll, m.sum(-1), sid, rows, pred.shape[0])
        samples = distr.sample(num_samples, loc_p, scale_p, generator=gen)  # [S, N_pred, ps]
        out, start = [], 0
        for a, p in zip(arrays, packed):
            n = int(p["num_future_tokens"])
            out.append(forecast_layout(samples[:, start : start + n].cpu().numpy(), a["target"].shape[0], h, ps))
            start += n
        return out

    def _choose_patch_sizes(self, inputs, valid, h, context_length, candidates, gen) -> dict[int, int]:
        if len(candidates) == 1:
            return {i: candidates[0] for i in valid}
        arrays = {i: self._prepare(inputs, i, h, context_length, backtest=True) for i in valid}
        testable = [i for i in valid if arrays[i] is not None and arrays[i]["observed"].any()]
        losses = np.full((len(candidates), len(valid)), np.inf)
        for ci, ps in enumerate(candidates):
            if testable:
                nll = self._run([arrays[i] for i in testable], h, ps, 0, gen, backtest=True)
                for j, i in enumerate(testable):
                    losses[ci, valid.index(i)] = float(nll[j])
        fallback = candidates[min(len(candidates) - 1, len(candidates) // 2)]
        return {i: (candidates[int(np.argmin(losses[:, k]))] if np.isfinite(losses[:, k]).any() else fallback) for k, i in enumerate(valid)}

    def _samples(self, inputs: ForecastInput, prediction_length: int, num_samples: int, **kw: Any) -> list[np.ndarray]:
        patch_size = kw.pop("patch_size", self.default_patch_size)
        freq = kw.pop("freq", None)
        context_length = int(kw.pop("context_length", None) or DEFAULT_MAX_CONTEXT)
        batch_size = int(kw.pop("batch_size", 64))
        seed = kw.pop("seed", None)
        kw.pop("device", None)
        if kw:
            raise TypeError(f"unknown Moirai forecast options {sorted(kw)}; use num_samples, patch_size, freq, context_length, batch_size, seed")
        ps_list = self.model.cfg.patch_sizes  # type: ignore[union-attr]
        if patch_size == "auto":
            candidates = allowed_patch_sizes(freq, ps_list) if freq else list(ps_list)
            if not candidates:
                raise ValueError(f"no model patch size {list(ps_list)} is allowed for freq {freq!r}")
        else:
            candidates = [check_patch_size(int(patch_size), freq, ps_list)]
        gen = torch.Generator(device=self.device).manual_seed(int(seed)) if seed is not None else None
        h, n = prediction_length, len(inputs.targets)
        results: list[np.ndarray | None] = [None] * n
        valid = []
        for i, t in enumerate(inputs.targets):
            if np.isnan(t[:, -min(context_length, t.shape[1]) :]).all():
                warnings.warn(f"series {i}: the context has no observed value; its forecast is NaN", stacklevel=3)
                results[i] = np.full((num_samples, t.shape[0], h), np.nan, np.float32)
            else:
                valid.append(i)
        chosen = self._choose_patch_sizes(inputs, valid, h, context_length, candidates, gen) if valid else {}
        for ps in sorted(set(chosen.values())):
            members = [i for i in valid if chosen[i] == ps]
            for s in range(0, len(members), batch_size):
                chunk = members[s : s + batch_size]
                outs = self._run([self._prepare(inputs, i, h, context_length, False) for i in chunk], h, ps, num_samples, gen, False)
                for i, o in zip(chunk, outs):
                    results[i] = o.astype(np.float32)
        return results  # type: ignore[return-value]

    def mean_nll(self, context: Sequence[np.ndarray], future: Sequence[np.ndarray], **kw: Any) -> np.ndarray:
        """Mean negative log-likelihood of the observed ``future`` values of each series given its
        ``context``, under the predictive mixture in the original scale: ``[N]``, NaN where the
        context or the future has no observed value. Options as for forecasting (``patch_size``,
        ``freq``, ``context_length``); ``"auto"`` picks the patch size on the context alone."""
        fut = [np.asarray(f, dtype=np.float32) for f in future]
        if len(fut) != len(context) or not fut:
            raise ValueError(f"got {len(context)} contexts and {len(fut)} futures; pass one future per context")
        h = fut[0].shape[-1]
        if any(f.shape[-1] != h for f in fut):
            raise ValueError("every future must have the same length (the horizon)")
        ctx_in = normalize_inputs(list(context), h)
        full = [np.concatenate([c, f.reshape(c.shape[0], h)], axis=-1) for c, f in zip(ctx_in.targets, fut)]
        inputs = normalize_inputs(full, h)
        patch_size = kw.pop("patch_size", self.default_patch_size)
        freq = kw.pop("freq", None)
        context_length = int(kw.pop("context_length", None) or DEFAULT_MAX_CONTEXT)
        ps_list = self.model.cfg.patch_sizes  # type: ignore[union-attr]
        if patch_size == "auto":
            candidates = allowed_patch_sizes(freq, ps_list) if freq else list(ps_list)
        else:
            candidates = [check_patch_size(int(patch_size), freq, ps_list)]
        valid = [i for i, t in enumerate(ctx_in.targets) if not np.isnan(t[:, -min(context_length, t.shape[1]) :]).all()]
        chosen = self._choose_patch_sizes(ctx_in, valid, h, context_length, candidates, None) if valid else {}
        out = np.full(len(full), np.nan)
        for ps in sorted(set(chosen.values())):
            members = [i for i in valid if chosen[i] == ps]
            arrays = {i: self._prepare(inputs, i, h, context_length, backtest=True) for i in members}
            members = [i for i in members if arrays[i] is not None and arrays[i]["observed"].any()]
            if members:
                nll = self._run([arrays[i] for i in members], h, ps, 0, None, backtest=True)
                out[members] = [float(x) for x in nll]
        return out

    def _quantiles(self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float], **kw: Any) -> list[np.ndarray]:
        num_samples = int(kw.pop("num_samples", 100))
        samples = self._samples(inputs, prediction_length, num_samples, **kw)
        # [S, V, H] -> [V, H, Q]
        return [np.moveaxis(np.quantile(s, quantile_levels, axis=0), 0, -1).astype(np.float32) for s in samples]


def _per_request_nll(nll: torch.Tensor, count: torch.Tensor, sid: torch.Tensor, rows: torch.Tensor, n_rows: int) -> np.ndarray:
    """Sum over a request's variates of each variate's mean NLL (the reference's SampleNLLLoss)."""
    n_seg = int(sid.max()) + 1
    tot = torch.zeros(n_seg, dtype=nll.dtype, device=nll.device).index_add_(0, sid, nll)
    cnt = torch.zeros(n_seg, dtype=nll.dtype, device=nll.device).index_add_(0, sid, count.to(nll.dtype))
    row_of = torch.zeros(n_seg, dtype=torch.long, device=nll.device).index_copy_(0, sid, rows)
    mean = tot / cnt.clamp_min(1)
    return torch.zeros(n_rows, dtype=nll.dtype, device=nll.device).index_add_(0, row_of, mean).cpu().numpy()


