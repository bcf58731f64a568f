"""Leaderboard statistics over datasets: skill score, pairwise win rate, bootstrap confidence intervals.

All take per-dataset scores relative to a reference (Seasonal Naive; lower is better):

- **skill score** (fev, Chronos Benchmark II): ``1 - geometric mean`` of the relative errors, each
  clipped to ``[0.01, 100]`` so that one degenerate dataset cannot dominate; > 0 beats the reference;
- **win rate** (fev): for each pair of models, the share of their common datasets on which the first
  has the lower error (ties count one half); a model's win rate is the mean over its opponents;
- **95% bootstrap intervals**: datasets resampled with replacement (``n_boot`` times, fixed seed),
  the statistic recomputed, the 2.5% and 97.5% percentiles reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

CLIP = (0.01, 100.0)


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def gmean_clipped(values: Sequence[float]) -> float:
    """Geometric mean of relative errors clipped to :data:`CLIP` (NaN when there is none)."""
    v = _finite(values)
    if v.size == 0:
        return float("nan")
    return float(np.exp(np.log(np.clip(v, *CLIP)).mean()))


def skill_score(values: Sequence[float]) -> float:
    """``1 - gmean_clipped(values)``: 0 is the reference, 1 a perfect forecast, < 0 worse than the reference."""
    return 1.0 - gmean_clipped(values)


def bootstrap_ci(values: Sequence[float], stat=gmean_clipped, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over datasets (resampled with replacement)."""
    v = _finite(values)
    if v.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    stats = np.array([stat(v[i]) for i in idx])
    lo, hi = np.percentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def win_rates(scores: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``scores[model][dataset]`` (lower is better) -> (each model's mean win rate over its opponents,
    the pairwise table ``pair[a][b]``: share of common datasets where ``a`` beats ``b``)."""
    models = list(scores)
    pair: dict[str, dict[str, float]] = {a: {} for a in models}
    for a in models:
        for b in models:
            if a == b:
                continue
            common = [d for d in scores[a] if d in scores[b]
                      and np.isfinite(scores[a][d]) and np.isfinite(scores[b][d])]  # fmt: skip
            if not common:
                pair[a][b] = float("nan")
                continue
            wins = sum(1.0 if scores[a][d] < scores[b][d] else 0.5 if scores[a][d] == scores[b][d] else 0.0
                       for d in common)  # fmt: skip
            pair[a][b] = wins / len(common)
    overall = {a: float(np.nanmean(list(pair[a].values()))) if pair[a] else float("nan") for a in models}
    return overall, pair


def leaderboard(rel: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Sequence[str] = ("wql", "mase"),
                n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``rel[model][metric][dataset]`` -> per model: gmean (clipped), its 95% CI, skill score and its
    CI, and the win rate, for each metric (keys ``<metric>_gmean``, ``<metric>_gmean_ci``, ...)."""
    out: dict[str, dict[str, float]] = {m: {} for m in rel}
    for metric in metrics:
        per = {m: dict(rel[m].get(metric, {})) for m in rel}
        overall, _ = win_rates(per)
        for m, values in per.items():
            v = list(values.values())
            lo, hi = bootstrap_ci(v, gmean_clipped, n_boot, seed)
            out[m] |= {
                f"{metric}_gmean": gmean_clipped(v), f"{metric}_gmean_ci": [lo, hi],
                f"{metric}_skill": skill_score(v), f"{metric}_skill_ci": [1.0 - hi, 1.0 - lo],
                f"{metric}_win_rate": overall[m], f"{metric}_datasets": len(_finite(v)),
            }  # fmt: skip
    return out
