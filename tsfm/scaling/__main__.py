"""Command line of the scaling-law tools: ``python -m tsfm.scaling fit <multirun dir>``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tsfm.scaling.fit import FORMS
from tsfm.scaling.joint import GRIDS
from tsfm.scaling.joint_report import POINTS, analyze_joint, format_joint_markdown
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

The joint fit L(N, D) = E + A N^-alpha + B D^-beta (Huber on log residuals, L-BFGS from a start
grid, run bootstrap) is made per group for val/loss and, where the jobs ran final_eval=<suite>,
for final_eval/rel_wql and rel_mase; with the compute-optimal N*, D* for C = k N D.
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
    f.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    j = f.add_argument_group("joint fit L(N, D)")
    j.add_argument("--no-joint", action="store_true", help="skip the joint fits")
    j.add_argument("--joint-grid", choices=sorted(GRIDS), default="full",
                   help="L-BFGS start grid: full (Hoffmann et al., 4500 starts) or small (243)")  # fmt: skip
    j.add_argument("--joint-top-k", type=int, default=100,
                   help="optimise from the best K grid starts by objective (0: every start)")  # fmt: skip
    j.add_argument("--joint-points", choices=POINTS, default="curve",
                   help="val/loss points: every validation of every run (curve) or the final one only")  # fmt: skip
    j.add_argument("--joint-min-tokens-per-param", type=float, default=0.0, metavar="RATIO",
                   help="fit only the points with D/N >= RATIO (e.g. 10; 0: every point)")  # fmt: skip
    j.add_argument("--flops-per-param-token", type=float, default=6.0,
                   help="k in C = k N D for the compute-optimal allocation")  # fmt: skip
    t = sub.add_parser(
        "lr-transfer", help="best learning rate per width of a parametrization x width x lr multirun"
    )
    t.add_argument(
        "multirun_dirs",
        type=Path,
        nargs="+",
        metavar="multirun_dir",
        help="multiruns of experiment=scaling_lr_transfer (several are pooled, e.g. a grid extension)",
    )
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where lr_transfer.json/.md/.png go (default: the multirun dir)",
    )
    t.add_argument("--no-plot", action="store_true", help="skip the PNG")
    g = sub.add_parser(
        "tune",
        help="final loss per muP multiplier setting x lr at the base width (experiment=scaling_mup_tune)",
    )
    g.add_argument("multirun_dirs", type=Path, nargs="+", metavar="multirun_dir",
                   help="multiruns of experiment=scaling_mup_tune at one width (several are pooled)")  # fmt: skip
    g.add_argument(
        "--out", type=Path, default=None, help="where tune.json/.md/.png go (default: the first dir)"
    )
    g.add_argument("--no-plot", action="store_true", help="skip the PNG")
    lad = sub.add_parser("ladder", help="print the baseline family's size ladder (tsfm/scaling/ladder.py)")
    lad.add_argument("--max-rung", type=int, default=7)
    return p


def _read_pooled(dirs: list[Path]) -> tuple[list, list[str]]:
    """The baseline runs of several multiruns, in the order given, and the jobs that could not be read."""
    from tsfm.scaling.transfer import read_transfer

    runs, failed = [], []
    for d in dirs:
        r, f = read_transfer(d)
        runs, failed = runs + r, failed + f
    return runs, failed


def _grid_report(args: argparse.Namespace, analyze, fmt, write) -> int:
    """``lr-transfer`` / ``tune``: analyse the pooled multiruns, print the table, write the report (2 on bad input)."""
    try:
        result = analyze(*_read_pooled(args.multirun_dirs))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(fmt(result))
    for path in write(result, args.out or args.multirun_dirs[0], make_plot=not args.no_plot):
        print(f"wrote {path}")
    return 0


def _lr_transfer(args: argparse.Namespace) -> int:
    from tsfm.scaling.transfer import analyze_transfer, format_transfer_markdown, write_transfer_report

    return _grid_report(args, analyze_transfer, format_transfer_markdown, write_transfer_report)


def _tune(args: argparse.Namespace) -> int:
    from tsfm.scaling.tune import analyze_tuning, format_tuning_markdown, write_tuning_report

    return _grid_report(args, analyze_tuning, format_tuning_markdown, write_tuning_report)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "lr-transfer":
        return _lr_transfer(args)
    if args.command == "tune":
        return _tune(args)
    if args.command == "ladder":
        from tsfm.scaling.ladder import table

        try:
            print(table(args.max_rung))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.no_joint and args.joint_min_tokens_per_param:
        print("error: --joint-min-tokens-per-param filters the joint fit; drop --no-joint", file=sys.stderr)
        return 2
    if args.bootstrap < 0 or args.joint_top_k < 0 or args.flops_per_param_token <= 0:
        print(
            "error: --bootstrap and --joint-top-k must be >= 0, --flops-per-param-token > 0", file=sys.stderr
        )
        return 2
    try:
        runs = [r for d in args.multirun_dirs for r in read_sweep(d)]
        result = analyze(runs, form=args.form, n_boot=args.bootstrap, seed=args.seed)
        if not args.no_joint:
            result["joint"] = analyze_joint(
                runs, n_boot=args.bootstrap, seed=args.seed, grid=args.joint_grid,
                top_k=args.joint_top_k or None, points=args.joint_points,
                flops_per_param_token=args.flops_per_param_token,
                min_tokens_per_param=args.joint_min_tokens_per_param,
            )  # fmt: skip
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
    if "joint" in result:
        print()
        print(format_joint_markdown(result["joint"]))
    for path in write_report(result, args.out or args.multirun_dirs[0], make_plot=not args.no_plot):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
