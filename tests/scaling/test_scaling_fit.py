"""Power-law fits: exact recovery, shifted (negative) losses, bootstrap CIs, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.scaling.fit import fit_power_law

N = np.array([1e5, 3e5, 1e6, 3e6, 1e7])


def test_recovers_a_noise_free_saturating_law():
    fit = fit_power_law(N, 50.0 * N**-0.3 + 0.4, n_boot=50)
    assert (fit.A, fit.alpha, fit.E) == (
        pytest.approx(50.0, rel=1e-4),
        pytest.approx(0.3, rel=1e-4),
        pytest.approx(0.4, rel=1e-4),
    )
    assert fit.rmse_log < 1e-8 and fit.shift == 0.0
    np.testing.assert_allclose(fit.predict(N), 50.0 * N**-0.3 + 0.4, rtol=1e-6)
    assert fit.ci["alpha"] == (pytest.approx(0.3, rel=1e-3), pytest.approx(0.3, rel=1e-3))


def test_negative_losses_are_shifted_and_reported_in_loss_units():
    loss = 50.0 * N**-0.3 - 0.8  # NLLs can be negative
    assert loss.min() < 0
    fit = fit_power_law(N, loss, n_boot=0)
    assert fit.shift == pytest.approx(1.0 - loss.min())
    assert (fit.alpha, fit.E) == (pytest.approx(0.3, rel=1e-3), pytest.approx(-0.8, abs=1e-3))


def test_pure_form_is_a_log_log_line():
    fit = fit_power_law(N[:2], 7.0 * N[:2] ** -0.5, form="pure", n_boot=0)
    assert (fit.A, fit.alpha, fit.E) == (pytest.approx(7.0), pytest.approx(0.5), 0.0)


def test_bootstrap_interval_covers_the_true_exponent_under_noise():
    rng = np.random.default_rng(0)
    x = np.repeat(N, 3)
    loss = (50.0 * x**-0.3 + 0.4) * np.exp(rng.normal(0, 0.01, x.size))
    fit = fit_power_law(x, loss, n_boot=300, seed=1)
    lo, hi = fit.ci["alpha"]
    assert lo < 0.3 < hi and hi - lo < 0.3
    assert fit.bootstrap_used + fit.bootstrap_skipped == 300 and fit.bootstrap_used > 250


@pytest.mark.parametrize(
    "x, y, kw, msg",
    [
        ([1e5, 1e6], [1.0, 0.9], {}, "need at least 3 distinct x values"),
        ([1e5, 1e5, 1e6], [1.0, 0.9, 0.8], {}, "need at least 3 distinct"),
        ([1e5, 1e6, 0.0], [1.0, 0.9, 0.8], {}, "x must be positive"),
        ([1e5, 1e6, 1e7], [1.0, np.nan, 0.8], {}, "every loss finite"),
        ([1e5, 1e6, 1e7], [1.0, 0.9, 0.8], {"form": "linear"}, "form='linear'"),
        ([1e5, 1e6, 1e7], [1.0, 0.9], {}, "equal length"),
    ],
)
def test_bad_input_is_rejected(x, y, kw, msg):
    with pytest.raises(ValueError, match=msg):
        fit_power_law(x, y, **kw)
