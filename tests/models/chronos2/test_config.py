"""The Chronos-2 Hydra configs compose and instantiate (tiny) with coupled values interpolated."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import tsfm.utils.config  # noqa: F401  (registers ${div:...} and friends)
from tests.compose import compose_config


@pytest.mark.parametrize("size,layers,d_model", [("chronos2_tiny", 2, 64), ("chronos2_small", 6, 512), ("chronos2_base", 12, 768)])
def test_model_configs_compose(size, layers, d_model):
    cfg = compose_config([f"model={size}"])
    m = OmegaConf.to_container(cfg.model, resolve=True)
    assert m["module"]["config"]["num_layers"] == layers and m["module"]["config"]["d_model"] == d_model
    assert m["task"]["context_length"] == m["module"]["config"]["context_length"] == m["context_length"]
    assert m["module"]["config"]["max_output_patches"] == 4


def test_tiny_instantiates_module_and_task():
    cfg = compose_config(["model=chronos2_tiny", "optim=chronos2_finetune", "trainer.max_steps=1000"])
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    assert optim["lr"] == 1e-6 and optim["scheduler"] == "linear" and optim["max_steps"] == 1000
    task = instantiate(cfg.model.task, _convert_="all")
    module = instantiate(cfg.model.module, optim=optim, _convert_="all")
    assert module.config.context_length == task.context_length == 256
    assert module.hparams["family"] == "chronos2"


def test_context_extension_experiments():
    s1 = compose_config(["experiment=chronos2_context_extension_stage1"])
    s2 = compose_config(["experiment=chronos2_context_extension_stage2", "stage1_ckpt=/tmp/s1.ckpt"])
    assert s1.model.module.config.d_model == 512  # the experiment picks chronos2_small
    assert s1.model.context_length == 2048 and s1.model.task.context_length == 2048
    assert s2.model.module.config.context_length == 8192 and s2.model.task.context_length == 8192
    assert s2.model.module.pretrained == "/tmp/s1.ckpt"


def test_pretraining_selects_the_wsd_recipe_and_the_cli_wins():
    optim = OmegaConf.to_container(compose_config(["model=chronos2_mini"]).optim, resolve=False)
    assert optim["scheduler"] == "wsd" and optim["lr"] == 2e-3
    assert compose_config(["model=chronos2_mini", "optim=chronos2_finetune"]).optim.lr == 1e-6


def test_only_the_quickstart_forecasts_with_a_context_ensemble():
    quick = compose_config([])  # the default model: chronos2_quickstart
    assert list(quick.model.module.config.context_ensemble) == [64]
    module = instantiate(quick.model.module, optim=OmegaConf.to_container(quick.optim, resolve=True), _convert_="all")
    assert module.config.context_ensemble == [64]  # a setting of the model it trains and exports
    assert instantiate(quick.model.task, _convert_="all").long_context_prob == 0.0
    for size in ("chronos2_mini", "chronos2_small", "chronos2_base"):
        assert list(compose_config([f"model={size}"]).model.module.config.context_ensemble) == []
