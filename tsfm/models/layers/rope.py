"""Rotary position embedding (RoPE) helpers shared by the families.

cos/sin are computed once per forward from (possibly per-token) integer positions and passed to
every layer, so no layer re-derives tables or syncs with the host to size a cache.
Two pairing conventions exist in the wild:

* ``interleaved``: dims ``(0, 1), (2, 3), ...`` rotate together (Moirai / uni2ts);
* ``half``: dim ``i`` pairs with ``i + d/2`` (GPT-NeoX / Llama / T5-style RoPE in Chronos-2).
"""

from __future__ import annotations

import torch


def rope_inv_freq(rot_dim: int, base: float = 10000.0, device: torch.device | None = None) -> torch.Tensor:
    """``base^(-2j/rot_dim)`` for ``j < rot_dim/2`` (float32), as the references compute it."""
    if rot_dim % 2:
        raise ValueError(f"RoPE dimension must be even, got {rot_dim}")
    return 1.0 / torch.pow(base, torch.arange(0, rot_dim, 2, dtype=torch.float, device=device) / rot_dim)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of ``positions * inv_freq``: ``[..., L] -> two [..., L, rot_dim/2]`` float32 tensors."""
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # [..., L, R/2]
    return torch.cos(angles), torch.sin(angles)


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` dims of ``x`` in interleaved pairs; the rest pass through.

    ``x``: [..., L, D]; ``cos``/``sin``: broadcastable to [..., L, R/2] with R <= D.
    """
    r = 2 * cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    x1, x2 = rot[..., 0::2], rot[..., 1::2]  # [..., L, R/2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half convention over the whole last dim: ``x*cos + rotate_half(x)*sin``.

    ``cos``/``sin``: [..., L, D/2] (one angle per pair ``(i, i + D/2)``).
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_rotation_matrix(head_dim: int, rot_dim: int, interleaved: bool = True) -> torch.Tensor:
    """Signed permutation ``R`` [D, D] with ``x @ R`` = the "rotated" partner of each dim (0 beyond rot_dim).

    With full-width tables ``cos_f``/``sin_f`` (1 and 0 on unrotated dims), RoPE becomes
    ``x * cos_f + (x @ R) * sin_f``: three fused ops for q and k together instead of a dozen
    slicing/stacking ops per tensor. The product with +-1 entries is exact in any dtype.
    """
    r = torch.zeros(head_dim, head_dim)
    half = rot_dim // 2
    for j in range(half):
        a, b = (2 * j, 2 * j + 1) if interleaved else (j, j + half)
        r[b, a], r[a, b] = -1.0, 1.0  # out[a] = -x[b], out[b] = x[a]
    return r


def rope_full_tables(cos: torch.Tensor, sin: torch.Tensor, head_dim: int, interleaved: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand ``[..., R/2]`` cos/sin to ``[..., head_dim]`` (pair layout; cos 1 / sin 0 past R)."""
    if interleaved:
        c, s = cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)
    else:
        c, s = torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1)
    pad = head_dim - c.shape[-1]
    if pad:
        c = torch.cat((c, c.new_ones(*c.shape[:-1], pad)), dim=-1)
        s = torch.cat((s, s.new_zeros(*s.shape[:-1], pad)), dim=-1)
    return c, s


def apply_rope_matmul(x: torch.Tensor, cos_f: torch.Tensor, sin_f: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """RoPE via ``x * cos_f + (x @ rot) * sin_f`` (see :func:`rope_rotation_matrix`)."""
    return torch.addcmul(x * cos_f, x @ rot, sin_f)
