"""Linear layers whose float32 CPU GEMMs may run on oneDNN instead of the BLAS behind ``aten::mm``.

PyTorch's CPU ``F.linear`` calls MKL's ``sgemm``. On CPUs that MKL does not tune for (AMD EPYC
here: AVX-512 in hardware, MKL's AVX2 code path), oneDNN's matmul, which picks its kernels from
the instruction set, is about twice as fast in float32 at the same precision (measured here,
2 threads: 178-214 vs 334-474 GFLOP/s over the Moirai/Chronos-2 shapes, forward and both
backward GEMMs). :func:`linear` routes float32 CPU GEMMs through ``torch.ops.mkldnn._linear_pointwise``
(forward, input gradient and weight gradient written out in :class:`_OneDNNLinear`) when that
is faster on this machine, and defers to ``F.linear`` everywhere else (CUDA, bf16 autocast,
other dtypes).

Which path runs is decided once per process by ``TSFM_CPU_LINEAR`` or :func:`set_cpu_gemm`
(``trainer.cpu_gemm`` in the training configs):

* ``auto`` (default): time both on one representative GEMM at first use, keep the faster;
* ``onednn`` / ``aten``: force one (e.g. to compare, or to rule the path out when debugging).

The choice is logged, stored in training checkpoints and reused when a run resumes (a stored
``onednn`` on a machine without it falls back to ``aten`` with a warning naming both).

Numerics: both are IEEE float32 GEMMs; they differ only in summation order (rounding-level
differences, as between two BLAS libraries).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)
_choice: bool | None = None  # True: oneDNN for float32 CPU GEMMs


def _onednn_op():
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _gemm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T (+ b)`` on oneDNN; ``x`` [N, K] (any strides), ``w`` [M, K]."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _calibrate() -> bool:
    """Whether oneDNN beats ``aten::mm`` on a Moirai-sized float32 GEMM here (~30 ms, once)."""
    try:
        g = torch.Generator().manual_seed(0)  # own stream: the first forward must not consume the global RNG
        a, w = torch.randn(2048, 384, generator=g), torch.randn(1024, 384, generator=g)

        def best(fn) -> float:  # noqa: ANN001
            fn()
            t = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
            return min(t)

        ours = best(lambda: _gemm(a, w))
        if not torch.allclose(_gemm(a, w), a @ w.T, rtol=1e-4, atol=1e-3):
            return False
        return ours < 0.85 * best(lambda: a @ w.T)
    except (RuntimeError, TypeError):  # op missing, changed or not built for this CPU
        return False


MODES = ("auto", "onednn", "aten")


def _outside_modes():
    """A context hiding active dispatch modes (FLOP counters) from the calibration; the helper is
    private in torch, so a build without it calibrates inside them (counted, still correct)."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes

        return _disable_current_modes()
    except ImportError:
        return contextlib.nullcontext()


def onednn_available() -> bool:
    return _onednn_op() is not None and torch.backends.mkldnn.is_available()


def set_cpu_gemm(mode: str) -> str:
    """Choose the float32 CPU GEMM for this process: ``auto`` (time both), ``onednn`` or ``aten``.
    Returns the kernel in use. ``onednn`` where it is unavailable falls back to ``aten`` with a warning."""
    global _choice
    mode = str(mode).lower()
    if mode not in MODES:
        raise ValueError(f"cpu_gemm={mode!r}: use {', '.join(MODES)}")
    available = onednn_available()
    if mode == "onednn" and not available:
        log.warning("cpu_gemm=onednn is unavailable on this machine (no oneDNN linear op); float32 CPU GEMMs "
                    "use aten (MKL/OpenBLAS) instead")
    if available and mode == "auto":
        with _outside_modes(), torch.no_grad():  # not seen by FLOP counters or autograd
            available = _calibrate()
    _choice = available and mode != "aten"
    log.info("float32 CPU GEMMs: %s (cpu_gemm=%s)", cpu_gemm(), mode)
    return cpu_gemm()


def cpu_gemm() -> str:
    """The kernel float32 CPU GEMMs use in this process: ``onednn`` or ``aten`` (decides if undecided)."""
    return "onednn" if use_onednn() else "aten"


def use_onednn() -> bool:
    """Whether float32 CPU GEMMs go through oneDNN in this process (see module docstring)."""
    if _choice is None:
        mode = os.environ.get("TSFM_CPU_LINEAR", "auto").lower()
        if mode not in MODES:
            raise ValueError(f"TSFM_CPU_LINEAR={mode!r}: use auto, onednn or aten")
        set_cpu_gemm(mode)
    return bool(_choice)


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x2, weight)  # x2: [N, K] contiguous (views stay outside the Function)
        ctx.has_bias = bias is not None
        return _gemm(x2, weight, bias)

    @staticmethod
    @once_differentiable  # a second derivative (create_graph=True) raises instead of being silently wrong
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x2, weight = ctx.saved_tensors
        g2 = grad.contiguous()
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _gemm(g2, weight.t())  # g @ W (the transposed weight is read in place)
        if ctx.needs_input_grad[1]:  # g^T x; the operand with fewer features goes first (fastest here)
            k, m = x2.shape[1], g2.shape[1]
            dw = _gemm(x2.t(), g2.t()).t().contiguous() if k <= m else _gemm(g2.t(), x2.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(0)
        return dx, dw, db


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``; float32 on CPU (outside autocast) through oneDNN when that is faster here."""
    if (
        x.device.type == "cpu"
        and not torch.compiler.is_compiling()  # traced graphs use F.linear (the compiler picks the GEMM)
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and x.numel() > 0
        and x.is_contiguous()
        and weight.is_contiguous()  # strided operands send oneDNN to a slow reference kernel
        and not torch.is_autocast_enabled("cpu")
        and use_onednn()
    ):
        return _OneDNNLinear.apply(x.view(-1, x.shape[-1]), weight, bias).view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
