"""Packed std scaling and per-series reductions with segment operations.

The reference builds ``[L, L]`` float "same series" masks to sum over a series (in the scaler
and in the loss). Here every token carries a ``series_id`` (one integer per
(row, sample_id, variate_id), unique across the batch) and sums are ``scatter_add`` over it:
O(L) memory and work instead of O(L^2).
"""

from __future__ import annotations

import torch


def make_series_id(sample_id: torch.Tensor, variate_id: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` dense ids of (row, sample_id, variate_id) groups, unique across the batch.

    Used when a batch does not bring its own ``series_id`` (the task's collate and the
    forecaster compute it on the host, so training never pays this device sync).
    """
    # one int64 key per token, ordered like (row, sample_id, variate_id): a 1-D unique (a sort)
    # instead of torch.unique(dim=0), which is ~10x slower on CPU
    n_s, n_v = int(sample_id.max()) + 1, int(variate_id.max()) + 1
    b = torch.arange(sample_id.shape[0], device=sample_id.device)[:, None]
    key = (b * n_s + sample_id) * n_v + variate_id
    _, inverse = torch.unique(key, return_inverse=True)
    return inverse.view(sample_id.shape)


def segment_sum(values: torch.Tensor, seg: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum ``values`` [N, ...] into ``num_segments`` bins by ``seg`` [N]."""
    out = values.new_zeros((num_segments, *values.shape[1:]))
    return out.index_add_(0, seg, values)


def packed_std_scale(
    target: torch.Tensor,  # [B, L, P]
    observed_mask: torch.Tensor,  # [B, L, P] bool
    prediction_mask: torch.Tensor,  # [B, L] bool
    sample_id: torch.Tensor,  # [B, L]
    series_id: torch.Tensor,  # [B, L]
    minimum_scale: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-series mean and Bessel-corrected std over observed context values, in float64.

    Returns ``loc``, ``scale`` of shape ``[B, L, 1]`` (float32); padding tokens (sample_id 0)
    get loc 0 and scale 1, exactly as the reference.
    """
    n_seg = series_id.numel()  # static upper bound: no host sync
    seg = series_id.reshape(-1)
    x = target.reshape(-1, target.shape[-1]).double()
    m = (observed_mask & ~prediction_mask.unsqueeze(-1)).reshape(x.shape).double()
    count = segment_sum(m.sum(-1), seg, n_seg)  # [S]
    total = segment_sum((x * m).sum(-1), seg, n_seg)
    loc_s = total / torch.where(count == 0, torch.ones_like(count), count)
    loc_t = loc_s[seg]  # [N]
    sq = segment_sum((((x - loc_t[:, None]) ** 2) * m).sum(-1), seg, n_seg)
    denom = count - 1
    var_s = sq / torch.where(denom == 0, torch.ones_like(denom), denom)
    scale_t = torch.sqrt(var_s + minimum_scale)[seg]
    pad = (sample_id == 0).reshape(-1)
    loc_t = torch.where(pad, torch.zeros_like(loc_t), loc_t)
    scale_t = torch.where(pad, torch.ones_like(scale_t), scale_t)
    shape = (*target.shape[:-1], 1)
    return loc_t.to(torch.float32).view(shape), scale_t.to(torch.float32).view(shape)


def per_series_mean_loss(
    token_loss_sum: torch.Tensor,  # [N] sum of per-position losses of each predicted token
    token_count: torch.Tensor,  # [N] number of observed positions of each predicted token
    token_series: torch.Tensor,  # [N] series id of each predicted token
    num_segments: int,
) -> torch.Tensor:
    """Average over positions within each series, then over series (each series weighs the same).

    Only series with at least one predicted token count; a series whose predicted values are
    all unobserved contributes 0 (the reference's ``safe_div`` convention).
    """
    loss_s = segment_sum(token_loss_sum, token_series, num_segments)
    count_s = segment_sum(token_count.to(token_loss_sum.dtype), token_series, num_segments)
    has_pred = segment_sum(torch.ones_like(token_loss_sum), token_series, num_segments) > 0
    mean_s = loss_s / torch.where(count_s == 0, torch.ones_like(count_s), count_s)
    n_series = has_pred.sum().clamp_min(1)
    return (mean_s * has_pred).sum() / n_series
