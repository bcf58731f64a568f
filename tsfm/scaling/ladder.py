"""One recipe across sizes: the size ladder of the ``baseline`` family (the Toto 2.0 practice).

Every size ("rung") ``k = 0, 1, ...`` of the ladder follows written rules, so that one set of
hyperparameters tuned on a small model is the recipe of every larger one:

* **width** ``d_model = 32 * 2**k`` (32, 64, ..., 4096 at k = 7);
* **depth** ``num_layers = 2 + 2k`` (2 ... 16);
* **heads** of ``head_dim = clamp(d_model / 8, 32, 128)``: 32 up to width 256, then 64, then 128;
* **parametrisation** ``mup`` relative to the rung-1 model (``base_width = 64``,
  ``base_head_dim = 32``): the hidden matrices' init and Adam learning rate scale as
  ``1 / width_mult``, attention logits as ``1 / head_dim``, the head reads ``h / width_mult``
  (:class:`~tsfm.models.baseline.config.BaselineConfig`), with muP's output multiplier (2) tuned on the
  rung-1 width. So the **learning rate** is one number, tuned at small width (``experiments/scaling/README.md``,
  "A larger base width": the measured transfer over 64 ... 1,024), not a per-size search. (Until 2026-12-07 the
  base was rung 0, width 32, with output multiplier 4: further from sp tuned per width at the wide end.)
* **depth**: muP says nothing about depth, and the ladder's own shapes showed it (``experiments/scaling/README.md``,
  "The ladder's own shapes"): with the one learning rate the optimum fell 1.43 grid steps from rung 0 to rung 4
  (depth 2 to 10) because the deeper models diverge at rates the shallow ones take. The measured rule: the learning
  rate is ``ladder_lr * lr_scale`` with ``lr_scale = min(1, 4 / num_layers)`` (``1 / depth`` beyond rung 1's
  depth 4, where the refined optima of depths 4 ... 10 lie within 0.15 grid steps of it; rung 0 keeps the base rate).
* **batch** ``min(4096, 32 * 2**k)`` windows per step (doubling with the width: a larger model reaches a
  lower loss, where the gradient noise is larger relative to the signal and larger batches pay off);
* **data** ``D = tokens_per_param * N`` tokens (20 by default: Hoffmann et al.'s compute-optimal ratio;
  ``N`` the non-embedding parameters), i.e. ``max_steps = ceil(D / (batch * tokens per window))``;
* **warmup** 5 % of the steps, at least 10.

Why muP rather than a fitted lr-vs-width rule: a fitted rule needs an lr search at several sizes
and extrapolates an empirical curve; muP makes the update size of every layer width-independent
by construction (``tests/models/baseline/test_model.py`` checks it: the residual stream's update
after a few Adam steps grows ~50x from width 64 to 512 under ``sp`` and stays flat under ``mup``),
and the CPU demonstration measures whether the optimum indeed stays put. Depth is not covered by
muP's guarantee: the depth rule above is measured, not derived.

``${ladder:<field>,<rung>}`` in a config (``conf/experiment/scaling_ladder.yaml``) reads these.
"""

from __future__ import annotations

import math
from typing import Any

WIDTH0 = 32  # rung 0's width
BASE_WIDTH = 64  # muP's base: rung 1, where the multipliers and the learning rate were tuned
BASE_HEAD_DIM = 32
BASE_LAYERS = 4  # rung 1's depth: the learning rate falls as 1 / depth beyond it (the measured depth rule)
MAX_RUNG = 7
FIELDS = ("d_model", "num_layers", "num_heads", "head_dim", "batch_size", "params", "tokens", "max_steps",
          "warmup_steps", "base_width", "base_head_dim", "lr_scale")  # fmt: skip


def non_embedding_params(d_model: int, num_layers: int) -> int:
    """Blocks + final norm of a SwiGLU baseline (``BaselineConfig.non_embedding_params``)."""
    d_ff = 8 * (-(-8 * d_model // 3) // 8)
    return num_layers * (4 * d_model * d_model + 3 * d_model * d_ff + 2 * d_model) + d_model


def rung(k: int, tokens_per_window: int = 17, tokens_per_param: float = 20.0) -> dict[str, Any]:
    """The ladder's settings at rung ``k`` (see the module docstring for the rules)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_RUNG:
        raise ValueError(f"ladder rung must be an integer in [0, {MAX_RUNG}], got {k!r}")
    if tokens_per_window <= 0 or tokens_per_param <= 0:
        raise ValueError(
            f"tokens_per_window ({tokens_per_window}) and tokens_per_param ({tokens_per_param}) must be positive"
        )
    d = WIDTH0 * 2**k
    layers = 2 + 2 * k
    head_dim = min(128, max(32, d // 8))
    batch = min(4096, 32 * 2**k)
    n = non_embedding_params(d, layers)
    tokens = tokens_per_param * n
    steps = math.ceil(tokens / (batch * tokens_per_window))
    return {
        "d_model": d, "num_layers": layers, "num_heads": d // head_dim, "head_dim": head_dim,
        "batch_size": batch, "params": n, "tokens": tokens, "max_steps": steps,
        "warmup_steps": max(10, round(0.05 * steps)), "base_width": BASE_WIDTH, "base_head_dim": BASE_HEAD_DIM,
        "lr_scale": depth_lr_scale(layers),
    }  # fmt: skip


def depth_lr_scale(num_layers: int) -> float:
    """The ladder's learning-rate factor for depth: ``min(1, BASE_LAYERS / num_layers)`` (measured on the ladder's
    shapes, rungs 0-4; muP covers width only)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return min(1.0, BASE_LAYERS / num_layers)


def resolve(field: str, k: Any, tokens_per_window: Any = 17, tokens_per_param: Any = 20.0) -> Any:
    """The ``${ladder:<field>,<rung>[,<tokens per window>[,<tokens per param>]]}`` resolver."""
    if field not in FIELDS:
        raise ValueError(f"ladder: unknown field {field!r}; use one of {FIELDS}")
    return rung(int(k), int(tokens_per_window), float(tokens_per_param))[field]


def table(max_rung: int = MAX_RUNG, tokens_per_window: int = 17) -> str:
    """The ladder as a markdown table (``python -m tsfm.scaling ladder``)."""
    rows = ["| rung | d_model | layers | heads x dim | N (non-emb.) | batch | tokens (20 N) | steps | warmup | lr x |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in range(max_rung + 1):
        r = rung(k, tokens_per_window)
        rows.append(
            f"| {k} | {r['d_model']} | {r['num_layers']} | {r['num_heads']} x {r['head_dim']} | {r['params']:,} | "
            f"{r['batch_size']} | {r['tokens']:.3g} | {r['max_steps']:,} | {r['warmup_steps']:,} | {r['lr_scale']:.3g} |"
        )
    return "\n".join(rows)
