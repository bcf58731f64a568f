"""MoiraiModel behaviour beyond the fixture: packing isolation, gradients, sampling, dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tsfm.models.layers.attention as attention_module
from tsfm.models.layers.attention import rel_bias_attention
from tsfm.models.moirai.config import MoiraiConfig, allowed_patch_sizes, check_patch_size, freq_family
from tsfm.models.moirai.model import MoiraiModel
from tsfm.training.parallelize import apply_activation_checkpointing, is_checkpointed

TINY = dict(d_model=64, num_layers=2)


def _sample(n_var: int, n_tok: int, ps: int, n_pred: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    t = n_var * n_tok
    return {
        "target": torch.randn(t, ps, generator=gen).cumsum(-1) * 3 + 10,
        "observed_mask": torch.ones(t, ps, dtype=torch.bool),
        "time_id": torch.arange(n_tok).repeat(n_var),
        "variate_id": torch.arange(n_var).repeat_interleave(n_tok),
        "prediction_mask": (torch.arange(n_tok) >= n_tok - n_pred).repeat(n_var),
        "patch_size": torch.full((t,), ps),
    }


def _pack(samples: list[dict[str, torch.Tensor]], length: int, width: int) -> dict[str, torch.Tensor]:
    """One row holding ``samples`` one after another, then padding."""
    row = {
        "target": torch.zeros(1, length, width),
        "observed_mask": torch.zeros(1, length, width, dtype=torch.bool),
        **{k: torch.zeros(1, length, dtype=torch.long) for k in ("sample_id", "time_id", "variate_id", "patch_size")},
        "prediction_mask": torch.zeros(1, length, dtype=torch.bool),
    }
    o = 0
    for i, s in enumerate(samples, 1):
        n, ps = s["time_id"].shape[0], s["target"].shape[1]
        row["target"][0, o : o + n, :ps] = s["target"]
        row["observed_mask"][0, o : o + n, :ps] = s["observed_mask"]
        for k in ("time_id", "variate_id", "patch_size", "prediction_mask"):
            row[k][0, o : o + n] = s[k]
        row["sample_id"][0, o : o + n] = i
        o += n
    return row


@pytest.fixture(scope="module")
def model() -> MoiraiModel:
    torch.manual_seed(0)
    return MoiraiModel(MoiraiConfig(**TINY)).eval()


def test_config_sizes_match_paper():
    small, base, large = MoiraiConfig(384, 6), MoiraiConfig(768, 12), MoiraiConfig(1024, 24)
    assert (small.num_heads, base.num_heads, large.num_heads) == (6, 12, 16)
    assert (MoiraiConfig(**TINY).d_ff, small.d_ff, large.d_ff) == (176, 1024, 2736)
    n_small = sum(p.numel() for p in MoiraiModel(small).parameters())
    assert 13e6 < n_small < 15e6  # paper: 14M
    with pytest.raises(ValueError, match="multiple of head_dim"):
        MoiraiConfig(d_model=100)
    with pytest.raises(ValueError, match="implausible"):
        MoiraiConfig(d_model=64 * 2000)


def test_frequency_patch_sizes():
    ps = (8, 16, 32, 64, 128)
    assert allowed_patch_sizes("h", ps) == allowed_patch_sizes("H", ps) == [32, 64]
    assert allowed_patch_sizes("15min", ps) == [32, 64, 128]
    assert allowed_patch_sizes("ME", ps) == allowed_patch_sizes("MS", ps) == [8, 16, 32]
    assert allowed_patch_sizes("QS-JAN", ps) == allowed_patch_sizes("YE", ps) == [8]
    assert freq_family("W-SUN") == "weekly" and freq_family("B") == "daily" and freq_family("10s") == "secondly"
    with pytest.raises(ValueError, match=r"allowed patch sizes: \[32, 64\]"):
        check_patch_size(16, "h", ps)
    with pytest.raises(ValueError, match="not one of the model's patch sizes"):
        check_patch_size(12, None, ps)
    with pytest.raises(ValueError, match="unknown frequency"):
        freq_family("fortnightly")


def test_samples_in_one_row_do_not_interact(model):
    """Attention, scaling and loss are confined to a sample: packing changes nothing."""
    g = torch.Generator().manual_seed(1)
    a, b = _sample(2, 6, 16, 2, g), _sample(1, 10, 32, 3, g)
    alone = _pack([a], 40, 32)
    both = _pack([a, b], 40, 32)
    with torch.no_grad():
        h1, loc1, sc1, _ = model.encode(**alone)
        h2, loc2, sc2, _ = model.encode(**both)
    n = a["time_id"].shape[0]
    torch.testing.assert_close(h1[0, :n], h2[0, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loc1[0, :n], loc2[0, :n])
    loss_a = model.loss(alone)
    loss_b = model.loss(_pack([b], 40, 32))
    # each series weighs the same: 2 series of a and 1 of b
    torch.testing.assert_close(model.loss(both), (2 * loss_a + loss_b) / 3, atol=1e-5, rtol=1e-5)


def _dense_masks(sample_id: torch.Tensor, variate_id: torch.Tensor, dt: torch.dtype) -> dict:
    """The reference's dense [B, 1, L, L] masks, written independently of the model."""
    same_sample = (sample_id[:, :, None] == sample_id[:, None]).unsqueeze(1)
    same_var = (variate_id[:, :, None] == variate_id[:, None]).unsqueeze(1)
    mask = torch.zeros(same_sample.shape, dtype=dt).masked_fill(~same_sample, float("-inf"))
    return {"blocks": None, "mask": mask, "same_var": same_var.to(dt),
            "same_var_mask": mask.masked_fill(~same_var, float("-inf"))}


def test_block_diagonal_attention_and_kept_tokens_match_dense(monkeypatch):
    """Packed rows attend per sample (length buckets) and the loss computes only predicted tokens
    in the last layer: the loss and every gradient equal the dense all-token computation."""
    torch.manual_seed(0)
    m = MoiraiModel(MoiraiConfig(**TINY)).train()
    g = torch.Generator().manual_seed(7)
    rows = [_pack([_sample(2, 9, 16, 3, g), _sample(1, 30, 16, 5, g), _sample(3, 4, 16, 1, g)], 64, 16),
            _pack([_sample(4, 12, 16, 4, g)], 64, 16)]
    batch = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}

    def run():
        m.zero_grad()
        loss = m.loss(batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    blocked = run()
    with torch.no_grad():
        h_keep = m.encode(**batch, keep=batch["prediction_mask"].reshape(-1).nonzero().squeeze(1))[0]
        h_all = m.encode(**batch)[0]
    monkeypatch.setattr(MoiraiModel, "attention_masks", staticmethod(_dense_masks))
    dense = run()
    with torch.no_grad():
        h_dense = m.encode(**batch)[0]
    torch.testing.assert_close(h_all, h_dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_keep, h_dense.reshape(-1, h_dense.shape[-1])[batch["prediction_mask"].reshape(-1)],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(blocked[0], dense[0], atol=1e-6, rtol=1e-5)
    assert blocked[1].keys() == dense[1].keys()
    for n, ref in dense[1].items():  # float32 summation order differs: tolerance relative to the tensor's scale
        torch.testing.assert_close(blocked[1][n], ref, atol=1e-4 * ref.abs().max().item(), rtol=1e-4, msg=n)


@pytest.mark.parametrize("short_max", [0, 256])  # flash + one extra pass, and the short-sequence matmul path
def test_rel_bias_attention_gradients_exact(short_max, monkeypatch):
    """Both CPU paths give the same outputs and gradients as SDPA's math path."""
    monkeypatch.setattr(attention_module, "SHORT_MAX", short_max)
    g = torch.Generator().manual_seed(0)
    b, h, seq, d = 2, 3, 40, 16
    sid = torch.randint(1, 4, (b, seq), generator=g).sort(-1).values
    var = torch.randint(0, 3, (b, seq), generator=g)
    mask = torch.zeros(b, 1, seq, seq).masked_fill(~(sid[:, :, None] == sid[:, None]).unsqueeze(1), float("-inf"))
    rel = (var[:, :, None] == var[:, None]).unsqueeze(1)
    base = [torch.randn(b, h, seq, d, generator=g) for _ in range(3)] + [torch.randn(h, generator=g)]
    w = torch.randn(d, generator=g)

    def grads(fast: bool):
        q, k, v, delta = (t.clone().requires_grad_(True) for t in base)
        if fast:
            out = rel_bias_attention(q, k, v, delta, mask, rel)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask + rel * delta.view(1, h, 1, 1))
        (out * w).sum().backward()
        return [out, q.grad, k.grad, v.grad, delta.grad]

    for x, y in zip(grads(True), grads(False)):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_rel_bias_attention_dropout_on_short_path():
    """Attention dropout on the matmul path: unbiased (mean over draws = no dropout), and random."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 8, generator=g) for _ in range(3))
    mask, rel, delta = torch.zeros(1, 1, 12, 12), torch.eye(12, dtype=torch.bool)[None, None], torch.tensor([0.5, -0.3])
    exact = rel_bias_attention(q, k, v, delta, mask, rel)
    torch.manual_seed(0)
    draws = torch.stack([rel_bias_attention(q, k, v, delta, mask, rel, dropout_p=0.3) for _ in range(2000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), exact, atol=0.05, rtol=0.0)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    m = MoiraiModel(MoiraiConfig(**TINY))
    batch = _pack([_sample(2, 5, 16, 2, torch.Generator().manual_seed(3))], 12, 16)

    def grads():
        m.zero_grad()
        m.train()
        m.loss(batch).backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    g0 = grads()
    keys = list(m.state_dict())
    assert apply_activation_checkpointing(m.encoder.layers) == 2  # from outside: the model has no flag
    assert list(m.state_dict()) == keys and all(is_checkpointed(layer) for layer in m.encoder.layers)
    g1 = grads()
    assert g0.keys() == g1.keys() and "encoder.layers.0.self_attn.var_attn_bias.emb.weight" in g0
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], atol=1e-6, rtol=1e-5)


def test_bf16_autocast_loss_close_to_fp32(model):
    batch = _pack([_sample(2, 8, 32, 3, torch.Generator().manual_seed(4))], 20, 32)
    with torch.no_grad():
        fp32 = model.loss(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.loss(batch)
    assert torch.isfinite(bf16) and abs(bf16.item() - fp32.item()) < 0.05 * abs(fp32.item()) + 0.05


def test_samples_match_moments(model):
    """Vectorised mixture sampling reproduces the analytic mean and variance."""
    batch = _pack([_sample(1, 6, 16, 2, torch.Generator().manual_seed(5))], 6, 16)
    with torch.no_grad():
        h, loc, scale, _ = model.encode(**batch)
        idx = batch["prediction_mask"].reshape(-1).nonzero().squeeze(1)
        d = model.distribution(h[0, idx], 16)
        lc, sc = loc[0, idx], scale[0, idx]
        s = d.sample(20000, lc, sc, generator=torch.Generator().manual_seed(0))
    assert s.shape == (20000, 2, 16) and torch.isfinite(s).all()
    mean, std = d.mean(lc, sc), d.variance(sc).sqrt()
    assert ((s.mean(0) - mean).abs() / std).max() < 0.1
    # heavy tails (Student-t with df close to 2) make the sample std converge slowly
    assert ((s.std(0) / std) - 1).abs().median() < 0.1 and ((s.std(0) / std) - 1).abs().max() < 0.4


def test_oversized_or_degenerate_config_is_refused_before_allocation():
    import pytest

    from tsfm.models.moirai.config import MoiraiConfig

    with pytest.raises(ValueError, match="refusing to allocate"):
        MoiraiConfig(d_model=16384, num_layers=512)
    with pytest.raises(ValueError, match="head_dim must be positive"):
        MoiraiConfig(d_model=64, num_layers=2, head_dim=0)


def test_series_ids_number_row_sample_variate_groups_in_order():
    from tsfm.models.moirai.scaler import make_series_id

    sid = torch.tensor([[1, 1, 2, 2, 0], [3, 1, 1, 0, 0]])
    vid = torch.tensor([[0, 1, 0, 0, 0], [0, 2, 2, 0, 0]])
    # groups sorted by (row, sample, variate): (0,0,0) (0,1,0) (0,1,1) (0,2,0) | (1,0,0) (1,1,2) (1,3,0)
    assert make_series_id(sid, vid).tolist() == [[1, 2, 3, 3, 0], [6, 5, 5, 4, 4]]


def test_export_of_a_non_official_head_width_loads_back(tmp_path):
    """uni2ts's config.json has no head width (64 in every release): an export of 8-wide heads (the
    scaling study's small sizes) must record it, or it cannot be loaded; official shapes stay unchanged."""
    import json

    from tsfm.models.moirai.config import MoiraiConfig
    from tsfm.models.moirai.convert import load_model, save_pretrained
    from tsfm.models.moirai.model import MoiraiModel

    torch.manual_seed(0)
    model = MoiraiModel(MoiraiConfig(d_model=16, num_layers=1, head_dim=8, patch_sizes=(8, 16)))
    save_pretrained(model, tmp_path / "narrow")
    assert json.loads((tmp_path / "narrow" / "config.json").read_text())["head_dim"] == 8
    loaded = load_model(tmp_path / "narrow")
    assert loaded.cfg.num_heads == 2
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    save_pretrained(MoiraiModel(MoiraiConfig(d_model=64, num_layers=1)), tmp_path / "official")
    official = json.loads((tmp_path / "official" / "config.json").read_text())
    assert not {"head_dim", "rope_base", "rope_fraction", "norm_eps"} & set(official)
