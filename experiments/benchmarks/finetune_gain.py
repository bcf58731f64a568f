"""Does fine-tuning help? The quickstart model (or any checkpoint), fine-tuned on each of the 14 packaged
dev-suite datasets (yearly to half-hourly; or the ones named by --datasets), scored on each dataset's
held-out last window against its own zero-shot score and the statistical baselines.

    python experiments/benchmarks/finetune_gain.py --ckpt logs/train/runs/<time>/export
    python experiments/benchmarks/finetune_gain.py --ckpt DIR --preset lora --lr 3e-4 --steps 300
    python experiments/benchmarks/finetune_gain.py --ckpt DIR --datasets m1_monthly m3_quarterly pedestrian

Per dataset it prints held-out WQL and MASE relative to Seasonal Naive for AutoETS, AutoTheta, the
zero-shot model and the fine-tuned one, the relative WQL change, the step the best checkpoint came
from, and the wall time of the whole `tsfm.finetune` run (data checks, zero-shot and baseline
scoring, training with held-out evaluations, export) on this machine.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

# every packaged dev-suite dataset, at its dev-suite horizon (conf/eval/dev.yaml); all of them by default
DATASETS = {"m1_monthly": 18, "m1_quarterly": 8, "m1_yearly": 6, "m3_monthly": 18, "m3_quarterly": 8, "m3_yearly": 6,
            "m3_other": 8, "vic_elec": 48, "pedestrian": 24, "epf_fr_be": 24, "us_gasoline": 13, "us_employment": 12,
            "aus_livestock": 12, "prison": 8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--datasets", nargs="+", default=["all"], choices=[*sorted(DATASETS), "all"])
    ap.add_argument("--preset", default="full")
    ap.add_argument("--lr", type=float, default=None,
                    help="default: the preset's rule (conf/finetune/<preset>.yaml; full: 0.25 x the checkpoint's "
                         "pretraining lr from its training_recipe.json, else default_lr)")
    ap.add_argument("--lr-scale", type=float, default=None, help="override the preset's lr_scale")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    args = ap.parse_args()
    from tsfm.data.packaged import packaged_frame
    from tsfm.finetune import finetune
    from tsfm.finetune.run import resolve_lr
    from tsfm.forecast import load_forecaster

    lr, lr_source = resolve_lr(args.preset, args.ckpt, args.lr, args.lr_scale)
    print(f"learning rate {lr:.3g} ({lr_source})", flush=True)
    rows = []
    out = Path(tempfile.mkdtemp(prefix="tsfm-finetune-gain-"))
    names = list(DATASETS) if "all" in args.datasets else args.datasets
    for name in names:
        res = finetune(load_forecaster(args.ckpt), args.ckpt, packaged_frame(name), DATASETS[name], out / name,
                       preset=args.preset, lr=lr, max_steps=args.steps, eval_every=args.eval_every, plot=False)
        t = res.table
        change = (t.loc["finetuned", "rel_wql"] / t.loc["zero_shot", "rel_wql"] - 1) * 100
        rows.append((name, t, change, res.best_step, res.seconds, res.exported))
        print(f"{name}: zero-shot {t.loc['zero_shot', 'rel_wql']:.3f} -> fine-tuned {t.loc['finetuned', 'rel_wql']:.3f} "
              f"rel WQL ({change:+.1f}%), best step {res.best_step}, {res.seconds:.0f} s", flush=True)
    print(f"\npreset {args.preset}, lr {lr:g}, at most {args.steps} steps (held-out WQL every {args.eval_every}); "
          "held-out scores relative to Seasonal Naive (WQL / MASE)\n")
    print("| dataset | AutoETS | AutoTheta | zero-shot | fine-tuned | WQL change | best step | wall time | exported |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t, change, best, sec, exported in rows:
        cell = {m: f"{t.loc[m, 'rel_wql']:.3f} / {t.loc[m, 'rel_mase']:.3f}" for m in t.index}
        print(f"| {name} | {cell['auto_ets']} | {cell['auto_theta']} | {cell['zero_shot']} | {cell['finetuned']} | "
              f"{change:+.1f}% | {best} | {sec:.0f} s | {exported} |")
    ratios = [1 + change / 100 for _, _, change, _, _, _ in rows]
    kept = [min(r, 1.0) for r in ratios]  # the guardrail exports zero-shot where fine-tuning did not help
    gmean = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))  # noqa: E731
    print(f"\nfine-tuning improved held-out WQL on {sum(r < 1 for r in ratios)} of {len(rows)} datasets; geometric mean "
          f"fine-tuned / zero-shot {gmean(ratios):.3f}, exported (after the guardrail) / zero-shot {gmean(kept):.3f}")
    print(f"runs: {out}")


if __name__ == "__main__":
    main()
