"""Dev-suite score of an ensemble of exported models (the mean of their quantile forecasts), optionally
flip-equivariant (TimesFM 2.5's ``force_flip_invariance``: ``(q_tau(x) - q_{1-tau}(-x)) / 2``).

A diagnostic for experiments/recipes/README.md (how much of the gap to the baselines is run-to-run
variance): it is not a tsfm feature.

    python experiments/recipes/ensemble_eval.py <export dir> [<export dir> ...] [--flip]
"""

from __future__ import annotations

import argparse
import dataclasses

from omegaconf import OmegaConf

from tsfm.eval.runner import evaluate_suite
from tsfm.forecast import load_forecaster
from tsfm.utils.config import register_resolvers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="exported model directories (or checkpoints)")
    ap.add_argument("--flip", action="store_true", help="average each model with its sign-flipped forecast")
    ap.add_argument("--suite", default="conf/eval/dev.yaml")
    ap.add_argument("--data-dir", default="data")
    args = ap.parse_args()
    register_resolvers()
    forecasters = [load_forecaster(m) for m in args.models]
    predictors = [f._quantiles for f in forecasters]

    def one(predict, inputs, h, levels, **kw):
        a = predict(inputs, h, levels, **kw)
        if not args.flip:
            return a
        b = predict(dataclasses.replace(inputs, targets=[-t for t in inputs.targets]), h, [1 - q for q in levels], **kw)
        return [0.5 * (x - y) for x, y in zip(a, b)]

    def ensemble(inputs, h, levels, **kw):
        outs = [one(p, inputs, h, levels, **kw) for p in predictors]
        return [sum(o[i] for o in outs) / len(outs) for i in range(len(outs[0]))]

    forecasters[0]._quantiles = ensemble
    suite = OmegaConf.to_container(OmegaConf.load(args.suite), resolve=False)
    suite["data_dir"] = args.data_dir
    res = evaluate_suite(forecasters[0], suite, plot_series=0)
    res.summarize()
    agg = res.aggregates["model"]
    print(f"{len(args.models)} model(s){' flip-equivariant' if args.flip else ''}: "
          f"dev rel WQL {agg['rel_wql']:.3f}, rel MASE {agg['rel_mase']:.3f}")


if __name__ == "__main__":
    main()
