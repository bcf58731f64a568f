"""Sanity probes: does a forecaster continue the simplest patterns?

A model that loses to Seasonal Naive usually fails one of these first, so they are cheap
first checks of any training recipe (``python -m tsfm.eval.probes <checkpoint>``, and the
``slow`` test that trains the quickstart family at a tiny size):

* ``sine``: 216 points of ``10 + 3 sin(2πt/12)``, horizon 24 — median MAE relative to the amplitude;
* ``trend``: 216 points of ``5 + 0.5 t``, horizon 24 — median MAE relative to the level;
* ``rough_season``: 32 series of 300 points repeating a rough period-12 pattern (an independent value per
  month, as retail sales or tourist arrivals have), horizon 24 — median MAE relative to the pattern's mean
  absolute deviation. Seasonal Naive scores 0; smooth patterns alone teach a model to smooth it (a
  session-22 quickstart export: 0.58–0.60, against 0.03 on the sine);
* ``yearly_trend``: 20 yearly points ``100, 103, …``, horizon 6 — median MAE relative to the level;
* ``interval``: the 80% interval width on a noiseless sine vs the same sine with noise;
* ``random_walk``: 64 Gaussian random walks of 60 steps (step sd 1), horizon 1. The best median
  is the last value and the best 80% interval is 2.56 wide. ``random_walk_last_weight`` says
  where the median sits between the mean of the last 8 values (0) and the last value (1);
  ``random_walk_interval80_over_ideal`` is the interval width over 2.56. A model that smooths
  the end of its context (weight well below 1) loses to Naive on persistent real series
  (yearly, GDP-like), whatever its sine and trend probes say.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

LEVELS = (0.1, 0.5, 0.9)


def _median_mae(f: Any, context: np.ndarray, truth: np.ndarray, **kw: Any) -> tuple[float, np.ndarray]:
    q = np.asarray(f.predict_quantiles([context.astype(np.float32)], prediction_length=len(truth),
                                       quantile_levels=LEVELS, **kw))[0]  # [H, 3]
    return float(np.mean(np.abs(q[:, 1] - truth))), q


def run_probes(forecaster: Any, **kw: Any) -> dict[str, float]:
    """The probe figures (lower is better, except nothing): see the module docstring."""
    t = np.arange(240, dtype=np.float64)
    sine = 10 + 3 * np.sin(2 * np.pi * t / 12)
    mae, q_clean = _median_mae(forecaster, sine[:216], sine[216:], **kw)
    out = {"sine_mae_over_amplitude": mae / 3.0}
    trend = 5 + 0.5 * t
    mae, _ = _median_mae(forecaster, trend[:216], trend[216:], **kw)
    out["trend_mae_over_level"] = mae / float(np.mean(trend[216:]))
    pats = np.random.default_rng(2).normal(0.0, 1.0, (32, 12))
    pats -= pats.mean(axis=1, keepdims=True)
    rough = 10.0 + pats[:, np.arange(324) % 12]
    q = np.asarray(forecaster.predict_quantiles([r[:300].astype(np.float32) for r in rough], prediction_length=24,
                                                quantile_levels=LEVELS, **kw))  # [32, 24, 3]
    out["rough_season_mae_over_amplitude"] = float(np.mean(np.abs(q[..., 1] - rough[:, 300:])) / np.mean(np.abs(pats)))
    yearly = 100 + 3.0 * np.arange(26)
    mae, _ = _median_mae(forecaster, yearly[:20], yearly[20:], **kw)
    out["yearly_trend_mae_over_level"] = mae / float(np.mean(yearly[20:]))
    noisy = sine + np.random.default_rng(0).normal(0.0, 1.0, len(sine))
    _, q_noisy = _median_mae(forecaster, noisy[:216], sine[216:], **kw)
    out["interval80_clean"] = float(np.mean(q_clean[:, 2] - q_clean[:, 0]))
    out["interval80_noisy"] = float(np.mean(q_noisy[:, 2] - q_noisy[:, 0]))
    walks = 100.0 + np.cumsum(np.random.default_rng(1).standard_normal((64, 60)), axis=1)
    q = np.asarray(forecaster.predict_quantiles([w.astype(np.float32) for w in walks], prediction_length=1,
                                                quantile_levels=LEVELS, **kw))[:, 0]  # [64, 3]
    last, mean8 = walks[:, -1], walks[:, -8:].mean(axis=1)
    out["random_walk_last_weight"] = float(np.sum((q[:, 1] - mean8) * (last - mean8)) / np.sum((last - mean8) ** 2))
    out["random_walk_interval80_over_ideal"] = float(np.mean(q[:, 2] - q[:, 0]) / 2.5631)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tsfm.eval.probes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a tsfm .ckpt, an exported or an official checkpoint directory")
    args = ap.parse_args(argv)
    from tsfm.forecast import load_forecaster

    print(json.dumps(run_probes(load_forecaster(args.checkpoint)), indent=1))


if __name__ == "__main__":
    main()
