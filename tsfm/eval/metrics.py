"""Forecast accuracy metrics, vectorised over all series and windows of a dataset.

Every metric follows the conventions of ``gluonts.ev`` with ``axis=None`` (one number per
dataset), so values agree with ``gluonts.model.evaluation.evaluate_forecasts``:

- labels that are NaN/inf are masked out of every sum and mean;
- a ratio that is not finite (a zero seasonal error, a zero label in MAPE) is masked out of
  the mean instead of poisoning it (gluonts' masked-array division does the same);
- WQL is ``mean_q( sum(QL_q) / sum|y| )`` with ``QL_q = 2 |(y - q̂)(1{q̂ >= y} - q)|``;
- MASE scales each window's absolute error of the median by the seasonal error of that
  window's *whole* history (:func:`seasonal_error`).

Arrays are float64 internally. Shapes: ``N`` = number of evaluated (series, window, variate)
rows, ``H`` = horizon, ``Q`` = number of quantile levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CRPS_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METRICS = ("wql", "mase", "crps", "msis", "mae", "mse", "rmse", "smape", "mape")


def seasonal_error(history: np.ndarray, season_length: int) -> float:
    """Mean ``|y_t - y_{t-m}|`` over the whole history (NaN pairs ignored), as gluonts'.

    Falls back to ``m = 1`` when the history is not longer than one season. Returns NaN when
    no pair of observed values exists.
    """
    y = np.asarray(history, dtype=np.float64)
    m = season_length if season_length <= y.shape[-1] else 1
    d = np.abs(y[m:] - y[:-m]) if y.shape[-1] > m else np.empty(0)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def seasonal_errors_at(series: np.ndarray, cutoffs: Sequence[int], season_length: int) -> np.ndarray:
    """Seasonal error of ``series[:c]`` for every cutoff ``c`` in one pass (cumulative sums).

    ``series`` is 1-D ``[T]``; returns ``[len(cutoffs)]``. Equals
    ``[seasonal_error(series[:c], season_length) for c in cutoffs]``.
    """
    y = np.asarray(series, dtype=np.float64)
    out = np.full(len(cutoffs), np.nan)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, c in enumerate(cutoffs):
        m = season_length if season_length <= c else 1
        if c <= m:
            continue
        if m not in cache:
            d = np.abs(y[m:] - y[:-m])  # d[j] pairs (j+m, j)
            ok = np.isfinite(d)
            cache[m] = (np.concatenate([[0.0], np.cumsum(np.where(ok, d, 0.0))]),
                        np.concatenate([[0], np.cumsum(ok)]))
        s, n = cache[m]
        k = c - m  # pairs fully inside series[:c]
        if n[k] > 0:
            out[i] = s[k] / n[k]
    return out


def _valid_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64)
    return y, np.isfinite(y)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    ok = mask & np.isfinite(values)
    n = int(ok.sum())
    return float(values[ok].sum() / n) if n else float("nan")


def quantile_loss(labels: np.ndarray, preds: np.ndarray, q: float) -> np.ndarray:
    """Elementwise ``2 |(y - ŷ)(1{ŷ >= y} - q)|`` (gluonts' scaling: twice the pinball loss)."""
    return 2.0 * np.abs((labels - preds) * ((preds >= labels) - q))


def wql(labels: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> float:
    """Mean weighted quantile loss. ``labels [N, H]``, ``quantiles [N, H, Q]``."""
    y, ok = _valid_labels(labels)
    q_pred = np.asarray(quantiles, dtype=np.float64)
    denom = np.abs(np.where(ok, y, 0.0)).sum()
    y0 = np.where(ok, y, 0.0)[..., None]  # [N, H, 1]
    ql = quantile_loss(y0, q_pred, np.asarray(levels, dtype=np.float64))  # [N, H, Q]
    ql = np.where(ok[..., None], ql, 0.0)
    per_q = np.nansum(ql, axis=(0, 1)) / denom
    return float(per_q.mean())


def crps(labels: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> float:
    """CRPS approximated as WQL over the levels 0.1…0.9 (the Moirai/uni2ts convention).

    ``quantiles`` must contain those nine levels (others are ignored).
    """
    idx = _level_indices(levels, CRPS_LEVELS, "crps")
    return wql(labels, np.asarray(quantiles)[..., idx], CRPS_LEVELS)


def mase(labels: np.ndarray, point: np.ndarray, season_error: np.ndarray) -> float:
    """Mean absolute scaled error. ``labels``/``point`` ``[N, H]``, ``season_error [N]``."""
    y, ok = _valid_labels(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(y - point) / np.asarray(season_error, dtype=np.float64)[:, None]
    return _masked_mean(r, ok)


def msis(
    labels: np.ndarray, lower: np.ndarray, upper: np.ndarray, season_error: np.ndarray, alpha: float = 0.05
) -> float:
    """Mean scaled interval score of the ``[alpha/2, 1 - alpha/2]`` interval (``[N, H]`` each)."""
    y, ok = _valid_labels(labels)
    score = (
        upper - lower
        + 2.0 / alpha * (lower - y) * (y < lower)
        + 2.0 / alpha * (y - upper) * (y > upper)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        r = score / np.asarray(season_error, dtype=np.float64)[:, None]
    return _masked_mean(r, ok)


def mae(labels: np.ndarray, point: np.ndarray) -> float:
    y, ok = _valid_labels(labels)
    return _masked_mean(np.abs(y - point), ok)


def mse(labels: np.ndarray, point: np.ndarray) -> float:
    y, ok = _valid_labels(labels)
    return _masked_mean(np.square(y - point), ok)


def rmse(labels: np.ndarray, point: np.ndarray) -> float:
    return float(np.sqrt(mse(labels, point)))


def mape(labels: np.ndarray, point: np.ndarray) -> float:
    """Mean ``|y - ŷ| / |y|`` (rows with ``y = 0`` are masked, as in gluonts)."""
    y, ok = _valid_labels(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _masked_mean(np.abs(y - point) / np.abs(y), ok)


def smape(labels: np.ndarray, point: np.ndarray) -> float:
    """Mean ``2 |y - ŷ| / (|y| + |ŷ|)`` (gluonts' sMAPE, not multiplied by 100)."""
    y, ok = _valid_labels(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _masked_mean(2.0 * np.abs(y - point) / (np.abs(y) + np.abs(point)), ok)


def nll(log_probs: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of the observed labels under a predictive distribution.

    ``log_probs [N, H]`` are per-point log densities from a family that has a distribution
    head (Moirai); points with a non-finite label (if ``labels`` is given) are masked.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    ok = np.ones(lp.shape, bool) if labels is None else np.isfinite(np.asarray(labels, dtype=np.float64))
    return _masked_mean(-lp, ok)


def _level_indices(levels: Sequence[float], wanted: Sequence[float], metric: str) -> list[int]:
    lv = [round(float(q), 6) for q in levels]
    missing = [q for q in wanted if round(q, 6) not in lv]
    if missing:
        raise ValueError(
            f"metric {metric!r} needs quantile levels {list(wanted)} but the forecasts have {list(levels)}; "
            f"add {missing} to quantile_levels"
        )
    return [lv.index(round(q, 6)) for q in wanted]


def point_forecast(quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The median ``[N, H]`` (the 0.5 level; interpolated when it was not requested)."""
    lv = [round(float(q), 6) for q in levels]
    if 0.5 in lv:
        return np.asarray(quantiles)[..., lv.index(0.5)]
    order = np.argsort(lv)
    qs = np.asarray(quantiles)[..., order]
    lo = int(np.searchsorted(np.asarray(lv)[order], 0.5)) - 1
    if lo < 0 or lo + 1 >= len(lv):
        raise ValueError(f"cannot derive a median from quantile levels {list(levels)}; include 0.5")
    a, b = np.asarray(lv)[order][lo], np.asarray(lv)[order][lo + 1]
    w = (0.5 - a) / (b - a)
    return (1 - w) * qs[..., lo] + w * qs[..., lo + 1]


def compute_metrics(
    labels: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
    season_error: np.ndarray,
    metrics: Sequence[str] = ("wql", "mase"),
    point: np.ndarray | None = None,
    msis_alpha: float = 0.05,
) -> dict[str, float]:
    """All requested metrics of one dataset.

    ``labels [N, H]``, ``quantiles [N, H, Q]`` at ``levels``, ``season_error [N]``.
    ``point`` (``[N, H]``) is the point forecast for MAE/MSE/…; the median when ``None``
    (gluonts uses the median for MAE/MASE/MAPE/sMAPE and the mean — median for quantile
    forecasts — for MSE/RMSE).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    labels = np.asarray(labels, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    if quantiles.shape[:2] != labels.shape or quantiles.shape[-1] != len(levels):
        raise ValueError(
            f"quantiles have shape {quantiles.shape}; expected {labels.shape + (len(levels),)} "
            "(labels [N, H] plus one column per quantile level)"
        )
    median = point_forecast(quantiles, levels)
    pt = median if point is None else np.asarray(point, dtype=np.float64)
    out: dict[str, float] = {}
    for m in metrics:
        if m == "wql":
            out[m] = wql(labels, quantiles, levels)
        elif m == "crps":
            out[m] = crps(labels, quantiles, levels)
        elif m == "mase":
            out[m] = mase(labels, median, season_error)
        elif m == "msis":
            lo, hi = _level_indices(levels, (msis_alpha / 2, 1 - msis_alpha / 2), "msis")
            out[m] = msis(labels, quantiles[..., lo], quantiles[..., hi], season_error, msis_alpha)
        elif m == "mae":
            out[m] = mae(labels, median)
        elif m == "mse":
            out[m] = mse(labels, pt)
        elif m == "rmse":
            out[m] = rmse(labels, pt)
        elif m == "mape":
            out[m] = mape(labels, median)
        elif m == "smape":
            out[m] = smape(labels, median)
    return out
