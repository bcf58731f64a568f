"""TSMixup (Chronos, Ansari et al. 2024): convex mixes of up to ``k_max`` mean-scaled series.

For output ``i``: ``k ~ U{1..k_max}`` source series and a length ``L ~ U{min_length..max_length}``
are drawn; each source contributes a random window of ``min(L, shortest source)`` steps, divided
by its mean absolute observed value (scale 1 when that is 0 or undefined); the windows are
mixed with weights ``~ Dirichlet(alpha·1_k)``. Sources shorter than ``min_length`` are never
used. Output ``i`` depends only on ``(seed, i)`` and the source list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from tsfm.data.types import Series


def _mean_scaled(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        scale = np.nanmean(np.abs(x)) if np.isfinite(x).any() else np.nan
    if not np.isfinite(scale) or scale == 0:
        scale = 1.0
    return x / scale


def tsmixup_series(
    i: int,
    sources: Sequence[np.ndarray],
    seed: int = 0,
    k_max: int = 3,
    alpha: float = 1.5,
    min_length: int = 128,
    max_length: int = 2048,
) -> np.ndarray:
    """Output ``i``: float32 ``[L]``. ``sources`` are 1-D arrays at least ``min_length`` long."""
    rng = np.random.default_rng([int(seed), int(i)])
    k = int(rng.integers(1, k_max + 1))
    length = int(rng.integers(min_length, max_length + 1))
    picks = rng.integers(0, len(sources), size=k)
    length = min(length, *(len(sources[p]) for p in picks))
    weights = rng.dirichlet(np.full(k, alpha))
    mix = np.zeros(length, np.float64)
    for w, p in zip(weights, picks):
        src = sources[p]
        off = int(rng.integers(0, len(src) - length + 1))
        mix += w * _mean_scaled(src[off : off + length].astype(np.float64))
    return mix.astype(np.float32)


def generate_tsmixup(
    sources: Sequence[Series],
    num_series: int,
    seed: int = 0,
    k_max: int = 3,
    alpha: float = 1.5,
    min_length: int = 128,
    max_length: int = 2048,
    freq: str = "h",
) -> Iterator[Series]:
    """``num_series`` TSMixup series from ``sources`` (every variate of each is a candidate)."""
    if k_max < 1 or alpha <= 0 or not 1 <= min_length <= max_length:
        raise ValueError(
            f"need k_max >= 1, alpha > 0, 1 <= min_length <= max_length (got {k_max}, {alpha}, {min_length}, {max_length})"
        )
    pool = [row for s in sources for row in np.asarray(s.target) if len(row) >= min_length]
    if not pool:
        raise ValueError(
            f"TSMixup needs source series of at least min_length={min_length} steps; none of the "
            f"{len(sources)} given qualifies (lower min_length or add longer sources)"
        )
    start = np.datetime64("2000-01-01T00:00:00", "s")
    for i in range(num_series):
        y = tsmixup_series(i, pool, seed, k_max, alpha, min_length, max_length)
        yield Series(y[None, :], freq, f"tsmixup_{seed}_{i}", "tsmixup", start)
