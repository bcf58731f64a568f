"""TSMixup (Chronos, Ansari et al. 2024): convex mixes of up to ``k_max`` mean-scaled series.

For output ``i``: ``k ~ U{1..k_max}`` source series and a length ``L ~ U{min_length..max_length}``
are drawn; each source contributes a random window of ``min(L, shortest source)`` steps, divided
by its mean absolute observed value (scale 1 when that is 0 or undefined); the windows are
mixed with weights ``~ Dirichlet(alpha·1_k)``. Sources shorter than ``min_length`` are never
used. Output ``i`` depends only on ``(seed, i)`` and the source list.

The real series a corpus draws on are evaluation data elsewhere (docs/architecture.md, "Training data vs evaluation data"):
:func:`build_tsmixup` records the fingerprints of every source series it mixed, by source
dataset, in the corpus' manifest (:mod:`tsfm.data.manifest`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.data.format import BuildReport, write_dataset
from tsfm.data.manifest import manifest_writer, series_fingerprint
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
    picked: list[int] | None = None,
) -> np.ndarray:
    """Output ``i``: float32 ``[L]``. ``sources`` are 1-D arrays at least ``min_length`` long.
    The indices of the sources mixed are appended to ``picked`` when given."""
    rng = np.random.default_rng([int(seed), int(i)])
    k = int(rng.integers(1, k_max + 1))
    length = int(rng.integers(min_length, max_length + 1))
    picks = rng.integers(0, len(sources), size=k)
    length = min(length, *(len(sources[p]) for p in picks))
    weights = rng.dirichlet(np.full(k, alpha))
    if picked is not None:
        picked.extend(int(p) for p in picks)
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
    drawn: dict[str, set[str]] | None = None,
) -> Iterator[Series]:
    """``num_series`` TSMixup series from ``sources`` (every variate of each is a candidate).

    ``drawn``, when given, collects the fingerprints of the source variates actually mixed,
    keyed by their series' ``dataset`` (filled as the output is consumed).
    """
    if k_max < 1 or alpha <= 0 or not 1 <= min_length <= max_length:
        raise ValueError(
            f"need k_max >= 1, alpha > 0, 1 <= min_length <= max_length (got {k_max}, {alpha}, {min_length}, {max_length})"
        )
    pool, origin = [], []
    for s in sources:
        for row in np.asarray(s.target):
            if len(row) >= min_length:
                pool.append(row)
                origin.append(s.dataset or "unknown")
    if not pool:
        raise ValueError(
            f"TSMixup needs source series of at least min_length={min_length} steps; none of the "
            f"{len(sources)} given qualifies (lower min_length or add longer sources)"
        )
    start = np.datetime64("2000-01-01T00:00:00", "s")
    known: set[int] = set()
    for i in range(num_series):
        picked: list[int] | None = [] if drawn is not None else None
        y = tsmixup_series(i, pool, seed, k_max, alpha, min_length, max_length, picked)
        for p in set(picked or ()) - known:
            known.add(p)
            drawn.setdefault(origin[p], set()).add(series_fingerprint(pool[p]))  # type: ignore[union-attr]
        yield Series(y[None, :], freq, f"tsmixup_{seed}_{i}", "tsmixup", start)


def build_tsmixup(
    sources: Sequence[str], out: str | Path, *, overwrite: bool = False, **kwargs: Any
) -> BuildReport:
    """Write ``num_series`` TSMixup series mixed from packaged datasets ``sources`` (names, see
    :data:`tsfm.data.packaged.PACKAGED`) as sub-dataset ``out``, with a manifest that records
    the fingerprints of the series mixed, by packaged dataset. ``kwargs`` go to
    :func:`generate_tsmixup` (``num_series``, ``seed``, ``k_max``, ``alpha``, lengths)."""
    from tsfm.data.packaged import load_packaged

    names = [str(n).lower() for n in sources]
    pool = [replace(s, dataset=n) for n in names for s in load_packaged(n)]
    drawn: dict[str, set[str]] = {}
    spec = {"generator": "tsmixup", "sources": names, **kwargs}
    finalize = manifest_writer(spec, lambda: drawn, synthetic=False)
    return write_dataset(generate_tsmixup(pool, drawn=drawn, **kwargs), out, overwrite=overwrite, finalize=finalize)
