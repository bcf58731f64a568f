"""Structural synthetic series: the generators recent synthetic-only forecasters train on.

KernelSynth alone (GP samples on one fixed length and an hourly grid) teaches smooth
interpolation, not the things real series do: trends that keep going or damp, calendar
seasonalities of a known frequency, level shifts, spikes, counts, random walks, short
histories. Following ForecastPFN (trend × seasonality × noise priors), TimesFM's synthetic mix
(piecewise trends, ARMA, seasonal patterns, step changes) and Chronos-2's synthetic-only
recipe, each generator here draws one series from a random structural model:

* ``seasonal``: clean seasonality-dominated series (1–2 patterns, small trend, little noise);
* ``trend_seasonal``: level + (linear | exponential | damped | piecewise) trend, 0–2 seasonalities
  of the profile's periods (harmonic or free-form shapes), additive or multiplicative,
  Gaussian / Student-t / AR(1) noise, optional level shifts, spikes and missing runs;
* ``ets``: a simulated ETS(A|M, N|A|Ad, N|A|M) state-space model with random smoothing parameters;
* ``arima``: a stationary ARMA(p ≤ 3, q ≤ 2) process, integrated 0–1 times, optionally seasonally
  integrated, with drift (random walks are the p = q = 0, d = 1 case);
* ``growth``: a stochastic growth path (a random walk with drift, most often in logs: GDP, prices, sales),
  whose growth rate wanders (AR(1)), with lasting shocks (a crisis lowers the level for good) and,
  for some, a seasonal pattern that grows with the level (multiplicative, as retail sales);
* ``intermittent``: intermittent demand and count series (Bernoulli occurrences × count sizes,
  or Poisson counts around a seasonal mean);
* ``synth_mix``: TSMixup over the generators above (Dirichlet convex mix of mean-scaled draws),
  which yields multiple seasonalities and mixed regimes.

A *frequency profile* (yearly … 15-minutely) fixes each series' ``freq``, its candidate
seasonal periods and its length range, so short yearly histories (12–60 points) and long
sub-daily ones both occur. Series ``i`` of generator ``g`` depends only on ``(seed, i, g)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import lfilter

from tsfm.data.types import Series


@dataclass(frozen=True)
class Profile:
    name: str
    freq: str
    periods: tuple[int, ...]  # candidate seasonal periods, primary first
    length: tuple[int, int]  # min, max length (log-uniform)
    weight: float


PROFILES: tuple[Profile, ...] = (
    Profile("yearly", "YS", (), (12, 80), 0.14),
    Profile("quarterly", "QS", (4,), (16, 160), 0.14),
    Profile("monthly", "MS", (12,), (24, 600), 0.20),
    Profile("weekly", "W-MON", (52,), (40, 800), 0.08),
    Profile("daily", "D", (7, 365), (60, 2048), 0.12),
    Profile("hourly", "h", (24, 168), (200, 2048), 0.16),
    Profile("half_hourly", "30min", (48, 336), (300, 2048), 0.10),
    Profile("quarter_hourly", "15min", (96, 672), (300, 2048), 0.06),
)
_PROFILE_P = np.array([p.weight for p in PROFILES]) / sum(p.weight for p in PROFILES)
_HAS_PERIODS = np.array([bool(p.periods) for p in PROFILES])
_SEASONAL_P = np.where(_HAS_PERIODS, _PROFILE_P, 0.0) / _PROFILE_P[_HAS_PERIODS].sum()  # every profile but yearly
# bump when what a generator draws changes: it is part of the corpus cache key, so cached
# corpora of an older version are rebuilt instead of silently reused
VERSION = 6
_TAGS = {"trend_seasonal": 1, "ets": 2, "arima": 3, "intermittent": 4, "synth_mix": 5, "seasonal": 6, "growth": 7}


def _rng(name: str, seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(i), _TAGS[name]])


def draw_profile(
    rng: np.random.Generator, max_length: int | None = None, seasonal: bool = False
) -> tuple[Profile, int]:
    """A frequency profile and a length drawn log-uniformly within its range (``seasonal``: only
    profiles that have seasonal periods, i.e. not yearly)."""
    if seasonal:
        prof = PROFILES[int(rng.choice(len(PROFILES), p=_SEASONAL_P))]
    else:
        prof = PROFILES[int(rng.choice(len(PROFILES), p=_PROFILE_P))]
    lo, hi = prof.length
    if max_length is not None:
        hi = max(lo, min(hi, max_length))
    n = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    return prof, n


# -- components ---------------------------------------------------------------------------------
TREND_KINDS = ("none", "linear", "exp", "damped", "piecewise")
TREND_WEIGHTS = (0.15, 0.3, 0.15, 0.2, 0.2)  # the default corpus's mix (a corpus entry's `trend_weights`)


def trend_probabilities(weights: Any) -> list[float]:
    """``trend_weights`` (one non-negative weight per :data:`TREND_KINDS` entry) as probabilities."""
    try:
        w = None if isinstance(weights, (str, bytes)) else [float(x) for x in weights]
    except (TypeError, ValueError):
        w = None
    if w is None or len(w) != len(TREND_KINDS) or not all(np.isfinite(x) and x >= 0 for x in w) or not sum(w) > 0:
        raise ValueError(f"trend_weights={weights!r}: give {len(TREND_KINDS)} non-negative weights, not all zero, "
                         f"for the trend kinds {list(TREND_KINDS)} (default {list(TREND_WEIGHTS)})")
    return [x / sum(w) for x in w]


def _trend(rng: np.random.Generator, n: int, weights: Any = None) -> np.ndarray:
    """A trend curve over ``t in [0, 1]`` relative to a unit level (total change ~ O(1)); its kind is drawn
    with ``weights`` (default :data:`TREND_WEIGHTS`)."""
    t = np.linspace(0.0, 1.0, n)
    kind = rng.choice(list(TREND_KINDS), p=list(TREND_WEIGHTS) if weights is None else trend_probabilities(weights))
    if kind == "none":
        return np.zeros(n)
    if kind == "linear":
        return rng.normal(0.0, 1.5) * t
    if kind == "exp":
        return np.expm1(rng.normal(0.0, 1.0) * t)
    if kind == "damped":
        phi = rng.uniform(0.85, 0.995) ** (64.0 / max(n, 1))  # damping on the unit interval
        steps = np.arange(n)
        return rng.normal(0.0, 1.0) * (1.0 - phi**steps) / max(1.0 - phi**n, 1e-9)
    k = int(rng.integers(1, 5))
    knots = np.sort(rng.uniform(0.0, 1.0, k))
    slopes = rng.normal(0.0, 1.0, k + 1)
    g = slopes[0] * t
    for knot, s_prev, s in zip(knots, slopes[:-1], slopes[1:]):
        g += (s - s_prev) * np.clip(t - knot, 0.0, None)
    return g


def _peaked_pattern(rng: np.random.Generator, period: int) -> np.ndarray:
    """One period of a pattern with 1-2 sharp single-step peaks (or dips) over a small base: December retail,
    holiday weeks, a fourth-quarter surge. Smoothed free-form patterns never have them."""
    pat = rng.normal(0.0, 0.3, period)
    k = 1 if period < 4 or rng.random() < 0.6 else 2
    at = rng.choice(period, k, replace=False)
    pat[at] += rng.choice([-1.0, 1.0], k, p=[0.2, 0.8]) * rng.uniform(2.0, 6.0, k)
    return pat - pat.mean()


def _season(rng: np.random.Generator, n: int, period: int, peaks: float = 0.0, rough: float = 0.0) -> np.ndarray:
    """A zero-mean seasonal pattern of ``period`` with unit-ish amplitude; with probability ``peaks`` one with
    sharp single-step peaks (:func:`_peaked_pattern`), with probability ``rough`` (periods up to 52) a rough one:
    an independent value per phase, unsmoothed, as months of retail sales or tourist arrivals are (0 draws no
    extra random number)."""
    t = np.arange(n)
    if peaks > 0.0 and rng.random() < peaks:
        out = _peaked_pattern(rng, period)[t % period]
    elif rough > 0.0 and period <= 52 and rng.random() < rough:
        pat = rng.normal(0.0, 1.0, period)
        out = (pat - pat.mean())[t % period]
    elif rng.random() < 0.6:  # a few harmonics with decaying amplitudes
        k = int(rng.integers(1, min(4, max(period // 2, 1)) + 1))
        out = np.zeros(n)
        for j in range(1, k + 1):
            out += rng.normal(0.0, 1.0 / j) * np.sin(2 * np.pi * j * t / period + rng.uniform(0, 2 * np.pi))
    else:  # a free-form pattern, lightly smoothed, repeated
        pat = rng.normal(0.0, 1.0, period)
        if period > 4:
            w = int(rng.integers(1, max(2, period // 6) + 1))
            pat = np.convolve(np.concatenate([pat[-w:], pat, pat[:w]]), np.ones(2 * w + 1) / (2 * w + 1), "valid")
        pat = pat - pat.mean()
        out = pat[t % period]
    sd = out.std()
    return out / sd if sd > 0 else out


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    # "walk": a stochastic trend (random walk) around the deterministic one. Without it every
    # trend_seasonal series reverts to its trend line, and a model learns to pull the forecast
    # away from the last value, which is wrong for the random-walk-like real series (GDP, employment)
    kind = rng.choice(["gauss", "student", "ar1", "walk"], p=[0.35, 0.2, 0.2, 0.25])
    if kind == "walk":
        e = np.cumsum(rng.standard_normal(n))
        return (e - e.mean()) / max(e.std(), 1e-9)
    if kind == "gauss":
        return rng.standard_normal(n)
    if kind == "student":
        e = rng.standard_t(rng.uniform(2.5, 10.0), n)
        return e / max(e.std(), 1e-9)
    phi = rng.uniform(0.2, 0.95)
    e = lfilter([1.0], [1.0, -phi], rng.standard_normal(n))
    return e / max(e.std(), 1e-9)


def _finish(rng: np.random.Generator, y: np.ndarray, positive: bool) -> np.ndarray:
    """Random scale and offset; a positive series stays positive."""
    scale = float(np.exp(rng.uniform(np.log(0.1), np.log(1e4))))
    if positive:
        lo = np.nanmin(y)
        if lo <= 0:
            y = y - lo + rng.uniform(0.05, 1.0) * (np.nanstd(y) + 1e-3)
        return y * scale
    return (y + rng.normal(0.0, 2.0)) * scale


def _events(rng: np.random.Generator, y: np.ndarray, sigma: float) -> np.ndarray:
    """Level shifts, spikes and missing runs, each with a small probability."""
    n = len(y)
    spread = float(np.std(y)) + 1e-6
    if rng.random() < 0.15:
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(n // 5, n)) if n > 5 else 0
            y[at:] += rng.normal(0.0, 0.5) * spread
    if rng.random() < 0.12:
        k = max(1, int(rng.poisson(max(n / 150, 0.5))))
        at = rng.integers(0, n, k)
        y[at] += rng.choice([-1.0, 1.0], k) * rng.uniform(3.0, 8.0, k) * max(sigma, 0.05) * spread
    if rng.random() < 0.04 and n > 40:
        for _ in range(int(rng.integers(1, 3))):
            at, w = int(rng.integers(0, n - 10)), int(rng.integers(1, max(2, n // 20)))
            y[at : at + w] = np.nan
    return y


# -- generators -----------------------------------------------------------------------------------
def trend_seasonal_series(i: int, seed: int = 0, max_length: int | None = None,
                          trend_weights: Any = None, season_peaks: float = 0.0,
                          season_rough: float = 0.0) -> tuple[np.ndarray, str]:
    rng = _rng("trend_seasonal", seed, i)
    prof, n = draw_profile(rng, max_length)
    # trend, seasonality and noise sizes are drawn independently on log scales, so each of them
    # dominates some series: a clean seasonal pattern must be as common as a clean trend
    g = _trend(rng, n, trend_weights) * float(np.exp(rng.uniform(np.log(0.05), np.log(2.0))))
    s = np.zeros(n)
    amp = float(np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
    for j, p in enumerate(prof.periods):
        if p < n // 2 and rng.random() < (0.8 if j == 0 else 0.4):
            s += amp * (1.0 if j == 0 else rng.uniform(0.2, 1.0)) * _season(rng, n, p, season_peaks, season_rough)
    sigma = float(np.exp(rng.uniform(np.log(0.002), np.log(0.15))))
    e = sigma * _noise(rng, n)
    if rng.random() < 0.5:  # multiplicative: seasonality and noise scale with the level
        base = 1.0 + g - min(0.0, float((1.0 + g).min())) + 0.2
        y = base * (1.0 + s) * (1.0 + e)
    else:
        y = 1.0 + g + s + e
    y = _events(rng, y, sigma)
    return _finish(rng, y, positive=rng.random() < 0.7), prof.freq


def seasonal_series(i: int, seed: int = 0, max_length: int | None = None,
                    trend_weights: Any = None, season_peaks: float = 0.0,
                    season_rough: float = 0.0) -> tuple[np.ndarray, str]:
    """A clean, seasonality-dominated series: 1–2 seasonal patterns, a small trend, little noise.

    Copying a seasonal pattern forward is what Seasonal Naive does and what a patch model learns
    last (the phase of a period of 7, 12 or 24 does not line up with patches of 16): without series
    where it clearly pays, a short run stays on the flat-forecast plateau (experiments/recipes).
    """
    rng = _rng("seasonal", seed, i)
    # yearly data has no seasonality: a yearly series with a made-up period teaches a model to see
    # cycles in short yearly histories (version 4 did; the forecasts wandered on GDP-like series)
    prof, n = draw_profile(rng, max_length, seasonal=True)
    periods = [p for p in prof.periods if 2 <= p <= n // 3] or [p for p in (4, 7, 12, 24) if p <= n // 3] or [2]
    amp = float(np.exp(rng.uniform(np.log(0.05), np.log(0.6))))
    s = amp * _season(rng, n, periods[0], season_peaks, season_rough)
    if len(periods) > 1 and rng.random() < 0.5:
        s += amp * rng.uniform(0.2, 1.0) * _season(rng, n, periods[1], season_peaks, season_rough)
    g = _trend(rng, n, trend_weights) * amp * float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
    sigma = amp * float(np.exp(rng.uniform(np.log(0.01), np.log(0.3))))
    y = 1.0 + g + s + sigma * _noise(rng, n) if rng.random() < 0.5 else (1.0 + g) * (1.0 + s) * (1.0 + sigma * _noise(rng, n))
    return _finish(rng, y, positive=rng.random() < 0.7), prof.freq


def ets_series(i: int, seed: int = 0, max_length: int | None = None) -> tuple[np.ndarray, str]:
    rng = _rng("ets", seed, i)
    prof, n = draw_profile(rng, max_length)
    m = prof.periods[0] if prof.periods and prof.periods[0] < max(n // 2, 2) and prof.periods[0] <= 96 else 1
    error = rng.choice(["A", "M"])
    trend = rng.choice(["N", "A", "Ad"], p=[0.35, 0.35, 0.3])
    season = rng.choice(["N", "A", "M"], p=[0.4, 0.3, 0.3]) if m > 1 else "N"
    # up to 1: real yearly / monthly series often fit alpha near 1 (close to a random walk), where
    # the best forecast follows the last value instead of a smoothed level
    alpha = rng.uniform(0.05, 1.0)
    beta = rng.uniform(0.0, 0.3) * alpha
    gamma = rng.uniform(0.0, 0.4) * (1 - alpha)
    phi = rng.uniform(0.8, 0.98) if trend == "Ad" else 1.0
    sigma = float(np.exp(rng.uniform(np.log(0.005), np.log(0.15))))
    level, slope = 1.0, (rng.normal(0.0, 0.01) if trend != "N" else 0.0)
    seas = rng.uniform(0.05, 0.4) * _season(rng, m, m)[:m] if season != "N" else np.zeros(max(m, 1))
    if season == "M":
        seas = np.clip(1.0 + seas, 0.2, None)
    e = sigma * rng.standard_normal(n)
    y = np.empty(n)
    for t in range(n):
        st = seas[t % len(seas)]
        fit = level + phi * slope
        mu = fit * st if season == "M" else fit + st
        err = e[t] * (abs(mu) if error == "M" else 1.0)
        y[t] = mu + err
        # the innovations form: one error drives level, slope and season
        rel = err / st if season == "M" else err
        level = fit + alpha * rel
        slope = phi * slope + beta * rel
        if season == "M":
            seas[t % len(seas)] = st + gamma * err / max(abs(fit), 1e-6)
        elif season == "A":
            seas[t % len(seas)] = st + gamma * err
        if error == "M" or season == "M":
            level = max(level, 1e-3)  # multiplicative models live on positive levels
    y = _events(rng, y, sigma)
    return _finish(rng, y, positive=error == "M" or season == "M" or rng.random() < 0.5), prof.freq


def _stationary_ar(rng: np.random.Generator, p: int) -> np.ndarray:
    """AR coefficients of a stationary process from random partial autocorrelations (Durbin-Levinson)."""
    a = np.zeros(0)
    for k in range(p):
        r = rng.uniform(-0.5, 0.95)
        a = np.concatenate([a - r * a[::-1], [r]]) if k else np.array([r])
    return a


def arima_series(i: int, seed: int = 0, max_length: int | None = None) -> tuple[np.ndarray, str]:
    rng = _rng("arima", seed, i)
    prof, n = draw_profile(rng, max_length)
    p, q = int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1])), int(rng.choice(3, p=[0.5, 0.3, 0.2]))  # 20%: walks
    d = int(rng.choice([0, 1], p=[0.3, 0.7]))
    ar = _stationary_ar(rng, p)
    ma = rng.uniform(-0.8, 0.8, q)
    burn = 50
    e = rng.standard_normal(n + burn)
    x = lfilter(np.concatenate([[1.0], ma]), np.concatenate([[1.0], -ar]), e)[burn:]
    if d:
        x = np.cumsum(x + rng.normal(0.0, 0.1))  # drift
    period = next((pp for pp in prof.periods if pp < n // 3), None)
    if period and rng.random() < 0.3:  # seasonal random walk component: x_t = x_{t-s} + eps
        s = np.zeros(n)
        s[:period] = rng.normal(0.0, 3.0, period)
        inc = rng.normal(0.0, 0.3, n)
        for t in range(period, n):
            s[t] = s[t - period] + inc[t]
        x = x + s
    sd = float(np.std(x)) or 1.0
    y = 1.0 + rng.uniform(0.5, 5.0) * x / sd / max(np.sqrt(n) if d else 1.0, 1.0) * 3.0
    y = _events(rng, y, 0.1)
    return _finish(rng, y, positive=rng.random() < 0.5), prof.freq


def growth_series(i: int, seed: int = 0, max_length: int | None = None) -> tuple[np.ndarray, str]:
    """A stochastic growth path: the last value plus a drift is the right forecast, not a trend line.

    ``trend_seasonal`` draws deterministic trends with small noise around them, so its series revert to
    their trend line after a shock; economic series (GDP, employment, prices, retail sales) do not: a shock
    moves the level for good and growth continues from there. Here the log-level (or, for a third, the
    level) is a random walk whose step is a drift plus AR(1)-persistent growth noise, with occasional lasting
    shocks; with the profile's period, half the series carry a seasonal pattern that scales with the level.
    """
    rng = _rng("growth", seed, i)
    prof, n = draw_profile(rng, max_length)
    # sizes over the whole path, so a 40-year and a 2,000-hour path grow alike: the walk's end-to-end
    # spread 0.05-1.5 and the drift's total 0.05-3 (in logs; mostly growth), e.g. GDP: 3% a year +- 3%
    sigma = float(np.exp(rng.uniform(np.log(0.05), np.log(1.5)))) / np.sqrt(n)
    drift = float(rng.choice([-1.0, 1.0], p=[0.2, 0.8])) * float(np.exp(rng.uniform(np.log(0.05), np.log(3.0)))) / n
    phi = float(rng.uniform(0.0, 0.8)) if rng.random() < 0.6 else 0.0  # persistent growth rates
    steps = drift + sigma * lfilter([1.0], [1.0, -phi], rng.standard_normal(n)) * np.sqrt(1.0 - phi**2)
    if rng.random() < 0.3:  # lasting shocks: a crisis (or a jump) that the level never makes up
        at = rng.integers(1, n, int(rng.integers(1, 3)))
        steps[at] += rng.choice([-1.0, 1.0], len(at), p=[0.75, 0.25]) * rng.uniform(3.0, 10.0, len(at)) * sigma
    logy = np.cumsum(steps)
    period = next((p for p in prof.periods if p < n // 2), None)
    if period and rng.random() < 0.5:
        amp = float(np.exp(rng.uniform(np.log(0.02), np.log(0.3))))
        logy = logy + amp * _season(rng, n, period)
    if rng.random() < 2 / 3:
        y = np.exp(logy - logy.max())  # multiplicative growth: positive, shocks and seasons scale with it
        return _finish(rng, y, positive=True), prof.freq
    y = 1.0 + logy / max(float(np.std(logy)), 1e-9)  # additive: a random walk with drift in levels
    return _finish(rng, y, positive=rng.random() < 0.5), prof.freq


def intermittent_series(i: int, seed: int = 0, max_length: int | None = None) -> tuple[np.ndarray, str]:
    rng = _rng("intermittent", seed, i)
    prof, n = draw_profile(rng, max_length)
    t = np.arange(n)
    rate = np.ones(n)
    if prof.periods and rng.random() < 0.5:
        rate = np.exp(rng.uniform(0.1, 0.8) * _season(rng, n, prof.periods[0]) * 0.7)
    if rng.random() < 0.3:
        rate = rate * np.exp(rng.normal(0.0, 0.8) * t / max(n, 1))
    if rng.random() < 0.6:  # intermittent demand: occurrence x size
        p = np.clip(rng.uniform(0.03, 0.7) * rate, 0.0, 1.0)
        size = 1 + rng.negative_binomial(rng.uniform(0.5, 5.0), rng.uniform(0.1, 0.8), n)
        y = (rng.random(n) < p) * size
    else:  # counts around a (seasonal) mean
        y = rng.poisson(np.exp(rng.uniform(np.log(0.3), np.log(30.0))) * rate)
    y = y.astype(np.float64)
    if y.max() == 0:
        y[int(rng.integers(0, n))] = 1.0
    return y, prof.freq


_BASE: dict[str, Callable[..., tuple[np.ndarray, str]]] = {
    "trend_seasonal": trend_seasonal_series,
    "seasonal": seasonal_series,
    "ets": ets_series,
    "arima": arima_series,
    "intermittent": intermittent_series,
    "growth": growth_series,
}


def synth_mix_series(i: int, seed: int = 0, max_length: int | None = None, k_max: int = 3, alpha: float = 1.5) -> tuple[np.ndarray, str]:
    """TSMixup over the structural generators: ``k ≤ k_max`` draws, mean-scaled, Dirichlet-mixed."""
    rng = _rng("synth_mix", seed, i)
    k = int(rng.integers(1, k_max + 1))
    names = rng.choice(["trend_seasonal", "ets", "arima"], size=k)
    parts, freq = [], "h"
    for j, name in enumerate(names):
        y, f = _BASE[str(name)](int(rng.integers(0, 2**31)), seed + 7919 * (j + 1), max_length)
        if j == 0:
            freq = f
        gap = np.isnan(y)
        if gap.any():  # a missing run of one part must not blank out the mix: interpolate it
            y = y.copy()
            y[gap] = np.interp(np.flatnonzero(gap), np.flatnonzero(~gap), y[~gap])
        with np.errstate(all="ignore"):
            scale = np.nanmean(np.abs(y))
        parts.append(y / (scale if np.isfinite(scale) and scale > 0 else 1.0))
    n = min(len(p) for p in parts)
    w = rng.dirichlet(np.full(k, alpha))
    return sum(wj * p[-n:] for wj, p in zip(w, parts)), freq


GENERATORS: dict[str, Callable[..., tuple[np.ndarray, str]]] = {**_BASE, "synth_mix": synth_mix_series}


TREND_GENERATORS = ("trend_seasonal", "seasonal")  # the generators that take trend_weights, season_peaks, season_rough


def generate_structural(
    generator: str, num_series: int, seed: int = 0, max_length: int | None = None, trend_weights: Any = None,
    season_peaks: float = 0.0, season_rough: float = 0.0,
) -> Iterator[Series]:
    """``num_series`` series of one structural generator as :class:`Series` (freq from the profile).
    ``trend_weights``: the mix of trend kinds (:data:`TREND_KINDS`) for the generators that draw one.
    ``season_peaks``: the probability that a seasonal pattern of those generators has sharp single-step peaks;
    ``season_rough``: that it is rough (one independent value per phase, periods up to 52)."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown structural generator {generator!r}; use one of {sorted(GENERATORS)}")
    extra: dict[str, Any] = {}
    options = (("trend_weights", trend_weights is not None), ("season_peaks", season_peaks != 0.0),
               ("season_rough", season_rough != 0.0))
    for name, given in options:
        if given and generator not in TREND_GENERATORS:
            raise ValueError(f"{name} is an option of the {' and '.join(TREND_GENERATORS)} generators, not "
                             f"{generator!r}; remove it from that corpus entry")
    if trend_weights is not None:
        trend_probabilities(trend_weights)  # checked before anything is written
        extra["trend_weights"] = list(trend_weights)
    for name, value in (("season_peaks", season_peaks), ("season_rough", season_rough)):
        if value != 0.0:
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}={value!r} must be a probability in [0, 1]")
            extra[name] = float(value)
    if num_series < 0:
        raise ValueError(f"num_series must be >= 0, got {num_series}")
    if max_length is not None and max_length < PROFILES[0].length[0]:
        raise ValueError(f"max_length must be >= {PROFILES[0].length[0]} (the shortest profile), got {max_length}")
    start = np.datetime64("2000-01-01T00:00:00", "s")
    fn = GENERATORS[generator]
    for i in range(num_series):
        y, freq = fn(i, seed, max_length, **extra)
        yield Series(y.astype(np.float32)[None, :], freq, f"{generator}_{seed}_{i}", generator, start)
