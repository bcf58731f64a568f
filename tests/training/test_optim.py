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


class Stack(nn.Module):
    """An embedding, a stack of blocks (nn.ModuleList) and a head: the shape of every family."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 16), nn.RMSNorm(16), nn.Linear(16, 8)) for _ in range(2)])
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for b in self.blocks:
            x = x + b(x)
        return self.head(x)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from tsfm.training.optim import MuonWithAdamW, hidden_matrices

    m = Stack()
    hidden = {id(b[i].weight) for b in m.blocks for i in (0, 2)}
    assert hidden_matrices(m) == hidden
    opt = build_optimizer(m, OptimConfig(lr=1e-3, optimizer="muon"))["optimizer"]
    assert isinstance(opt, MuonWithAdamW)
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in m.parameters())  # every parameter once
    muon = {id(p) for g in opt.param_groups if g.get("muon") for p in g["params"]}
    assert muon == hidden and all(g["weight_decay"] == 0.1 for g in opt.param_groups if g.get("muon"))
    assert all(a is b for a, b in zip(opt.muon.param_groups, [g for g in opt.param_groups if g.get("muon")], strict=True))
    assert all(a is b for a, b in zip(opt.adamw.param_groups, [g for g in opt.param_groups if not g.get("muon")], strict=True))


def _run(opt_cfg: OptimConfig, steps: int, m: nn.Module | None = None, state: dict | None = None):
    torch.manual_seed(0)
    m = m or Stack()
    built = build_optimizer(m, opt_cfg)
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    if state is not None:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = torch.randn(64, 2, generator=g)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(m(x), y).backward()
        opt.step()
        sched.step()
    return m, {"opt": opt.state_dict(), "sched": sched.state_dict()}, opt


def test_muon_steps_are_torchs_muon_and_adamw_under_the_schedule():
    cfg = OptimConfig(lr=1e-2, weight_decay=0.05, optimizer="muon", scheduler="linear", max_steps=10, warmup_steps=2)
    m, _, opt = _run(cfg, 3)
    # the same three steps by hand: torch's Muon on the hidden matrices, AdamW on the rest, the lr of the schedule
    torch.manual_seed(0)
    ref = Stack()
    hidden = [p for b in ref.blocks for p in (b[0].weight, b[2].weight)]
    rest_decay = [ref.head.weight]
    rest_plain = [ref.embed.weight] + [p for p in ref.parameters() if p.ndim < 2]  # "embed": not decayed
    muon = torch.optim.Muon(hidden, lr=1e-2, weight_decay=0.05, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW([{"params": rest_decay, "weight_decay": 0.05}, {"params": rest_plain, "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.9, 0.98), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g)
    fn = lr_lambda(cfg)
    for step in range(3):
        for o in (muon, adamw):
            for grp in o.param_groups:
                grp["lr"] = 1e-2 * fn(step)
        muon.zero_grad()
        adamw.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        muon.step()
        adamw.step()
    for (name, a), b in zip(m.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    # the schedule reaches the inner optimizers, through a state-dict round trip too
    fresh = build_optimizer(Stack(), cfg)["optimizer"]
    fresh.load_state_dict(opt.state_dict())
    for o in (opt, fresh):
        inner = o.muon.param_groups + o.adamw.param_groups
        assert len(inner) == len(o.param_groups) and all(any(g is h for h in o.param_groups) for g in inner)
        assert all(g["lr"] == pytest.approx(1e-2 * fn(3)) for g in inner)


def test_muon_state_dict_resumes_exactly():
    cfg = OptimConfig(lr=1e-2, optimizer="muon", scheduler="cosine", max_steps=8, fused=True)
    full, _, _ = _run(cfg, 8)
    half, state, _ = _run(cfg, 4)
    assert sorted(state["opt"]["state"]) == list(range(sum(1 for _ in half.parameters())))  # keyed like AdamW's
    # a fresh model and optimizer, loaded from the state dict, continue where the first stopped
    torch.manual_seed(0)
    resumed = Stack()
    resumed.load_state_dict(half.state_dict())
    resumed, _, opt = _run(cfg, 4, resumed, state)
    assert opt.muon.state is opt.state and opt.adamw.state is opt.state
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_muon_needs_hidden_matrices_and_valid_settings():
    with pytest.raises(ValueError, match="found no hidden weight matrices"):
        build_optimizer(Tiny(), OptimConfig(optimizer="muon"))
    with pytest.raises(ValueError, match="use adamw or muon"):
        OptimConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="muon_momentum"):
        OptimConfig(optimizer="muon", muon_momentum=1.0)


def test_hidden_matrices_leave_out_embeddings_inside_a_stack():
    from tsfm.training.optim import hidden_matrices

    class Blocks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                [nn.ModuleDict({"ff": nn.Linear(8, 8), "pos": nn.Embedding(4, 8), "embed_proj": nn.Linear(8, 8)})]
            )

    m = Blocks()
    assert hidden_matrices(m) == {id(m.layers[0]["ff"].weight)}
    assert hidden_matrices(m, []) == {id(m.layers[0]["ff"].weight), id(m.layers[0]["embed_proj"].weight)}


def test_muon_optimizer_survives_deepcopy_and_takes_added_groups():
    import copy

    torch.manual_seed(0)
    m = Stack()
    extra = nn.Parameter(torch.randn(4, 4))
    opt = build_optimizer(m, OptimConfig(lr=1e-2, optimizer="muon"))["optimizer"]
    m2, opt2 = copy.deepcopy((m, opt))  # e.g. a callback keeping a copy, or a pickled trainer state
    assert opt2.muon.state is opt2.state and opt2.adamw.state is opt2.state
    assert all(any(g is h for h in opt2.param_groups) for g in opt2.muon.param_groups + opt2.adamw.param_groups)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    for model, o in ((m, opt), (m2, opt2)):
        for _ in range(2):
            o.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            o.step()
    for a, b in zip(m.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a group added later reaches its optimizer with that optimizer's defaults
    opt.add_param_group({"params": [extra], "muon": True, "weight_decay": 0.0})
    assert opt.param_groups[-1]["ns_steps"] == 5 and opt.muon.param_groups[-1] is opt.param_groups[-1]
    before = extra.detach().clone()
    extra.grad = torch.randn(4, 4)
    opt.step()
    assert not torch.equal(before, extra)
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        opt.add_param_group({"params": nn.Parameter(torch.zeros(3)), "muon": True})
    bias = nn.Parameter(torch.zeros(3))
    opt.add_param_group({"params": [bias]})
    assert opt.param_groups[-1]["betas"] == (0.9, 0.98) and opt.adamw.param_groups[-1] is opt.param_groups[-1]
