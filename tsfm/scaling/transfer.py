"""Learning-rate transfer across widths: does the best learning rate tuned on a narrow model stay
the best on wider ones? (issue 15, "one recipe across sizes")

Reads a Hydra multirun over ``parametrization x d_model x optim.lr`` of the baseline family
(``conf/experiment/scaling_lr_transfer.yaml``), takes each job's final validation NLL and, per
parametrisation and width, the best learning rate: the grid's argmin, refined by a parabola through
it and its two neighbours in ``log2(lr)`` (an optimum between grid points). The shift of the optimum
from the narrowest width, in grid steps (``log(lr ratio) / log(grid factor)``), is the readout:
under a parametrisation that transfers, it stays within one grid step across the widths.

``python -m tsfm.scaling lr-transfer <multirun dir> [--out DIR]`` prints the table and writes
``lr_transfer.json``, ``lr_transfer.md`` and ``lr_transfer.png`` (loss vs lr, one curve per width,
one panel per parametrisation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from tsfm.scaling.results import _val_curve, job_dirs
from tsfm.utils.config import register_resolvers


@dataclass
class TransferRun:
    job: str
    parametrization: str
    width: int
    lr: float
    loss: float  # final val/loss; inf when the run diverged (non-finite loss)
    depth: int = 0  # num_layers (0: not recorded)


def read_transfer(multirun_dir: str | Path) -> tuple[list[TransferRun], list[str]]:
    """The finished baseline jobs of a multirun and the jobs without a validation loss (failed,
    unfinished or not baseline), which are listed, not fitted."""
    jobs = job_dirs(multirun_dir)
    register_resolvers()
    runs, failed = [], []
    for job in jobs:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        if OmegaConf.select(cfg, "model.family") != "baseline":
            failed.append(f"{job} (family {OmegaConf.select(cfg, 'model.family')!r}, not baseline)")
            continue
        config = OmegaConf.to_container(cfg.model.module.config, resolve=True)
        _, val = _val_curve(job)
        if len(val):
            loss = float(val[-1])
        elif _logged_nan_val_loss(job):
            loss = math.inf  # validated, but the loss was NaN: diverged at this learning rate
        else:
            failed.append(f"{job} (no val/loss logged: failed or unfinished)")
            continue
        runs.append(TransferRun(str(job), parametrization_label(config), int(config["d_model"]),
                                float(OmegaConf.select(cfg, "optim.lr")), loss if math.isfinite(loss) else math.inf,
                                int(config.get("num_layers") or 0)))  # fmt: skip
    return runs, failed


# muP's base-width multipliers (tsfm.models.baseline.config) and their plain values
MULTIPLIERS = {"output_mult": 1.0, "init_std": 0.02, "attn_mult": 1.0}


def parametrization_label(config: dict[str, Any]) -> str:
    """``sp`` / ``mup``, with the multipliers that differ from the plain model: ``mup(output_mult=4)``
    (runs with different multipliers are different parametrisations of the same widths)."""
    name = str(config.get("parametrization", "sp"))
    changed = [
        f"{k}={float(config[k]):g}"
        for k, plain in MULTIPLIERS.items()
        if config.get(k) is not None and float(config[k]) != plain
    ]
    return f"{name}({','.join(changed)})" if changed else name


def _logged_nan_val_loss(job: Path) -> bool:
    """A ``val/loss`` column whose every row is empty: CSVLogger writes a NaN loss as an empty cell."""
    for csv in job.glob("**/csv/version_*/metrics.csv"):
        df = pd.read_csv(csv)
        if "val/loss" in df.columns and len(df) and df["val/loss"].isna().all():
            return True
    return False


def _best_lr(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, float, bool]:
    """``(grid argmin, refined optimum, interior)``: the parabola in log2(lr) through the argmin and its
    neighbours; at the grid's edge (``interior`` False) the argmin itself, the true optimum may lie outside."""
    finite = np.isfinite(losses)
    i = int(np.argmin(np.where(finite, losses, np.inf)))
    if i == 0 or i == len(lrs) - 1 or not finite[i - 1 : i + 2].all():
        return float(lrs[i]), float(lrs[i]), False
    x, y = np.log2(lrs[i - 1 : i + 2]), losses[i - 1 : i + 2]
    a, b, _ = np.polyfit(x, y, 2)
    vertex = -b / (2 * a) if a > 0 else x[1]
    return float(lrs[i]), float(2 ** np.clip(vertex, x[0], x[2])), True


def analyze_transfer(runs: list[TransferRun], failed: list[str] | None = None) -> dict[str, Any]:
    """Per parametrisation and width the best lr, and the optimum's shift across widths in grid steps."""
    if not runs:
        raise ValueError("no finished runs to analyse" + (f"; failed: {failed}" if failed else ""))
    bad = [r.job for r in runs if not r.lr > 0]
    if bad:
        raise ValueError(f"learning rates must be positive for a log axis; runs: {bad}")
    out: dict[str, Any] = {"parametrizations": {}, "failed": list(failed or [])}
    for par in sorted({r.parametrization for r in runs}):
        mine = [r for r in runs if r.parametrization == par]
        widths = sorted({r.width for r in mine})
        if len(widths) < 2:
            raise ValueError(f"{par}: runs of one width only ({widths}); transfer needs >= 2 widths")
        per_width = {}
        for w in widths:
            by_lr: dict[float, TransferRun] = {}
            for r in mine:  # pooled sweeps: one run per (width, lr), the later one if repeated
                if r.width == w:
                    by_lr[r.lr] = r
            rs = sorted(by_lr.values(), key=lambda r: r.lr)
            depths = sorted({r.depth for r in mine if r.width == w})
            if len(depths) > 1:  # e.g. a depth-2 transfer sweep pooled with the ladder's shapes
                raise ValueError(f"{par}, width {w}: runs of depths {depths} would be pooled into one curve; analyse "
                                 f"sweeps of different depths separately; runs: {[r.job for r in mine if r.width == w]}")  # fmt: skip
            if len(rs) < 3:
                raise ValueError(f"{par}, width {w}: {len(rs)} learning rates (need >= 3 to locate an optimum); "
                                 f"runs: {[r.job for r in rs]}")  # fmt: skip
            lrs, losses = np.array([r.lr for r in rs]), np.array([r.loss for r in rs])
            if not np.isfinite(losses).any():
                raise ValueError(f"{par}, width {w}: every run diverged; runs: {[r.job for r in rs]}")
            grid, refined, interior = _best_lr(lrs, losses)
            per_width[w] = {"depth": depths[0], "lrs": lrs.tolist(), "losses": [float(v) if np.isfinite(v) else None for v in losses],
                            "best_lr_grid": grid, "best_lr": refined, "interior": interior,
                            "best_loss": float(np.nanmin(np.where(np.isfinite(losses), losses, np.nan)))}  # fmt: skip
        lrs_all = sorted({r.lr for r in mine})
        factor = float(np.exp(np.median(np.diff(np.log(lrs_all))))) if len(lrs_all) > 1 else 2.0
        base = per_width[widths[0]]["best_lr"]
        for w in widths:
            per_width[w]["shift_steps"] = float(math.log(per_width[w]["best_lr"] / base) / math.log(factor))
        shifts = [per_width[w]["shift_steps"] for w in widths]
        out["parametrizations"][par] = {
            "widths": widths, "width_range": widths[-1] / widths[0], "grid_factor": factor,
            "per_width": {str(w): v for w, v in per_width.items()},
            "max_abs_shift_steps": float(max(abs(s) for s in shifts)),
            "spread_steps": float(max(shifts) - min(shifts)),
            "transfers": bool(max(abs(s) for s in shifts) < 1.0),
            "edge_optima": [w for w in widths if not per_width[w]["interior"]],
        }  # fmt: skip
    return out


def format_transfer_markdown(result: dict[str, Any]) -> str:
    lines = ["| parametrisation | width | depth | best lr (grid) | best lr (refined) | shift (grid steps) | best val NLL |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for par, res in result["parametrizations"].items():
        for w in res["widths"]:
            r = res["per_width"][str(w)]
            edge = "" if r["interior"] else " (grid edge)"
            lines.append(f"| {par} | {w} | {r.get('depth') or ''} | {r['best_lr_grid']:.3g}{edge} | {r['best_lr']:.3g} | "
                         f"{r['shift_steps']:+.2f} | {r['best_loss']:.4f} |")  # fmt: skip
    lines.append("")
    for par, res in result["parametrizations"].items():
        verdict = (
            "within one grid step: transfers"
            if res["transfers"]
            else "moves by one grid step or more: does not transfer"
        )
        lines.append(f"* **{par}**: over a {res['width_range']:.0f}x width range the optimum moves at most "
                     f"{res['max_abs_shift_steps']:.2f} grid steps (factor {res['grid_factor']:.2g}) from the "
                     f"narrowest width: {verdict}.")  # fmt: skip
    if result.get("failed"):
        lines.append(f"* not fitted ({len(result['failed'])}): " + "; ".join(result["failed"]))
    return "\n".join(lines)


def write_json_md(out_dir: str | Path, stem: str, result: dict[str, Any], markdown: str) -> tuple[Path, list[Path]]:
    """``<out_dir>/<stem>.json`` (the result) and ``<stem>.md`` (its table); the directory and the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=2))
    paths[1].write_text(markdown + "\n")
    return out, paths


def write_transfer_report(result: dict[str, Any], out_dir: str | Path, make_plot: bool = True) -> list[Path]:
    out, paths = write_json_md(out_dir, "lr_transfer", result, format_transfer_markdown(result))
    if make_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pars = list(result["parametrizations"])
        fig, axes = plt.subplots(1, len(pars), figsize=(5.5 * len(pars), 4.2), squeeze=False, sharey=True)
        for ax, par in zip(axes[0], pars):
            res = result["parametrizations"][par]
            cmap = plt.get_cmap("viridis")
            depths = {res["per_width"][str(w)].get("depth") for w in res["widths"]}
            for i, w in enumerate(res["widths"]):
                r = res["per_width"][str(w)]
                color = cmap(i / max(1, len(res["widths"]) - 1))
                y = np.array([np.nan if v is None else v for v in r["losses"]])
                label = f"width {w}" + (f", depth {r['depth']}" if len(depths) > 1 else "")
                ax.plot(r["lrs"], y, "o-", color=color, label=label)
                ax.axvline(r["best_lr"], color=color, ls=":", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("learning rate")
            ax.set_title(f"{par}: optimum moves {res['max_abs_shift_steps']:.2f} grid steps")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("final validation NLL")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "lr_transfer.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
