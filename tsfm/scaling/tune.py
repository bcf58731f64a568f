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

import math
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.scaling.transfer import MULTIPLIERS, TransferRun, write_json_md


def _multipliers(label: str) -> dict[str, float]:
    """``mup(output_mult=4,init_std=0.01)`` -> ``{"output_mult": 4.0, "init_std": 0.01}``; ``mup`` -> ``{}``."""
    inside = label.partition("(")[2].rstrip(")")
    return {k: float(v) for k, v in (kv.split("=") for kv in inside.split(",") if kv)}


def _order(label: str) -> tuple:
    """Rows: by parametrisation, the plain model first, then one changed multiplier, then two, ...; grouped by
    which multipliers changed (in ``MULTIPLIERS``' order), then by their values."""
    m = _multipliers(label)
    which = sorted(list(MULTIPLIERS).index(k) for k in m if k in MULTIPLIERS)
    return (label.partition("(")[0], len(m), which, *(m.get(k, plain) for k, plain in MULTIPLIERS.items()))


def analyze_tuning(runs: list[TransferRun], failed: list[str] | None = None) -> dict[str, Any]:
    """Per multiplier setting, the final loss at each learning rate and the best one; the best setting.

    The grid must be one width and depth (the base model; a sweep over widths is ``lr-transfer``'s). Sweeps
    may be pooled (``runs`` in the order given): a (setting, lr) cell run again in a later sweep counts once, the
    later run, and the superseded one is listed; the same cell twice in one sweep is an error (a confound, e.g.
    another seed or base width, that the table cannot show). A row's best rate at either end of its rates
    (or a row of one rate) is flagged: the optimum may lie outside."""
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
    lrs = sorted({r.lr for r in runs})
    names = [f"{lr:g}" for lr in lrs]
    if len(set(names)) < len(names):
        clash = [r.job for r in runs if names.count(f"{r.lr:g}") > 1]
        raise ValueError(f"learning rates that differ only past 6 digits ({sorted(set(n for n in names if names.count(n) > 1))}) "
                         f"would share a column: give these runs the same optim.lr; runs: {clash}")  # fmt: skip
    cells: dict[str, dict[float, TransferRun]] = {}
    superseded = []
    for r in runs:
        old = cells.setdefault(r.parametrization, {}).get(r.lr)
        if old is not None:
            if Path(old.job).parent == Path(r.job).parent:
                raise ValueError(f"{r.parametrization} at lr {r.lr:g} was run twice in one sweep ({old.job}, {r.job}): "
                                 "the table holds one run per cell; tabulate the sweeps that differ (e.g. in seed or "
                                 "base width) separately")  # fmt: skip
            superseded.append({"job": old.job, "by": r.job})
        cells[r.parametrization][r.lr] = r
    settings: dict[str, Any] = {}
    for label in sorted(cells, key=_order):
        rs = [cells[label][lr] for lr in sorted(cells[label])]
        finite = [r for r in rs if math.isfinite(r.loss)]
        best = min(finite, key=lambda r: r.loss) if finite else None  # ties: the lower rate
        settings[label] = {
            "multipliers": {**MULTIPLIERS, **_multipliers(label)},
            "lrs": [r.lr for r in rs],
            "losses": [r.loss if math.isfinite(r.loss) else None for r in rs],  # None: diverged
            "jobs": [r.job for r in rs],
            "best_lr": best.lr if best else None,
            "best_loss": best.loss if best else None,
            "best_at_grid_edge": best is not None and best.lr in (rs[0].lr, rs[-1].lr),
        }
    ranked = [k for k in settings if settings[k]["best_loss"] is not None]
    if not ranked:
        raise ValueError(
            f"every run diverged: add lower learning rates to the grid; runs: {[r.job for r in runs]}"
        )
    best = min(ranked, key=lambda k: settings[k]["best_loss"])
    return {"width": runs[0].width, "depth": runs[0].depth, "lrs": lrs, "settings": settings, "best": best,
            "superseded": superseded, "failed": list(failed or [])}  # fmt: skip


def format_tuning_markdown(result: dict[str, Any]) -> str:
    lrs = result["lrs"]
    lines = [f"| setting (width {result['width']}) | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best |",
             "|---" * (len(lrs) + 2) + "|"]  # fmt: skip
    for label, s in result["settings"].items():
        loss = dict(zip(s["lrs"], s["losses"]))
        row = []
        for lr in lrs:
            if lr not in loss:
                row.append("")
            elif loss[lr] is None:
                row.append("diverged")
            else:
                row.append(f"**{loss[lr]:.3f}**" if lr == s["best_lr"] else f"{loss[lr]:.3f}")
        best = "" if s["best_loss"] is None else f"{s['best_loss']:.3f}"
        if label == result["best"]:
            label, best = f"**{label}**", f"**{best}**"
        lines.append(f"| {label} | " + " | ".join(row) + f" | {best} |")
    b = result["settings"][result["best"]]
    lines += ["", f"* best: **{result['best']}** at lr {b['best_lr']:g} (final val NLL {b['best_loss']:.4f}); "
              f"width {result['width']}, depth {result['depth']}, one run per cell."]  # fmt: skip
    edge = [k for k, s in result["settings"].items() if s["best_at_grid_edge"]]
    if edge:
        lines.append(
            f"* best rate at the edge of its row's rates (the optimum may lie outside): {', '.join(edge)}"
        )
    if result["superseded"]:
        lines.append(f"* run again in a later sweep, the later run counted ({len(result['superseded'])}): "
                     + "; ".join(f"{d['job']} (by {d['by']})" for d in result["superseded"]))  # fmt: skip
    if result["failed"]:
        lines.append(f"* not tabulated ({len(result['failed'])}): " + "; ".join(result["failed"]))
    return "\n".join(lines)


def write_tuning_report(result: dict[str, Any], out_dir: str | Path, make_plot: bool = True) -> list[Path]:
    out, paths = write_json_md(out_dir, "tune", result, format_tuning_markdown(result))
    if make_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        cmap = plt.get_cmap("tab10" if len(result["settings"]) <= 10 else "tab20")
        for i, (label, s) in enumerate(result["settings"].items()):
            x = s["lrs"]
            y = [np.nan if v is None else v for v in s["losses"]]
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
