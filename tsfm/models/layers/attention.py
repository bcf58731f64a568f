"""Attention with a learned per-head bias on a boolean pair relation, trainable on fast kernels.

``softmax(q k^T * scale + mask + delta_h * rel) v`` where ``mask`` is 0/-inf (which keys a query
may see) and ``rel`` a boolean pair relation (e.g. "same variate"). On CUDA, SDPA's kernels
differentiate an additive float bias; on CPU, a bias that requires grad sends SDPA to its slow
math path (every [B, H, L, L] intermediate materialised, ~2.4x slower here). The CPU path below
keeps the flash kernel for q, k, v and gets ``d loss / d delta`` exactly from one extra
forward-only flash pass restricted to ``rel`` keys:

    dL/d delta_h = sum_i [ dO_i . (w_i o_rel,i) - (dO_i . O_i) w_i ],   w_i = exp(lse_rel,i + delta - lse_i)

(``w_i`` = softmax mass on the ``rel`` keys, ``o_rel`` = attention output over those keys only).

Short sequences (``L <= SHORT_MAX``, e.g. the per-sample blocks of packed rows) attend with
plain batched matmuls on CPU: the flash kernel's tiling costs more than the [L, L] score
matrix there (measured here, fp32, fwd + bwd of 4,096 tokens in blocks of L: 1.4x faster at
L = 128, 2.9x at L = 8, 1.3x at 256; flash wins from L = 512).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from tsfm.models.layers.dropout import dropout

# private aten ops (the CPU flash kernel with its log-sum-exp); a torch build without them falls back
# to the public F.scaled_dot_product_attention (autograd's math path: exact, slower)
_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_flash_bwd = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
SHORT_MAX = 256  # CPU: longest sequence attended with plain matmuls instead of the flash kernel


class _RelBiasAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, delta, mask, rel, rel_mask, scale):  # noqa: D102 - see module docstring
        bias = torch.addcmul(mask, rel, delta.view(1, -1, 1, 1).to(mask.dtype)).to(q.dtype)
        out, lse = _flash(q, k, v, 0.0, False, attn_mask=bias, scale=scale)
        with torch.no_grad():
            o_rel, lse_rel = _flash(q, k, v, 0.0, False, attn_mask=rel_mask, scale=scale)
        ctx.save_for_backward(q, k, v, out, lse, bias, o_rel, lse_rel, delta)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable  # a second derivative raises instead of being silently wrong
    def backward(ctx, d_out):  # noqa: D102
        q, k, v, out, lse, bias, o_rel, lse_rel, delta = ctx.saved_tensors
        d_out = d_out.contiguous()
        dq, dk, dv = _flash_bwd(d_out, q, k, v, out, lse, 0.0, False, attn_mask=bias, scale=ctx.scale)
        w = torch.exp(lse_rel.float() + delta.float().view(1, -1, 1) - lse.float())  # [B, H, L]
        g = w * ((d_out * o_rel).float().sum(-1) - (d_out * out).float().sum(-1))
        return dq, dk, dv, g.sum(dim=(0, 2)).to(delta.dtype), None, None, None, None


def rel_bias_attention(
    q: torch.Tensor,  # [B, H, L, D]
    k: torch.Tensor,
    v: torch.Tensor,
    delta: torch.Tensor,  # [H]
    mask: torch.Tensor,  # [B, 1, L, L] float, 0 = visible, -inf = hidden (every query sees itself)
    rel: torch.Tensor,  # [B, 1, L, L] bool, or float 0/1
    rel_mask: torch.Tensor | None = None,  # [B, 1, L, L] mask restricted to rel (precompute once per forward)
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """SDPA with ``mask + delta_h * rel`` as additive bias; exact gradients for q, k, v and delta."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    mask = mask.to(q.dtype)
    relf = rel.to(q.dtype)
    if q.device.type == "cpu" and q.shape[-2] <= SHORT_MAX:
        return _short_attention(q, k, v, torch.addcmul(mask, relf, delta.view(1, -1, 1, 1).to(q.dtype)), dropout_p, scale)
    fast = (
        q.device.type == "cpu"
        and dropout_p == 0.0
        and torch.is_grad_enabled()
        and delta.requires_grad
        and q.dtype in (torch.float32, torch.bfloat16)
        and _flash is not None
        and _flash_bwd is not None
    )
    if fast:
        if rel_mask is None:
            rel_mask = mask.masked_fill(relf == 0, float("-inf"))
        return _RelBiasAttention.apply(q, k, v, delta, mask, relf, rel_mask.to(q.dtype), scale)
    bias = torch.addcmul(mask, relf, delta.view(1, -1, 1, 1).to(q.dtype))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)


def attention(
    q: torch.Tensor,  # [..., Lq, D]
    k: torch.Tensor,  # [..., Lk, D]
    v: torch.Tensor,
    mask: torch.Tensor | None = None,  # broadcastable to [..., Lq, Lk]: bool (True = visible) or additive float
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, with short key sequences on CPU attended by batched matmuls."""
    if q.device.type != "cpu" or k.shape[-2] > SHORT_MAX:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if mask is not None and mask.dtype == torch.bool:  # finfo.min: a row without visible keys averages, no NaN
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, torch.finfo(q.dtype).min)
    return _short_attention(q, k, v, mask, dropout_p, scale)


def _short_attention(q, k, v, bias, dropout_p: float, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` with batched matmuls (autograd differentiates ``bias``)."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if scale != 1.0:
        scores = scores.mul_(scale)
    if bias is not None:
        scores = scores.add_(bias)
    p = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
    if dropout_p > 0.0:
        p = dropout(p, dropout_p)
    return torch.matmul(p, v)
