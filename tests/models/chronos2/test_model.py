"""Chronos2Model against the golden fixture (model-level) and the group-attention fast paths."""

from __future__ import annotations

import pytest
import torch

from tests.models.chronos2.conftest import tiny_config
from tsfm.models.chronos2.group_attention import GroupLayout
from tsfm.models.chronos2.model import Chronos2Model

C = "model_forward."


def _call(m, T, **kw):
    return m(T[C + "context"], group_ids=T[C + "group_ids"], future_covariates=T[C + "future_covariates"],
             num_output_patches=3, **kw)  # fmt: skip


@torch.no_grad()
def test_model_forward_matches_fixture(c2_model, c2_tensors):
    T = c2_tensors
    out = _call(c2_model, T)
    torch.testing.assert_close(out.loc, T[C + "loc"], rtol=1e-6, atol=0)
    torch.testing.assert_close(out.scale, T[C + "scale"], rtol=1e-6, atol=0)
    ref_norm = T[C + "quantile_preds_normalized"].view(8, 3, 21, 16).permute(0, 2, 1, 3).reshape(8, 21, 48)
    torch.testing.assert_close(out.quantile_preds_normalized, ref_norm, atol=1e-5, rtol=0)
    loc, scale = T[C + "loc"].unsqueeze(-1), T[C + "scale"].unsqueeze(-1)
    torch.testing.assert_close(torch.asinh((out.quantile_preds - loc) / scale),
                               torch.asinh((T[C + "quantile_preds"] - loc) / scale), atol=1e-5, rtol=0)  # fmt: skip
    assert out.loss is None


@torch.no_grad()
def test_model_forward_intermediates(c2_model, c2_tensors):
    T = c2_tensors
    enc = c2_model.encode(T[C + "context"], group_ids=T[C + "group_ids"],
                          future_covariates=T[C + "future_covariates"], num_output_patches=3)  # fmt: skip
    torch.testing.assert_close(enc["patched_context"], T[C + "patched_context"], atol=1e-5, rtol=0)
    torch.testing.assert_close(enc["patched_future"], T[C + "patched_future"], atol=1e-5, rtol=0)
    torch.testing.assert_close(enc["inputs_embeds"], T[C + "encoder_inputs_embeds"], atol=1e-5, rtol=0)
    mask = T[C + "encoder_attention_mask"]
    assert torch.equal(enc["time_mask"].float(), mask)
    # cells whose time mask is 0 are never read downstream (fixture README quirk): compare the rest
    keep = mask.bool()
    torch.testing.assert_close(enc["hidden"][keep], T[C + "encoder_last_hidden_state"][keep], atol=1e-5, rtol=0)


@torch.no_grad()
def test_model_loss_matches_fixture(c2_model, c2_tensors):
    T = c2_tensors
    with_mask = _call(c2_model, T, future_target=T[C + "future_target"], future_target_mask=T[C + "future_target_mask"])
    inferred = _call(c2_model, T, future_target=T[C + "future_target"])
    torch.testing.assert_close(with_mask.loss, T[C + "loss_with_mask"], rtol=1e-5, atol=0)
    torch.testing.assert_close(inferred.loss, T[C + "loss_inferred_mask"], rtol=1e-5, atol=0)
    torch.testing.assert_close(inferred.quantile_preds, _call(c2_model, T).quantile_preds)


@torch.no_grad()
def test_observed_loss_horizon_averages_each_row_over_its_observed_steps():
    torch.manual_seed(0)
    model = Chronos2Model(tiny_config()).eval()
    ctx = torch.randn(3, 40)
    fut = torch.randn(3, 32)
    fut[1, 4:] = float("nan")  # a short series: 4 of 32 future steps observed
    fut[2, 0::2] = float("nan")  # gaps: 16 observed
    out = model(ctx, num_output_patches=2, future_target=fut)
    z, loc, scale = out.quantile_preds_normalized, out.loc.view(-1, 1), out.scale.view(-1, 1)
    y = torch.asinh((fut - loc) / scale).unsqueeze(1)
    tau = model.quantiles.view(1, -1, 1)
    pin = (2 * torch.abs((y - z) * ((y <= z).float() - tau))).nan_to_num(0.0)  # [B, Q, H]
    per_row = pin.sum(-1).sum(-1)  # summed over steps and quantiles
    counts = torch.tensor([32.0, 4.0, 16.0])
    torch.testing.assert_close(out.loss, (per_row / 32).mean())  # full: missing steps count as 0
    observed = model(ctx, num_output_patches=2, future_target=fut, loss_horizon="observed").loss
    torch.testing.assert_close(observed, (per_row / counts).mean())
    # with every step observed the two agree; the short row weighs 8x more under `observed`
    full_fut = torch.randn(3, 32)
    torch.testing.assert_close(model(ctx, num_output_patches=2, future_target=full_fut, loss_horizon="observed").loss,
                               model(ctx, num_output_patches=2, future_target=full_fut).loss)
    with pytest.raises(ValueError, match="loss_horizon must be 'full' or 'observed'"):
        model(ctx, num_output_patches=2, future_target=fut, loss_horizon="mean")


@torch.no_grad()
def test_model_forward_trunc_matches_fixture(c2_model, c2_tensors):
    T, c = c2_tensors, "model_forward_trunc."
    out = c2_model(T[c + "context"], context_mask=T[c + "context_mask"])
    torch.testing.assert_close(out.loc, T[c + "loc"], rtol=1e-6, atol=0)
    torch.testing.assert_close(out.scale, T[c + "scale"], rtol=1e-6, atol=0)
    loc, scale = T[c + "loc"].unsqueeze(-1), T[c + "scale"].unsqueeze(-1)
    torch.testing.assert_close(torch.asinh((out.quantile_preds - loc) / scale),
                               torch.asinh((T[c + "quantile_preds"] - loc) / scale), atol=1e-5, rtol=0)  # fmt: skip
    enc = c2_model.encode(T[c + "context"], context_mask=T[c + "context_mask"])
    torch.testing.assert_close(enc["patched_context"], T[c + "patched_context"], atol=1e-5, rtol=0)
    keep = enc["time_mask"]
    torch.testing.assert_close(enc["hidden"][keep], T[c + "encoder_last_hidden_state"][keep], atol=1e-5, rtol=0)


def _dense_group_reference(model: Chronos2Model, x, group_ids, time_mask):
    """The reference's dense formulation: every row attends over the whole batch with a B x B mask."""
    blk = model.encoder.block[0].layer[1]
    a, nh = blk.self_attention, blk.num_heads
    h = blk.layer_norm(x).transpose(0, 1)  # [S, B, D]
    s, b, d = h.shape
    heads = lambda t: t.view(s, b, nh, -1).transpose(1, 2)  # noqa: E731  [S, H, B, dk]
    same = group_ids[:, None] == group_ids[None, :]
    allowed = same[None] & time_mask.T[:, None, :]  # [S, Bq, Bk]
    bias = (~allowed).float()[:, None] * torch.finfo(torch.float32).min
    att = torch.softmax(heads(a.q(h)) @ heads(a.k(h)).transpose(-1, -2) + bias, dim=-1) @ heads(a.v(h))
    return x + a.o(att.transpose(1, 2).reshape(s, b, -1)).transpose(0, 1)


@pytest.mark.parametrize(
    "group_ids",
    [[0, 1, 2, 3, 4, 5], [7, 7, 7, 7, 7, 7], [3, 1, 3, 9, 1, 1], [0, 5, 0, 2, 2, 4]],
    ids=["singletons", "one-group", "mixed", "mixed-singletons"],
)
def test_group_attention_equals_dense(group_ids):
    torch.manual_seed(0)
    model = Chronos2Model(tiny_config()).eval()
    gids = torch.tensor(group_ids)
    x = torch.randn(6, 5, 32)
    tmask = torch.rand(6, 5) > 0.3
    tmask[:, -1] = True
    layout = GroupLayout.from_group_ids(gids, 6)
    blk = model.encoder.block[0].layer[1]
    for grad in (False, True):  # no-grad uses the fused W_o W_v path for singletons
        with torch.set_grad_enabled(grad):
            got = blk(x, layout, layout.key_mask(tmask, torch.float32))
            ref = _dense_group_reference(model, x, gids, tmask)
        # only cells that are observed (or whose group has an observed key) are read downstream
        same = gids[:, None] == gids[None, :]
        has_key = (same[:, :, None] & tmask[None]).any(1)  # [B, S]
        torch.testing.assert_close(got[has_key], ref[has_key], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(got).all()


def test_singleton_training_fused_wov_gradients_and_attention_dropout(monkeypatch):
    """Training on singleton groups: ``W_o W_v`` fused under autograd (more tokens than d_model)
    gives the unfused gradients; with dropout, whole heads of a cell are dropped as the
    reference's dropout on the single attention weight does."""
    from tsfm.models.chronos2.group_attention import group_attention
    from tsfm.models.chronos2.model import GroupSelfAttention

    torch.manual_seed(3)
    model = Chronos2Model(tiny_config()).train()  # dropout_rate 0
    ctx, fut = torch.randn(6, 64).cumsum(-1), torch.randn(6, 32)  # 6 x (4 + 1 + 2) tokens = 42 > d_model 32

    def grads():
        model.zero_grad()
        model(ctx, num_output_patches=2, future_target=fut).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    calls = []
    fused = GroupSelfAttention._fused_ov
    monkeypatch.setattr(GroupSelfAttention, "_fused_ov", lambda self, n: calls.append(w := fused(self, n)) or w)
    g_fused = grads()
    assert calls[0] is not None and calls[-1] is None  # last layer: 12 forecast tokens < d_model, unfused
    monkeypatch.setattr(GroupSelfAttention, "_fused_ov", lambda self, n: None)
    g_plain = grads()
    assert g_plain.keys() == g_fused.keys() and "encoder.block.0.layer.1.self_attention.v.weight" in g_plain
    for n, g in g_plain.items():
        torch.testing.assert_close(g_fused[n], g, atol=1e-6, rtol=1e-4, msg=n)

    # with dropout the product is never fused (dropout acts per head, between W_v and W_o)
    drop_model = Chronos2Model(tiny_config(dropout_rate=0.1)).train()
    assert drop_model.encoder.block[0].layer[1]._fused_ov(1000) is None

    q, k, v = (torch.nn.Linear(32, 32, bias=False) for _ in range(3))
    h = torch.randn(50, 40, 32)
    mixed = torch.arange(50).clone()
    mixed[:4] = 0  # rows 0-3 form a group, rows 4-49 are singletons, in the same batch
    for gids, singles in ((None, slice(0, 50)), (mixed, slice(4, 50))):
        out = group_attention(h, q, k, v, 4, GroupLayout.from_group_ids(gids, 50), None, dropout_p=0.25)
        full = v(h).view(50, 40, 4, 8).detach()[singles]
        cells = out.view(50, 40, 4, 8).detach()[singles]
        dropped = (cells == 0).all(-1)
        assert abs(dropped.float().mean().item() - 0.25) < 0.02
        torch.testing.assert_close(cells[~dropped], full[~dropped] / 0.75)


def test_layout_kinds_and_sorting():
    assert GroupLayout.from_group_ids(None, 4).kind == "single"
    assert GroupLayout.from_group_ids(torch.tensor([4, 2, 9]), 3).kind == "single"
    assert GroupLayout.from_group_ids(torch.tensor([1, 1, 1]), 3).kind == "one"
    lay = GroupLayout.from_group_ids(torch.tensor([5, 0, 5, 3, 0, 0]), 6)
    assert lay.kind == "blocks" and lay.num_groups == 2 and lay.group_size == 3
    assert lay.gather_idx.view(2, 3).tolist() == [[1, 4, 5], [0, 2, 0]]
    assert lay.slot_valid.view(2, 3).tolist() == [[True, True, True], [True, True, False]]
    with pytest.raises(ValueError, match="group_ids must have shape"):
        GroupLayout.from_group_ids(torch.tensor([0, 1]), 3)


@torch.no_grad()
def test_last_layer_pruning_equals_full_encoder():
    torch.manual_seed(1)
    model = Chronos2Model(tiny_config()).eval()
    ctx = torch.randn(5, 50).cumsum(-1)
    ctx[1, :20] = float("nan")
    gids = torch.tensor([0, 0, 1, 2, 2])
    out = model(ctx, group_ids=gids, num_output_patches=2)
    enc = model.encode(ctx, group_ids=gids, num_output_patches=2)
    z = model.output_patch_embedding(enc["hidden"][:, -2:]).view(5, 2, 21, 16).transpose(1, 2).reshape(5, 21, 32)
    torch.testing.assert_close(out.quantile_preds_normalized, z, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_and_backward():
    torch.manual_seed(2)
    model = Chronos2Model(tiny_config())
    ctx, fut = torch.randn(4, 64).cumsum(-1), torch.randn(4, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ctx, group_ids=torch.tensor([0, 0, 1, 2]), num_output_patches=2, future_target=fut)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@torch.no_grad()
def test_bf16_forecast_then_fp32_forecast_same_as_fresh_model():
    """The cached W_o W_v product must not keep autocast's bf16 dtype (fp32 call crashed)."""
    torch.manual_seed(4)
    model, fresh = Chronos2Model(tiny_config()).eval(), Chronos2Model(tiny_config()).eval()
    fresh.load_state_dict(model.state_dict())
    ctx = torch.randn(4, 64).cumsum(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(ctx, num_output_patches=2).quantile_preds
    out = model(ctx, num_output_patches=2).quantile_preds
    ref = fresh(ctx, num_output_patches=2).quantile_preds
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_model_input_errors():
    model = Chronos2Model(tiny_config()).eval()
    ctx = torch.randn(3, 40)
    with pytest.raises(ValueError, match="future_target has 40 steps but num_output_patches=1 covers 16"):
        model(ctx, future_target=torch.randn(3, 40))
    with pytest.raises(ValueError, match="future_covariates must have shape"):
        model(ctx, future_covariates=torch.randn(2, 16))
    with pytest.raises(ValueError, match="context must have shape"):
        model(torch.randn(40))
    with pytest.raises(ValueError, match="NaN where future_covariates_mask"):
        model(ctx, future_covariates=torch.full((3, 16), float("nan")), future_covariates_mask=torch.ones(3, 16))
