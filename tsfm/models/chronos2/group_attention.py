"""Group attention across the series of one group, block-diagonal and free for singletons.

Chronos-2 mixes information across related series (targets and covariates of one task) by
attending along the *batch* axis at every token position, restricted to rows with the same
group id and to keys observed at that position. The reference builds a dense ``[S, B, B]`` mask
and attends over the whole batch (O(S·B²)). Here:

* a **singleton** group needs no attention at all: softmax over one key is 1, so the output
  is ``o(v(x))`` (at positions where that key is masked the cell is never read by anything
  downstream, see :func:`group_attention`);
* **multi-series** groups are gathered into a padded ``[num_groups, G, S, ...]`` block (rows
  sorted by group, ``G`` = largest group) and attend within their block only: O(S·Σ G²);
* one group spanning the whole batch (``cross_learning``) attends without any gather.

:class:`GroupLayout` is computed once per forward (one host sync) and reused by every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class GroupLayout:
    """Where each row's group lives. ``kind``: ``single`` | ``one`` | ``blocks``."""

    kind: str
    batch_size: int
    num_groups: int = 0  # multi-series groups (blocks) only
    group_size: int = 0  # G = size of the largest group
    gather_idx: torch.Tensor | None = None  # [num_groups*G] row of each slot (padding -> row 0)
    slot_valid: torch.Tensor | None = None  # [num_groups*G] bool
    multi_rows: torch.Tensor | None = None  # [M] rows in multi-series groups, in valid-slot order

    @classmethod
    def from_group_ids(cls, group_ids: torch.Tensor | None, batch_size: int) -> GroupLayout:
        if group_ids is None:
            return cls("single", batch_size)
        if group_ids.shape != (batch_size,):
            raise ValueError(f"group_ids must have shape ({batch_size},), got {tuple(group_ids.shape)}")
        _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
        counts_cpu = counts.cpu()
        if int(counts_cpu.max()) == 1:
            return cls("single", batch_size)
        if len(counts_cpu) == 1:
            return cls("one", batch_size, num_groups=1, group_size=batch_size)
        device = group_ids.device
        multi_groups = torch.nonzero(counts_cpu > 1).squeeze(1)  # group indices with >1 rows
        sizes = counts_cpu[multi_groups]
        g_max = int(sizes.max())
        # rows of multi groups sorted by (group, row): stable sort keeps the input order inside a group
        new_id = torch.full((len(counts_cpu),), -1, dtype=torch.long)
        new_id[multi_groups] = torch.arange(len(multi_groups))
        row_group = new_id.to(device)[inverse]  # [B], -1 for singletons
        rows = torch.nonzero(row_group >= 0).squeeze(1)
        rows = rows[torch.argsort(row_group[rows], stable=True)]
        # slot of each row inside its block: position among the rows of its group
        starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), sizes[:-1]]), 0).to(device)
        grp = row_group[rows]
        pos = torch.arange(len(rows), device=device) - starts[grp]
        slot = grp * g_max + pos
        n_slots = len(multi_groups) * g_max
        gather_idx = torch.zeros(n_slots, dtype=torch.long, device=device)
        gather_idx[slot] = rows
        slot_valid = torch.zeros(n_slots, dtype=torch.bool, device=device)
        slot_valid[slot] = True
        return cls("blocks", batch_size, len(multi_groups), g_max, gather_idx, slot_valid, rows)

    def key_mask(self, time_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive mask for group attention from the time mask ``[B, S]`` (1 = observed).

        ``one``: ``[S, 1, 1, B]``; ``blocks``: ``[num_groups*S, 1, 1, G]``; ``single``: None.
        Masked keys get ``finfo.min`` (as the reference): a query whose keys are all masked
        gets a finite uniform average instead of NaN.
        """
        neg = torch.finfo(dtype).min
        if self.kind == "single":
            return None
        m = time_mask > 0
        if self.kind == "one":
            keep = m.transpose(0, 1)[:, None, None, :]  # [S, 1, 1, B]
        else:
            assert self.gather_idx is not None and self.slot_valid is not None
            keep = m[self.gather_idx] & self.slot_valid[:, None]  # [n_g*G, S]
            s = m.shape[1]
            keep = keep.view(self.num_groups, self.group_size, s).transpose(1, 2)
            keep = keep.reshape(self.num_groups * s, 1, 1, self.group_size)
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, neg)

    def slice_mask(self, mask: torch.Tensor | None, seq_len: int, last: int) -> torch.Tensor | None:
        """The mask restricted to the last ``last`` of ``seq_len`` positions."""
        if mask is None:
            return None
        if self.kind == "one":
            return mask[-last:]
        g = mask.shape[-1]
        return mask.view(self.num_groups, seq_len, 1, 1, g)[:, -last:].reshape(-1, 1, 1, g)


def group_attention(
    h: torch.Tensor,
    q_proj: torch.nn.Linear,
    k_proj: torch.nn.Linear,
    v_proj: torch.nn.Linear,
    num_heads: int,
    layout: GroupLayout,
    mask: torch.Tensor | None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention along the batch axis within groups, before the output projection.

    ``h``: normalised hidden states ``[B, S, D]``; returns ``[B, S, H*dk]``. Rows of singleton
    groups get ``v(h)`` (attention over their single key; in training, attention dropout drops
    each head of a cell with probability ``dropout_p``, as dropout on that weight of 1 does).
    Cells whose keys are all masked hold an arbitrary finite value; they are masked keys for every other cell (time and group
    attention), so nothing downstream reads them.
    """
    b, s, _ = h.shape
    v_all = v_proj(h)  # [B, S, HD]
    if layout.kind == "single":
        return _drop_heads(v_all, num_heads, dropout_p)
    hd = v_all.shape[-1]
    dk = hd // num_heads
    if layout.kind == "one":
        # [B, S, H, dk] -> [S, H, B, dk]
        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, s, num_heads, dk).permute(1, 2, 0, 3)

        out = F.scaled_dot_product_attention(
            heads(q_proj(h)), heads(k_proj(h)), heads(v_all), attn_mask=mask, dropout_p=dropout_p, scale=1.0
        )  # [S, H, B, dk]
        return out.permute(2, 0, 1, 3).reshape(b, s, hd)
    assert layout.gather_idx is not None and layout.slot_valid is not None and layout.multi_rows is not None
    n_g, g = layout.num_groups, layout.group_size
    hm = h.index_select(0, layout.gather_idx)  # [n_g*G, S, D]

    def blocks(x: torch.Tensor) -> torch.Tensor:  # [n_g*G, S, HD] -> [n_g*S, H, G, dk]
        return x.view(n_g, g, s, num_heads, dk).permute(0, 2, 3, 1, 4).reshape(n_g * s, num_heads, g, dk)

    vm = v_all.index_select(0, layout.gather_idx)
    out = F.scaled_dot_product_attention(
        blocks(q_proj(hm)), blocks(k_proj(hm)), blocks(vm), attn_mask=mask, dropout_p=dropout_p, scale=1.0
    )  # [n_g*S, H, G, dk]
    out = out.view(n_g, s, num_heads, g, dk).permute(0, 3, 1, 2, 4).reshape(n_g * g, s, hd)
    out = out[layout.slot_valid]  # [M, S, HD] in multi_rows order
    return _drop_heads(v_all, num_heads, dropout_p).index_copy(0, layout.multi_rows, out)  # singletons: v(h)


def _drop_heads(v: torch.Tensor, num_heads: int, p: float) -> torch.Tensor:
    """Attention dropout for singleton rows: their one attention weight (1.0) is dropped with
    probability ``p`` per (row, position, head), i.e. whole heads of ``v`` [B, S, H*dk] are zeroed."""
    if p == 0.0:
        return v
    b, s, _ = v.shape
    keep = torch.rand(b, s, num_heads, 1, device=v.device) >= p
    return (v.view(b, s, num_heads, -1) * (keep / (1.0 - p)).to(v.dtype)).view(b, s, -1)
