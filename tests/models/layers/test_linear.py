"""``linear``: the oneDNN float32 path equals ``F.linear`` (values, gradients) and is used only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tsfm.models.layers.linear as linear_module
from tsfm.models.layers.linear import Linear, linear


@pytest.fixture
def onednn(monkeypatch):
    """Force the oneDNN path and count its GEMMs."""
    monkeypatch.setattr(linear_module, "_choice", True)
    calls = []
    gemm = linear_module._gemm
    monkeypatch.setattr(linear_module, "_gemm", lambda *a: calls.append(a[0].shape) or gemm(*a))
    return calls


@pytest.mark.parametrize(("shape", "out", "bias"), [((2, 7, 16), 48, True), ((30, 48), 16, False), ((5, 1, 3, 8), 8, True)])
def test_onednn_path_equals_f_linear(onednn, shape, out, bias):
    g = torch.Generator().manual_seed(0)
    x0, w0 = torch.randn(shape, generator=g), torch.randn(out, shape[-1], generator=g)
    b0 = torch.randn(out, generator=g) if bias else None
    up = torch.randn(*shape[:-1], out, generator=g)

    def run(fn):
        x, w = x0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        b = None if b0 is None else b0.clone().requires_grad_(True)
        y = fn(x, w, b)
        (y * up).sum().backward()
        return [y, x.grad, w.grad] + ([b.grad] if bias else [])

    ours = run(linear)
    assert len(onednn) == 3  # forward, input gradient, weight gradient
    for a, r in zip(ours, run(F.linear), strict=True):
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)
    assert ours[2].is_contiguous()  # weight gradients can be stolen by AccumulateGrad


def test_onednn_output_can_be_modified_in_place(onednn):
    x, w = torch.randn(4, 3, 8, requires_grad=True), torch.randn(8, 8, requires_grad=True)
    res = torch.randn(4, 3, 8)
    linear(x, w).add_(res).sum().backward()  # residual add in place on the output (Chronos-2 blocks)
    torch.testing.assert_close(w.grad, torch.ones(8, 12) @ x.detach().reshape(12, 8))  # d sum(x W^T) / dW


def test_falls_back_where_onednn_does_not_apply(onednn):
    x, w = torch.randn(6, 16), torch.randn(8, 32)
    torch.testing.assert_close(linear(x, w[:, :16]), F.linear(x, w[:, :16]))  # strided weight slice
    torch.testing.assert_close(linear(x.double(), w[:, :16].double().contiguous()), F.linear(x.double(), w[:, :16].double()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w[:, :16].contiguous()).dtype == torch.bfloat16  # autocast keeps its bf16 GEMM
    assert onednn == []
    layer = Linear(16, 8)
    assert list(layer.state_dict()) == ["weight", "bias"]
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert len(onednn) == 1


def test_path_choice_from_environment(monkeypatch):
    monkeypatch.setattr(linear_module, "_choice", None)
    monkeypatch.setenv("TSFM_CPU_LINEAR", "aten")
    assert linear_module.use_onednn() is False
    monkeypatch.setattr(linear_module, "_choice", None)
    monkeypatch.setenv("TSFM_CPU_LINEAR", "onednn")
    assert linear_module.use_onednn() is (torch.backends.mkldnn.is_available() and linear_module._onednn_op() is not None)
    monkeypatch.setattr(linear_module, "_choice", None)
    monkeypatch.setenv("TSFM_CPU_LINEAR", "fast")
    with pytest.raises(ValueError, match="TSFM_CPU_LINEAR='fast': use auto, onednn or aten"):
        linear_module.use_onednn()


def test_calibration_leaves_the_global_rng_alone(monkeypatch):
    """The one-off timing at first use must not shift seeded sampling (first forecast = later ones)."""
    monkeypatch.setattr(linear_module, "_choice", None)
    monkeypatch.setenv("TSFM_CPU_LINEAR", "auto")
    torch.manual_seed(0)
    linear_module.use_onednn()
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_compiled_graphs_use_f_linear(onednn):
    x, w = torch.randn(4, 8), torch.randn(6, 8)
    out = torch.compile(linear, backend="aot_eager")(x, w)
    torch.testing.assert_close(out, F.linear(x, w))
    assert not onednn  # the oneDNN autograd Function is not traced
