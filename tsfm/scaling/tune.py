"""Tuning muP's base-width multipliers: a ``multiplier setting x learning rate`` grid at one width
(issue 15, "one recipe across sizes"; ``conf/experiment/scaling_mup_tune.yaml``).

muTransfer tunes, besides the learning rate, a few multipliers on the base model (``output_mult``,
``init_std``, ``attn_mult``) and keeps them at every width. This reads the tuning sweeps (several are
pooled: e.g. a first grid, then its extensions), takes each job's final validation NLL and tabulates
it per setting (the multipliers that differ from the plain model, as ``lr-transfer`` labels them) and
learning rate, with each setting's best rate and the best setting.

``python -m tsfm.scaling tune <multirun dir> ... [--out DIR]`` prints the table and writes ``tune.json``,
``tune.md`` and ``tune.png`` (loss vs lr, one curve per setting).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.scaling.transfer import MULTIPLIERS, TransferRun


def _multipliers(label: str) -> dict[str, float]:
    """``mup(output_mult=4,init_std=0.01)`` -> ``{"output_mult": 4.0, "init_std": 0.01}``; ``mup`` -> ``{}``."""
    inside = label.partition("(")[2].rstrip(")")
    return {k: float(v) for k, v in (kv.split("=") for kv in inside.split(",") if kv)}


def _order(label: str) -> tuple:
    """Rows: the plain model first, then one changed multiplier, then two, ...; grouped by which multipliers
    changed (in ``MULTIPLIERS``' order), then by their values."""
    m = _multipliers(label)
    which = sorted(list(MULTIPLIERS).index(k) for k in m if k in MULTIPLIERS)
    return (len(m), which, label.partition("(")[0], *(m.get(k, plain) for k, plain in MULTIPLIERS.items()))


def analyze_tuning(runs: list[TransferRun], failed: list[str] | None = None) -> dict[str, Any]:
    """Per multiplier setting, the final loss at each learning rate and the best one; the best setting.

    The grid must be one width and depth (the base model; a sweep over widths is ``lr-transfer``'s).
    A (setting, lr) pair run in several pooled sweeps counts once, the later sweep's run."""
    if not runs:
        raise ValueError("no finished runs to tabulate" + (f"; failed: {failed}" if failed else ""))
    bad = [r.job for r in runs if not r.lr > 0]
    if bad:
        raise ValueError(f"learning rates must be positive for a log axis; runs: {bad}")
    for attr in ("width", "depth"):
        values = sorted({getattr(r, attr) for r in runs})
        if len(values) > 1:
            named = {v: [r.job for r in runs if getattr(r, attr) == v] for v in values}
            raise ValueError(f"a tuning grid is one {attr}; these runs have {attr}s {values}: tabulate them separately "
                             f"(or use `lr-transfer` across widths); runs by {attr}: {named}")  # fmt: skip
    cells: dict[str, dict[float, TransferRun]] = {}
    for r in runs:
        cells.setdefault(r.parametrization, {})[r.lr] = r
    lrs = sorted({r.lr for r in runs})
    settings: dict[str, Any] = {}
    for label in sorted(cells, key=_order):
        by_lr = cells[label]
        finite = {lr: r.loss for lr, r in by_lr.items() if math.isfinite(r.loss)}
        best_lr = min(finite, key=finite.__getitem__) if finite else None
        settings[label] = {
            "multipliers": {**MULTIPLIERS, **_multipliers(label)},
            "losses": {
                f"{lr:g}": (None if not math.isfinite(by_lr[lr].loss) else by_lr[lr].loss)
                for lr in sorted(by_lr)
            },  # fmt: skip  # None: diverged
            "jobs": {f"{lr:g}": by_lr[lr].job for lr in sorted(by_lr)},
            "best_lr": best_lr,
            "best_loss": finite[best_lr] if best_lr is not None else None,
            "best_at_grid_edge": len(by_lr) > 1 and best_lr in (min(by_lr), max(by_lr)),
        }
    ranked = [k for k in settings if settings[k]["best_loss"] is not None]
    if not ranked:
        raise ValueError(f"every run diverged; runs: {[r.job for r in runs]}")
    best = min(ranked, key=lambda k: settings[k]["best_loss"])
    return {"width": runs[0].width, "depth": runs[0].depth, "lrs": lrs, "settings": settings, "best": best,
            "failed": list(failed or [])}  # fmt: skip


def format_tuning_markdown(result: dict[str, Any]) -> str:
    lrs = result["lrs"]
    lines = [f"| width {result['width']} | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best |",
             "|---" * (len(lrs) + 2) + "|"]  # fmt: skip
    for label, s in result["settings"].items():
        row = []
        for lr in lrs:
            key = f"{lr:g}"
            if key not in s["losses"]:
                row.append("")
            elif s["losses"][key] is None:
                row.append("diverged")
            else:
                v = f"{s['losses'][key]:.3f}"
                row.append(f"**{v}**" if lr == s["best_lr"] else v)
        best = "" if s["best_loss"] is None else f"{s['best_loss']:.3f}"
        name = f"**{label}**" if label == result["best"] else label
        lines.append(
            f"| {name} | " + " | ".join(row) + f" | {f'**{best}**' if label == result['best'] else best} |"
        )
    b = result["settings"][result["best"]]
    lines += ["", f"* best: **{result['best']}** at lr {b['best_lr']:g} (final val NLL {b['best_loss']:.4f}); "
              f"width {result['width']}, depth {result['depth']}, one run per cell."]  # fmt: skip
    edge = [k for k, s in result["settings"].items() if s["best_at_grid_edge"]]
    if edge:
        lines.append(
            f"* best rate at the edge of its row's grid (the optimum may lie outside): {', '.join(edge)}"
        )
    if result["failed"]:
        lines.append(f"* not tabulated ({len(result['failed'])}): " + "; ".join(result["failed"]))
    return "\n".join(lines)


def write_tuning_report(result: dict[str, Any], out_dir: str | Path, make_plot: bool = True) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "tune.json", out / "tune.md"]
    paths[0].write_text(json.dumps(result, indent=2))
    paths[1].write_text(format_tuning_markdown(result) + "\n")
    if make_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        cmap = plt.get_cmap("tab10" if len(result["settings"]) <= 10 else "tab20")
        for i, (label, s) in enumerate(result["settings"].items()):
            x = [float(k) for k in s["losses"]]
            y = [np.nan if v is None else v for v in s["losses"].values()]
            ls = "-" if len(_multipliers(label)) <= 1 else "--"
            lw = 2.5 if label == result["best"] else 1.2
            ax.plot(x, y, "o", ls=ls, lw=lw, color=cmap(i % cmap.N), label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final validation NLL")
        ax.set_title(f"multipliers x lr at width {result['width']}: best {result['best']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "tune.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
