"""The OmegaConf resolvers the configs use, and to_plain."""

from __future__ import annotations

from omegaconf import OmegaConf

from tsfm.utils.config import register_resolvers, to_plain


def test_resolvers_compute_what_the_configs_need():
    register_resolvers()
    register_resolvers()  # idempotent
    cfg = OmegaConf.create({"steps": 4000, "warm": "${min:100,${div:${steps},10}}", "early": "${div:${steps},5}",
                            "big": "${max:3,7,5}", "prod": "${mul:2,3,4}", "h": "${ceil_to:18,16}"})
    assert to_plain(cfg) == {"steps": 4000, "warm": 100, "early": 800, "big": 7, "prod": 24, "h": 32}
    cfg.steps = 500
    assert to_plain(cfg)["warm"] == 50


def test_to_plain_passes_plain_values_through():
    assert to_plain({"a": 1}) == {"a": 1} and to_plain(3) == 3
    assert to_plain(OmegaConf.create([1, {"b": "${oc.env:NO_SUCH_VAR_TSFM,fallback}"}])) == [1, {"b": "fallback"}]
