"""Power-law fits ``L(x) = A x^-alpha + E`` in log space, with bootstrap confidence intervals.

``x`` is a parameter count ``N``, a token count ``D`` or a compute budget ``C = 6 N D``
(Kaplan et al. 2020; Yao et al. 2025 for time series). The fit minimises squared errors of
``log L`` (every point weighs the same whatever its magnitude), writing the model as
``log L = logaddexp(a - alpha (log x - log x0), e)`` with ``x0`` the geometric mean of ``x`` for
conditioning; ``A = exp(a) x0^alpha``, ``E = exp(e)``. ``form="pure"`` drops ``E``
(a straight line in log-log space).

A negative log-likelihood can be negative, which log space cannot hold. The form is invariant
to a constant shift (``E`` absorbs it), so losses are shifted by ``shift = 1 - min L`` when
some are ``<= 0``, fitted, and ``E`` is reported back in loss units; ``alpha`` and ``A`` are
unaffected by the choice, only the relative weighting of the points is.

Confidence intervals are percentile intervals over ``n_boot`` case-bootstrap refits (points
resampled with replacement; resamples with fewer distinct ``x`` than parameters are skipped and
counted). With 3-4 sizes the intervals are wide: that is the honest answer.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

FORMS = ("saturating", "pure")


@dataclass
class PowerLawFit:
    """Fitted ``L(x) = A x^-alpha + E`` (``E = 0`` for the pure form) and bootstrap CIs."""

    form: str
    A: float
    alpha: float
    E: float
    num_points: int
    rmse_log: float  # root mean squared residual of log(L + shift)
    shift: float = 0.0
    ci_level: float = 0.95
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (low, high)
    bootstrap_used: int = 0
    bootstrap_skipped: int = 0

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.A * np.asarray(x, dtype=float) ** -self.alpha + self.E

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()}
        return d


def _model(form: str, u0: float):
    if form == "pure":
        return lambda u, a, alpha: a - alpha * (u - u0)
    return lambda u, a, alpha, e: np.logaddexp(a - alpha * (u - u0), e)


def _jac_saturating(u0: float):
    def jac(u: np.ndarray, a: float, alpha: float, e: float) -> np.ndarray:
        p = a - alpha * (u - u0)
        f = np.logaddexp(p, e)
        w = np.exp(p - f)  # d f / d a
        return np.stack([w, -(u - u0) * w, np.exp(e - f)], axis=1)  # [n, 3]

    return jac


def _fit_once(u: np.ndarray, v: np.ndarray, form: str, u0: float) -> np.ndarray:
    """Least squares in log space; ``u = log x``, ``v = log(L + shift)``. Returns the parameters."""
    slope, intercept = np.polyfit(u - u0, v, 1)
    p0_pure = [intercept, max(-slope, 1e-3)]
    if form == "pure":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # 2 points: no covariance, fit is exact
            popt, _ = curve_fit(_model(form, u0), u, v, p0=p0_pure, maxfev=20000)
        return popt
    y = np.exp(v)
    best, best_err = None, np.inf
    # E in (0, min L): try a few starting points, keep the best (the problem is not convex)
    for frac in (0.1, 0.5, 0.9):
        e0 = np.log(frac * y.min())
        red = np.log(np.clip(y - np.exp(e0), 1e-12, None))
        s, i = np.polyfit(u - u0, red, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            try:
                popt, _ = curve_fit(
                    _model(form, u0), u, v, p0=[i, max(-s, 1e-3), e0],
                    bounds=([-np.inf, -5.0, -50.0], [np.inf, 10.0, np.log(y.min()) + 1e-9]), maxfev=20000,
                    jac=_jac_saturating(u0),
                )  # fmt: skip
            except (RuntimeError, ValueError):
                continue
        err = float(np.sum((_model(form, u0)(u, *popt) - v) ** 2))
        if err < best_err:
            best, best_err = popt, err
    if best is None:
        raise RuntimeError("power-law fit did not converge")
    return best


def fit_power_law(
    x: np.ndarray | list[float],
    loss: np.ndarray | list[float],
    form: str = "saturating",
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``L = A x^-alpha (+ E)`` to points ``(x_i, loss_i)`` and bootstrap CIs of A, alpha, E."""
    if form not in FORMS:
        raise ValueError(f"form={form!r}: use one of {FORMS}")
    x, y = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and loss must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (x <= 0).any():
        raise ValueError("x must be positive and finite, and every loss finite")
    n_params = 2 if form == "pure" else 3
    if len(np.unique(x)) < n_params:
        raise ValueError(
            f"need at least {n_params} distinct x values to fit the {form} power law, got {len(np.unique(x))}; "
            "add model sizes to the sweep or use form='pure'"
        )
    shift = 0.0 if y.min() > 0 else float(1.0 - y.min())
    u, v = np.log(x), np.log(y + shift)
    u0 = float(u.mean())
    popt = _fit_once(u, v, form, u0)
    resid = _model(form, u0)(u, *popt) - v
    a, alpha = float(popt[0]), float(popt[1])
    e = float(np.exp(popt[2])) - shift if form == "saturating" else 0.0
    fit = PowerLawFit(
        form=form, A=float(np.exp(a + alpha * u0)), alpha=alpha, E=e,
        num_points=len(x), rmse_log=float(np.sqrt(np.mean(resid**2))), shift=shift, ci_level=ci_level,
    )  # fmt: skip
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        draws, skipped = [], 0
        for _ in range(n_boot):
            idx = rng.integers(0, len(x), len(x))
            if len(np.unique(x[idx])) < n_params:
                skipped += 1
                continue
            try:
                p = _fit_once(u[idx], v[idx], form, u0)
            except (RuntimeError, ValueError, np.linalg.LinAlgError):
                skipped += 1
                continue
            eb = float(np.exp(p[2])) - shift if form == "saturating" else 0.0
            draws.append((float(np.exp(p[0] + p[1] * u0)), float(p[1]), eb))
        fit.bootstrap_used, fit.bootstrap_skipped = len(draws), skipped
        if draws:
            arr = np.array(draws)
            lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
            for j, name in enumerate(("A", "alpha", "E")):
                if form == "pure" and name == "E":
                    continue
                fit.ci[name] = (float(np.percentile(arr[:, j], lo)), float(np.percentile(arr[:, j], hi)))
    return fit
