"""Small OmegaConf resolvers used by conf/ and helpers shared by the Hydra entry points."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

_RESOLVERS = {
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "div": lambda a, b: int(a) // int(b),
    "mul": lambda *xs: __import__("math").prod(xs),
    "ceil_to": lambda a, m: -(-int(a) // int(m)) * int(m),  # round a up to a multiple of m
    # ${when:<node>,<a>[,<b>]}: a when <node> is set (not null), else b (default null); e.g. the top-K
    # checkpoint monitor only while the benchmark that logs it is configured
    "when": lambda cond, a, b=None: a if cond is not None else b,
    # ${ladder:<field>,<rung>}: the baseline family's size ladder (tsfm/scaling/ladder.py)
    "ladder": lambda *a: __import__("tsfm.scaling.ladder", fromlist=["resolve"]).resolve(*a),
    # ${study_size:<field>,<size>}: the scaling study's six shapes, for any family (tsfm/scaling/sizes.py)
    "study_size": lambda *a: __import__("tsfm.scaling.sizes", fromlist=["resolve"]).resolve(*a),
}


def register_resolvers() -> None:
    """Register tsfm's resolvers once (idempotent): ``${min:a,b}``, ``${div:a,b}``, ..."""
    for name, fn in _RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def to_plain(cfg: DictConfig | Any) -> Any:
    """Resolve a config node to plain Python containers (what library code accepts)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
