"""Speed of every synthetic generator (series/min, one process) and of building the default corpus.

    python experiments/benchmarks/synthetic_speed.py [--series 2000] [--build]

Prints, per generator, series/min and observations/s of ``generate_*`` alone (no writing), and
with ``--build`` the wall time of building ``conf/data/structural.yaml`` from scratch into a
temporary directory (generation + validation + Arrow writing + manifests), as the quickstart does
on its first run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from tsfm.data.sources import materialize, resolve
from tsfm.data.synthetic.kernelsynth import generate_kernelsynth
from tsfm.data.synthetic.structural import GENERATORS, generate_structural

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2000, help="series per structural generator")
    ap.add_argument("--build", action="store_true", help="also time a from-scratch build of the default corpus")
    args = ap.parse_args()
    print(f"{'generator':16s} {'series/min':>12s} {'obs/s':>12s}")
    for name in GENERATORS:
        t0 = time.perf_counter()
        obs = sum(s.length for s in generate_structural(name, args.series, seed=0))
        dt = time.perf_counter() - t0
        print(f"{name:16s} {args.series / dt * 60:12,.0f} {obs / dt:12,.0f}")
    n = max(20, args.series // 20)
    t0 = time.perf_counter()
    obs = sum(s.length for s in generate_kernelsynth(n, seed=0, length=1024))
    dt = time.perf_counter() - t0
    print(f"{'kernelsynth':16s} {n / dt * 60:12,.0f} {obs / dt:12,.0f}")
    if args.build:
        cfg = yaml.safe_load((ROOT / "conf" / "data" / "structural.yaml").read_text())
        entries = [{k: v for k, v in e.items() if k != "early_weight"} for e in cfg["corpus"]]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for e in resolve(entries, tmp):
                materialize(e)
            print(f"default corpus (conf/data/structural.yaml) built from scratch in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
