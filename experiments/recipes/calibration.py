"""Calibration of an exported model on the dev suite: per dataset, how often the truth falls below the 0.1, 0.5
and 0.9 quantiles (0.1 / 0.5 / 0.9 when calibrated), the coverage of the central 80% interval, and the
interval's mean width over the median's mean absolute error.

A diagnostic for experiments/recipes/README.md (is the WQL gap in the spread or in the median?), not a tsfm
feature:

    python experiments/recipes/calibration.py <export dir>
"""

from __future__ import annotations

import argparse

import numpy as np
from omegaconf import OmegaConf

from tsfm.eval.protocol import make_windows
from tsfm.eval.runner import predict_windows
from tsfm.eval.suites import parse_suite, prepare_dataset, read_dataset
from tsfm.forecast import load_forecaster
from tsfm.utils.config import register_resolvers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an exported model directory (or checkpoint)")
    ap.add_argument("--suite", default="conf/eval/dev.yaml")
    ap.add_argument("--data-dir", default="data")
    args = ap.parse_args()
    register_resolvers()
    cfg = OmegaConf.create({"paths": {"data_dir": args.data_dir, "root_dir": "."}, "eval": OmegaConf.load(args.suite)})
    suite = OmegaConf.to_container(cfg.eval, resolve=True)
    forecaster = load_forecaster(args.model)
    levels = [float(q) for q in suite["quantile_levels"]]
    lo, mid, hi = levels.index(0.1), levels.index(0.5), levels.index(0.9)
    rows = []
    print(f"{'dataset':20s} {'< q0.1':>7s} {'< q0.5':>7s} {'< q0.9':>7s} {'in 80%':>7s} {'width/MAE':>10s}")
    for spec in parse_suite(suite):
        series = prepare_dataset(spec, read_dataset(spec, suite.get("data_dir")), suite.get("max_series"))
        w = make_windows(series, spec.prediction_length, spec.num_windows, spec.seasonality, spec.min_context,
                         stride=spec.stride, offset=spec.offset)
        if w.num_windows == 0:
            continue
        q = predict_windows(forecaster, w, levels, spec)
        y = w.labels
        ok = np.isfinite(y)
        below = [float((y < q[..., i])[ok].mean()) for i in (lo, mid, hi)]
        width = float((q[..., hi] - q[..., lo])[ok].mean())
        mae = float(np.abs(y - q[..., mid])[ok].mean())
        rows.append(below)
        print(f"{spec.name:20s} {below[0]:7.3f} {below[1]:7.3f} {below[2]:7.3f} {below[2] - below[0]:7.3f} "
              f"{width / mae:10.2f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':20s} {mean[0]:7.3f} {mean[1]:7.3f} {mean[2]:7.3f} {mean[2] - mean[0]:7.3f}")


if __name__ == "__main__":
    main()
