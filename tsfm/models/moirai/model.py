"""Moirai masked encoder (single device, no Lightning/Hydra), weight-compatible with uni2ts 2.0.0.

Packed input, per row of L tokens (``P`` = the batch's widest patch, not necessarily 128):

* ``target`` [B, L, P], ``observed_mask`` [B, L, P]: one patch per token, values left-aligned;
* ``sample_id`` [B, L] (0 = padding), ``time_id``, ``variate_id``, ``prediction_mask`` [B, L];
* ``patch_size`` [B, L] (0 or any size not in ``patch_sizes`` = padding: zero input vector);
* optional ``series_id`` [B, L]: per-row ids (< L) of the (sample, variate) groups (computed if absent).

Efficiency versus the reference: only the active patch size's input/output projection is
computed per token, scaler and loss use segment sums, RoPE cos/sin and the attention masks are
built once per forward (no host sync per layer; complex-number RoPE in float32), attention
takes one fused ``mask + delta_h * same_variate`` bias per layer on SDPA's flash kernel or, for
short samples on CPU, on batched matmuls (:mod:`tsfm.models.layers.attention`),
rows packing several samples attend block-diagonally per sample
(:mod:`tsfm.models.layers.sample_blocks`), in training the last layer, the head and the
loss only compute the predicted tokens, and float32 CPU GEMMs run on oneDNN where that is
faster than torch's BLAS (:mod:`tsfm.models.layers.linear`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import tsfm.models.layers.attention as attention_module
from tsfm.models.layers.attention import rel_bias_attention
from tsfm.models.layers.dropout import Dropout
from tsfm.models.layers.linear import Linear, linear
from tsfm.models.layers.norm import rms_norm
from tsfm.models.layers.rope import RopeTables, rope_cos_sin, rope_inv_freq
from tsfm.models.layers.sample_blocks import SampleBlocks
from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.distribution import Mixture, MixtureHead
from tsfm.models.moirai.scaler import make_series_id, packed_std_scale, per_series_mean_loss


class MultiInSizeLinear(nn.Module):
    """Input projection per patch size; only the first ``patch_size`` columns are used."""

    def __init__(self, d_model: int, patch_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.patch_sizes = patch_sizes
        self.weight = nn.Parameter(torch.empty(len(patch_sizes), d_model, max(patch_sizes)))
        self.bias = nn.Parameter(torch.zeros(len(patch_sizes), d_model))
        for i, p in enumerate(patch_sizes):
            nn.init.uniform_(self.weight[i], -(p**-0.5), p**-0.5)
            nn.init.uniform_(self.bias[i], -(p**-0.5), p**-0.5)

    def forward(self, x: torch.Tensor, patch_size: torch.Tensor, present: list[int]) -> torch.Tensor:
        """``x`` [B, L, P], ``patch_size`` [B, L] -> [B, L, d]; ``present``: sizes in the batch."""
        if len(present) == 1 and x.shape[-1] >= present[0] and bool((patch_size == present[0]).all()):
            i, p = self.patch_sizes.index(present[0]), present[0]
            return linear(x[..., :p], self.weight[i, :, :p], self.bias[i])
        flat, ps = x.reshape(-1, x.shape[-1]), patch_size.reshape(-1)
        out = None
        for p in present:
            i = self.patch_sizes.index(p)
            idx = (ps == p).nonzero().squeeze(1)
            y = linear(flat[idx, :p], self.weight[i, :, :p], self.bias[i])  # bf16 under autocast
            out = (y.new_zeros(flat.shape[0], y.shape[1]) if out is None else out).index_put((idx,), y)
        if out is None:  # no token with a known patch size: all padding
            return x.new_zeros(*x.shape[:-1], self.weight.shape[1])
        return out.view(*x.shape[:-1], -1)


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` (the reference's parameter layout) computed by :func:`rms_norm`, output in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, out_dtype=x.dtype)


class BinaryAttentionBias(nn.Module):
    """Learned per-head bias: ``emb[1, h]`` for same-variate pairs, ``emb[0, h]`` otherwise."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(2, num_heads)


class Attention(nn.Module):
    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        d, self.h, self.hd = cfg.d_model, cfg.num_heads, cfg.head_dim
        self.q_proj, self.k_proj = Linear(d, d, bias=False), Linear(d, d, bias=False)
        self.v_proj, self.out_proj = Linear(d, d, bias=False), Linear(d, d, bias=False)
        self.q_norm, self.k_norm = RMSNorm(self.hd, eps=cfg.norm_eps), RMSNorm(self.hd, eps=cfg.norm_eps)
        self.var_attn_bias = BinaryAttentionBias(self.h)
        self.dropout_p, self.eps = cfg.attn_dropout_p, cfg.norm_eps

    def forward(self, x: torch.Tensor, ctx: dict, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, L, d] -> [B, L, d], or [K, d] for the flat token indices ``keep`` only."""
        b, seq, d = x.shape
        # one matmul for q, k, v; q/k RMS-normalised over head_dim, then RoPE, jointly for q and k
        w_qkv = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))  # [3d, d]
        qkv = linear(x, w_qkv).view(b, seq, 3, self.h, self.hd)
        w_qk = torch.stack((self.q_norm.weight, self.k_norm.weight)).view(2, 1, self.hd)
        qk, v = qkv.split((2, 1), dim=2)  # (split: one concatenation in the backward, no zero-fill)
        # norm and RoPE in float32 (complex-number RoPE), then the attention dtype (bf16 under autocast)
        qk = ctx["rope"].apply(rms_norm(qk, w_qk, self.eps, out_dtype=torch.float32)).to(qkv.dtype)  # [B, L, 2, H, hd]
        # softmax is shift invariant per query: bias = emb[0] + (emb[1]-emb[0]) * same_variate
        # reduces exactly to the delta term, fused with the sample mask into one op.
        w = self.var_attn_bias.emb.weight  # [2, H]
        dropout_p = self.dropout_p if self.training else 0.0

        def attend(q, k, v, mask, rel, rel_mask):  # [n, H, l, hd] each
            return rel_bias_attention(q, k, v, w[1] - w[0], mask, rel, rel_mask, dropout_p=dropout_p)

        if ctx["blocks"] is not None:  # several samples per row: attention within each sample only
            n = b * seq
            out = ctx["blocks"].attend(qk[:, :, 0].reshape(n, self.h, self.hd), qk[:, :, 1].reshape(n, self.h, self.hd),
                                       v.reshape(n, self.h, self.hd), attend)  # [N, d]
        else:  # one sample per row: the whole row
            q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), v[:, :, 0].transpose(1, 2)
            out = attend(q, k, v, ctx["mask"], ctx["same_var"], ctx["same_var_mask"]).transpose(1, 2)
        out = out.reshape(b * seq, d)
        if keep is not None:
            return self.out_proj(out.index_select(0, keep))
        return self.out_proj(out.view(b, seq, d))


class GLUFeedForward(nn.Module):
    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        self.fc1 = Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.fc_gate = Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.fc2 = Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = Dropout(cfg.dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, hidden = linear(x, torch.cat((self.fc_gate.weight, self.fc1.weight))).chunk(2, dim=-1)  # one matmul
        return self.dropout(self.fc2(self.dropout(F.silu(gate) * hidden)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model, eps=cfg.norm_eps), RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.self_attn, self.ffn = Attention(cfg), GLUFeedForward(cfg)
        self.dropout = Dropout(cfg.dropout_p)

    def forward(self, x: torch.Tensor, ctx: dict, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: compute the output only at these flat token indices (-> [K, d])."""
        a = self.dropout(self.self_attn(self.norm1(x), ctx, keep))
        x = (x if keep is None else x.reshape(-1, x.shape[-1]).index_select(0, keep)) + a
        return x + self.ffn(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, ctx: dict, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: flat token indices whose output is needed (the last layer skips the rest)."""
        for i, layer in enumerate(self.layers):
            k = keep if i == len(self.layers) - 1 else None
            x = layer(x, ctx, k)
        return self.norm(x)


class MoiraiModel(nn.Module):
    """Moirai encoder + mixture head. Parameter names equal the official checkpoint keys."""

    def __init__(self, cfg: MoiraiConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_sizes = cfg.patch_sizes
        self.mask_encoding = nn.Embedding(1, cfg.d_model)
        self.in_proj = MultiInSizeLinear(cfg.d_model, cfg.patch_sizes)
        self.encoder = Encoder(cfg)
        self.param_proj = MixtureHead(cfg.d_model, cfg.patch_sizes, cfg.components)
        rot = int(cfg.head_dim * cfg.rope_fraction)
        self.register_buffer("inv_freq", rope_inv_freq(rot, cfg.rope_base), persistent=False)

    # -- encoder --------------------------------------------------------------------------
    def present_patch_sizes(self, patch_size: torch.Tensor) -> list[int]:
        """Model patch sizes occurring in ``patch_size`` (one host sync per forward)."""
        return [p for p in torch.unique(patch_size).tolist() if p in self.patch_sizes]

    def encode(
        self,
        target: torch.Tensor,
        observed_mask: torch.Tensor,
        sample_id: torch.Tensor,
        time_id: torch.Tensor,
        variate_id: torch.Tensor,
        prediction_mask: torch.Tensor,
        patch_size: torch.Tensor,
        series_id: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns encoder output ``h`` [B, L, d], ``loc``/``scale`` [B, L, 1] and global series ids [B, L].

        ``series_id``, if given, numbers the (sample, variate) groups of each row with ids < L.
        ``keep``, if given, are the flat token indices whose output is needed: ``h`` is then
        [K, d]; the last layer's output projection, residual and FFN run on those tokens only
        (its q/k/v and attention still cover every token; the loss needs predicted tokens only).
        """
        b, seq = sample_id.shape
        if series_id is None:  # global dense ids (one device sync)
            series_id = make_series_id(sample_id, variate_id)
        else:  # per-row ids < L from the collate: make them global without a sync
            series_id = series_id + torch.arange(b, device=series_id.device)[:, None] * seq
        if self.cfg.scaling:
            loc, scale = packed_std_scale(target, observed_mask, prediction_mask, sample_id, series_id)
        else:
            loc, scale = torch.zeros_like(target[..., :1]), torch.ones_like(target[..., :1])
        scaled = (target - loc) / scale  # unobserved values stay in, as in the reference
        x = self.in_proj(scaled, patch_size, self.present_patch_sizes(patch_size))  # [B, L, d]
        x = x.to(self.mask_encoding.weight.dtype)  # residual stream in the parameter dtype (fp32 under autocast)
        x = torch.where(prediction_mask.unsqueeze(-1), self.mask_encoding.weight[0], x)
        dt = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        rope = RopeTables.build(*rope_cos_sin(time_id, self.inv_freq), self.cfg.head_dim, torch.float32)  # [B, L, hd], once
        ctx = {
            "rope": rope.unsqueeze(2, 2),  # [B, L, 1, 1, hd]: q/k and heads broadcast
            **self.attention_masks(sample_id, variate_id, dt),
        }
        return self.encoder(x, ctx, keep), loc, scale, series_id

    @staticmethod
    def attention_masks(sample_id: torch.Tensor, variate_id: torch.Tensor, dt: torch.dtype) -> dict:
        """Masks of the any-variate attention, built once per forward.

        If every row is one group (one sample, or all padding), rows attend densely (``mask``
        all 0, ``same_var``, ``same_var_mask``: [B, 1, L, L]); otherwise every sample (and each
        row's padding) attends block-diagonally (``blocks``: :class:`SampleBlocks`, the same
        masks per length bucket).
        """
        b, seq = sample_id.shape
        first = sample_id[:, :1]
        if bool((sample_id == first).all()):  # one group per row (one host sync)
            same_var = (variate_id.unsqueeze(-1) == variate_id.unsqueeze(-2)).unsqueeze(1)  # [B, 1, L, L]
            mask = torch.zeros((b, 1, seq, seq), dtype=dt, device=sample_id.device)
            return {"blocks": None, "mask": mask, "same_var": same_var.to(dt),
                    "same_var_mask": mask.masked_fill(~same_var, float("-inf"))}
        vid = torch.cat((variate_id.reshape(-1), variate_id.new_full((1,), -1)))  # padding slot: -1

        def bucket_masks(index: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
            w = index.shape[1]
            diag = torch.eye(w, dtype=torch.bool, device=index.device)
            mask = torch.zeros((index.shape[0], 1, w, w), dtype=dt, device=index.device)
            mask.masked_fill_(~(valid[:, None, None, :] | diag), float("-inf"))
            v = vid[index]
            same_var = (v.unsqueeze(-1) == v.unsqueeze(-2)).unsqueeze(1)
            short = index.device.type == "cpu" and w <= attention_module.SHORT_MAX  # matmul path: no rel_mask needed
            rel_mask = None if short else mask.masked_fill(~same_var, float("-inf"))
            return {"mask": mask, "rel": same_var.to(dt), "rel_mask": rel_mask}

        return {"blocks": SampleBlocks.build(sample_id, bucket_masks)}

    # -- head -----------------------------------------------------------------------------
    def distribution(self, h: torch.Tensor, patch_size: int, width: int | None = None) -> Mixture:
        """Mixture for tokens ``h`` [N, d] of one patch size over ``width`` (default: patch_size) positions.

        Computed without autocast: the head is small and the densities (lgamma, logsumexp) need fp32.
        """
        with torch.autocast(h.device.type, enabled=False):
            return self.param_proj(h.to(self.mask_encoding.weight.dtype), patch_size, width or patch_size, self.cfg.normal_scale)

    def full_distribution(self, h: torch.Tensor, patch_size: torch.Tensor, width: int | None = None) -> Mixture:
        """Reference layout: every token, ``width`` (default max patch) positions -> Mixture over [B*L, W]."""
        width = width or self.cfg.max_patch_size
        flat, ps = h.reshape(-1, h.shape[-1]), patch_size.reshape(-1)
        parts, order = [], []
        for p in self.present_patch_sizes(ps):
            idx = (ps == p).nonzero().squeeze(1)
            parts.append(self.distribution(flat[idx], p, width))
            order.append(idx)
        pad = (~torch.isin(ps, torch.tensor(self.patch_sizes, device=ps.device))).nonzero().squeeze(1)
        if pad.numel():
            parts.append(self.param_proj.zero_raw(pad.numel(), width, self.cfg.normal_scale, flat))
            order.append(pad)
        inv = torch.empty_like(ps)
        cat_idx = torch.cat(order)
        inv[cat_idx] = torch.arange(cat_idx.numel(), device=ps.device)
        return Mixture.cat(parts).index(inv)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training entry point: the packed NLL of ``batch`` (so FSDP2's root hooks run)."""
        return self.loss(batch)

    # -- loss -----------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Packed NLL: mean over observed predicted values of each series, then over series."""
        keys = ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask", "patch_size")
        pred = batch["prediction_mask"].reshape(-1)
        keep = pred.nonzero().squeeze(1)  # the loss reads predicted tokens only
        h, loc, scale, series_id = self.encode(**{k: batch[k] for k in keys}, series_id=batch.get("series_id"), keep=keep)
        ps = batch["patch_size"].reshape(-1)[keep]  # h, ps: [K, ...] over the kept tokens
        tgt = batch["target"].reshape(-1, batch["target"].shape[-1])
        obs = batch["observed_mask"].reshape(tgt.shape)
        loc_f, scale_f, sid = loc.reshape(-1, 1), scale.reshape(-1, 1), series_id.reshape(-1)
        sums, counts, series = [], [], []
        for p in self.present_patch_sizes(ps):
            j = (ps == p).nonzero().squeeze(1)
            idx = keep[j]
            distr = self.distribution(h[j], p)
            with torch.autocast(h.device.type, enabled=False):
                lp = distr.log_prob(tgt[idx, :p], loc_f[idx], scale_f[idx])  # [N_p, p]
            m = obs[idx, :p]
            sums.append(torch.where(m, -lp, torch.zeros_like(lp)).sum(-1).float())
            counts.append(m.sum(-1))
            series.append(sid[idx])
        if not sums:
            return h.sum() * 0.0  # no predicted token: a zero loss that keeps the graph
        return per_series_mean_loss(torch.cat(sums), torch.cat(counts), torch.cat(series), sid.numel())
