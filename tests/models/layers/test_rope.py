"""Every RoPE form (complex, swap, explicit pairs) gives the same rotation and gradients."""

from __future__ import annotations

import pytest
import torch

from tsfm.models.layers.rope import (
    RopeTables,
    apply_rope,
    apply_rope_half,
    apply_rope_interleaved,
    rope_cos_sin,
    rope_inv_freq,
    rope_tables,
)


@pytest.mark.parametrize("rot_dim", [16, 8])  # full head, and half the head rotated (Moirai)
def test_interleaved_forms_agree(rot_dim):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 7, 3, 16, generator=g)
    up = torch.randn(x0.shape, generator=g)
    cos, sin = rope_cos_sin(torch.randint(0, 50, (2, 7), generator=g), rope_inv_freq(rot_dim))  # [2, 7, R/2]
    tables = RopeTables.build(cos, sin, 16, torch.float32).unsqueeze(2)
    assert tables.rotation is not None

    def run(fn):
        x = x0.clone().requires_grad_(True)
        y = fn(x)
        (y * up).sum().backward()
        return y, x.grad

    ref = run(lambda x: apply_rope_interleaved(x, cos[:, :, None], sin[:, :, None]))
    for form in (tables.apply, lambda x: apply_rope(x, tables.cos, tables.sin)):
        for a, b in zip(run(form), ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # a strided (non-contiguous) input takes the complex path too
    big = torch.stack((x0, x0), dim=-2)[..., 0, :]
    assert not big.is_contiguous()
    torch.testing.assert_close(tables.apply(big), ref[0], atol=1e-6, rtol=1e-5)
    # bf16 goes through the swap form, close to float32
    bf = RopeTables.build(cos, sin, 16, torch.bfloat16).unsqueeze(2).apply(x0.bfloat16())
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), ref[0], atol=0.05, rtol=0.02)


def test_half_convention_swap_form():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 9, 16, generator=g)
    cos, sin = rope_cos_sin(torch.arange(9), rope_inv_freq(16))
    c, s = rope_tables(cos, sin, 16, interleaved=False)
    torch.testing.assert_close(apply_rope(x, c, s, interleaved=False), apply_rope_half(x, cos, sin), atol=1e-6, rtol=1e-5)
    assert RopeTables.build(cos, sin, 16, torch.float32, interleaved=False).rotation is None
