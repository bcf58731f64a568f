"""The CPU RMS norm equals ``F.rms_norm`` in values and gradients, for any weight broadcast and dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tsfm.models.layers.norm import RMSNorm, rms_norm


@pytest.mark.parametrize("weight_shape", [(16,), (2, 1, 16), None])
def test_rms_norm_matches_reference_values_and_gradients(weight_shape):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 5, 2, 4, 16, generator=g, dtype=torch.float64) * 3 + 1
    w0 = None if weight_shape is None else torch.randn(weight_shape, generator=g, dtype=torch.float64)
    up = torch.randn(x0.shape, generator=g, dtype=torch.float64)

    def run(fn):
        x = x0.clone().requires_grad_(True)
        w = None if w0 is None else w0.clone().requires_grad_(True)
        y = fn(x, w)
        (y * up).sum().backward()
        return [y, x.grad] + ([] if w is None else [w.grad])

    ours = run(lambda x, w: rms_norm(x, w, 1e-5, out_dtype=torch.float64))
    ref = run(lambda x, w: F.rms_norm(x, (16,), eps=1e-5) * (1 if w is None else w))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_rms_norm_dtypes():
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    norm = RMSNorm(8)
    y = norm(x)  # fp32 weight: statistic and output in float32 (the autocast case)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.rms_norm(x.float(), (8,), eps=1e-6))
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and norm.weight.grad.dtype == torch.float32
    assert RMSNorm(8).to(torch.bfloat16)(torch.randn(4, 8)).dtype == torch.bfloat16  # half weights: half output
    assert rms_norm(x, None, 1e-6, out_dtype=torch.bfloat16).dtype == torch.bfloat16


def test_rms_norm_off_cpu_broadcasts_weight():
    """Off CPU it defers to ``F.rms_norm`` (checked on the meta device): shapes and dtypes as on CPU."""
    x = torch.empty(3, 2, 4, 16, device="meta", dtype=torch.bfloat16)
    assert rms_norm(x, torch.empty(2, 1, 16, device="meta"), 1e-6).shape == x.shape
    y = rms_norm(x, torch.empty(16, device="meta"), 1e-6, out_dtype=torch.bfloat16)
    assert y.shape == x.shape and y.dtype == torch.bfloat16
