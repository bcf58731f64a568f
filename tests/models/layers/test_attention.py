"""``attention``: the CPU short-sequence matmul path equals SDPA (masks, scale, gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tsfm.models.layers.attention as attention_module
from tsfm.models.layers.attention import attention


@pytest.mark.parametrize("mask_kind", ["bool", "float", None])
@pytest.mark.parametrize("scale", [None, 1.0])
def test_short_path_equals_sdpa(mask_kind, scale):
    g = torch.Generator().manual_seed(0)
    q0 = torch.randn(3, 2, 5, 8, generator=g)  # fewer queries than keys (Chronos-2's last layer)
    k0, v0 = torch.randn(3, 2, 9, 8, generator=g), torch.randn(3, 2, 9, 8, generator=g)
    keep = torch.rand(3, 1, 1, 9, generator=g) > 0.3
    keep[..., 0] = True  # every query sees a key
    mask = {"bool": keep, "float": torch.zeros(3, 1, 5, 9).masked_fill(~keep, float("-inf")), None: None}[mask_kind]

    def run(fn):
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = fn(q, k, v, mask)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        return out, q.grad, k.grad, v.grad

    ours = run(lambda q, k, v, m: attention(q, k, v, mask=m, scale=scale))
    ref = run(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_long_sequences_and_fully_masked_rows(monkeypatch):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 4, 8, generator=g) for _ in range(3))
    none = torch.zeros(1, 1, 1, 4, dtype=torch.bool)
    out = attention(q, k, v, mask=none)  # no visible key: the plain average of v, not NaN
    torch.testing.assert_close(out, v.mean(-2, keepdim=True).expand_as(out))
    monkeypatch.setattr(attention_module, "SHORT_MAX", 2)  # longer than SHORT_MAX: SDPA itself
    keep = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    torch.testing.assert_close(attention(q, k, v, mask=keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
