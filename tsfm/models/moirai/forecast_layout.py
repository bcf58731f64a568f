"""Token layout of a forecasting request, identical to the reference's ``MoiraiForecast._convert``.

One series becomes one packed sample of ``L = (D+F)(nc+np) + P*nc`` tokens:
``[target past D x nc][target future D x np][known cov past F x nc][known cov future F x np]
[past-only cov P x nc]`` with ``nc = ceil(C/ps)``, ``np = ceil(H/ps)``. Pasts are left-padded,
futures right-padded; see the fixture README for the ``sample_id`` / ``time_id`` rules. Built
with numpy on the host: no per-sample Python loops over tokens.
"""

from __future__ import annotations

import math

import numpy as np


def _patch(x: np.ndarray, ps: int, left: int, right: int, fill: float | bool) -> np.ndarray:
    """``[K, T]`` -> ``[K, n, ps]`` after padding ``left``/``right`` steps with ``fill``."""
    x = np.pad(x, ((0, 0), (left, right)), constant_values=fill)
    return x.reshape(x.shape[0], -1, ps)


def convert_series(
    past_target: np.ndarray,  # [D, C] float32, imputed (no NaN)
    past_observed: np.ndarray,  # [D, C] bool
    past_is_pad: np.ndarray,  # [C] bool (True before the series start)
    prediction_length: int,
    patch_size: int,
    known: np.ndarray | None = None,  # [F, C+H] float32 imputed, known covariates (past + future)
    known_observed: np.ndarray | None = None,  # [F, C+H] bool
    past_only: np.ndarray | None = None,  # [P, C] float32 imputed
    past_only_observed: np.ndarray | None = None,  # [P, C] bool
) -> dict[str, np.ndarray]:
    """Packed arrays of one sample: ``target``/``observed_mask`` [L, ps] and ids [L]."""
    d, c = past_target.shape
    h, ps = prediction_length, patch_size
    nc, npr = math.ceil(c / ps), math.ceil(h / ps)
    lp, rp = nc * ps - c, npr * ps - h
    f = 0 if known is None else known.shape[0]
    p = 0 if past_only is None else past_only.shape[0]

    # target
    tgt_past = _patch(past_target, ps, lp, 0, 0.0)  # [D, nc, ps]
    obs_past = _patch(past_observed, ps, lp, 0, False)
    tgt_fut = np.zeros((d, npr, ps), np.float32)
    obs_fut = np.broadcast_to(np.arange(npr * ps).reshape(npr, ps) < h, (d, npr, ps))
    pad_tgt = np.pad(past_is_pad, (lp, 0), constant_values=True).reshape(nc, ps)
    pad_cov = np.pad(past_is_pad, (lp, 0), constant_values=False).reshape(nc, ps)
    sid_tgt_past = (~pad_tgt).any(-1).astype(np.int64)  # [nc]
    sid_cov_past = (~pad_cov).any(-1).astype(np.int64)

    # time ids: count patches after the first one with an observed target value
    a = obs_past.any(axis=(0, 2)).astype(np.int64)  # [nc]
    t_past = np.maximum(np.cumsum(np.maximum.accumulate(a)) - 1, 0)
    t_fut = (t_past.max() if nc else -1) + 1 + np.arange(npr)

    targets, observed, sample_id, time_id, variate_id, pred = [], [], [], [], [], []

    def add(vals, obs, sid, tid, var, is_pred):
        k, n = vals.shape[:2]
        targets.append(vals.reshape(k * n, ps))
        observed.append(obs.reshape(k * n, ps))
        sample_id.append(np.tile(sid, k))
        time_id.append(np.tile(tid, k))
        variate_id.append(np.repeat(var, n))
        pred.append(np.full(k * n, is_pred))

    add(tgt_past, obs_past, sid_tgt_past, t_past, np.arange(d), False)
    add(tgt_fut, obs_fut, np.ones(npr, np.int64), t_fut, np.arange(d), True)
    if f:
        add(_patch(known[:, :c], ps, lp, 0, 0.0), _patch(known_observed[:, :c], ps, lp, 0, False), sid_cov_past, t_past, d + np.arange(f), False)
        add(_patch(known[:, c:], ps, 0, rp, 0.0), _patch(known_observed[:, c:], ps, 0, rp, False), np.ones(npr, np.int64), t_fut, d + np.arange(f), False)
    if p:
        add(_patch(past_only, ps, lp, 0, 0.0), _patch(past_only_observed, ps, lp, 0, False), sid_cov_past, t_past, d + f + np.arange(p), False)
    return {
        "target": np.concatenate(targets).astype(np.float32),
        "observed_mask": np.concatenate(observed).astype(bool),
        "sample_id": np.concatenate(sample_id),
        "time_id": np.concatenate(time_id).astype(np.int64),
        "variate_id": np.concatenate(variate_id).astype(np.int64),
        "prediction_mask": np.concatenate(pred),
        "num_context_tokens": np.array(d * nc),
        "num_future_tokens": np.array(d * npr),
    }


def stack_rows(samples: list[dict[str, np.ndarray]], patch_size: int) -> dict[str, np.ndarray]:
    """One sample per row, right-padded with ``sample_id 0`` tokens to the longest row."""
    n, ps = len(samples), patch_size
    length = max(s["sample_id"].shape[0] for s in samples)
    out = {
        "target": np.zeros((n, length, ps), np.float32),
        "observed_mask": np.zeros((n, length, ps), bool),
        "sample_id": np.zeros((n, length), np.int64),
        "time_id": np.zeros((n, length), np.int64),
        "variate_id": np.zeros((n, length), np.int64),
        "prediction_mask": np.zeros((n, length), bool),
        "patch_size": np.full((n, length), ps, np.int64),
        "series_id": np.zeros((n, length), np.int64),
    }
    for i, s in enumerate(samples):
        m = s["sample_id"].shape[0]
        for k in ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask"):
            out[k][i, :m] = s[k]
        # per-row (sample, variate) ids < L so the model skips its own (synchronising) computation
        key = s["sample_id"] * (s["variate_id"].max() + 1) + s["variate_id"]
        _, inv = np.unique(key, return_inverse=True)
        out["series_id"][i, :m] = inv
        out["series_id"][i, m:] = inv.max() + 1  # trailing padding: one more group
    return out


def forecast_layout(values: np.ndarray, d: int, prediction_length: int, patch_size: int) -> np.ndarray:
    """Predicted-token values ``[..., D*np, ps]`` -> ``[..., D, H]`` (drop right padding)."""
    npr = values.shape[-2] // d
    out = values.reshape(*values.shape[:-2], d, npr * patch_size)
    return out[..., :prediction_length]
