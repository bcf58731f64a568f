"""Fit L(N), L(D), L(C) per architecture from a sweep and write the JSON + PNG report.

* ``L(N)``: final validation loss of each size (best run per size, e.g. over learning rates).
* ``L(D)``: validation curve of the largest model (loss after D tokens).
* ``L(C)``: compute-efficient frontier over every validation of every size, ``C = 6 N D``.
* ``L(N, D)`` (when the result holds ``"joint"``, see :mod:`tsfm.scaling.joint_report`): joint fits
  per group and metric, the compute-optimal allocation and OOD - ID exponent differences.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.scaling.fit import PowerLawFit, _fit_once, fit_power_law
from tsfm.scaling.joint_report import format_joint_markdown, plot_joint
from tsfm.scaling.results import Run, best_per_size, compute_frontier

log = logging.getLogger(__name__)
AXES = {"N": "non-embedding parameters N", "D": "tokens (patches) seen D", "C": "compute C = 6ND (FLOPs)"}
# out-of-distribution scores of each run's final weights (final_eval=<suite>), fitted against N like val/loss
OOD = ("rel_wql", "rel_mase")


def _paired_alpha_difference(
    x: np.ndarray,
    y_id: np.ndarray,
    y_ood: np.ndarray,
    form: str,
    n_boot: int,
    seed: int,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """alpha(OOD) - alpha(ID) of ``L(N)`` with a paired case bootstrap: each resample of the sizes is
    fitted on both metrics, so the interval reflects the difference, not two independent spreads."""
    n_params = 2 if form == "pure" else 3

    def alpha(xs: np.ndarray, ys: np.ndarray) -> float:
        shift = 0.0 if ys.min() > 0 else float(1.0 - ys.min())
        u = np.log(xs)
        return float(_fit_once(u, np.log(ys + shift), form, float(np.log(x).mean()))[1])

    estimate = alpha(x, y_ood) - alpha(x, y_id)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) < n_params:
            continue
        try:
            diffs.append(alpha(x[idx], y_ood[idx]) - alpha(x[idx], y_id[idx]))
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            continue
    out: dict[str, Any] = {"estimate": estimate, "bootstrap_used": len(diffs)}
    if diffs:
        lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
        out["ci"] = [float(np.percentile(diffs, lo)), float(np.percentile(diffs, hi))]
    return out


def _points(runs: list[Run], axis: str) -> tuple[np.ndarray, np.ndarray]:
    if axis == "N":
        return np.array([r.params for r in runs], float), np.array([r.final_loss for r in runs])
    if axis == "D":
        largest = max(runs, key=lambda r: r.params)
        return largest.tokens.astype(float), largest.val_loss
    return compute_frontier(runs)


def analyze(runs: list[Run], form: str = "saturating", n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per architecture and axis: the points and the fit (or the reason there is none)."""
    if not runs:
        raise ValueError("no baseline runs with a logged val/loss; nothing to fit")
    runs = best_per_size(runs)
    out: dict[str, Any] = {"form": form, "runs": [], "fits": {}}
    for r in runs:
        out["runs"].append(
            {"job": r.job, "architecture": r.label, "N": r.params, "D": r.final_tokens,
             "C": 6.0 * r.params * r.final_tokens, "final_val_loss": r.final_loss, "overrides": r.overrides}
        )  # fmt: skip
    for arch in sorted({r.label for r in runs}):
        group = [r for r in runs if r.label == arch]
        out["fits"][arch] = {}
        for axis in AXES:
            x, y = _points(group, axis)
            entry: dict[str, Any] = {"x": x.tolist(), "loss": y.tolist()}
            try:
                entry["fit"] = fit_power_law(x, y, form=form, n_boot=n_boot, seed=seed).to_dict()
            except (ValueError, RuntimeError) as e:
                used = [max(group, key=lambda r: r.params)] if axis == "D" else group
                entry["error"] = f"{e} (runs: {', '.join(r.job for r in used)})"
            out["fits"][arch][f"L({axis})"] = entry
        for metric in OOD:
            have = [r for r in group if metric in r.final_eval]
            if not have:
                continue
            x = np.array([r.params for r in have], float)
            y = np.array([r.final_eval[metric] for r in have])
            entry = {"x": x.tolist(), "loss": y.tolist(),
                     "missing": [r.job for r in group if metric not in r.final_eval]}  # fmt: skip
            try:
                entry["fit"] = fit_power_law(x, y, form=form, n_boot=n_boot, seed=seed).to_dict()
                if n_boot > 0:
                    y_id = np.array([r.final_loss for r in have])
                    entry["ood_minus_id_alpha"] = _paired_alpha_difference(x, y_id, y, form, n_boot, seed)
            except (ValueError, RuntimeError) as e:
                entry["error"] = f"{e} (runs: {', '.join(r.job for r in have)})"
            out["fits"][arch][f"L(N) OOD {metric}"] = entry
    return out


def format_table(result: dict[str, Any]) -> str:
    """Human-readable summary: fitted exponents with CIs per architecture and axis."""
    lines = [f"{'arch':16} {'law':5} {'alpha':>9} {'CI':>21} {'E':>9} {'A':>10} {'pts':>4}  note"]
    for arch, fits in result["fits"].items():
        for law, entry in fits.items():
            if "fit" not in entry:
                lines.append(
                    f"{arch:16} {law:5} {'-':>9} {'':>21} {'':>9} {'':>10} {len(entry['x']):>4}  {entry['error']}"
                )
                continue
            f = entry["fit"]
            lo, hi = f["ci"].get("alpha", [float("nan")] * 2)
            ci = f"[{lo:.3f}, {hi:.3f}]"
            note = f"{f['bootstrap_used']} bootstrap fits" + (
                f", loss shift {f['shift']:.3g}" if f["shift"] else ""
            )
            diff = entry.get("ood_minus_id_alpha")
            if diff and "ci" in diff:
                note += (
                    f"; alpha OOD - ID {diff['estimate']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
                )
            if entry.get("missing"):
                note += f"; runs without it: {entry['missing']}"
            lines.append(
                f"{arch:16} {law:5} {f['alpha']:9.4f} {ci:>21} {f['E']:9.4f} {f['A']:10.4g} {f['num_points']:>4}  {note}"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """One panel per axis: points and fitted curves per architecture (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ood = [m for m in OOD if any(f"L(N) OOD {m}" in fits for fits in result["fits"].values())]
    panels = len(AXES) + len(ood)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    for ax, metric in zip(axes[len(AXES) :], ood):
        for i, (arch, fits) in enumerate(result["fits"].items()):
            entry = fits.get(f"L(N) OOD {metric}")
            if entry is None:
                continue
            x, y = np.array(entry["x"]), np.array(entry["loss"])
            ax.scatter(x, y, color=f"C{i}", label=arch)
            if "fit" in entry and len(x):
                f = entry["fit"]
                grid = np.geomspace(x.min(), x.max(), 100)
                ax.plot(grid, PowerLawFit(**{**f, "ci": {}}).predict(grid), color=f"C{i}",
                        label=f"{arch}: alpha={f['alpha']:.3f}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(AXES["N"])
        ax.set_ylabel(f"dev suite {metric} (zero-shot, vs Seasonal Naive)")
        ax.set_title("out of distribution")
        ax.legend(fontsize=8)
    for ax, (axis, label) in zip(axes, AXES.items()):
        for i, (arch, fits) in enumerate(result["fits"].items()):
            entry, color = fits[f"L({axis})"], f"C{i}"
            x, y = np.array(entry["x"]), np.array(entry["loss"])
            ax.scatter(x, y, color=color, label=arch)
            if "fit" in entry and len(x):
                f = entry["fit"]
                grid = np.geomspace(x.min(), x.max(), 100)
                fit = PowerLawFit(**{**f, "ci": {}})
                ax.plot(grid, fit.predict(grid), color=color, label=f"{arch}: alpha={f['alpha']:.3f}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation NLL (scaled)")
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_markdown(result: dict[str, Any]) -> str:
    """The whole report in markdown: the 1-D fits and, when present, the joint fits."""
    lines = ["# Scaling-law fits", "", f"1-D fits `L(x) = A x^-alpha + E` (form: {result['form']}):", "",
             "| group | law | alpha | 95% CI | E | A | points |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for arch, fits in result["fits"].items():
        for law, entry in fits.items():
            if "fit" not in entry:
                lines.append(f"| {arch} | {law} | - | {entry['error']} | | | {len(entry['x'])} |")
                continue
            f = entry["fit"]
            lo, hi = f["ci"].get("alpha", [float("nan")] * 2)
            diff = entry.get("ood_minus_id_alpha")
            extra = (f" (alpha OOD - ID {diff['estimate']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}])"
                     if diff and "ci" in diff else "")  # fmt: skip
            lines.append(
                f"| {arch} | {law}{extra} | {f['alpha']:.4f} | [{lo:.3f}, {hi:.3f}] | {f['E']:.4f} | {f['A']:.4g} | {f['num_points']} |"
            )
    if "joint" in result:
        lines += ["", format_joint_markdown(result["joint"])]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: str | Path, make_plot: bool = True) -> list[Path]:
    """``scaling_fit.json`` and ``scaling_fit.md`` (+ ``scaling_fit.png``, and ``scaling_joint.png``
    when the result holds joint fits) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "scaling_fit.json", out / "scaling_fit.md"]
    paths[0].write_text(json.dumps(result, indent=2))
    paths[1].write_text(format_markdown(result))
    if make_plot:
        paths.append(plot(result, out / "scaling_fit.png"))
        if "joint" in result:
            joint_png = plot_joint(result["joint"], out / "scaling_joint.png")
            if joint_png is not None:
                paths.append(joint_png)
    return paths
