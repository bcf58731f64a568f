"""The probes module computes its figures from a forecaster's answers (here a forecaster that is exact)."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.eval.probes import run_probes


class Oracle:
    """Continues the probes' generating formulas exactly; interval width proportional to context noise."""

    def predict_quantiles(self, context, prediction_length, quantile_levels, **kw):
        if len(context) > 1 and len(context[0]) == 300:  # the rough seasons: Seasonal Naive is exact
            sn = np.stack([np.resize(np.asarray(c[-12:], np.float64), prediction_length) for c in context])
            return np.stack([sn - 0.1, sn, sn + 0.1], -1)
        if len(context) > 1:  # the random walks: the last value, the ideal 80% interval (+-1.2816)
            last = np.array([c[-1] for c in context], np.float64)[:, None, None]
            return np.concatenate([last - 1.2816, last, last + 1.2816], -1)
        y = np.asarray(context[0], np.float64)
        n = len(y)
        t = np.arange(n, n + prediction_length)
        if n == 20:  # yearly trend 100 + 3t
            med = 100 + 3.0 * t
        elif abs(y[1] - y[0] - 0.5) < 1e-6 and abs(y[2] - y[1] - 0.5) < 1e-6:  # 5 + 0.5 t
            med = 5 + 0.5 * t
        else:
            med = 10 + 3 * np.sin(2 * np.pi * t / 12)
        resid = y - (10 + 3 * np.sin(2 * np.pi * np.arange(n) / 12))
        w = 0.1 + np.std(resid) if n == 216 else 0.1
        return np.stack([med - w, med, med + w], -1)[None]


def test_probes_of_an_exact_forecaster():
    p = run_probes(Oracle())
    assert p["sine_mae_over_amplitude"] == pytest.approx(0.0, abs=1e-9)
    assert p["trend_mae_over_level"] == pytest.approx(0.0, abs=1e-9)
    assert p["yearly_trend_mae_over_level"] == pytest.approx(0.0, abs=1e-9)
    assert p["rough_season_mae_over_amplitude"] == pytest.approx(0.0, abs=1e-6)
    assert p["interval80_clean"] < p["interval80_noisy"]
    assert p["random_walk_last_weight"] == pytest.approx(1.0)
    assert p["random_walk_interval80_over_ideal"] == pytest.approx(1.0, abs=1e-3)


class Smoother(Oracle):
    """Forecasts the mean of the last 8 values: what an undertrained model does at the end of a walk (and a
    flat line at the mean of the last period for the rough seasons)."""

    def predict_quantiles(self, context, prediction_length, quantile_levels, **kw):
        if len(context) > 1 and len(context[0]) == 300:
            m = np.array([np.mean(c[-12:]) for c in context], np.float64)[:, None, None]
            return np.repeat(np.concatenate([m - 1, m, m + 1], -1), prediction_length, axis=1)
        if len(context) > 1:
            m = np.array([np.mean(c[-8:]) for c in context], np.float64)[:, None, None]
            return np.concatenate([m - 3.0, m, m + 3.0], -1)
        return super().predict_quantiles(context, prediction_length, quantile_levels, **kw)


def test_random_walk_probe_flags_a_forecaster_that_smooths_the_last_values():
    p = run_probes(Smoother())
    assert p["random_walk_last_weight"] == pytest.approx(0.0, abs=1e-6)
    assert p["random_walk_interval80_over_ideal"] == pytest.approx(6.0 / 2.5631)
    assert p["rough_season_mae_over_amplitude"] == pytest.approx(1.0, abs=1e-5)  # flat: the whole pattern missed
