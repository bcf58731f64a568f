"""Joint scaling law ``L(N, D) = E + A N^-alpha + B D^-beta`` and its compute-optimal readout.

The fit follows Hoffmann et al. 2022 ("Chinchilla", approach 3):

* parameters ``theta = (e, a, b, alpha, beta)`` with ``E = exp(e)``, ``A = exp(a)``, ``B = exp(b)``,
  so ``log L_pred = logsumexp(e, a - alpha log N, b - beta log D)``;
* objective: the Huber loss (``delta = 1e-3``) of the log residuals ``log L_pred - log L_obs``,
  summed over the points (robust: a few bad runs pull the fit linearly, not quadratically);
* L-BFGS-B from a grid of starting points, keeping the lowest objective. Every grid point is first
  scored (vectorised, cheap); ``top_k`` optimises from only the best-scoring starts (``None``: all);
* case-bootstrap confidence intervals: the resampling unit is a run (``groups``), so the several
  validation points of one training curve move together. Each resample is refitted from the
  best fit and a few jittered neighbours of it (fast and stays in the same basin); percentile CIs.

Exponents are kept in ``[0, MAX_EXPONENT]``; ``e, a, b`` are free. Losses must be positive
(log space); a negative log-likelihood can be passed with ``shift`` (fitted as ``L + shift``,
``E`` reported back in loss units; exponents and ``A, B`` do not depend on it).

Compute-optimal allocation for ``C = k N D`` (``k = 6`` FLOPs per parameter and token, Kaplan et al.
2020): minimising ``L`` on the budget line gives ``N* = G (C/k)^(beta/(alpha+beta))``,
``D* = (C/k) / N* = G^-1 (C/k)^(alpha/(alpha+beta))`` with ``G = (alpha A / (beta B))^(1/(alpha+beta))``.

numpy/scipy only; nothing here knows about sweeps (see :mod:`tsfm.scaling.joint_report`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize

PARAMS = ("E", "A", "B", "alpha", "beta")
MAX_EXPONENT = 10.0
MIN_POINTS = 5  # one per parameter

# Hoffmann et al.'s grid: a, b in {0, 5, ..., 25}, e in {-1, -.5, ..., 1}, alpha, beta in {0, .5, ..., 2}
FULL_GRID: dict[str, Sequence[float]] = {
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}
SMALL_GRID: dict[str, Sequence[float]] = {
    "e": (-1.0, 0.0, 1.0),
    "a": (0.0, 10.0, 20.0),
    "b": (0.0, 10.0, 20.0),
    "alpha": (0.0, 0.5, 1.0),
    "beta": (0.0, 0.5, 1.0),
}
GRIDS = {"full": FULL_GRID, "small": SMALL_GRID}


@dataclass
class JointFit:
    """Fitted ``L(N, D) = E + A N^-alpha + B D^-beta`` with bootstrap CIs."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    num_points: int
    n_levels: int  # distinct N
    d_levels: int  # distinct D
    huber_delta: float
    huber_loss: float  # the minimised objective: sum of Huber(log residuals)
    rmse_log: float  # root mean squared log residual
    starts: int  # L-BFGS starts of the main fit
    shift: float = 0.0
    ci_level: float = 0.95
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (low, high)
    bootstrap_used: int = 0
    bootstrap_skipped: int = 0
    # one row (E, A, B, alpha, beta) per bootstrap resample, NaN where skipped; rows align with the
    # resamples passed in, so two fits on the same resamples give paired differences
    bootstrap: np.ndarray | None = field(default=None, repr=False)

    @property
    def theta(self) -> np.ndarray:
        """``(e, a, b, alpha, beta)`` of the shifted loss."""
        return np.array([np.log(self.E + self.shift), np.log(self.A), np.log(self.B), self.alpha, self.beta])

    def predict(self, n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A * n**-self.alpha + self.B * d**-self.beta

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("bootstrap")
        out["ci"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()}
        return out


def _log_pred(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log L_pred`` and the softmax weights of its three terms (shape ``[3, n]``)."""
    e, a, b, alpha, beta = theta
    terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    return top + np.log(total), w / total


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float):
    """Sum of Huber(log residuals) / delta and its gradient (dividing by delta keeps the gradient O(1),
    which L-BFGS's tolerances expect; the minimiser is unchanged)."""
    pred, w = _log_pred(theta, log_n, log_d)
    r = pred - log_l
    ar = np.abs(r)
    loss = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum() / delta
    g = np.clip(r, -delta, delta) / delta  # d huber / d r, over delta
    grad = np.array([g @ w[0], g @ w[1], g @ w[2], -(g * w[1]) @ log_n, -(g * w[2]) @ log_d])
    return loss, grad


def _grid_scores(grid: np.ndarray, log_n, log_d, log_l, delta: float) -> np.ndarray:
    """Objective at every row of ``grid`` (``[G, 5]``), vectorised."""
    terms = np.stack(
        [np.broadcast_to(grid[:, :1], (len(grid), len(log_n))),
         grid[:, 1:2] - grid[:, 3:4] * log_n[None], grid[:, 2:3] - grid[:, 4:5] * log_d[None]]
    )  # fmt: skip
    r = np.logaddexp.reduce(terms, axis=0) - log_l[None]
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1) / delta


_BOUNDS = [(None, None)] * 3 + [(0.0, MAX_EXPONENT)] * 2


def _minimise(starts: np.ndarray, log_n, log_d, log_l, delta: float) -> tuple[np.ndarray, float]:
    best, best_val = None, np.inf
    for x0 in starts:
        res = minimize(
            _objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
            bounds=_BOUNDS, options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9},
        )  # fmt: skip
        if np.isfinite(res.fun) and res.fun < best_val:
            best, best_val = res.x, float(res.fun)
    if best is None:
        raise RuntimeError("joint scaling-law fit did not converge from any starting point")
    return best, best_val


def start_grid(grid: str | dict[str, Sequence[float]] = "full") -> np.ndarray:
    """The starting points ``[G, 5]`` (columns e, a, b, alpha, beta) of a named or explicit grid."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"grid={grid!r}: use one of {sorted(GRIDS)} or a dict of values per parameter")
        grid = GRIDS[grid]
    missing = {"e", "a", "b", "alpha", "beta"} - set(grid)
    if missing:
        raise ValueError(f"start grid misses values for {sorted(missing)}")
    axes = [np.asarray(grid[k], dtype=float) for k in ("e", "a", "b", "alpha", "beta")]
    return np.array(list(itertools.product(*axes)))


def check_points(n, d, loss, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float arrays; ``ValueError`` saying what is missing or which entries are bad."""
    n, d, y = (np.asarray(v, dtype=float) for v in (n, d, loss))
    if not (n.ndim == d.ndim == y.ndim == 1) or not (len(n) == len(d) == len(y)):
        raise ValueError(
            f"N, D and loss must be 1-D of equal length, got shapes {n.shape}, {d.shape}, {y.shape}"
        )
    for name, v in (("N", n), ("D", d)):
        bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
        if len(bad):
            raise ValueError(f"{name} must be positive and finite; bad entries: " + _entries(bad, v, name))
    bad = np.flatnonzero(~np.isfinite(y) | (y + shift <= 0))
    if len(bad):
        what = "loss must be finite and positive" + (f" after the shift {shift:g}" if shift else "")
        hint = "" if shift else " (a log-likelihood that can be <= 0: pass shift=1 - min(loss))"
        raise ValueError(f"{what}; bad entries: {_entries(bad, y, 'L')}{hint}")
    n_levels, d_levels = len(np.unique(n)), len(np.unique(d))
    if len(y) < MIN_POINTS or n_levels < 2 or d_levels < 2:
        raise ValueError(
            f"the joint fit L(N, D) = E + A N^-alpha + B D^-beta needs at least {MIN_POINTS} points with at "
            f"least 2 distinct N and 2 distinct D levels; got {len(y)} points, {n_levels} N level(s), "
            f"{d_levels} D level(s)"
        )
    return n, d, y


def _entries(idx: np.ndarray, values: np.ndarray, name: str, limit: int = 8) -> str:
    shown = ", ".join(f"#{i} ({name}={values[i]:g})" for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def bootstrap_resamples(n_units: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_units]`` unit indices drawn with replacement; pass the same array to several fits
    (e.g. in-distribution and out-of-distribution metrics of the same runs) for paired CIs."""
    return np.random.default_rng(seed).integers(0, n_units, (n_boot, n_units))


def fit_joint(
    n: np.ndarray | Sequence[float],
    d: np.ndarray | Sequence[float],
    loss: np.ndarray | Sequence[float],
    *,
    groups: np.ndarray | Sequence[int] | None = None,
    n_boot: int = 1000,
    resamples: np.ndarray | None = None,
    ci_level: float = 0.95,
    seed: int = 0,
    grid: str | dict[str, Sequence[float]] = "full",
    top_k: int | None = None,
    boot_starts: int = 3,
    huber_delta: float = 1e-3,
    shift: float = 0.0,
) -> JointFit:
    """Fit ``L = E + A N^-alpha + B D^-beta`` to points ``(n_i, d_i, loss_i)``.

    ``groups``: the bootstrap unit of each point (a run id, integers ``0..U-1``; default: every point
    its own unit). ``resamples``: ``[n_boot, U]`` unit indices (default: ``n_boot`` draws seeded by
    ``seed``). ``grid``: ``"full"`` (Hoffmann et al., 4500 starts), ``"small"`` (243) or a dict of
    values per parameter; ``top_k``: optimise from the best-scoring ``top_k`` starts only.
    """
    n, d, y = check_points(n, d, loss, shift)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(y + shift)
    starts = start_grid(grid)
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k={top_k}: must be >= 1 (or None for every start)")
        starts = starts[
            np.argsort(_grid_scores(starts, log_n, log_d, log_l, huber_delta), kind="stable")[:top_k]
        ]
    theta, _ = _minimise(starts, log_n, log_d, log_l, huber_delta)
    pred, _ = _log_pred(theta, log_n, log_d)
    resid = pred - log_l
    huber = float(_objective(theta, log_n, log_d, log_l, huber_delta)[0] * huber_delta)
    fit = JointFit(
        *_natural(theta, shift), num_points=len(y), n_levels=len(np.unique(n)), d_levels=len(np.unique(d)),
        huber_delta=huber_delta, huber_loss=huber, rmse_log=float(np.sqrt(np.mean(resid**2))),
        starts=len(starts), shift=shift, ci_level=ci_level,
    )  # fmt: skip

    groups = np.arange(len(y)) if groups is None else np.asarray(groups, dtype=int)
    if groups.shape != y.shape:
        raise ValueError(f"groups must give one unit per point: shape {groups.shape} vs {y.shape}")
    if resamples is None:
        if n_boot <= 0:
            return fit
        resamples = bootstrap_resamples(int(groups.max()) + 1, n_boot, seed)
    members = {u: np.flatnonzero(groups == u) for u in np.unique(groups)}
    rng = np.random.default_rng(seed + 1)
    jitter = np.array([0.3, 0.0, 0.0, 0.1, 0.1])
    draws = np.full((len(resamples), len(PARAMS)), np.nan)
    for i, units in enumerate(np.asarray(resamples)):
        idx = np.concatenate([members.get(int(u), np.zeros(0, int)) for u in units])
        if len(idx) < MIN_POINTS or len(np.unique(n[idx])) < 2 or len(np.unique(d[idx])) < 2:
            continue
        # the best fit and jittered neighbours; a and b follow alpha and beta so that every term keeps
        # its value at the centre of the data (a, alpha are strongly correlated through log N)
        near = [theta]
        for _ in range(max(boot_starts - 1, 0)):
            step = rng.normal(size=5) * jitter
            step[1] += step[3] * log_n.mean()
            step[2] += step[4] * log_d.mean()
            near.append(np.clip(theta + step, [-np.inf] * 3 + [0, 0], [np.inf] * 3 + [MAX_EXPONENT] * 2))
        try:
            t, _ = _minimise(np.array(near), log_n[idx], log_d[idx], log_l[idx], huber_delta)
        except RuntimeError:
            continue
        draws[i] = _natural(t, shift)
    ok = np.isfinite(draws).all(axis=1)
    fit.bootstrap, fit.bootstrap_used, fit.bootstrap_skipped = draws, int(ok.sum()), int((~ok).sum())
    if ok.any():
        lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
        for j, name in enumerate(PARAMS):
            fit.ci[name] = (float(np.percentile(draws[ok, j], lo)), float(np.percentile(draws[ok, j], hi)))
    return fit


def _natural(theta: np.ndarray, shift: float) -> tuple[float, float, float, float, float]:
    e, a, b, alpha, beta = (float(v) for v in theta)
    return float(np.exp(e)) - shift, float(np.exp(a)), float(np.exp(b)), alpha, beta


# ----------------------------------------------------------------------------- compute-optimal


def optimal_allocation(E, A, B, alpha, beta, compute, flops_per_param_token: float = 6.0):
    """``(N*, D*, L*)`` minimising ``E + A N^-alpha + B D^-beta`` subject to ``k N D = C``.

    Arguments broadcast (e.g. a column of bootstrap parameters against a row of budgets). Where an
    exponent is 0 there is no interior optimum (the loss does not fall along one axis) and the result
    is NaN.
    """
    E, A, B, alpha, beta, c = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (E, A, B, alpha, beta, compute))
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        valid = (alpha > 0) & (beta > 0) & (A > 0) & (B > 0)
        s = alpha + beta
        log_g = (np.log(alpha * A) - np.log(beta * B)) / s
        log_budget = np.log(c / flops_per_param_token)  # log(N D)
        log_n = log_g + beta / s * log_budget
        log_d = log_budget - log_n
        n_opt = np.where(valid, np.exp(log_n), np.nan)
        d_opt = np.where(valid, np.exp(log_d), np.nan)
        loss = E + A * n_opt**-alpha + B * d_opt**-beta
    return n_opt, d_opt, loss


def compute_optimal(
    fit: JointFit, budgets: Sequence[float] | np.ndarray, flops_per_param_token: float = 6.0
) -> list[dict]:
    """Per compute budget ``C`` (FLOPs): ``N*``, ``D*``, ``D*/N*`` and the predicted loss, with
    percentile CIs over the fit's bootstrap parameters (when it has them)."""
    budgets = np.asarray(budgets, dtype=float)
    if budgets.ndim != 1 or not (np.isfinite(budgets).all() and (budgets > 0).all()):
        raise ValueError(f"compute budgets must be positive and finite, got {budgets.tolist()}")
    n_opt, d_opt, loss = optimal_allocation(
        fit.E, fit.A, fit.B, fit.alpha, fit.beta, budgets, flops_per_param_token
    )
    rows = [
        {
            "C": float(c),
            "N": float(nv),
            "D": float(dv),
            "D_per_N": float(dv / nv),
            "loss": float(lv),
            "ci": {},
        }
        for c, nv, dv, lv in zip(budgets, n_opt, d_opt, loss)
    ]
    boot = fit.bootstrap
    if boot is not None and np.isfinite(boot).all(axis=1).any():
        boot = boot[np.isfinite(boot).all(axis=1)]
        bn, bd, bl = optimal_allocation(
            *(boot[:, j : j + 1] for j in range(5)), budgets[None], flops_per_param_token
        )
        lo, hi = 100 * (1 - fit.ci_level) / 2, 100 * (1 + fit.ci_level) / 2
        for j, row in enumerate(rows):
            for name, arr in (("N", bn[:, j]), ("D", bd[:, j]), ("loss", bl[:, j])):
                arr = arr[np.isfinite(arr)]
                if len(arr):
                    row["ci"][name] = [float(np.percentile(arr, lo)), float(np.percentile(arr, hi))]
    return rows


def exponent_difference(first: JointFit, second: JointFit, ci_level: float = 0.95) -> dict[str, dict]:
    """``second - first`` for alpha and beta, with a percentile CI over paired bootstrap rows (the two
    fits must have been bootstrapped on the same ``resamples``); no CI without paired rows."""
    out: dict[str, dict] = {}
    paired = (
        first.bootstrap is not None and second.bootstrap is not None
        and first.bootstrap.shape == second.bootstrap.shape
    )  # fmt: skip
    for j, name in ((3, "alpha"), (4, "beta")):
        entry: dict = {"value": float(getattr(second, name) - getattr(first, name)), "ci": None, "pairs": 0}
        if paired:
            diff = second.bootstrap[:, j] - first.bootstrap[:, j]
            diff = diff[np.isfinite(diff)]
            entry["pairs"] = len(diff)
            if len(diff):
                lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
                entry["ci"] = [float(np.percentile(diff, lo)), float(np.percentile(diff, hi))]
        out[name] = entry
    return out
