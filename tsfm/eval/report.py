"""Reports of a :class:`~tsfm.eval.runner.SuiteResult`: rich table, CSV, JSON, markdown, PNG fan charts.

One row per (dataset, forecaster) in the CSV; the JSON holds, per dataset, every forecaster's
metrics and relative scores plus the skip / failure counts, and the aggregates. Every dataset
says whether the model was trained on it (``trained_on_this_dataset``, the overlapping fraction
of its series; ``unknown`` without a training record, see :mod:`tsfm.eval.leakage`), and the
aggregates are given over all datasets and over the zero-shot subset (``aggregate_zero_shot``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.eval.leaderboard import leaderboard
from tsfm.eval.runner import SuiteResult


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def to_dict(res: SuiteResult) -> dict[str, Any]:
    """JSON-ready summary (NaN -> null)."""
    datasets = {}
    for name, d in res.datasets.items():
        entry: dict[str, Any] = {
            "prediction_length": d.spec.prediction_length,
            "num_windows_per_series": d.spec.num_windows,
            "season_length": d.spec.seasonality,
            "num_series": d.num_series,
            "num_windows": d.num_windows,
            "skipped_short_series": d.skipped,
            "skipped_unobserved_windows": d.skipped_unobserved,
            "trained_on_this_dataset": d.overlap.trained_on,
            "leakage": d.overlap.status,
            "overlap_fraction": d.overlap.fraction,
            "overlap_sources": d.overlap.sources,
            "freq": d.spec.freq,
            "num_variates": d.num_variates,
            "fingerprint": d.fingerprint,
            "scores": {},
        }
        for f, s in d.scores.items():
            rel = d.relative(f, res.reference) if res.reference else {}
            entry["scores"][f] = {
                **{m: _num(v) for m, v in s.metrics.items()},
                **{f"rel_{m}": _num(v) for m, v in rel.items()},
                "failed_windows": s.failed,
                "fallbacks": s.fallbacks,
                "status": "ok" if s.ok else ("failed" if s.failed else "empty"),
                "seconds": round(s.seconds, 3),
            }
        datasets[name] = entry
    def plain(aggregates: dict[str, dict]) -> dict[str, dict]:
        return {f: {k: (_num(v) if isinstance(v, float) else v) for k, v in a.items()} for f, a in aggregates.items()}

    training = res.training.to_dict() if res.training is not None else {"status": "unknown", "where": None}
    return {"suite": res.suite, "model": res.model, "metrics": res.metrics, "reference": res.reference,
            "protocol": protocol(res), "training_data": training, "datasets": datasets,
            "aggregate": plain(res.aggregates), "zero_shot_datasets": res.zero_shot_datasets,
            "aggregate_zero_shot": plain(res.zero_shot_aggregates),
            "leaderboard": {f: {k: (_num(v) if isinstance(v, float) else [_num(x) for x in v] if isinstance(v, list)
                                    else v) for k, v in row.items()} for f, row in leaderboard_of(res).items()}}


def protocol(res: SuiteResult) -> dict[str, Any]:
    """What makes two results comparable: the metrics, quantile levels, reference and, per dataset,
    the horizon, windows, season, stride and offset (``tsfm.evaluate compare`` checks them)."""
    return {"metrics": list(res.metrics), "quantile_levels": [float(q) for q in res.quantile_levels],
            "reference": res.reference,
            "datasets": {n: {"prediction_length": d.spec.prediction_length, "num_windows": d.spec.num_windows,
                             "season_length": d.spec.seasonality, "stride": d.spec.stride, "offset": d.spec.offset}
                         for n, d in res.datasets.items()}}  # fmt: skip


def relative_table(res: SuiteResult) -> dict[str, dict[str, dict[str, float]]]:
    """``[forecaster][metric][dataset]`` scores relative to the reference (finite ones only)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    if not res.reference:
        return out
    for name, d in res.datasets.items():
        for f in d.scores:
            for m, v in d.relative(f, res.reference).items():
                if v is not None and math.isfinite(v):
                    out.setdefault(f, {}).setdefault(m, {})[name] = float(v)
    return out


def leaderboard_of(res: SuiteResult) -> dict[str, dict[str, Any]]:
    """Skill score, clipped geometric mean, 95% bootstrap intervals and win rates of every forecaster."""
    rel = relative_table(res)
    return leaderboard(rel, [m for m in res.metrics if m != "nll"]) if rel else {}


def to_frame(res: SuiteResult) -> pd.DataFrame:
    """Long table: one row per (dataset, forecaster) with metrics, relative scores and counts."""
    rows = []
    for name, d in to_dict(res)["datasets"].items():
        for f, s in d["scores"].items():
            rows.append({"dataset": name, "forecaster": f, **s, "num_series": d["num_series"],
                         "num_windows": d["num_windows"], "skipped_short_series": d["skipped_short_series"],
                         "trained_on_this_dataset": d["trained_on_this_dataset"], "leakage": d["leakage"],
                         "overlap_fraction": d["overlap_fraction"]})
    return pd.DataFrame(rows)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table_rows(res: SuiteResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-dataset table: the model then each baseline, metric and relative metric."""
    data = to_dict(res)
    others = [f for f in dict.fromkeys(f for d in data["datasets"].values() for f in d["scores"]) if f != res.model]
    forecasters = [res.model, *others]
    header = ["dataset", "series", "skipped", "trained on"]
    for f in forecasters:
        for m in res.metrics:
            header.append(f"{f} {m}")
        if res.reference and f != res.reference:
            header += [f"{f} rel_{m}" for m in res.metrics]
    rows = []
    for name, d in data["datasets"].items():
        row = [name, str(d["num_series"]), str(d["skipped_short_series"] + d["skipped_unobserved_windows"]),
               res.datasets[name].overlap.label()]
        for f in forecasters:
            s = d["scores"].get(f, {})
            failed = s.get("status") == "failed"
            for m in res.metrics:
                row.append(f"FAILED ({s['failed_windows']} NaN/inf)" if failed else _fmt(s.get(m)))
            if res.reference and f != res.reference:
                row += [_fmt(s.get(f"rel_{m}")) for m in res.metrics]
        rows.append(row)
    zero_shot = len(data["zero_shot_datasets"])
    for label, key in ((f"aggregate (all {len(data['datasets'])})", "aggregate"),
                       (f"aggregate (zero-shot {zero_shot})", "aggregate_zero_shot")):
        agg_row = [label, "", "", ""]
        for f in forecasters:
            a = data[key].get(f, {})
            agg_row += [_fmt(a.get(f"avg_{m}")) for m in res.metrics]
            if res.reference and f != res.reference:
                agg_row += [_fmt(a.get(f"rel_{m}")) for m in res.metrics]
        rows.append(agg_row)
    return header, rows


def leakage_note(res: SuiteResult) -> str:
    """Which datasets the model was trained on (so the zero-shot aggregate leaves them out), or why
    that is unknown."""
    t = res.training
    if t is None or not t.known:
        why = f" ({t.where})" if t is not None else ""
        return (f"{res.model}: training data unknown{why}; no dataset is marked as trained on, so the "
                "zero-shot aggregate covers every dataset.")
    trained = {n: d.overlap for n, d in res.datasets.items() if d.overlap.trained_on}
    lines = []
    if trained:
        shown = "; ".join(f"{n} ({o.num_overlapping} of {o.num_series} series, via {', '.join(o.sources)})"
                          for n, o in trained.items())
        lines.append(f"{res.model} was trained on: {shown}. The zero-shot aggregate leaves them out.")
    else:
        lines.append(f"{res.model}: no evaluated series is in its training data ({t.where}); every dataset is zero-shot.")
    if t.unknown_sub_datasets:
        lines.append(f"{res.model}: training sub-dataset(s) of unknown provenance (no manifest): "
                     f"{', '.join(t.unknown_sub_datasets)}; datasets without a match are marked unknown.")
    return "\n".join(lines)


def aggregate_note(res: SuiteResult) -> str:
    """One sentence per forecaster whose aggregate leaves out failed datasets."""
    notes = []
    for f, a in res.aggregates.items():
        if a.get("failed_datasets"):
            notes.append(f"{f}: aggregate over {a['num_datasets']} datasets; FAILED (NaN/inf forecasts): "
                         f"{', '.join(a['failed_datasets'])}")
        if a.get("empty_datasets"):
            notes.append(f"{f}: no evaluation window (every series shorter than context + windows) in "
                         f"{', '.join(a['empty_datasets'])}; left out of the aggregate")
        if a.get("no_reference_datasets") and f != res.reference:
            notes.append(f"{f}: relative scores leave out {', '.join(a['no_reference_datasets'])} "
                         f"(no valid {res.reference} score there)")
        for m, ds in (a.get("undefined_relative") or {}).items():
            if f != res.reference:
                notes.append(f"{f}: rel_{m} leaves out {', '.join(ds)} ({res.reference} scores 0 there)")
    return "\n".join(notes)


def to_markdown(res: SuiteResult) -> str:
    header, rows = table_rows(res)
    lines = [f"# Evaluation: {res.model} on suite `{res.suite}`", ""]
    if res.reference:
        lines += [f"Relative scores (rel_*) divide by `{res.reference}` on the same windows; the aggregate row "
                  "holds the arithmetic mean of raw scores and the geometric mean of relative scores.", ""]
    lines += ["`trained on`: share of the dataset's series found in the model's training corpus (by series "
              "fingerprint); the zero-shot aggregate covers the datasets it was not trained on.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    board = leaderboard_of(res)
    if board:
        lines += ["", f"Leaderboard (relative to {res.reference}; skill = 1 - geometric mean of the relative errors "
                  "clipped to [0.01, 100]; 95% bootstrap intervals over datasets; win rate = share of datasets won "
                  "against each other forecaster, averaged):", "",
                  "| forecaster | WQL skill [95% CI] | MASE skill [95% CI] | WQL win rate | MASE win rate |",
                  "|---|---|---|---|---|"]
        for f, row in sorted(board.items(), key=lambda kv: -(kv[1].get("wql_skill") or -1e9)):
            cells = [f"{_fmt(row.get(f'{m}_skill'))} [{_fmt(row.get(f'{m}_skill_ci', [None])[0])}, "
                     f"{_fmt(row.get(f'{m}_skill_ci', [None, None])[1])}]" for m in ("wql", "mase")]
            lines.append(f"| {f} | {cells[0]} | {cells[1]} | {_fmt(row.get('wql_win_rate'))} | "
                         f"{_fmt(row.get('mase_win_rate'))} |")
    lines += ["", leakage_note(res)]
    note = aggregate_note(res)
    if note:
        lines += ["", note]
    skipped = {n: d for n, d in res.datasets.items() if d.skipped or d.skipped_unobserved}
    if skipped:
        lines += ["", "Skipped (not silently dropped):"]
        lines += [f"- {n}: {d.skipped} series shorter than {d.spec.num_windows}×{d.spec.prediction_length}, "
                  f"{d.skipped_unobserved} windows with no observed context" for n, d in skipped.items()]
    return "\n".join(lines) + "\n"


def plot_fan_charts(res: SuiteResult, path: str | Path, levels: list[float]) -> Path | None:
    """PNG grid: per dataset (rows) a few series (columns), context tail, truth and 10–90% / median fans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = [(n, d.plot) for n, d in res.datasets.items() if d.plot and d.plot.get("item_ids")]
    if not ds:
        return None
    ncol = max(len(p["item_ids"]) for _, p in ds)
    fig, axes = plt.subplots(len(ds), ncol, figsize=(3.2 * ncol, 2.2 * len(ds)), squeeze=False)
    lv = np.asarray(levels)
    lo, hi, mid = int(np.argmin(lv)), int(np.argmax(lv)), int(np.argmin(np.abs(lv - 0.5)))
    for r, (name, p) in enumerate(ds):
        for c in range(ncol):
            ax = axes[r, c]
            if c >= len(p["item_ids"]):
                ax.axis("off")
                continue
            ctx, lab, q = np.asarray(p["contexts"][c]), np.asarray(p["labels"][c]), np.asarray(p["quantiles"][c])
            t0, t1 = np.arange(len(ctx)), np.arange(len(ctx), len(ctx) + len(lab))
            ax.plot(t0, ctx, color="k", lw=0.8)
            ax.plot(t1, lab, color="k", lw=0.8, ls="--")
            ax.fill_between(t1, q[:, lo], q[:, hi], color="C0", alpha=0.3, label=f"{lv[lo]:g}–{lv[hi]:g}")
            ax.plot(t1, q[:, mid], color="C0", lw=1.0, label="median")
            ax.set_title(f"{name}: {p['item_ids'][c]}"[:40], fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{res.model} on {res.suite}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_reports(res: SuiteResult, out_dir: str | Path, levels: list[float], plot: bool = True) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``report.md`` (and ``forecasts.png``) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "markdown": out / "report.md"}
    to_frame(res).to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps(to_dict(res), indent=2))
    paths["markdown"].write_text(to_markdown(res))
    if plot:
        png = plot_fan_charts(res, out / "forecasts.png", levels)
        if png is not None:
            paths["png"] = png
    return paths


def print_table(res: SuiteResult, console: Any | None = None) -> None:
    """Print the per-dataset table and the aggregate with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    header, rows = table_rows(res)
    t = Table(title=f"{res.model} on {res.suite}", show_lines=False)
    for h in header:
        t.add_column(h, justify="left" if h == "dataset" else "right")
    for i, r in enumerate(rows):
        t.add_row(*r, end_section=(i == len(rows) - 3))
    console.print(t)
    console.print(leakage_note(res), markup=False, highlight=False)
    note = aggregate_note(res)
    if note:
        console.print(f"[bold red]{note}[/]")
