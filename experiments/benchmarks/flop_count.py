"""Counted floating-point operations of a callable, for the speed benchmarks.

``torch.utils.flop_counter`` counts matmuls and SDPA's CUDA kernels; this adds SDPA's CPU flash
kernels (forward and backward) so attention is counted on CPU too, and oneDNN's linear
(``mkldnn::_linear_pointwise``, which tsfm's float32 CPU linears may use). Only torch is
imported: the reference processes (anchors venv) import this file as well, so both sides count alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _flash_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flash_cpu_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _onednn_linear(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    rows = 1
    for d in input_shape[:-1]:
        rows *= d
    return 2 * rows * input_shape[-1] * weight_shape[0]


def flop_counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts the CPU attention and oneDNN linear kernels."""
    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward,
    }
    onednn = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if onednn is not None:
        mapping[onednn] = _onednn_linear
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of matmuls and attention executed by ``fn()``."""
    with flop_counter() as counter:
        fn()
    return counter.get_total_flops()
