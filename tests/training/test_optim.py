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


def _adamw_after_steps(fused: bool, steps: int = 20) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    torch.manual_seed(0)
    m = Tiny()
    opt = build_optimizer(m, OptimConfig(lr=3e-3, weight_decay=0.01, scheduler="constant", fused=fused))["optimizer"]
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in m.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return opt, [p.detach().clone() for p in m.parameters()]


def test_fused_adamw_takes_the_same_steps_as_the_plain_one():
    plain_opt, plain = _adamw_after_steps(fused=False)
    fused_opt, fused = _adamw_after_steps(fused=True)
    assert not plain_opt.defaults.get("fused") and fused_opt.defaults["fused"] is True
    assert not fused_opt._step_supports_amp_scaling  # Lightning's precision plugin then allows gradient clipping
    moved = max((a - b).abs().max().item() for a, b in zip(plain, _adamw_after_steps(False, 0)[1]))
    assert moved > 1e-2  # the updates are real
    for a, b in zip(plain, fused):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # the same updates up to the last bit of rounding


def test_fused_adamw_trains_under_bf16_autocast_with_gradient_clipping(tmp_path):
    import lightning.pytorch as pl

    class Reg(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x).float(), y)

        def configure_optimizers(self):
            return build_optimizer(self, OptimConfig(lr=1e-2, max_steps=30, scheduler="constant", fused=True))

    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    model = Reg()
    before = nn.functional.mse_loss(model.net(x), y).item()
    trainer = pl.Trainer(max_steps=30, accelerator="cpu", precision="bf16-mixed", gradient_clip_val=1.0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, loader)
    assert trainer.global_step == 30
    assert nn.functional.mse_loss(model.net(x), y).item() < 0.5 * before


def test_fused_must_be_a_bool():
    with pytest.raises(ValueError, match="optim.fused must be true or false"):
        OptimConfig(fused="yes")
