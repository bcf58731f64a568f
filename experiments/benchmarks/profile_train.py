"""Where a training step's time goes: cProfile over ``--steps`` steps of ``python -m tsfm.train``.

Composes conf/train.yaml with the given overrides (the default: the quickstart with its default callbacks, the lite
benchmark, export and final evaluation left out), fits, and prints the functions with the most own time and the
most cumulative time. Read the cumulative list for the split forward / backward / optimizer / data
(``compute_loss``, ``run_backward``, ``adam.py:step`` minus the closure, ``fetchers.py:__next__``).

    OMP_NUM_THREADS=2 python experiments/benchmarks/profile_train.py --steps 600
    OMP_NUM_THREADS=2 python experiments/benchmarks/profile_train.py model.compile=false optim.fused=false
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optim.fused=false")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--top", type=int, default=40, help="rows of each list")
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="the corpus cache (built on first use)")
    a = p.parse_args()

    from train_speed import build_fit  # this folder's script: the same composition as the speed benchmark

    module, datamodule, trainer, output_dir = build_fit(a.overrides, a.steps, a.data_dir, ["~callbacks.benchmark"])
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    trainer.fit(module, datamodule=datamodule)
    prof.disable()
    wall = time.perf_counter() - start
    shutil.rmtree(output_dir, ignore_errors=True)
    print(f"{a.steps} steps in {wall:.1f} s under the profiler ({1000 * wall / a.steps:.1f} ms/step)")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(a.top)
    stats.sort_stats("cumtime").print_stats(a.top)


if __name__ == "__main__":
    main()
