"""The fine-tuning report: zero-shot vs fine-tuned vs the baselines on the held-out windows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.eval.runner import SuiteResult

COLUMNS = ("wql", "mase", "rel_wql", "rel_mase")


def _row(res: SuiteResult, name: str) -> dict[str, float]:
    (ds,) = res.datasets.values()
    score = ds.scores.get(name)
    metrics = score.metrics if score is not None and score.ok else {}
    rel = ds.relative(name, res.reference) if res.reference else {}
    return {"wql": metrics.get("wql", np.nan), "mase": metrics.get("mase", np.nan),
            "rel_wql": rel.get("wql", np.nan), "rel_mase": rel.get("mase", np.nan)}  # fmt: skip


def comparison_table(zero_shot: SuiteResult, tuned: SuiteResult, baselines: Sequence[str]) -> pd.DataFrame:
    """Rows: the baselines, ``zero_shot`` and ``finetuned``; columns :data:`COLUMNS` (relative to
    Seasonal Naive: lower is better, < 1 beats it)."""
    rows = {b: _row(zero_shot, b) for b in baselines}
    rows["zero_shot"] = _row(zero_shot, "zero_shot")
    rows["finetuned"] = _row(tuned, "finetuned")
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))


def print_comparison(result: Any, console: Any | None = None) -> None:
    """The table and the verdict, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    h = result.holdout
    console.print(f"held-out windows: {h['series']} series x {h['num_windows']} window(s) of {h['prediction_length']}"
                  + (f"; {h['excluded_too_short']} series too short, left out of training and validation: "
                     f"{h['excluded_items'][:5]}" if h["excluded_too_short"] else ""))
    t = Table(title="zero-shot vs fine-tuned vs baselines (lower is better)")
    t.add_column("model")
    for c in COLUMNS:
        t.add_column(c.replace("rel_", "rel. ").upper() if not c.startswith("rel") else f"{c[4:].upper()} / SNaive",
                     justify="right")
    best = result.table["rel_wql"].idxmin() if result.table["rel_wql"].notna().any() else None
    for name, row in result.table.iterrows():
        cells = ["-" if pd.isna(v) else f"{v:.3f}" for v in row]
        label = f"[bold]{name}[/bold]" if name == best else str(name)
        t.add_row(label, *cells)
    console.print(t)
    style = "green" if result.improved else "bold red"
    console.print(f"[{style}]{result.message}[/{style}]")
    console.print(f"steps trained: {result.steps} (best at step {result.best_step}), {result.seconds:.0f} s; "
                  f"report: {result.files.get('report')}")


def plot_comparison(zero_shot: SuiteResult, tuned: SuiteResult, path: str | Path, levels: Sequence[float]) -> Path | None:
    """Fan chart PNG: a few held-out windows with the zero-shot and fine-tuned 10-90% bands and medians."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (a,) = zero_shot.datasets.values()
    (b,) = tuned.datasets.values()
    pa, pb = a.plot, b.plot
    if not pa or not pa.get("item_ids") or not pb or pb.get("item_ids") != pa.get("item_ids"):
        return None
    n = len(pa["item_ids"])
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 2.6), squeeze=False)
    levels = np.asarray(levels, dtype=float)
    lo, hi, mid = int(np.argmin(levels)), int(np.argmax(levels)), int(np.argmin(np.abs(levels - 0.5)))
    for i in range(n):
        ax = axes[0, i]
        ctx, lab = np.asarray(pa["contexts"][i]), np.asarray(pa["labels"][i])
        t0, t1 = np.arange(len(ctx)), np.arange(len(ctx), len(ctx) + len(lab))
        ax.plot(t0, ctx, color="k", lw=0.8)
        ax.plot(t1, lab, color="k", lw=0.8, ls="--", label="truth")
        for p, color, name in ((pa, "C1", "zero-shot"), (pb, "C0", "fine-tuned")):
            q = np.asarray(p["quantiles"][i])
            ax.fill_between(t1, q[:, lo], q[:, hi], color=color, alpha=0.25)
            ax.plot(t1, q[:, mid], color=color, lw=1.0, label=name)
        ax.set_title(str(pa["item_ids"][i])[:40], fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("held-out windows: zero-shot vs fine-tuned (median, 10-90%)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

