"""Benchmark: statistical baselines (and a tiny model, if a family has landed) on the dev suite.

Run (one benchmark at a time on the shared machine):
    flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/eval_dev_suite.py
Options: --cache-dir DIR (default: a fresh temporary dir, so baselines are timed uncached),
--max-series N (per dataset, for a quick look), --models DIR ... (checkpoint dirs to time).

Prints per-baseline wall time (first run, then cached), the aggregate relative WQL/MASE of
AutoETS and AutoTheta vs Seasonal Naive (the bar trained models must beat) and, for each model
directory that loads, its time and scores on the whole suite.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console

from tsfm.eval.baselines import StatsBaseline
from tsfm.eval.report import print_table
from tsfm.eval.resolve import resolve_forecaster
from tsfm.eval.runner import evaluate_suite

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def load_suite(max_series: int | None) -> dict:
    suite = yaml.safe_load((ROOT / "conf" / "eval" / "dev.yaml").read_text())
    suite["data_dir"] = str(ROOT / "data")
    suite["max_series"] = max_series
    return suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--max-series", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for the baselines")
    ap.add_argument("--models", nargs="*", default=[str(FIXTURES / "moirai_tiny" / "checkpoint"),
                                                     str(FIXTURES / "chronos2_tiny" / "checkpoint"),
                                                     str(FIXTURES / "chronos_t5" / "checkpoint")])
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    suite = load_suite(args.max_series)
    suite["baselines"] = ["seasonal_naive", "auto_ets", "auto_theta"]
    suite["baseline_jobs"] = args.jobs
    cache = args.cache_dir or tempfile.mkdtemp(prefix="tsfm-baselines-")
    print(f"dev suite: {len(suite['datasets'])} datasets, cache {cache}; shared 2-core machine, "
          f"torch 1 thread, baselines {args.jobs} process(es)")

    t0 = time.perf_counter()
    res = evaluate_suite(StatsBaseline("naive", n_jobs=args.jobs), suite, model_name="naive", cache_dir=cache, plot_series=0)
    first = time.perf_counter() - t0
    per = {n: sum(d.scores[n].seconds for d in res.datasets.values()) for n in res.aggregates}
    print(f"\nbaselines, first run: {first:.1f} s total")
    for n, s in per.items():
        print(f"  {n:16s} {s:8.1f} s")
    slow = sorted(((d.scores[n].seconds, n, name) for name, d in res.datasets.items() for n in d.scores), reverse=True)[:5]
    print("  slowest:", ", ".join(f"{n}@{ds} {s:.1f}s" for s, n, ds in slow))
    t0 = time.perf_counter()
    evaluate_suite(StatsBaseline("naive"), suite, model_name="naive", cache_dir=cache, plot_series=0)
    print(f"baselines, cached re-run: {time.perf_counter() - t0:.1f} s total")
    print_table(res, Console(width=250))

    print("\naggregate vs Seasonal Naive (geometric mean of per-dataset ratios over "
          f"{res.aggregates['auto_ets']['num_datasets']} datasets):")
    for n in ("auto_ets", "auto_theta", "naive"):
        a = res.aggregates[n]
        print(f"  {n:12s} rel WQL {a['rel_wql']:.4f}   rel MASE {a['rel_mase']:.4f}")

    for m in args.models:
        try:
            f = resolve_forecaster(m)
        except Exception as e:  # noqa: BLE001 - a family may not have landed yet
            print(f"\nmodel {m}: not evaluated ({type(e).__name__}: {e})")
            continue
        t0 = time.perf_counter()
        # Moirai chooses its patch size from the frequency; other families take no freq option
        # (see the report: a Forecaster.accepts_freq attribute would make this automatic)
        r = evaluate_suite(f, suite, model_name=Path(m).parent.name, cache_dir=cache, plot_series=0,
                           pass_freq=getattr(f, "family", "") == "moirai")
        a = r.aggregates[r.model]
        print(f"\nmodel {r.model}: whole dev suite in {time.perf_counter() - t0:.1f} s "
              f"(model only {sum(d.scores[r.model].seconds for d in r.datasets.values()):.1f} s); "
              f"rel WQL {a['rel_wql']:.4f} rel MASE {a['rel_mase']:.4f}; failed: {a['failed_datasets']}")


if __name__ == "__main__":
    main()
