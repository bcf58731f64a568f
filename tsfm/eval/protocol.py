"""The evaluation protocol: rolling windows, per-dataset scoring, relative scores, aggregation.

Chronos benchmark protocol (docs/architecture.md, "Evaluation protocol"): the last ``num_windows`` non-overlapping windows of
length ``H`` at the end of every series are forecast from everything before them; WQL and
MASE are computed per dataset, divided by Seasonal Naive's on the same windows, and the
ratios are aggregated across datasets by the geometric mean.

Series too short for the requested windows are skipped and *counted*; a dataset whose
forecasts contain NaN/inf is reported as failed (with the number of bad windows) instead of
getting a score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tsfm.data.types import Series
from tsfm.eval.metrics import compute_metrics, seasonal_errors_at

log = logging.getLogger(__name__)


@dataclass
class EvalWindows:
    """All forecast windows of one dataset, flattened over (series, window).

    ``contexts[i]`` is ``[V, T_i]`` float32 (the full history before window ``i``),
    ``labels`` ``[N, V, H]``, ``season_error`` ``[N, V]``.
    """

    contexts: list[np.ndarray]
    labels: np.ndarray  # [N, V, H]
    season_error: np.ndarray  # [N, V]
    item_ids: list[str]
    window_index: list[int]
    prediction_length: int
    num_series: int = 0
    skipped: int = 0  # series shorter than the windows requested
    skipped_unobserved: int = 0  # windows whose context has no observed value
    # per window [C, T_i]: the series' covariates (``past_feat_dynamic_real``) over its context; None when
    # the dataset has none. Past-only: their values in the forecast window are never shown to a model.
    past_covariates: list[np.ndarray] | None = None

    @property
    def num_windows(self) -> int:
        return len(self.contexts)


def _usable_covariates(series: Sequence[Series]) -> bool:
    """Whether every series has covariate rows (``past_feat_dynamic_real``): the same count, the target's
    length, no infinite value. When some do and others do not, they are left out with a warning."""
    covs = [s.past_feat_dynamic_real for s in series]
    if not covs or all(c is None for c in covs):
        return False
    why = None
    if any(c is None for c in covs):
        why = f"{sum(c is None for c in covs)} of {len(covs)} series have none"
    elif len({len(c) for c in covs}) > 1:
        why = f"the series have different numbers of covariate rows ({sorted({len(c) for c in covs})})"
    else:
        for s, c in zip(series, covs):
            if np.shape(c)[-1] != s.length:
                why = f"series {s.item_id!r} has {np.shape(c)[-1]} covariate values for {s.length} target values"
                break
            if np.isinf(np.asarray(c, dtype=np.float32)).any():
                why = f"series {s.item_id!r} has an infinite covariate value"
                break
    if why:
        log.warning("covariates left out of the evaluation: %s", why)
        return False
    return True


def window_span(prediction_length: int, num_windows: int = 1, stride: int | None = None, offset: int | None = None) -> int:
    """Points at the end of a series that the test windows reach into (where the test part starts)."""
    return -offset if offset else prediction_length + (num_windows - 1) * (stride or prediction_length)


def make_windows(
    series: Sequence[Series],
    prediction_length: int,
    num_windows: int = 1,
    season_length: int = 1,
    min_context: int = 1,
    stride: int | None = None,
    offset: int | None = None,
) -> EvalWindows:
    """Cut the last ``num_windows`` windows (spaced ``stride``, default ``H``) off every series.

    ``offset`` (negative, default ``-(H + (num_windows - 1) * stride)``, i.e. ``-H * num_windows``
    for the default stride) is where the first window starts,
    counted from the end — as gluonts' ``split(offset=...)`` and the Chronos benchmark configs
    (e.g. ETTm: offset -96 with H 24). A series needs ``min_context - offset`` points and the
    windows must fit, else it is skipped and counted in :attr:`EvalWindows.skipped`.
    Series must share the variate count.
    """
    if prediction_length <= 0 or num_windows <= 0:
        raise ValueError(f"prediction_length and num_windows must be positive, got {prediction_length}, {num_windows}")
    if stride is not None and stride <= 0:
        raise ValueError(f"stride must be a positive number of steps (or null for H), got {stride}")
    h, stride = prediction_length, stride or prediction_length
    if offset is not None and (offset >= 0 or offset + (num_windows - 1) * stride + h > 0):
        raise ValueError(
            f"offset={offset} with {num_windows} window(s) of H={h} every {stride} steps runs past the series end; "
            f"offset must be <= {-(h + (num_windows - 1) * stride)} (negative, counted from the end)"
        )
    contexts, labels, serr, ids, widx, covs = [], [], [], [], [], []
    skipped = unobserved = used = 0
    n_var = None
    with_cov = _usable_covariates(series)
    for s in series:
        cov = s.past_feat_dynamic_real
        y = np.asarray(s.target, dtype=np.float32)  # [V, T]
        if y.ndim == 1:
            y = y[None]
        if n_var is None:
            n_var = y.shape[0]
        elif y.shape[0] != n_var:
            raise ValueError(
                f"series {s.item_id!r} has {y.shape[0]} variates but earlier ones have {n_var}; "
                "a dataset must have one variate count"
            )
        t = y.shape[-1]
        if offset is None:
            cutoffs = [t - h - k * stride for k in range(num_windows - 1, -1, -1)]
        else:
            cutoffs = [t + offset + k * stride for k in range(num_windows)]
        if cutoffs[0] < min_context or cutoffs[-1] + h > t:
            skipped += 1
            continue
        used += 1
        se = np.stack([seasonal_errors_at(y[v], cutoffs, season_length) for v in range(y.shape[0])], axis=1)
        for k, c in enumerate(cutoffs):
            ctx = y[:, :c]
            if not np.isfinite(ctx).any():
                unobserved += 1
                continue
            contexts.append(ctx)
            if with_cov:
                covs.append(np.asarray(cov, dtype=np.float32)[:, :c])
            labels.append(y[:, c:c + h])
            serr.append(se[k])
            ids.append(s.item_id)
            widx.append(k)
    v = n_var or 1
    return EvalWindows(
        contexts=contexts,
        labels=np.stack(labels) if labels else np.zeros((0, v, h), np.float32),
        season_error=np.stack(serr) if serr else np.zeros((0, v)),
        item_ids=ids,
        window_index=widx,
        prediction_length=h,
        num_series=used,
        skipped=skipped,
        skipped_unobserved=unobserved,
        past_covariates=covs if with_cov else None,
    )


@dataclass
class Score:
    """One forecaster's scores on one dataset (``failed`` > 0 means no valid score)."""

    metrics: dict[str, float] = field(default_factory=dict)
    failed: int = 0  # windows whose forecast contains NaN/inf
    seconds: float = 0.0
    fallbacks: int = 0  # baselines: series that fell back to Seasonal Naive / Naive

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.metrics)


def score_forecasts(
    windows: EvalWindows,
    quantiles: np.ndarray,
    levels: Sequence[float],
    metrics: Sequence[str] = ("wql", "mase"),
) -> Score:
    """Score ``quantiles [N, V, H, Q]`` against ``windows``; NaN/inf forecasts fail the dataset."""
    q = np.asarray(quantiles, dtype=np.float64)
    n, v, h = windows.labels.shape
    if q.shape != (n, v, h, len(levels)):
        raise ValueError(f"forecasts have shape {q.shape}, expected {(n, v, h, len(levels))} = [N, V, H, Q]")
    bad = ~np.isfinite(q).reshape(n, -1).all(axis=1)
    if bad.any():
        return Score(metrics={}, failed=int(bad.sum()))
    if n == 0:
        return Score(metrics={})
    vals = compute_metrics(
        windows.labels.reshape(n * v, h),
        q.reshape(n * v, h, len(levels)),
        levels,
        windows.season_error.reshape(n * v),
        metrics,
    )
    return Score(metrics=vals)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of non-negative finite values (0 if any is 0, as ``scipy.stats.gmean``);
    NaN if there are none or any is missing or negative."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x < 0):
        return float("nan")
    if np.any(x == 0):
        return 0.0
    return float(np.exp(np.log(x).mean()))


def relative_scores(model: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """``model[m] / reference[m]`` for every metric both have (NaN where undefined)."""
    out = {}
    for m, v in model.items():
        r = reference.get(m)
        out[m] = float(v / r) if r not in (None, 0) and math.isfinite(r) and math.isfinite(v) else float("nan")
    return out


def aggregate(
    per_dataset: dict[str, Score],
    reference: dict[str, Score] | None,
    metrics: Sequence[str],
) -> dict:
    """Aggregate one forecaster over datasets.

    With a reference (Seasonal Naive): geometric mean of the relative scores (``rel_<m>``) and
    arithmetic mean of the raw scores (``avg_<m>``). Datasets without a valid score are
    excluded and listed, so the aggregate says it covers fewer datasets: ``failed_datasets``
    (NaN/inf forecasts), ``empty_datasets`` (no evaluation window: every series too short for
    the windows) and ``no_reference_datasets`` (left out of ``rel_<m>`` only: the reference has
    no valid score there). A relative score the reference leaves undefined (its score is 0,
    e.g. Seasonal Naive exact on a periodic dataset) is left out of ``rel_<m>`` and listed in
    ``undefined_relative[m]``.
    """
    ok = {d: s for d, s in per_dataset.items() if s.ok}
    failed = sorted(d for d, s in per_dataset.items() if s.failed)
    empty = sorted(d for d, s in per_dataset.items() if not s.ok and not s.failed)
    out: dict = {"num_datasets": len(ok), "failed_datasets": failed, "empty_datasets": empty}
    if reference is not None:
        out["no_reference_datasets"] = sorted(d for d in ok if d not in reference or not reference[d].ok)
        out["undefined_relative"] = {}
    for m in metrics:
        vals = [s.metrics[m] for s in ok.values() if m in s.metrics]
        out[f"avg_{m}"] = float(np.mean(vals)) if vals else float("nan")
        if reference is not None:
            rel = {
                d: relative_scores({m: s.metrics[m]}, reference[d].metrics)[m]
                for d, s in ok.items()
                if d in reference and reference[d].ok and m in s.metrics
            }
            undefined = sorted(d for d, r in rel.items() if not math.isfinite(r))
            if undefined:
                out["undefined_relative"][m] = undefined
            out[f"rel_{m}"] = geometric_mean([r for r in rel.values() if math.isfinite(r)])
    return out
