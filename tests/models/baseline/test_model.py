"""Baseline config, model and Student-t mixture: values, shapes, causality, masking, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsfm.models.baseline import BaselineConfig, BaselineModel
from tsfm.models.layers.distributions import StudentTMixture

TINY = dict(
    d_model=32,
    num_layers=2,
    num_heads=4,
    patch_size=8,
    context_length=32,
    prediction_length=16,
    num_components=3,
)


def _model(arch: str, **kw) -> BaselineModel:
    torch.manual_seed(0)
    return BaselineModel(BaselineConfig(architecture=arch, **{**TINY, **kw})).eval()


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(architecture="lstm"), "architecture='lstm'"),
        (dict(ffn="relu"), "ffn='relu'"),
        (dict(d_model=10**9), "d_model=1000000000 must be an integer in"),
        (dict(d_model=30, num_heads=4), "not divisible by num_heads"),
        (dict(context_length=30), "context_length=30 must be a multiple of patch_size=8"),
        (dict(dropout=1.0), "dropout=1.0"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kw, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        BaselineConfig(**{**TINY, **kw})


def test_config_derives_d_ff_and_rejects_unknown_keys():
    assert BaselineConfig(d_model=96, ffn="swiglu").d_ff == 256  # 8/3 * 96 = 256
    assert BaselineConfig(d_model=96, ffn="gelu").d_ff == 384
    with pytest.raises(ValueError, match=r"unknown baseline config keys \['widht'\]"):
        BaselineConfig.from_dict({"widht": 3})


@pytest.mark.parametrize("ffn", ["swiglu", "gelu"])
def test_non_embedding_params_counts_the_blocks(ffn):
    m = _model("encoder", ffn=ffn)
    blocks = sum(p.numel() for p in m.blocks.parameters()) + m.norm.weight.numel()
    assert m.config.non_embedding_params() == blocks


def test_flops_per_token_follows_6n_plus_attention():
    cfg = BaselineConfig(**TINY)
    n_matmul = cfg.non_embedding_params() + 2 * 8 * 32 + 32 * 8 * 4 * 3
    assert cfg.flops_per_token() == 6 * n_matmul + 6 * 2 * cfg.seq_len * 32
    dec = BaselineConfig(**{**TINY, "architecture": "decoder"})
    assert dec.flops_per_token() == 6 * n_matmul + 3 * 2 * cfg.seq_len * 32  # causal: half the attention


# -- distribution ---------------------------------------------------------------------------
def _mixture(shape=(5, 3)) -> StudentTMixture:
    g = torch.Generator().manual_seed(1)
    return StudentTMixture(
        df=2.0 + torch.rand(*shape, generator=g) * 5 + 0.5,
        loc=torch.randn(*shape, generator=g),
        scale=torch.rand(*shape, generator=g) + 0.2,
        logits=torch.randn(*shape, generator=g),
    )


def test_mixture_log_prob_matches_torch_distributions():
    m = _mixture()
    x = torch.randn(5)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=m.logits), torch.distributions.StudentT(m.df, m.loc, m.scale)
    )
    torch.testing.assert_close(m.log_prob(x), ref.log_prob(x), rtol=1e-5, atol=1e-5)


def test_mixture_samples_match_its_moments():
    torch.manual_seed(0)
    m = _mixture((2, 3))
    m.df = m.df + 6.0  # keep the 4th moment finite so the sample variance converges
    s = m.sample(200_000, torch.Generator().manual_seed(0))  # [S, 2]
    assert s.shape == (200_000, 2)
    torch.testing.assert_close(s.mean(0), m.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(s.var(0), m.variance(), atol=0.0, rtol=0.05)


# -- model ----------------------------------------------------------------------------------
def test_scale_is_mean_and_population_std_of_observed_context():
    m = _model("encoder")
    x = torch.tensor([[1.0, float("nan"), 3.0, 5.0], [float("nan")] * 4])
    loc, scale = m.scale(x)
    assert loc[0, 0] == pytest.approx(3.0)
    assert scale[0, 0] == pytest.approx(math.sqrt(np.var([1, 3, 5]) + 1e-5))
    assert (loc[1, 0], scale[1, 0]) == (0.0, pytest.approx(math.sqrt(1e-5)))  # nothing observed


def test_encoder_nll_equals_minus_log_prob_of_its_forecast_distribution():
    m = _model("encoder")
    past, fut = torch.randn(3, 32), torch.randn(3, 16)
    fut[1, 3] = float("nan")  # missing targets are ignored
    dist, loc, scale = m.future_distribution(past, 2)  # [3, 2, 8, K]
    lp = dist.log_prob(torch.nan_to_num((fut - loc) / scale).unflatten(-1, (2, 8))).flatten(1)
    obs = ~torch.isnan(fut)
    expected = -(lp[obs]).mean()
    torch.testing.assert_close(m.nll(past, fut), expected)


def test_decoder_is_causal():
    m = _model("decoder")
    window = torch.randn(2, 48)
    loc, scale = m.scale(window[:, :32])
    h1 = m.backbone(m.tokens(window, loc, scale))
    window[:, 40:] = 7.0  # change the last patch only
    h2 = m.backbone(m.tokens(window, loc, scale))
    torch.testing.assert_close(h1[:, :-1], h2[:, :-1])
    assert not torch.allclose(h1[:, -1], h2[:, -1])


def test_decoder_horizon_loss_scores_only_horizon_patches():
    m = _model("decoder")
    past, fut = torch.randn(2, 32), torch.randn(2, 16)
    base = m.nll(past, fut, horizon_only=True)
    all_loss = m.nll(past, fut, horizon_only=False)
    assert torch.isfinite(base) and torch.isfinite(all_loss) and not torch.isclose(base, all_loss)
    fut2 = fut.clone()
    fut2[:, -8:] = float("nan")  # drop the last horizon patch from the targets
    window = torch.cat([past, fut], 1)
    loc, scale = m.scale(past)
    dist = m.head(
        m.backbone(m.tokens(window, loc, scale))[:, 3:4]
    )  # patch 3 predicts patch 4 (first horizon)
    z = ((fut[:, :8] - loc) / scale)[:, None]
    torch.testing.assert_close(m.nll(past, fut2, horizon_only=True), -dist.log_prob(z).mean())


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_left_padding_patches_are_hidden(arch):
    m = _model(arch)
    ctx = torch.randn(2, 32)
    padded = torch.cat([torch.full((2, 8), float("nan")), ctx], dim=1)  # one extra all-missing patch
    loc, scale = m.scale(ctx)
    valid = torch.tensor([[False, True, True, True, True]] * 2)
    h_pad = m.backbone(m.tokens(padded, loc, scale), valid)[:, 1:]
    h = m.backbone(m.tokens(ctx, loc, scale))  # RoPE is relative: shifting positions changes nothing
    torch.testing.assert_close(h_pad, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_sample_paths_shapes_and_seeding(arch):
    m = _model(arch)
    ctx = torch.randn(3, 32) * 10 + 50
    torch.manual_seed(0)
    a = m.sample_paths(ctx, 3, 7, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    b = m.sample_paths(ctx, 3, 7, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 7, 24) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_tiny_model_learns_a_sine(arch):
    torch.manual_seed(0)
    m = _model(arch).train()
    t = torch.arange(48, dtype=torch.float32)
    phase = torch.rand(16, 1) * 6.28
    window = torch.sin(2 * math.pi * t / 16 + phase) * 3 + 10  # [16, 48]
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = m.nll(window[:, :32], window[:, 32:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0, (first, loss.item())


def test_masked_nll_with_the_horizon_masked_equals_nll():
    m = _model("encoder")
    past, fut = torch.randn(3, 32), torch.randn(3, 16)
    fut[0, 2] = float("nan")
    window = torch.cat([past, fut], 1)
    torch.testing.assert_close(m.masked_nll(window, torch.full((3,), 2)), m.nll(past, fut))
    # per-row horizons: row b's loss only uses its own last m_b patches
    mixed = m.masked_nll(window[:1], torch.tensor([4]))
    torch.testing.assert_close(mixed, m.nll(window[:1, :16], window[:1, 16:]))
    with pytest.raises(RuntimeError, match="encoder objective"):
        _model("decoder").masked_nll(window, torch.full((3,), 2))


# -- maximal-update parametrisation (mup) ------------------------------------------------------------
def _mup_cfg(width: int, parametrization: str) -> BaselineConfig:
    return BaselineConfig(architecture="decoder", d_model=width, num_layers=2, num_heads=width // 32, patch_size=8,
                          context_length=64, prediction_length=16, parametrization=parametrization, base_width=64)


def _residual_update(width: int, parametrization: str, steps: int = 3, lr: float = 3e-3) -> float:
    """RMS change of the last block's output (the residual stream) after a few AdamW steps: the
    'coordinate check' of Yang et al. 2022."""
    from tsfm.training.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    model = BaselineModel(_mup_cfg(width, parametrization))
    g = torch.Generator().manual_seed(1)
    x = torch.sin(torch.arange(80.0) / 5)[None] * torch.rand(16, 1, generator=g) * 3 + torch.randn(16, 80, generator=g) * 0.3
    past, fut = x[:, :64], x[:, 64:]
    seen: dict[str, torch.Tensor] = {}
    model.blocks[-1].register_forward_hook(lambda mod, i, o: seen.__setitem__("x", o.detach()))
    model.nll(past, fut)
    before = seen["x"]
    opt = build_optimizer(model, OptimConfig(lr=lr, scheduler="constant", weight_decay=0.0, max_steps=10))["optimizer"]
    for _ in range(steps):
        opt.zero_grad()
        model.nll(past, fut).backward()
        opt.step()
    model.nll(past, fut)
    return float((seen["x"] - before).pow(2).mean().sqrt())


def test_mup_equals_sp_at_the_base_width():
    torch.manual_seed(0)
    sp = BaselineModel(_mup_cfg(64, "sp"))
    torch.manual_seed(0)
    mup = BaselineModel(_mup_cfg(64, "mup"))
    for (n, a), b in zip(sp.state_dict().items(), mup.state_dict().values()):
        torch.testing.assert_close(a, b, msg=n)
    x = torch.randn(4, 80)
    torch.testing.assert_close(sp.nll(x[:, :64], x[:, 64:]), mup.nll(x[:, :64], x[:, 64:]))
    assert mup.lr_multipliers() == {}


def test_mup_scales_hidden_init_lr_and_attention_with_width():
    from tsfm.training.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    model = BaselineModel(_mup_cfg(256, "mup"))  # 4x the base width
    blk = model.blocks[0]
    assert blk.ffn.up.weight.std().item() == pytest.approx(0.01, rel=0.05)  # 0.02 / sqrt(4)
    assert model.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)  # input layer: fan-in fixed
    assert blk.attn_scale == pytest.approx(32**0.5 / 32)
    opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.1, max_steps=10))["optimizer"]
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(blk.qkv.weight)] == pytest.approx(2.5e-4)  # hidden: lr / width_mult
    assert lr_of[id(model.in_proj.weight)] == pytest.approx(1e-3)
    assert lr_of[id(blk.attn_norm.weight)] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_mup_keeps_the_update_size_independent_of_width():
    """Under sp the residual stream's update after a few Adam steps grows with width (~50x from 64 to 512);
    under mup it stays the same: the property that lets a learning rate tuned small carry to wide models."""
    sp = [_residual_update(w, "sp") for w in (64, 512)]
    mup = [_residual_update(w, "mup") for w in (64, 512)]
    assert sp[1] / sp[0] > 10
    assert 0.67 < mup[1] / mup[0] < 1.5


def test_parametrization_is_validated():
    with pytest.raises(ValueError, match="parametrization='mu'"):
        BaselineConfig(parametrization="mu")
    with pytest.raises(ValueError, match="base_width=0"):
        BaselineConfig(parametrization="mup", base_width=0)


def test_the_mup_multipliers_scale_readout_init_and_attention():
    """muP's base-width multipliers (output, init std, attention): the plain values (1, 0.02, 1) are the model as
    it was; each changes only its own part, and all are kept as the model widens."""
    torch.manual_seed(0)
    plain = BaselineModel(_mup_cfg(256, "mup"))
    torch.manual_seed(0)
    same = BaselineModel(BaselineConfig(**{**_mup_cfg(256, "mup").to_dict(), "output_mult": 1.0, "init_std": 0.02,
                                           "attn_mult": 1.0}))
    for (n, a), b in zip(plain.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), n
    torch.manual_seed(0)
    tuned = BaselineModel(BaselineConfig(**{**_mup_cfg(256, "mup").to_dict(), "output_mult": 4.0, "init_std": 0.04,
                                            "attn_mult": 2.0}))
    blk = tuned.blocks[0]
    assert blk.ffn.up.weight.std().item() == pytest.approx(0.02, rel=0.05)  # 0.04 / sqrt(4)
    assert blk.attn_scale == pytest.approx(2 * 32**0.5 / 32)
    assert tuned.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)  # input layer: plain init
    h = torch.randn(3, 5, 256)
    tuned.head.load_state_dict(plain.head.state_dict())
    # the head reads h * output_mult / width_mult: tuned(h) == plain(4 h)
    a, b = tuned.readout(h), plain.readout(4 * h)
    for x, y in zip(vars(a).values(), vars(b).values()):
        if isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y)
    # sp at the base width with attn_mult: logits scaled by attn_mult / sqrt(head_dim)
    sp = BaselineModel(BaselineConfig(**{**_mup_cfg(64, "sp").to_dict(), "attn_mult": 0.5}))
    assert sp.blocks[0].attn_scale == pytest.approx(0.5 / 32**0.5)
    assert BaselineModel(_mup_cfg(64, "sp")).blocks[0].attn_scale is None
    for name, bad in (("output_mult", 0.0), ("init_std", -0.02), ("attn_mult", float("inf")), ("output_mult", True)):
        with pytest.raises(ValueError, match=f"{name}={bad!r} must be a positive number"):
            BaselineConfig(**{**_mup_cfg(64, "mup").to_dict(), name: bad})
