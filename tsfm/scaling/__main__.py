"""Command line of the scaling-law tools: ``python -m tsfm.scaling fit <multirun dir>``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tsfm.scaling.fit import FORMS
from tsfm.scaling.report import analyze, format_table, write_report
from tsfm.scaling.results import read_sweep

EPILOG = """\
example:
  python -m tsfm.train experiment=scaling_enc_vs_dec          # runs the sweep (a Hydra multirun)
  python -m tsfm.scaling fit logs/train/multiruns/<time>       # fits and reports

The sweep directory holds one sub-directory per job with .hydra/config.yaml and
csv/version_*/metrics.csv (CSVLogger). N is the non-embedding parameter count, D the patches
seen (steps x batch x patches per window), C = 6 N D. Runs are grouped by architecture (and
training objective when not the default, e.g. encoder-random); several jobs of one size in a
group (e.g. a learning-rate grid) count once, with their lowest final validation loss.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tsfm.scaling",
        description="Fit neural scaling laws L(x) = A x^-alpha + E to a sweep of baseline models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser(
        "fit",
        help="fit L(N), L(D), L(C) per architecture of a multirun directory",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument(
        "multirun_dirs", type=Path, nargs="+", metavar="multirun_dir",
        help="Hydra multirun directories, e.g. logs/train/multiruns/<time> (several are pooled)",
    )  # fmt: skip
    f.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where scaling_fit.json/.png go (default: the first multirun dir)",
    )
    f.add_argument("--form", choices=FORMS, default="saturating",
                   help="saturating: A x^-alpha + E (needs >= 3 sizes); pure: A x^-alpha (>= 2)")  # fmt: skip
    f.add_argument("--bootstrap", type=int, default=1000, help="bootstrap refits for the CIs (0: none)")
    f.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    f.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.bootstrap < 0:
        print("error: --bootstrap must be >= 0", file=sys.stderr)
        return 2
    try:
        runs = [r for d in args.multirun_dirs for r in read_sweep(d)]
        result = analyze(runs, form=args.form, n_boot=args.bootstrap, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["multirun_dirs"] = [str(d) for d in args.multirun_dirs]
    for r in result["runs"]:
        print(
            f"{r['architecture']:16} N={r['N']:>10,d}  D={r['D']:>12,.0f}  val/loss={r['final_val_loss']:.4f}  ({r['job']})"
        )
    print()
    print(format_table(result))
    for path in write_report(result, args.out or args.multirun_dirs[0], make_plot=not args.no_plot):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
