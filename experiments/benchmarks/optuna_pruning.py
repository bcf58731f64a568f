"""Learning-rate search for fine-tuning: Optuna with median pruning vs without, and vs an exhaustive
8-point grid, all through `python -m tsfm.finetune` (one process per command, trials one after
another on this machine).

    python experiments/benchmarks/optuna_pruning.py --ckpt logs/train/runs/<time>/export
    python experiments/benchmarks/optuna_pruning.py --ckpt DIR --dataset m3_quarterly --steps 100

Prints the wall time of 8 pruned trials (TPE with median pruning); of the same 8 trials without pruning
(the learning rates the pruned search tried, in its order, as one Hydra multirun: issue 13's measure);
of an unpruned TPE search (same seed: TPE proposes other rates once no trial is pruned); and of the
grid; the best learning rate of each search; and whether it lies within one grid step (a factor of
10^(4/7) ~ 3.7 on 1e-6 .. 1e-2) of the grid's best. Scores are the fine-tuned model's held-out WQL
relative to Seasonal Naive (lower is better).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
H = {"m1_monthly": 18, "m3_monthly": 18, "m3_quarterly": 8, "m1_quarterly": 8, "aus_livestock": 12, "pedestrian": 24,
     "tourism": 8, "us_gasoline": 13}  # fmt: skip
LOW, HIGH = 1e-6, 1e-2  # = search_space["finetune.lr"] in conf/finetune.yaml


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env={**os.environ}).returncode
    if rc != 0:
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--dataset", default="m1_monthly", choices=sorted(H))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=30)
    ap.add_argument("--preset", default="full")
    ap.add_argument("--grid-best", type=float, default=None,
                    help="skip the grid and compare with this best learning rate from an earlier grid run")
    ap.add_argument("--skip-tpe-baseline", action="store_true",
                    help="skip the unpruned TPE search (the ratio to the same trials unpruned is issue 13's measure)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for the searches, e.g. search_pruner.n_warmup_steps=30")
    args = ap.parse_args()
    from tsfm.data.packaged import packaged_frame

    tmp = Path(tempfile.mkdtemp(prefix="tsfm-optuna-bench-"))
    csv = tmp / f"{args.dataset}.csv"
    packaged_frame(args.dataset).to_csv(csv, index=False)
    base = [sys.executable, "-m", "tsfm.finetune", f"ckpt={Path(args.ckpt).resolve()}", f"dataset={csv}",
            f"prediction_length={H[args.dataset]}", f"max_steps={args.steps}", f"eval_every={args.eval_every}",
            f"finetune={args.preset}", f"cache_dir={tmp / 'cache'}", f"paths.log_dir={tmp / 'logs'}"]  # fmt: skip
    # the learning rate only (conf/finetune.yaml's range, 1e-6 .. 1e-2): drop the preset dimension
    search = [*base, "hparams_search=optuna", f"n_trials={args.trials}", "~search_space.finetune",
              *args.overrides]
    # warm the baseline cache first so no timing below includes AutoETS / AutoTheta
    run([*base, "max_steps=1", "eval_every=1", f"hydra.run.dir={tmp / 'warm'}"], tmp / "warm.log")
    results = {}
    searches = (("pruned", []),) if args.skip_tpe_baseline else (("pruned", []), ("unpruned", ["search_pruner.type=none"]))
    for name, extra in searches:
        sec = run([*search, *extra, f"hydra.sweeper.study_name={name}",
                   f"hydra.sweep.dir={tmp / name}"], tmp / f"{name}.log")
        res = yaml.safe_load((tmp / name / "optimization_results.yaml").read_text())
        states = [t["state"] for t in res["trials"]]
        results[name] = (sec, res["best_params"]["finetune.lr"], res["best_value"], states.count("PRUNED"))
        print(f"{name:9s} {args.trials} trials: {sec:7.1f} s, {states.count('PRUNED')} pruned; best lr "
              f"{res['best_params']['finetune.lr']:.2e} (rel WQL {res['best_value']:.4f})", flush=True)
        if name == "pruned":  # the same trials, unpruned: its rates in its order, one multirun
            tried = [float(t["params"]["finetune.lr"]) for t in res["trials"]]
            same = run([*base[:3], "-m", *base[3:], "finetune.lr=" + ",".join(repr(v) for v in tried),
                        f"hydra.sweep.dir={tmp / 'same'}"], tmp / "same.log")
            results["same"] = (same,)
            print(f"{'same':9s} {len(tried)} trials unpruned (the pruned search's rates): {same:7.1f} s", flush=True)
    grid = np.geomspace(LOW, HIGH, args.trials)
    if args.grid_best is not None:
        best_lr = float(args.grid_best)
        print(f"grid      skipped; its best lr from an earlier run: {best_lr:.2e}")
    else:
        sec = run([*base[:3], "-m", *base[3:], "finetune.lr=" + ",".join(f"{g:.3g}" for g in grid),
                   f"hydra.sweep.dir={tmp / 'grid'}"], tmp / "grid.log")
        scores = []
        for i in range(len(grid)):
            rep = json.loads((tmp / "grid" / str(i) / "finetune_report.json").read_text())
            scores.append(rep["table"]["finetuned"]["rel_wql"])
        best = int(np.nanargmin(scores))
        print(f"grid      {len(grid)} points: {sec:7.1f} s; best lr {grid[best]:.2e} (rel WQL {scores[best]:.4f})")
        print("  grid: " + ", ".join(f"{g:.1e}: {s:.4f}" for g, s in zip(grid, scores)))
        best_lr = float(grid[best])
    step = math.log(grid[1] / grid[0])
    print(f"\npruned / the same trials unpruned, wall time: {results['pruned'][0] / results['same'][0]:.2f} "
          "(issue 13: < 0.60)")
    if "unpruned" in results:
        print(f"pruned / an unpruned TPE search, wall time: {results['pruned'][0] / results['unpruned'][0]:.2f}")
    for name in [n for n, _ in searches]:
        steps_off = abs(math.log(results[name][1] / best_lr)) / step
        print(f"{name}: best lr {results[name][1]:.2e} is {steps_off:.2f} grid steps from the grid's best {best_lr:.2e}"
              f" ({'within' if steps_off <= 1 else 'NOT within'} one step)")
    print(f"logs: {tmp}")


if __name__ == "__main__":
    main()
