"""Block-diagonal attention over packed samples equals the dense masked attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tsfm.models.layers.sample_blocks import SampleBlocks, bucket_width


def test_bucket_widths_cover_and_waste_at_most_a_third():
    assert [bucket_width(n) for n in (1, 8, 9, 12, 13, 17, 25, 100, 129, 385, 512)] == [
        8, 8, 12, 12, 16, 24, 32, 128, 192, 512, 512,
    ]
    for n in range(9, 2000):
        w = bucket_width(n)
        assert n <= w and (w - n) / w < 1 / 3 + 1e-9
        aligned = bucket_width(n, align=16)
        assert aligned % 16 == 0 and w <= aligned < w + 16
    assert [bucket_width(n, align=16) for n in (1, 9, 13, 20)] == [16, 16, 16, 32]


def _dense_reference(q, k, v, sample_id):
    """[B, H, L, hd] attention with a dense same-sample mask (padding 0 sees padding)."""
    same = sample_id[:, None, :, None] == sample_id[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=same)


@pytest.mark.parametrize("seed", [0, 1])
def test_blocks_equal_dense_masked_attention_values_and_gradients(seed):
    g = torch.Generator().manual_seed(seed)
    b, seq, h, hd = 3, 40, 2, 8
    # row 0: three contiguous samples + padding; row 1: a non-contiguous sample id;
    # row 2: one sample filling the row
    sample_id = torch.zeros(b, seq, dtype=torch.long)
    sample_id[0, :5], sample_id[0, 5:25], sample_id[0, 25:33] = 1, 2, 3
    sample_id[1, :10], sample_id[1, 10:30], sample_id[1, 30:] = 1, 2, 1
    sample_id[2] = 1
    q, k, v = (torch.randn(b, h, seq, hd, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    seen = []

    def masks(index, valid):
        seen.append(index.shape)
        w = index.shape[1]
        allowed = valid[:, None, None, :] | torch.eye(w, dtype=torch.bool)
        return {"mask": allowed}

    blocks = SampleBlocks.build(sample_id, masks)
    # groups (row, sample): 7 padding, 5, 20, 8 | 20 (split in two runs), 20 | 40
    assert sorted((s[1], s[0]) for s in seen) == [(8, 3), (24, 3), (48, 1)]
    flat = [t.transpose(1, 2).reshape(b * seq, h, hd) for t in (q, k, v)]
    out = blocks.attend(*flat, lambda q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    ref = _dense_reference(q, k, v, sample_id).transpose(1, 2).reshape(b * seq, h * hd)
    torch.testing.assert_close(out, ref)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    grads_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for a, r in zip(grads, grads_ref):
        torch.testing.assert_close(a, r)
