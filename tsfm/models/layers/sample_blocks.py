"""Block-diagonal attention over the samples of packed rows.

A packed row of ``L`` tokens holds several samples, and a token may only attend to tokens of its
own sample. Masking a dense ``L x L`` score matrix wastes most of the attention work when rows
hold many short samples (four samples of 128 tokens in a row of 512: 3/4 of the scores are
masked). :class:`SampleBlocks` regroups the tokens once per forward (a few host syncs, none
per layer):

* tokens are grouped by ``(row, sample_id)`` (padding, ``sample_id == 0``, is a group of its
  own, as in the dense mask where padding tokens see each other), in position order;
* groups are bucketed by length into widths ``8, 12, 16, 24, 32, 48, ...`` (at most 1/3 of a
  bucket is padding) and each bucket is one ``[n, H, width, hd]`` attention call;
* every layer gathers q/k/v into the buckets, attends within them and gathers the outputs back
  (:meth:`SampleBlocks.attend`); gradients flow through the gathers.

Padding slots of a bucket gather token 0 (any real token would do): the masks hide them as keys,
their queries see themselves and the bucket's real keys (so no softmax row is empty) and their
outputs are dropped, so they receive no gradient either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def bucket_width(n: int, minimum: int = 8, align: int = 1) -> int:
    """Smallest width in ``8, 12, 16, 24, 32, 48, ...`` that holds ``n`` tokens, rounded up to a
    multiple of ``align`` (16 on CUDA, where the memory-efficient kernel wants aligned masks)."""
    w = minimum
    while w < n:
        w = w * 3 // 2 if (w & (w - 1)) == 0 else w * 4 // 3  # 2^k -> 1.5*2^k -> 2^(k+1)
    return -(-w // align) * align


@dataclass
class Bucket:
    index: torch.Tensor  # [n, w] flat token index per slot; padding slots -> N
    masks: dict[str, torch.Tensor]  # per-bucket attention masks, built by the caller's ``make_masks``
    gather: torch.Tensor  # [n * w] index that fills the slots (padding slots -> 0)


@dataclass
class SampleBlocks:
    """Where each token of a packed ``[B, L]`` batch sits in the length buckets."""

    num_tokens: int  # N = B * L
    buckets: list[Bucket]
    inverse: torch.Tensor  # [N] position of each token in the concatenated bucket slots

    @classmethod
    def build(
        cls,
        sample_id: torch.Tensor,  # [B, L]
        make_masks: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    ) -> SampleBlocks:
        """``make_masks(index, valid)`` -> masks of one bucket (``index``/``valid``: ``[n, w]``)."""
        b, seq = sample_id.shape
        n_tok, dev = b * seq, sample_id.device
        key = (torch.arange(b, device=dev)[:, None] * (int(sample_id.max()) + 1) + sample_id).reshape(-1)
        order = torch.argsort(key, stable=True)  # grouped, positions ascending within a group
        _, counts = torch.unique_consecutive(key[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        align = 16 if dev.type == "cuda" else 1
        widths = torch.tensor([bucket_width(c, align=align) for c in counts.tolist()], device=dev)  # host sync
        buckets, inverse, offset = [], torch.empty(n_tok, dtype=torch.long, device=dev), 0
        for w in torch.unique(widths).tolist():
            g = (widths == w).nonzero().squeeze(1)
            slot = torch.arange(w, device=dev)
            valid = slot[None] < counts[g, None]  # [n, w]
            pos = (starts[g, None] + slot[None]).clamp(max=n_tok - 1)
            index = torch.where(valid, order[pos], n_tok)
            inverse[index[valid]] = offset + torch.arange(index.numel(), device=dev).view_as(index)[valid]
            offset += index.numel()
            buckets.append(Bucket(index, make_masks(index, valid), torch.where(valid, index, 0).reshape(-1)))
        return cls(n_tok, buckets, inverse)

    def attend(
        self,
        q: torch.Tensor,  # [N, H, hd]
        k: torch.Tensor,
        v: torch.Tensor,
        attention: Callable[..., torch.Tensor],  # (q, k, v, **bucket.masks) with [n, H, w, hd] -> same
    ) -> torch.Tensor:
        """Attention of every token within its sample; returns ``[N, H * hd]``."""
        outs = []
        for bk in self.buckets:
            n, w = bk.index.shape
            qb, kb, vb = (t.index_select(0, bk.gather).view(n, w, *t.shape[1:]).transpose(1, 2) for t in (q, k, v))
            o = attention(qb, kb, vb, **bk.masks)  # [n, H, w, hd]
            outs.append(o.transpose(1, 2).reshape(n * w, -1))
        return (outs[0] if len(outs) == 1 else torch.cat(outs)).index_select(0, self.inverse)
