"""``python -m tsfm.evaluate compare A.json B.json ...``: one leaderboard from several evaluations.

Each file is a ``results.json`` written by ``tsfm.evaluate``. They must share the protocol (datasets,
horizons, windows, season lengths, metrics, quantile levels, reference); any difference is an
error naming it. Every file's model, and the baselines of the first file, are ranked by WQL skill
score with 95% bootstrap intervals over datasets and pairwise win rates; the table is printed and
drawn (``leaderboard.png``) next to the first file unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tsfm.eval.leaderboard import leaderboard, win_rates


class ProtocolMismatch(ValueError):
    """Two result files were computed under different evaluation protocols."""


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        res = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable tsfm results.json ({e})") from None
    if "protocol" not in res or "datasets" not in res:
        raise ValueError(f"{p}: no `protocol` section; re-run `python -m tsfm.evaluate` with this tsfm version")
    return res


def check_protocols(results: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`ProtocolMismatch` naming the first difference between any file and the first one."""
    (first, a), *others = results.items()
    pa = a["protocol"]
    for name, r in others:
        pb = r["protocol"]
        for key in ("metrics", "quantile_levels", "reference"):
            if pa[key] != pb[key]:
                raise ProtocolMismatch(f"{name} was evaluated with {key}={pb[key]} but {first} with {pa[key]}; "
                                       "compare results of one protocol (same suite config)")
        da, db = pa["datasets"], pb["datasets"]
        if set(da) != set(db):
            raise ProtocolMismatch(f"{name} and {first} cover different datasets: only in {first}: "
                                   f"{sorted(set(da) - set(db))}, only in {name}: {sorted(set(db) - set(da))}")
        for d in da:
            for key, va in da[d].items():
                if db[d].get(key) != va:
                    raise ProtocolMismatch(f"dataset {d!r}: {name} has {key}={db[d].get(key)} but {first} has "
                                           f"{key}={va}; compare results of one protocol")


def relative_scores(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``[forecaster][metric][dataset]`` relative scores: each file's model (named by its ``model``,
    suffixed if two files share a name) and the first file's baselines."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, (path, r) in enumerate(results.items()):
        keep = [f for f in next(iter(r["datasets"].values()))["scores"] if f == r["model"] or i == 0]
        for f in keep:
            label = f if f not in out else f"{f} ({Path(path).parent.name})"
            for d, entry in r["datasets"].items():
                s = entry["scores"].get(f, {})
                for m in r["protocol"]["metrics"]:
                    v = s.get(f"rel_{m}")
                    if v is not None:
                        out.setdefault(label, {}).setdefault(m, {})[d] = float(v)
    return out


def compare(paths: list[str], out: str | Path | None = None, n_boot: int = 2000) -> tuple[dict, Path | None]:
    """Check, rank and draw; returns the leaderboard and the PNG path."""
    if len(paths) < 1:
        raise ValueError("give at least one results.json")
    results = {str(p): load(p) for p in paths}
    check_protocols(results)
    rel = relative_scores(results)
    metrics = [m for m in next(iter(results.values()))["protocol"]["metrics"] if m != "nll"]
    board = leaderboard(rel, metrics, n_boot=n_boot)
    _, pair = win_rates({f: rel[f].get("wql", {}) for f in rel})
    png = _plot(board, Path(out) if out else Path(paths[0]).parent / "leaderboard.png")
    return {"leaderboard": board, "pairwise_wql_win_rate": pair}, png


def _plot(board: dict[str, dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = sorted(board, key=lambda f: board[f].get("wql_skill", float("-inf")))
    skill = np.array([board[f]["wql_skill"] for f in names])
    lo = np.array([board[f]["wql_skill_ci"][0] for f in names])
    hi = np.array([board[f]["wql_skill_ci"][1] for f in names])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1))
    err = np.nan_to_num(np.vstack([skill - lo, hi - skill]), nan=0.0)
    ax.barh(names, skill, xerr=err, color="C0", alpha=0.8, capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("WQL skill score (1 - gmean relative WQL), 95% bootstrap CI")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def print_leaderboard(board: dict[str, dict[str, Any]], console: Any | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="leaderboard (relative to the reference; skill = 1 - gmean of clipped relative errors)")
    for c in ("forecaster", "WQL skill [95% CI]", "MASE skill [95% CI]", "WQL win rate", "MASE win rate", "datasets"):
        t.add_column(c, justify="left" if c == "forecaster" else "right")

    def ci(row: dict, m: str) -> str:
        lo, hi = row.get(f"{m}_skill_ci", [None, None])
        fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731
        return f"{fmt(row.get(f'{m}_skill'))} [{fmt(lo)}, {fmt(hi)}]"

    for f, row in sorted(board.items(), key=lambda kv: -kv[1].get("wql_skill", float("-inf"))):
        t.add_row(f, ci(row, "wql"), ci(row, "mase"), f"{row.get('wql_win_rate', float('nan')):.2f}",
                  f"{row.get('mase_win_rate', float('nan')):.2f}", str(row.get("wql_datasets", "")))
    console.print(t)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tsfm.evaluate compare", description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="results.json files written by tsfm.evaluate")
    ap.add_argument("--out", help="PNG path (default: leaderboard.png beside the first file)")
    ap.add_argument("--json", help="also write the leaderboard as JSON here")
    args = ap.parse_args(argv)
    try:
        board, png = compare(args.results, args.out)
    except (ProtocolMismatch, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print_leaderboard(board["leaderboard"])
    if args.json:
        Path(args.json).write_text(json.dumps(board, indent=2))
    print(f"leaderboard plot: {png}")
