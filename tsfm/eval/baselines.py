"""Statistical baselines from ``statsforecast``, evaluable like any model, with a disk cache.

Each baseline forecasts every window from at most the last ``max_context`` (2,500) points —
the AutoGluon default behind the Chronos papers' baselines — and turns statsforecast's
normal prediction intervals into quantiles (level ``L`` gives the ``(1 ± L/100)/2`` quantiles;
the 0.5 quantile is the point forecast).

The models come from statsforecast; what this file adds is the plumbing around them:
- leading missing values are dropped (the series had not started) and the remaining gaps are
  forward-filled, since statsforecast needs complete series;
- a context shorter than one season uses ``season_length = 1``;
- when a model raises or returns non-finite values for a series, that series falls back to
  Seasonal Naive (then Naive) and the fallback is counted (``fallbacks``), never hidden.

Costs on this machine (one core, dev suite): SeasonalNaive/Naive seconds, AutoTheta ~1–2 min,
AutoETS a few minutes, AutoARIMA much more (tens of minutes on hourly data), hence optional.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.inputs import normalize_inputs
from tsfm.levels import DEFAULT_QUANTILES

log = logging.getLogger(__name__)

MAX_CONTEXT = 2500
CACHE_VERSION = 3  # bump when what a baseline computes changes, so old cache files are not reused


def _model_factory(name: str) -> Callable[[int], Any]:
    from statsforecast import models as sf

    factories: dict[str, Callable[[int], Any]] = {
        "seasonal_naive": lambda m: sf.SeasonalNaive(season_length=m),
        "naive": lambda m: sf.Naive(),
        "auto_ets": lambda m: sf.AutoETS(season_length=m),
        "auto_theta": lambda m: sf.AutoTheta(season_length=m),
        "auto_arima": lambda m: sf.AutoARIMA(season_length=m),
    }
    if name not in factories:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(factories)}")
    return factories[name]


BASELINES = ("seasonal_naive", "naive", "auto_ets", "auto_theta", "auto_arima")


def _fill(y: np.ndarray) -> np.ndarray:
    """Drop leading NaNs and forward-fill the others of a 1-D array (all-NaN -> ``[0.0]``)."""
    ok = np.isfinite(y)
    if ok.all():
        return y
    if not ok.any():
        return np.zeros(1, dtype=y.dtype)
    first = int(np.argmax(ok))
    y, ok = y[first:], ok[first:]
    idx = np.where(ok, np.arange(len(y)), 0)
    np.maximum.accumulate(idx, out=idx)
    return y[idx]


def _interval_levels(levels: Sequence[float]) -> list[float | int]:
    out = set()
    for q in levels:
        if abs(q - 0.5) > 1e-9:
            lv = round(abs(200 * q - 100), 6)
            out.add(int(lv) if lv == int(lv) else lv)
    return sorted(out)


class StatsBaseline:
    """A statsforecast model with the :class:`tsfm.forecast.Forecaster` prediction API.

    ``predict_quantiles(context, prediction_length, quantile_levels, season_length=m)``
    returns ``[N, H, Q]`` for 1-D contexts and ``[N, V, H, Q]`` for ``[V, T]`` ones (each
    variate is forecast on its own).
    """

    family = "baseline"
    samples = False

    def __init__(self, name: str, max_context: int = MAX_CONTEXT, n_jobs: int = 1) -> None:
        self.name = name
        self._factory = _model_factory(name)
        self.max_context = int(max_context)
        self.n_jobs = max(1, int(n_jobs))  # worker processes (series are independent)
        self.fallbacks = 0

    def __repr__(self) -> str:
        return f"StatsBaseline({self.name!r}, max_context={self.max_context})"

    def predict_quantiles(
        self,
        context: Any,
        prediction_length: int,
        quantile_levels: Sequence[float] = DEFAULT_QUANTILES,
        season_length: int = 1,
        **kwargs: Any,
    ) -> np.ndarray:
        inputs = normalize_inputs(context, prediction_length)
        levels = [float(q) for q in quantile_levels]
        rows = [row for tgt in inputs.targets for row in tgt]  # every variate of every series
        if self.n_jobs > 1 and len(rows) >= 2 * self.n_jobs:
            flat = self._parallel(rows, prediction_length, levels, season_length)
        else:
            flat = [self._one(row, prediction_length, levels, season_length) for row in rows]
        v = inputs.targets[0].shape[0]
        arr = np.stack(flat).astype(np.float32).reshape(len(inputs.targets), v, prediction_length, len(levels))
        return arr[:, 0] if inputs.univariate else arr  # [N, H, Q] / [N, V, H, Q]

    def _parallel(self, rows: list[np.ndarray], h: int, levels: list[float], m: int) -> list[np.ndarray]:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        chunks = [rows[i::self.n_jobs] for i in range(self.n_jobs)]  # interleaved: long and short series mix
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(self.n_jobs, mp_context=ctx) as ex:
            parts = list(ex.map(_forecast_chunk, [(self.name, self.max_context, c, h, levels, m) for c in chunks]))
        out: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
        for i, (qs, fb) in enumerate(parts):
            out[i::self.n_jobs] = qs
            self.fallbacks += fb
        return out

    def _one(self, y: np.ndarray, h: int, levels: list[float], m: int) -> np.ndarray:
        """Quantiles ``[H, Q]`` for one 1-D context."""
        y = _fill(np.asarray(y, dtype=np.float64)[-self.max_context:])  # last <= 2,500 points, gaps filled
        m_eff = m if len(y) >= m else 1
        try:
            q = self._run(self._factory(m_eff), y, h, levels)
            if np.isfinite(q).all():
                return q
        except Exception as e:  # noqa: BLE001 - statsforecast raises many types on degenerate series
            log.debug("%s failed on a series of length %d (%s); falling back", self.name, len(y), e)
        self.fallbacks += 1
        for fb in (_model_factory("seasonal_naive")(m_eff), _model_factory("naive")(1)):
            try:
                q = self._run(fb, y, h, levels)
            except Exception:  # noqa: BLE001
                continue
            if np.isfinite(q).all():
                return q
        return np.repeat(y[-1:], h)[:, None].repeat(len(levels), 1)  # constant forecast, last resort

    @staticmethod
    def _run(model: Any, y: np.ndarray, h: int, levels: list[float]) -> np.ndarray:
        ilv = _interval_levels(levels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(y) < 2:
                res = {"mean": np.repeat(y[-1:], h)}
                res.update({f"{s}-{lv}": res["mean"] for lv in ilv for s in ("lo", "hi")})
            else:
                res = model.forecast(y=y, h=h, level=ilv) if ilv else model.forecast(y=y, h=h)
        cols = []
        for q in levels:
            if abs(q - 0.5) <= 1e-9:
                cols.append(res["mean"])
            else:
                lv = round(abs(200 * q - 100), 6)
                key = int(lv) if lv == int(lv) else lv
                cols.append(res[f"{'lo' if q < 0.5 else 'hi'}-{key}"])
        out = np.stack(cols, axis=-1)  # [H, Q]
        # statsforecast's intervals can cross its mean (e.g. AutoTheta on one season of history):
        # sort the values in level order (monotone rearrangement never raises the quantile loss)
        order = np.argsort(levels)
        out[:, order] = np.sort(out[:, order], axis=-1)
        return out


def _forecast_chunk(args: tuple) -> tuple[list[np.ndarray], int]:
    name, max_context, rows, h, levels, m = args
    b = StatsBaseline(name, max_context)
    return [b._one(r, h, levels, m) for r in rows], b.fallbacks


def fingerprint(contexts: Sequence[np.ndarray]) -> str:
    """A content hash of a list of arrays (cache key of a dataset's windows)."""
    h = hashlib.sha1()
    for c in contexts:
        a = np.ascontiguousarray(c, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_digest(
    baseline: StatsBaseline,
    contexts: Sequence[np.ndarray],
    prediction_length: int,
    levels: Sequence[float],
    season_length: int,
) -> str:
    """Hash of everything that determines a baseline's forecasts of ``contexts``."""
    key = json.dumps(
        [CACHE_VERSION, baseline.name, baseline.max_context, prediction_length, [round(float(q), 6) for q in levels],
         season_length, fingerprint(contexts)]
    )
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def cached_predict(
    baseline: StatsBaseline,
    contexts: Sequence[np.ndarray],
    prediction_length: int,
    levels: Sequence[float],
    season_length: int,
    cache_dir: str | Path | None,
    dataset: str = "dataset",
) -> tuple[np.ndarray, bool, int]:
    """``[N, V, H, Q]`` baseline forecasts of ``contexts`` (each ``[V, T]``), read from or written to the cache.

    The cache file name holds the dataset name and a hash of everything that determines the
    result (model, max context, horizon, levels, season, window contents), so a changed
    dataset or setting is recomputed, never served stale. Returns ``(forecasts, from_cache,
    fallbacks)`` where ``fallbacks`` counts series that fell back to Seasonal Naive / Naive.
    """
    digest = cache_digest(baseline, contexts, prediction_length, levels, season_length)
    path = Path(cache_dir) / f"{dataset}__{baseline.name}__{digest}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return z["quantiles"], True, int(z["fallbacks"])
    before = baseline.fallbacks
    q = baseline.predict_quantiles([np.asarray(c) for c in contexts], prediction_length, levels, season_length)
    if q.ndim == 3:  # univariate contexts given as 1-D
        q = q[:, None]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, quantiles=q, fallbacks=baseline.fallbacks - before)
        tmp.replace(path)
    return q, False, baseline.fallbacks - before
