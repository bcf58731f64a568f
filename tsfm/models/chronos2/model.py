"""Chronos-2: a patch-based encoder with time attention, group attention and a quantile head.

Single-device ``nn.Module`` (no Lightning, no Hydra). Parameter names follow the official
``amazon/chronos-2`` checkpoint so its ``model.safetensors`` loads with ``load_state_dict``.

Per row of the batch: instance norm (+ arcsinh) of the context, left-pad to a multiple of the
patch size, patch features ``[time encoding | values | observed mask]`` through a residual MLP,
a REG token, then ``n`` future patches carrying known future covariates. Each encoder block:
time self-attention over the tokens of a row (RoPE, unscaled, T5-style) -> group self-attention
across the rows of a group at each position -> ReLU FFN, all pre-RMSNorm with residuals. The
last ``n`` hidden states give 21 quantiles x 16 steps per patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.group_attention import GroupLayout, group_attention
from tsfm.models.layers.attention import attention
from tsfm.models.layers.dropout import Dropout
from tsfm.models.layers.linear import Linear, linear
from tsfm.models.layers.norm import RMSNorm
from tsfm.models.layers.rope import RopeTables, rope_cos_sin, rope_inv_freq


@dataclass
class Chronos2Output:
    quantile_preds: torch.Tensor  # [B, Q, n*P] original scale
    quantile_preds_normalized: torch.Tensor  # [B, Q, n*P] arcsinh space
    loc: torch.Tensor  # [B, 1]
    scale: torch.Tensor  # [B, 1]
    loss: torch.Tensor | None = None


class ResidualBlock(nn.Module):
    """``W_o·relu(W_h·x + b_h) + b_o + W_r·x + b_r``: the patch embedding and the output head."""

    def __init__(self, in_dim: int, h_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_layer = Linear(in_dim, h_dim)
        self.output_layer = Linear(h_dim, out_dim)
        self.residual_layer = Linear(in_dim, out_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hid = F.relu(self.hidden_layer(x), inplace=True)
        return self.dropout(self.output_layer(hid)).add_(self.residual_layer(x))


class Projections(nn.Module):
    """q, k, v, o of one attention layer (bias-free, ``inner = heads * d_kv``)."""

    def __init__(self, d_model: int, inner: int) -> None:
        super().__init__()
        self.q = Linear(d_model, inner, bias=False)
        self.k = Linear(d_model, inner, bias=False)
        self.v = Linear(d_model, inner, bias=False)
        self.o = Linear(inner, d_model, bias=False)
        self._cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    # Inference caches are keyed on the weights' (version, address). FSDP2 regathers every weight into a
    # buffer whose version counter it preserves and whose address may repeat, so an updated weight can carry
    # the cached one's key: ``apply_fsdp2`` turns caching off for the modules it shards.
    cache_weights: bool = True

    def fused(self, names: str, rope_pairs: torch.Tensor | None = None) -> torch.Tensor | None:
        """Row-stacked weights of ``names`` (e.g. ``"qkv"``) for one GEMM instead of several.

        ``rope_pairs`` (a permutation of ``inner``, see :func:`rope_pair_order`) reorders the
        rows of ``q`` and ``k``, so their outputs come out in RoPE's interleaved pair layout
        (``q·k`` is unchanged by a common permutation). Cached while the weights are unchanged
        in no-grad mode; rebuilt (differentiably) under autograd. None when a layer is not a
        plain ``nn.Linear`` (LoRA-wrapped).
        """
        layers = [getattr(self, c) for c in names]
        if any(not isinstance(m, nn.Linear) for m in layers):
            return None

        def build() -> torch.Tensor:
            ws = [m.weight if rope_pairs is None or c == "v" else m.weight.index_select(0, rope_pairs)
                  for c, m in zip(names, layers)]  # fmt: skip
            return ws[0] if len(ws) == 1 else torch.cat(ws)

        if torch.is_grad_enabled() or not self.cache_weights:
            return build()
        key = tuple((m.weight._version, m.weight.data_ptr(), m.weight.dtype) for m in layers)
        name = names + ("/pairs" if rope_pairs is not None else "")
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = (key, build().detach())
            self._cache[name] = hit
        return hit[1]


def rope_pair_order(num_heads: int, d_kv: int) -> torch.Tensor:
    """Per head, dims ``[0, d/2, 1, d/2 + 1, ...]``: the half-split RoPE pairs ``(i, i + d/2)``
    made adjacent, so the rotation runs in the interleaved (complex-number) form."""
    half = d_kv // 2
    head = torch.stack((torch.arange(half), torch.arange(half) + half), dim=-1).flatten()
    return (torch.arange(num_heads)[:, None] * d_kv + head).flatten()


class TimeSelfAttention(nn.Module):
    """Self-attention along the tokens of each row, RoPE on q/k, no 1/sqrt(d) scaling.

    q/k come out of their projections in RoPE's interleaved pair order (:func:`rope_pair_order`),
    so RoPE is one complex multiply; the attention scores are those of the half-split layout.
    """

    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.self_attention = Projections(cfg.d_model, cfg.inner_dim)
        self.num_heads, self.d_kv, self.p = cfg.num_heads, cfg.d_kv, cfg.dropout_rate
        self.dropout = Dropout(cfg.dropout_rate)
        self.register_buffer("pairs", rope_pair_order(cfg.num_heads, cfg.d_kv), persistent=False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, rope: RopeTables, last: int | None = None) -> torch.Tensor:
        # x [B, S, D]; keep [B, 1, 1, S] bool; rope: [S, dk] tables; last: only the last positions as queries
        b, s, _ = x.shape
        a = self.self_attention
        h = self.layer_norm(x)
        hq = h if last is None else h[:, -last:]

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, L, HD] -> [B, H, L, dk]
            return t.reshape(b, t.shape[1], self.num_heads, self.d_kv).transpose(1, 2)

        w = a.fused("qkv" if last is None else "kv", self.pairs)
        if w is None:  # LoRA-wrapped projections: reorder their outputs instead
            qx, kx, vx = a.q(hq).index_select(-1, self.pairs), a.k(h).index_select(-1, self.pairs), a.v(h)
        elif last is None:
            qx, kx, vx = linear(h, w).chunk(3, dim=-1)
        else:
            qx, (kx, vx) = linear(hq, a.fused("q", self.pairs)), linear(h, w).chunk(2, dim=-1)
        q_rope = rope if last is None else rope.tail(last)
        out = attention(q_rope.apply(heads(qx)), rope.apply(heads(kx)), heads(vx), mask=keep,
                        dropout_p=self.p if self.training else 0.0, scale=1.0)  # fmt: skip  # [B, H, L, dk]
        out = a.o(out.transpose(1, 2).reshape(b, out.shape[2], -1))
        return self.dropout(out).add_(x if last is None else x[:, -last:])


class GroupSelfAttention(nn.Module):
    """Self-attention across the rows of a group at each token position (no RoPE, unscaled)."""

    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.self_attention = Projections(cfg.d_model, cfg.inner_dim)
        self.num_heads, self.p = cfg.num_heads, cfg.dropout_rate
        self.dropout = Dropout(cfg.dropout_rate)
        self._fused: tuple[tuple, torch.Tensor] | None = None

    # With only singleton groups, attention over a single key is the identity on v, so q and k
    # take no part in the loss. The reference's autograd still gives them a zero gradient
    # (softmax over one score); without one, DDP fails on "parameters that were not used" and
    # AdamW would skip their weight decay. ``touch_unused`` adds ``0 · (Σq + Σk)`` in training,
    # so they get exactly that zero gradient (two reductions per layer; off only to measure it).
    touch_unused: bool = True
    cache_weights: bool = True  # see Projections.cache_weights

    def _fused_ov(self, num_tokens: int) -> torch.Tensor | None:
        """``W_o @ W_v`` for singleton groups (one token matmul instead of two).

        Never with attention dropout (it acts per head, between ``W_v`` and ``W_o``). Cached in
        inference (unless ``cache_weights`` is off: under FSDP2); under autograd rebuilt (differentiably) when it pays off (more tokens than
        ``d_model``). The product is taken in the weights' dtype, outside autocast (which then
        casts it per call like any weight), so a bf16 call never leaves a bf16 product behind.
        """
        v, o = self.self_attention.v, self.self_attention.o
        if not isinstance(v, nn.Linear) or not isinstance(o, nn.Linear):  # e.g. LoRA-wrapped layers
            return None
        if self.training and self.p > 0:
            return None
        if torch.is_grad_enabled() or not self.cache_weights:
            if num_tokens <= v.weight.shape[1]:
                return None
            with torch.autocast(v.weight.device.type, enabled=False):
                return o.weight @ v.weight
        key = (v.weight._version, o.weight._version, v.weight.data_ptr(), o.weight.data_ptr(), v.weight.dtype)
        if self._fused is None or self._fused[0] != key:
            with torch.autocast(v.weight.device.type, enabled=False):
                self._fused = (key, (o.weight @ v.weight).detach())
        return self._fused[1]

    def forward(self, x: torch.Tensor, layout: GroupLayout, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.layer_norm(x)  # [B, S, D]
        a = self.self_attention
        w = self._fused_ov(h.shape[0] * h.shape[1]) if layout.kind == "single" else None
        if w is not None:
            out = linear(h, w)
        else:
            ctx = group_attention(
                h, a.q, a.k, a.v, self.num_heads, layout, mask, self.p if self.training else 0.0
            )
            out = a.o(ctx)
        if layout.kind == "single" and self.touch_unused and self.training and torch.is_grad_enabled():
            out = out + _zero_touch(a.q, a.k)
        return self.dropout(out).add_(x)  # in place on a fresh tensor: no new [B, S, D] buffer


def _zero_touch(*modules: nn.Module) -> torch.Tensor:
    """``0 · Σ`` of the trainable parameters of ``modules``: joins them to the graph with a zero gradient."""
    total = sum(p.sum() for m in modules for p in m.parameters() if p.requires_grad)
    return total * 0.0 if isinstance(total, torch.Tensor) else torch.zeros(())


class MLP(nn.Module):
    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.wi = Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = Dropout(cfg.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.dropout(F.relu(self.wi(x), inplace=True)))


class FeedForward(nn.Module):
    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)
        self.dropout = Dropout(cfg.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.mlp(self.layer_norm(x))).add_(x)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList([TimeSelfAttention(cfg), GroupSelfAttention(cfg), FeedForward(cfg)])

    def forward(self, x, keep, rope, layout, gmask, last=None):  # noqa: ANN001 - internal
        x = self.layer[0](x, keep, rope, last)
        x = self.layer[1](x, layout, gmask)
        return self.layer[2](x)


class Encoder(nn.Module):
    def __init__(self, cfg: Chronos2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.block = nn.ModuleList([EncoderBlock(cfg) for _ in range(cfg.num_layers)])
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = Dropout(cfg.dropout_rate)

    def forward(
        self, x: torch.Tensor, time_mask: torch.Tensor, layout: GroupLayout, last: int | None = None
    ) -> torch.Tensor:
        """``x`` [B, S, D], ``time_mask`` [B, S] bool -> [B, S, D] (or [B, last, D]).

        With ``last``, the final block computes only the last positions (the forecast tokens):
        its keys/values still see every token, but queries, group attention and FFN run on
        ``last`` positions only.
        """
        s = x.shape[1]
        cos, sin = rope_cos_sin(torch.arange(s, device=x.device), rope_inv_freq(self.cfg.d_kv, self.cfg.rope_theta, x.device))
        dt = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        rope = RopeTables.build(cos, sin, self.cfg.d_kv, dt)  # [S, dk], interleaved pairs (see TimeSelfAttention)
        keep = time_mask[:, None, None, :]  # [B, 1, 1, S]
        gmask = layout.key_mask(time_mask, torch.float32)
        x = self.dropout(x)
        for i, blk in enumerate(self.block):
            final = last is not None and i == len(self.block) - 1
            args = (x, keep, rope, layout, layout.slice_mask(gmask, s, last), last) if final else (
                x, keep, rope, layout, gmask)
            x = blk(*args)
        return self.dropout(self.final_layer_norm(x))


def instance_norm_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``loc = nanmean`` (0 if all NaN), population std (1 if all NaN, ``eps`` if 0)."""
    loc = torch.nan_to_num(torch.nanmean(x, dim=-1, keepdim=True), nan=0.0)
    scale = torch.nan_to_num((x - loc).square().nanmean(dim=-1, keepdim=True).sqrt(), nan=1.0)
    return loc, torch.where(scale == 0, eps, scale)


class Chronos2Model(nn.Module):
    """The Chronos-2 encoder; ``forward`` mirrors the reference ``Chronos2Model.forward``."""

    def __init__(self, config: Chronos2Config) -> None:
        super().__init__()
        self.config = config
        c = config
        self.shared = nn.Embedding(2 if c.use_reg_token else 1, c.d_model)
        self.input_patch_embedding = ResidualBlock(3 * c.patch_size, c.d_ff, c.d_model, c.dropout_rate)
        self.encoder = Encoder(c)
        self.output_patch_embedding = ResidualBlock(c.d_model, c.d_ff, c.num_quantiles * c.patch_size, c.dropout_rate)
        self.register_buffer("quantiles", torch.tensor(c.quantiles, dtype=torch.float32), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mesh-TensorFlow / T5 initialisation scaled by ``initializer_factor`` (as the reference)."""
        f, c = self.config.initializer_factor, self.config
        for m in self.modules():
            if isinstance(m, RMSNorm):
                m.weight.fill_(f)
            elif isinstance(m, MLP):
                nn.init.normal_(m.wi.weight, std=f * c.d_model**-0.5)
                nn.init.normal_(m.wo.weight, std=f * c.d_ff**-0.5)
            elif isinstance(m, Projections):
                nn.init.normal_(m.q.weight, std=f * (c.d_model * c.d_kv) ** -0.5)
                nn.init.normal_(m.k.weight, std=f * c.d_model**-0.5)
                nn.init.normal_(m.v.weight, std=f * c.d_model**-0.5)
                nn.init.normal_(m.o.weight, std=f * c.inner_dim**-0.5)
            elif isinstance(m, ResidualBlock):
                for lin in (m.hidden_layer, m.residual_layer, m.output_layer):
                    nn.init.normal_(lin.weight, std=f * lin.weight.shape[-1] ** -0.5)
                    nn.init.zeros_(lin.bias)
        nn.init.normal_(self.shared.weight, std=f)

    # -- input preparation ----------------------------------------------------------------
    def _normalize(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        z = (x - loc) / scale
        return torch.asinh(z) if self.config.use_arcsinh else z

    def _embed(self, context, context_mask, future_covariates, future_covariates_mask, n):  # noqa: ANN001
        c, p = self.config, self.config.patch_size
        b = context.shape[0]
        context = context.float()
        mask = (~torch.isnan(context)) if context_mask is None else context_mask > 0
        if context.shape[-1] > c.context_length:
            context, mask = context[:, -c.context_length :], mask[:, -c.context_length :]
        loc, scale = instance_norm_stats(context)  # statistics ignore an explicit context_mask
        z = self._normalize(context, loc, scale)
        pad = (-z.shape[-1]) % p
        if pad:
            z = F.pad(z, (pad, 0))
            mask = F.pad(mask, (pad, 0), value=False)
        z = torch.where(mask, z, 0.0).nan_to_num(nan=0.0)
        num_patches = z.shape[-1] // p
        m = mask.float().view(b, num_patches, p)
        t_ctx = (torch.arange(-num_patches * p, 0, device=z.device, dtype=torch.float32) / c.time_encoding_scale)
        feats = torch.cat([t_ctx.view(1, num_patches, p).expand(b, -1, -1), z.view(b, num_patches, p), m], dim=-1)
        # future patches: known covariates normalised with the context's statistics
        h = n * p
        if future_covariates is not None:
            fc = self._normalize(future_covariates.float(), loc, scale)
            fmask = (~torch.isnan(fc)) if future_covariates_mask is None else future_covariates_mask > 0
            fc = torch.where(fmask, fc, 0.0)
            if torch.isnan(fc).any():
                raise ValueError(
                    "future_covariates has NaN where future_covariates_mask marks values as known; "
                    "fix the mask or omit it to infer it from NaN"
                )
            fmask = fmask.float()
            if fc.shape[-1] < h:
                fc, fmask = F.pad(fc, (0, h - fc.shape[-1])), F.pad(fmask, (0, h - fmask.shape[-1]))
        else:
            fc = fmask = torch.zeros(b, h, device=z.device)
        t_fut = torch.arange(h, device=z.device, dtype=torch.float32) / c.time_encoding_scale
        ffeats = torch.cat([t_fut.view(1, n, p).expand(b, -1, -1), fc.view(b, n, p), fmask.view(b, n, p)], dim=-1)
        parts = [self.input_patch_embedding(feats)]
        if c.use_reg_token:
            parts.append(self.shared.weight[1].view(1, 1, -1).expand(b, 1, -1).to(parts[0].dtype))
        parts.append(self.input_patch_embedding(ffeats).to(parts[0].dtype))
        embeds = torch.cat(parts, dim=1)  # [B, N + 1 + n, D]
        extra = embeds.shape[1] - num_patches
        time_mask = torch.cat([m.sum(-1) > 0, torch.ones(b, extra, dtype=torch.bool, device=z.device)], dim=1)
        return embeds, time_mask, loc, scale, fmask, feats, ffeats

    def _validate(self, context, group_ids, future_covariates, future_covariates_mask, n, future_target, future_target_mask, context_mask):  # noqa: ANN001,E501
        b = context.shape[0]
        h = n * self.config.patch_size
        if context.ndim != 2:
            raise ValueError(f"context must have shape (batch, time), got {tuple(context.shape)}")
        if context_mask is not None and context_mask.shape != context.shape:
            raise ValueError(f"context_mask must have shape {tuple(context.shape)}, got {tuple(context_mask.shape)}")
        if n < 1:
            raise ValueError(f"num_output_patches must be >= 1, got {n}")
        for name, t, tm in (("future_covariates", future_covariates, future_covariates_mask),
                            ("future_target", future_target, future_target_mask)):  # fmt: skip
            if t is None:
                if tm is not None:
                    raise ValueError(f"{name}_mask given without {name}")
                continue
            if t.ndim != 2 or t.shape[0] != b:
                raise ValueError(f"{name} must have shape (batch={b}, horizon), got {tuple(t.shape)}")
            if t.shape[-1] > h:
                raise ValueError(
                    f"{name} has {t.shape[-1]} steps but num_output_patches={n} covers {h}; raise num_output_patches"
                )
            if tm is not None and tm.shape != t.shape:
                raise ValueError(f"{name}_mask must have shape {tuple(t.shape)}, got {tuple(tm.shape)}")
        if group_ids is not None and group_ids.shape != (b,):
            raise ValueError(f"group_ids must have shape ({b},), got {tuple(group_ids.shape)}")

    # -- forward --------------------------------------------------------------------------
    def encode(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        group_ids: torch.Tensor | None = None,
        future_covariates: torch.Tensor | None = None,
        future_covariates_mask: torch.Tensor | None = None,
        num_output_patches: int = 1,
    ) -> dict[str, torch.Tensor]:
        """All encoder hidden states (for inspection / embeddings): keys ``hidden`` [B, S, D],
        ``time_mask`` [B, S], ``inputs_embeds``, ``patched_context``, ``patched_future``, ``loc``, ``scale``."""
        self._validate(context, group_ids, future_covariates, future_covariates_mask, num_output_patches, None, None, context_mask)
        emb, tmask, loc, scale, _, feats, ffeats = self._embed(
            context, context_mask, future_covariates, future_covariates_mask, num_output_patches
        )
        hidden = self.encoder(emb, tmask, GroupLayout.from_group_ids(group_ids, context.shape[0]))
        return {"hidden": hidden, "time_mask": tmask, "inputs_embeds": emb, "patched_context": feats,
                "patched_future": ffeats, "loc": loc, "scale": scale}  # fmt: skip

    def forward(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        group_ids: torch.Tensor | None = None,
        future_covariates: torch.Tensor | None = None,
        future_covariates_mask: torch.Tensor | None = None,
        num_output_patches: int = 1,
        future_target: torch.Tensor | None = None,
        future_target_mask: torch.Tensor | None = None,
        loss_horizon: str = "full",
    ) -> Chronos2Output:
        """Quantile forecasts ``[B, Q, n*P]`` for every row (covariate rows included) and the loss.

        ``context`` [B, T] (NaN = missing), ``group_ids`` [B] (equal ids share group attention;
        default: every row alone), ``future_covariates`` [B, <= n*P] (NaN = unknown, i.e. to be
        predicted), ``future_target`` [B, <= n*P] for the pinball loss in normalised space.
        ``loss_horizon``: ``full`` averages each row's loss over all ``n*P`` horizon steps, missing
        ones counting as 0 (the reference); ``observed`` averages over the row's observed steps, so
        a short series whose future is mostly padding weighs as much as a long one.
        """
        if loss_horizon not in ("full", "observed"):
            raise ValueError(f"loss_horizon must be 'full' or 'observed', got {loss_horizon!r}")
        n = num_output_patches
        self._validate(context, group_ids, future_covariates, future_covariates_mask, n, future_target, future_target_mask, context_mask)
        b = context.shape[0]
        emb, tmask, loc, scale, fmask, _, _ = self._embed(context, context_mask, future_covariates, future_covariates_mask, n)
        hidden = self.encoder(emb, tmask, GroupLayout.from_group_ids(group_ids, b), last=n)  # [B, n, D]
        q, p = self.config.num_quantiles, self.config.patch_size
        z = self.output_patch_embedding(hidden).float()  # [B, n, Q*P], (q p) within a patch
        z = z.view(b, n, q, p).transpose(1, 2).reshape(b, q, n * p)
        loss = None
        if future_target is not None:
            loss = self._loss(z, future_target, future_target_mask, fmask, loc, scale, loss_horizon)
        zz = torch.sinh(z) if self.config.use_arcsinh else z
        return Chronos2Output(zz * scale.unsqueeze(-1) + loc.unsqueeze(-1), z, loc, scale, loss)

    def _loss(self, z, target, target_mask, known_mask, loc, scale, horizon="full") -> torch.Tensor:  # noqa: ANN001
        """Pinball loss in normalised space; mean over horizon (all steps, or the observed ones),
        sum over quantiles, mean over rows."""
        h = z.shape[-1]
        y = self._normalize(target.float(), loc, scale)
        m = (~torch.isnan(y)) if target_mask is None else target_mask > 0
        y = torch.where(m, y, 0.0)
        m = m.float()
        if y.shape[-1] < h:
            y, m = F.pad(y, (0, h - y.shape[-1])), F.pad(m, (0, h - m.shape[-1]))
        y, w = y.unsqueeze(1), (m * (1.0 - known_mask)).unsqueeze(1)  # [B, 1, H]
        tau = self.quantiles.view(1, -1, 1)
        pinball = 2 * torch.abs((y - z) * ((y <= z).float() - tau))
        if horizon == "observed":
            return ((pinball * w).sum(dim=-1) / w.sum(dim=-1).clamp_min(1.0)).sum(dim=-1).mean()
        return (pinball * w).mean(dim=-1).sum(dim=-1).mean()
