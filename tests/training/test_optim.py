import math

import pytest
import torch
from torch import nn

from tsfm.training.optim import OptimConfig, build_optimizer, lr_lambda, param_groups


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.RMSNorm(8)
        self.mask_token = nn.Parameter(torch.zeros(8))
        self.out = nn.Linear(8, 4, bias=False)


def test_param_groups_exclude_norms_biases_embeddings():
    m = Tiny()
    decay, no_decay = param_groups(m, 0.1, ["bias", "norm", "embed", "mask_token"])
    decay_ids = {id(p) for p in decay["params"]}
    assert decay_ids == {id(m.proj.weight), id(m.out.weight)}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in no_decay["params"]} == {
        id(m.embed.weight), id(m.proj.bias), id(m.norm.weight), id(m.mask_token)
    }


def test_frozen_parameters_are_left_out():
    m = Tiny()
    m.proj.weight.requires_grad_(False)
    groups = param_groups(m, 0.1, [])
    assert all(id(p) != id(m.proj.weight) for g in groups for p in g["params"])


def test_warmup_then_cosine_and_linear():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, max_steps=110, scheduler="cosine")
    f = lr_lambda(cfg)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.0, abs=1e-12)
    lin = lr_lambda(OptimConfig(lr=1.0, warmup_steps=0, max_steps=100, scheduler="linear"))
    assert lin(25) == pytest.approx(0.75)


def test_build_optimizer_steps_schedule():
    m = Tiny()
    out = build_optimizer(m, OptimConfig(lr=1e-3, warmup_steps=2, max_steps=4, betas=[0.9, 0.98]))
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.98)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_bad_config_errors():
    with pytest.raises(ValueError, match="optim.scheduler"):
        OptimConfig(scheduler="step")
    with pytest.raises(ValueError, match="optim.lr"):
        OptimConfig(lr=0)


def test_wsd_schedule_is_flat_then_decays_over_the_last_fraction():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, scheduler="wsd", decay_fraction=0.2, max_steps=100, min_lr_ratio=0.1)
    f = lr_lambda(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert all(f(s) == pytest.approx(1.0) for s in range(10, 81))
    assert f(90) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1) and f(150) == pytest.approx(0.1)


def test_wsd_decay_fraction_must_be_a_fraction():
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        OptimConfig(scheduler="wsd", decay_fraction=0.0)
