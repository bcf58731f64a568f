"""Joint fits ``L(N, D) = E + A N^-alpha + B D^-beta`` per run group and metric, from a sweep's runs.

* Groups: :attr:`Run.label` (architecture, objective, family), the same groups as the 1-D fits.
* Metrics: in-distribution ``val/loss`` (always) and, when some runs of the group have them,
  out-of-distribution ``final_eval/rel_wql`` and ``final_eval/rel_mase`` (zero-shot on the dev suite,
  relative to Seasonal Naive). A metric no run has is skipped, and the report says so.
* Points: ``N`` = non-embedding parameters; ``D`` = tokens (patches) seen = optimizer steps x
  global batch x patches per window (:attr:`Run.tokens`). For ``val/loss`` every logged validation of
  every run is a point (``points="curve"``: one fixed-budget sweep has one final ``D`` only), or only
  the final one (``points="final"``, for sweeps over the budget itself). The out-of-distribution
  scores exist for the final weights only, so those fits need runs of at least two budgets.
  Several runs with the same (group, N, final D), e.g. a learning-rate grid, count once: the one
  with the lowest final validation loss.
* Bootstrap: runs are resampled (all points of a run together); every metric of a group uses the same
  resamples, so ``OOD - ID`` exponent differences get paired percentile CIs.
* Compute-optimal readout (``C = k N D``) at the group's own compute range and 10x, 100x beyond it.
* ``min_tokens_per_param``: keep only the points with ``D / N`` at least this (e.g. 10, or Chinchilla's ~20): a law
  of separate N and D terms describes models trained near convergence, not the data-starved large sizes of a CPU
  sweep. The report counts the points left out per group and metric.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.scaling.joint import (
    JointFit,
    bootstrap_resamples,
    compute_optimal,
    exponent_difference,
    fit_joint,
)
from tsfm.scaling.results import Run

log = logging.getLogger(__name__)

ID_METRIC = "val/loss"
OOD_METRICS = ("final_eval/rel_wql", "final_eval/rel_mase")
POINTS = ("curve", "final")


def dedupe(runs: list[Run]) -> list[Run]:
    """Per (group, N, final D) the run with the lowest final validation loss."""
    best: dict[tuple[str, int, float], Run] = {}
    for r in runs:
        key = (r.label, r.params, r.final_tokens)
        if key not in best or r.final_loss < best[key].final_loss:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r.label, r.params, r.final_tokens))


def joint_points(
    runs: list[Run], metric: str, points: str = "curve", min_tokens_per_param: float = 0.0
) -> tuple[np.ndarray, ...]:
    """``(N, D, value, run index)`` of ``metric`` over ``runs`` (runs without it contribute nothing), only the
    points with ``D / N >= min_tokens_per_param``."""
    if points not in POINTS:
        raise ValueError(f"points={points!r}: use one of {POINTS}")
    n, d, y, g = [], [], [], []
    for i, r in enumerate(runs):
        if metric == ID_METRIC:
            keep = slice(None) if points == "curve" else slice(-1, None)
            tokens, values = r.tokens[keep], r.val_loss[keep]
            ok = tokens > 0
            tokens, values = tokens[ok], values[ok]
        else:
            key = metric.removeprefix("final_eval/")
            if key not in r.final_eval or not r.final_tokens:
                continue
            tokens, values = np.array([r.final_tokens]), np.array([r.final_eval[key]])
        ok = np.asarray(tokens, dtype=float) >= min_tokens_per_param * r.params
        tokens, values = np.asarray(tokens)[ok], np.asarray(values)[ok]
        n += [float(r.params)] * len(values)
        d += list(map(float, tokens))
        y += list(map(float, values))
        g += [i] * len(values)
    return np.array(n), np.array(d), np.array(y), np.array(g, dtype=int)


def _budgets(n: np.ndarray, d: np.ndarray, k: float) -> list[float]:
    c = k * n * d
    lo, hi = float(c.min()), float(c.max())
    return sorted({lo, hi, 10 * hi, 100 * hi})


def analyze_joint(
    runs: list[Run],
    n_boot: int = 1000,
    seed: int = 0,
    grid: str = "full",
    top_k: int | None = 100,
    points: str = "curve",
    flops_per_param_token: float = 6.0,
    boot_starts: int = 3,
    min_tokens_per_param: float = 0.0,
) -> dict[str, Any]:
    """Joint fits per group and metric, compute-optimal tables and OOD - ID exponent differences."""
    if not (np.isfinite(min_tokens_per_param) and min_tokens_per_param >= 0):
        raise ValueError(
            f"min_tokens_per_param={min_tokens_per_param}: give a ratio D/N >= 0 (0 keeps every point)"
        )
    runs = dedupe(runs)
    out: dict[str, Any] = {
        "law": "L(N, D) = E + A N^-alpha + B D^-beta",
        "method": {
            "objective": "Huber(log L_pred - log L_obs), delta=1e-3, summed", "optimizer": "L-BFGS-B",
            "grid": grid, "top_k": top_k, "bootstrap": n_boot, "bootstrap_unit": "run", "points": points,
            "N": "non-embedding parameters", "D": "tokens (patches) seen = steps x global batch x patches per window",
            "flops_per_param_token": flops_per_param_token, "min_tokens_per_param": min_tokens_per_param,
        },
        "groups": {},
        "notes": [],
    }  # fmt: skip
    for label in sorted({r.label for r in runs}):
        everything = [r for r in runs if r.label == label]
        # the bootstrap resamples the runs that keep a point (tokens only grow along a run: its final D decides)
        group = [r for r in everything if (r.final_tokens or 0) >= min_tokens_per_param * r.params]
        resamples = bootstrap_resamples(len(group), n_boot, seed) if n_boot > 0 and group else None
        entry: dict[str, Any] = {"runs": len(group), "metrics": {}, "ood_minus_id": {}}
        if len(group) < len(everything):
            entry["runs_left_out"] = len(everything) - len(group)
        n_id, d_id, _, _ = joint_points(group, ID_METRIC, points, min_tokens_per_param)
        budgets = _budgets(n_id, d_id, flops_per_param_token) if len(n_id) else []
        fits: dict[str, JointFit] = {}
        for metric in (ID_METRIC, *OOD_METRICS):
            n, d, y, g = joint_points(group, metric, points, min_tokens_per_param)
            all_y = joint_points(everything, metric, points)[2]
            left_out = len(all_y) - len(y)
            if metric != ID_METRIC and not len(all_y):
                entry["metrics"][metric] = {
                    "skipped": f"no run of {label} has {metric} (no final_eval results)"
                }
                continue
            m: dict[str, Any] = {"points": {"N": n.tolist(), "D": d.tolist(), "value": y.tolist()}}
            if left_out:
                m["left_out"] = f"{left_out} point(s) with D/N < {min_tokens_per_param:g}"
            # the shift of the whole group, so that fits with and without the D/N filter compare
            shift = (
                float(1.0 - all_y.min()) if len(all_y) and metric == ID_METRIC and all_y.min() <= 0 else 0.0
            )
            try:
                fit = fit_joint(
                    n, d, y, groups=g, n_boot=n_boot, resamples=resamples, seed=seed, grid=grid,
                    top_k=top_k, boot_starts=boot_starts, shift=shift,
                )  # fmt: skip
            except (ValueError, RuntimeError) as e:
                m["error"] = str(e) + (f" ({m['left_out']} left out)" if left_out else "")
                entry["metrics"][metric] = m
                continue
            fits[metric] = fit
            m["fit"] = fit.to_dict()
            m["compute_optimal"] = compute_optimal(fit, budgets, flops_per_param_token) if budgets else []
            entry["metrics"][metric] = m
        for metric in OOD_METRICS:
            if metric in fits and ID_METRIC in fits:
                entry["ood_minus_id"][metric] = exponent_difference(fits[ID_METRIC], fits[metric])
        out["groups"][label] = entry
    if not any(
        "skipped" not in g["metrics"].get(m, {"skipped": 1})
        for g in out["groups"].values()
        for m in OOD_METRICS
    ):
        out["notes"].append(
            "no out-of-distribution scores (final_eval/rel_wql, final_eval/rel_mase) in any run: the sweep ran "
            "with final_eval=null, so only the in-distribution val/loss is fitted"
        )
    return out


# ----------------------------------------------------------------------------- formatting


def _num(v: float) -> str:
    if not np.isfinite(v):
        return "nan"
    return f"{v:.3f}" if 1e-2 <= abs(v) < 1e3 else f"{v:.3g}"


def _ci(fit: dict, name: str) -> str:
    lo_hi = fit["ci"].get(name)
    return f"{_num(fit[name])} [{_num(lo_hi[0])}, {_num(lo_hi[1])}]" if lo_hi else _num(fit[name])


def format_joint_markdown(joint: dict[str, Any]) -> str:
    """Markdown: the fits (95% CIs), the compute-optimal allocation and the OOD - ID differences."""
    meth = joint["method"]
    lines = [
        f"### Joint fits `{joint['law']}`",
        "",
        f"Huber (delta 1e-3) on log residuals, L-BFGS-B from the {meth['grid']} start grid"
        + (f" (best {meth['top_k']} starts by objective)" if meth["top_k"] else "")
        + f"; {meth['bootstrap']} run-bootstrap resamples, 95% percentile CIs; points: {meth['points']}"
        + (f", D/N >= {meth['min_tokens_per_param']:g} only" if meth.get("min_tokens_per_param") else "")
        + ".",
        "",
        "| group | metric | points (N x D levels) | E | A | B | alpha | beta | rmse log | bootstrap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    problems = []
    for label, g in joint["groups"].items():
        for metric, m in g["metrics"].items():
            if "fit" not in m:
                problems.append(f"* {label}, {metric}: {m.get('skipped') or m.get('error')}")
                continue
            f = m["fit"]
            lines.append(
                f"| {label} | {metric} | {f['num_points']} ({f['n_levels']} x {f['d_levels']}) | "
                + " | ".join(_ci(f, k) for k in ("E", "A", "B", "alpha", "beta"))
                + f" | {f['rmse_log']:.4f} | {f['bootstrap_used']} used"
                + (f", {f['bootstrap_skipped']} skipped" if f["bootstrap_skipped"] else "")
                + (f", loss shift {f['shift']:.3g}" if f["shift"] else "")
                + (f"; {m['left_out']} left out" if m.get("left_out") else "")
                + " |"
            )
    k = meth["flops_per_param_token"]
    rows = [
        (label, metric, row)
        for label, g in joint["groups"].items()
        for metric, m in g["metrics"].items()
        for row in m.get("compute_optimal", [])
    ]
    if rows:
        lines += [
            "",
            f"### Compute-optimal allocation (C = {k:g} N D; the sweep's range, then 10x and 100x beyond)",
            "",
            "| group | metric | C (FLOPs) | N* | D* | D*/N* | predicted value |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, metric, r in rows:
            cells = []
            for name in ("N", "D", "loss"):
                ci = r["ci"].get(name)
                cells.append(f"{_num(r[name])} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(r[name]))
            lines.append(
                f"| {label} | {metric} | {r['C']:.3g} | {cells[0]} | {cells[1]} | {_num(r['D_per_N'])} | {cells[2]} |"
            )
    diffs = [
        (label, metric, dd)
        for label, g in joint["groups"].items()
        for metric, dd in g["ood_minus_id"].items()
    ]
    if diffs:
        lines += ["", "### Exponent difference OOD - ID (paired run bootstrap, 95% CI)", "",
                  "| group | OOD metric | alpha diff | beta diff |", "|---|---|---|---|"]  # fmt: skip
        for label, metric, dd in diffs:
            cells = [
                f"{_num(dd[p]['value'])} [{_num(dd[p]['ci'][0])}, {_num(dd[p]['ci'][1])}]"
                if dd[p]["ci"] else _num(dd[p]["value"])
                for p in ("alpha", "beta")
            ]  # fmt: skip
            lines.append(f"| {label} | {metric} vs {ID_METRIC} | {cells[0]} | {cells[1]} |")
    if problems or joint["notes"]:
        lines += ["", "Not fitted:", "", *problems, *(f"* {n}" for n in joint["notes"])]
    return "\n".join(lines)


def plot_joint(joint: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per fitted (group, metric): value vs N, points coloured by D (log colour bar), the
    fitted curve at every D level of the points (at most 8, spread over the range). ``None`` if
    nothing was fitted."""
    panels = [
        (label, metric, m)
        for label, g in joint["groups"].items()
        for metric, m in g["metrics"].items()
        if "fit" in m
    ]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), constrained_layout=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, (label, metric, m) in zip(axes.ravel(), panels):
        f = m["fit"]
        fit = JointFit(**{k: v for k, v in f.items() if k != "ci"})
        n, d, y = (np.array(m["points"][k]) for k in ("N", "D", "value"))
        levels = np.unique(d)
        if len(levels) > 8:
            levels = levels[np.unique(np.linspace(0, len(levels) - 1, 8).round().astype(int))]
        norm = LogNorm(d.min(), d.max() if d.max() > d.min() else d.min() * 10)
        points = ax.scatter(n, y, c=d, cmap=cmap, norm=norm, s=18, zorder=3)
        grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
        for level in levels:
            ax.plot(grid, fit.predict(grid, level), color=cmap(norm(level)), lw=1)
        fig.colorbar(points, ax=ax, label="tokens seen D")
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters N")
        ax.set_ylabel(metric)
        ax.set_title(f"{label}: alpha={f['alpha']:.3f}, beta={f['beta']:.3f}, E={f['E']:.3g}", fontsize=9)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
