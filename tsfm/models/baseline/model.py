"""Single-device baseline patch Transformer (encoder-only or decoder-only), no Lightning/Hydra.

Pipeline, shared by both architectures:

1. instance scaling per series: ``loc`` = mean, ``scale = sqrt(var + scale_eps)`` over the
   observed *context* steps (the horizon never leaks into the statistics);
2. non-overlapping patches of ``P`` steps; each token is ``Linear([z, observed]) -> d_model``
   (``z`` = scaled values with NaN -> 0, ``observed`` the 0/1 mask of the patch);
3. pre-norm Transformer blocks (RMSNorm, RoPE multi-head attention, SwiGLU or GELU FFN);
4. a Student-t mixture head giving ``P`` per-step distributions per token (scaled space).

``encoder``: context tokens + one learned mask embedding per future patch, bidirectional
attention, the future tokens' outputs are the forecast (one pass). ``decoder``: tokens of the
whole window, causal attention, the output of patch ``i`` is the distribution of patch ``i+1``
(forecasting samples patch by patch). Losses are NLLs in the scaled space, averaged over
observed target steps, so values are comparable across series and architectures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.layers.distributions import StudentTMixture, StudentTMixtureHead
from tsfm.models.layers.dropout import Dropout
from tsfm.models.layers.linear import Linear
from tsfm.models.layers.norm import RMSNorm
from tsfm.models.layers.rope import apply_rope_half, rope_cos_sin, rope_inv_freq


class FeedForward(nn.Module):
    """SwiGLU (``down(silu(gate x) * up x)``, no biases) or GELU MLP."""

    def __init__(self, d_model: int, d_ff: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "swiglu":
            self.gate = Linear(d_model, d_ff, bias=False)
            self.up = Linear(d_model, d_ff, bias=False)
            self.down = Linear(d_ff, d_model, bias=False)
        else:
            self.up = Linear(d_model, d_ff)
            self.down = Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., d] -> [..., d]
        if self.kind == "swiglu":
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm x)``, then ``x + ffn(norm x)``."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.num_heads, self.dropout = cfg.num_heads, cfg.dropout
        # attention logit scale: 1/sqrt(hd) (sp); mup: sqrt(base_head_dim)/hd (sp's at hd = base_head_dim)
        self.attn_scale = math.sqrt(cfg.base_head_dim) / cfg.head_dim if cfg.parametrization == "mup" else None
        if cfg.attn_mult != 1.0:
            self.attn_scale = cfg.attn_mult * (self.attn_scale or 1 / math.sqrt(cfg.head_dim))
        self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.qkv = Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = Linear(cfg.d_model, cfg.d_model, bias=False)
        self.ffn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = FeedForward(cfg.d_model, int(cfg.d_ff), cfg.ffn)  # type: ignore[arg-type]
        self.drop = Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,  # [B, N, d]
        cos: torch.Tensor,  # [N, hd/2]
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None,  # [B, 1, N|1, N] bool (True = may attend) or None
        is_causal: bool,
    ) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.attn_norm(x)).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        )  # 3x [B, H, N, hd]
        q, k = apply_rope_half(q, cos, sin), apply_rope_half(k, cos, sin)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal and attn_mask is None,
            dropout_p=self.dropout if self.training else 0.0, scale=self.attn_scale,
        )  # fmt: skip
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class BaselineModel(nn.Module):
    """Patch Transformer with a Student-t mixture head; see the module docstring."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = cfg = config
        p, d = cfg.patch_size, cfg.d_model
        self.in_proj = Linear(2 * p, d)  # [z, observed] of one patch -> token
        if cfg.architecture == "encoder":
            self.mask_embed = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(d, eps=cfg.norm_eps)
        self.head = StudentTMixtureHead(d, p, cfg.num_components)
        self.register_buffer("inv_freq", rope_inv_freq(cfg.head_dim, cfg.rope_base), persistent=False)
        self.reset_parameters()

    @property
    def is_decoder(self) -> bool:
        return self.config.architecture == "decoder"

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02) weights, residual outputs scaled by 1/sqrt(2L); the hidden matrices
        draw with std ``init_std`` (0.02), under ``mup`` shrunk as 1/sqrt(width_mult)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        hidden_std = self.config.init_std / math.sqrt(self.config.width_mult)
        for blk in self.blocks:
            if self.config.width_mult != 1.0 or self.config.init_std != 0.02:  # (sp draws exactly as before mup existed)
                for lin in self._hidden_linears(blk):
                    nn.init.normal_(lin.weight, std=hidden_std)
            for lin in (blk.out, blk.ffn.down):
                nn.init.normal_(lin.weight, std=hidden_std / math.sqrt(2 * self.config.num_layers))
        if hasattr(self, "mask_embed"):
            nn.init.normal_(self.mask_embed, std=0.02)

    @staticmethod
    def _hidden_linears(blk: Block) -> list[nn.Linear]:
        ffn = blk.ffn
        return [blk.qkv, blk.out, ffn.up, ffn.down] + ([ffn.gate] if ffn.kind == "swiglu" else [])

    def lr_multipliers(self) -> dict[str, float]:
        """Per-parameter learning-rate factors (name -> factor; absent = 1): under ``mup`` the hidden
        matrices (both dimensions grow with width) train at ``lr / width_mult`` (Adam)."""
        mult = self.config.width_mult
        if mult == 1.0:
            return {}
        ids = {id(lin.weight) for blk in self.blocks for lin in self._hidden_linears(blk)}
        return {name: 1.0 / mult for name, p in self.named_parameters() if id(p) in ids}

    def readout(self, h: torch.Tensor) -> StudentTMixture:
        """The mixture head on hidden states, scaled by ``output_mult`` (``mup``: ``/ width_mult``) first."""
        if self.config.output_mult != 1.0:
            h = h * self.config.output_mult
        mult = self.config.width_mult
        return self.head(h / mult if mult != 1.0 else h)

    # -- pieces ---------------------------------------------------------------------------
    def scale(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``loc``, ``scale`` ``[B, 1]`` over the observed values of ``context`` ``[B, T]`` (NaN = missing)."""
        obs = ~torch.isnan(context)
        x = torch.nan_to_num(context.float())
        n = obs.sum(-1, keepdim=True).clamp_min(1)
        loc = (x * obs).sum(-1, keepdim=True) / n
        var = (((x - loc) * obs) ** 2).sum(-1, keepdim=True) / n
        return loc, torch.sqrt(var + self.config.scale_eps)

    def tokens(self, values: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[B, T/P, d]`` of ``values`` ``[B, T]`` (NaN = missing)."""
        obs = ~torch.isnan(values)
        z = torch.where(obs, (values.float() - loc) / scale, 0.0)
        p = self.config.patch_size
        feats = torch.cat(
            [z.unflatten(-1, (-1, p)), obs.to(z.dtype).unflatten(-1, (-1, p))], dim=-1
        )  # [B, N, 2P]
        return self.in_proj(feats)

    def backbone(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer over tokens ``[B, N, d]`` -> normed hidden states ``[B, N, d]``.

        ``valid`` ``[B, N]`` (bool) hides padding tokens as keys (every query still sees itself).
        """
        n = x.shape[1]
        cos, sin = rope_cos_sin(torch.arange(n, device=x.device), self.inv_freq)  # [N, hd/2]
        mask = None
        if valid is not None and not bool(valid.all()):
            eye = torch.eye(n, dtype=torch.bool, device=x.device)
            mask = valid[:, None, None, :] | eye  # [B, 1, N, N]
            if self.is_decoder:
                mask = mask & torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        for blk in self.blocks:
            x = blk(x, cos, sin, mask, is_causal=self.is_decoder)
        return self.norm(x)

    # -- training -------------------------------------------------------------------------
    def nll(
        self,
        past_target: torch.Tensor,  # [B, C] NaN = missing, C multiple of P
        future_target: torch.Tensor,  # [B, H] NaN = missing, H multiple of P
        horizon_only: bool = False,
    ) -> torch.Tensor:
        """Mean scaled-space NLL over observed targets.

        Encoder: the horizon steps. Decoder: every next patch of the window (``horizon_only``
        restricts it to the horizon patches, the quantity the encoder is scored on).
        """
        loc, scale = self.scale(past_target)
        c = past_target.shape[1] // self.config.patch_size
        if self.is_decoder:
            window = torch.cat([past_target, future_target], dim=1)  # [B, C+H]
            h = self.backbone(self.tokens(window, loc, scale))[:, :-1]  # [B, N-1, d]: patch i predicts i+1
            target = window[:, self.config.patch_size :]
            if horizon_only:
                h, target = h[:, c - 1 :], future_target
        else:
            ctx = self.tokens(past_target, loc, scale)  # [B, Nc, d]
            hp = future_target.shape[1] // self.config.patch_size
            fut = self.mask_embed.to(ctx.dtype).expand(ctx.shape[0], hp, -1)  # [B, Nh, d]
            h = self.backbone(torch.cat([ctx, fut], dim=1))[:, c:]
            target = future_target
        dist = self.readout(h)  # per step: [B, n, P, K]
        obs = ~torch.isnan(target)
        z = torch.where(obs, (target.float() - loc) / scale, 0.0).unflatten(-1, (-1, self.config.patch_size))
        nll = -dist.log_prob(z).flatten(1)  # [B, n*P]
        return (nll * obs).sum() / obs.sum().clamp_min(1)

    def masked_nll(
        self,
        window: torch.Tensor,  # [B, T] NaN = missing, T multiple of P
        num_masked: torch.Tensor,  # [B] long, patches hidden at the end of each row (1 <= m < T/P)
    ) -> torch.Tensor:
        """Encoder NLL with a per-row horizon: the last ``num_masked[b]`` patches of row ``b`` are
        replaced by the mask embedding and scored; scaling uses the visible steps only.

        This is Moirai's pretraining objective (horizon fraction drawn per sample); with
        ``num_masked = H / P`` for every row it equals :meth:`nll` on ``(past, future)``.
        """
        if self.is_decoder:
            raise RuntimeError("masked_nll is an encoder objective; decoders train with nll")
        p = self.config.patch_size
        n = window.shape[1] // p
        masked = torch.arange(n, device=window.device)[None, :] >= (n - num_masked)[:, None]  # [B, N]
        step_masked = masked.repeat_interleave(p, dim=1)  # [B, T]
        visible = window.masked_fill(step_masked, float("nan"))
        loc, scale = self.scale(visible)
        tok = self.tokens(visible, loc, scale)
        tok = torch.where(masked[..., None], self.mask_embed.to(tok.dtype), tok)  # [B, N, d]
        dist = self.readout(self.backbone(tok))  # [B, N, P, K]
        obs = ~torch.isnan(window) & step_masked
        z = torch.where(obs, (window.float() - loc) / scale, 0.0).unflatten(-1, (n, p))
        nll = -dist.log_prob(z).flatten(1)  # [B, T]
        return (nll * obs).sum() / obs.sum().clamp_min(1)

    # -- forecasting ----------------------------------------------------------------------
    def future_distribution(
        self,
        context: torch.Tensor,
        num_patches: int,  # [B, T] NaN = missing/left padding, T multiple of P
    ) -> tuple[StudentTMixture, torch.Tensor, torch.Tensor]:
        """Encoder: mixture over the next ``num_patches`` patches ``[B, num_patches, P, K]`` (scaled)
        and ``loc``/``scale`` ``[B, 1]`` to map samples back."""
        if self.is_decoder:
            raise RuntimeError(
                "future_distribution is the encoder's one-pass forecast; decoders use sample_paths"
            )
        loc, scale = self.scale(context)
        ctx = self.tokens(context, loc, scale)
        valid = ~torch.isnan(context).unflatten(-1, (-1, self.config.patch_size)).all(-1)  # [B, Nc]
        fut = self.mask_embed.to(ctx.dtype).expand(ctx.shape[0], num_patches, -1)
        valid = torch.cat([valid, valid.new_ones(valid.shape[0], num_patches)], dim=1)
        h = self.backbone(torch.cat([ctx, fut], dim=1), valid)[:, ctx.shape[1] :]
        return self.readout(h), loc, scale

    @torch.no_grad()
    def sample_paths(
        self,
        context: torch.Tensor,  # [B, T] NaN = missing/left padding, T multiple of P
        num_patches: int,
        num_samples: int,
        generator: torch.Generator | None = None,
        max_tokens: int | None = None,
    ) -> torch.Tensor:
        """Sample paths ``[B, S, num_patches * P]`` in data space.

        Encoder: one pass, per-step draws. Decoder: autoregressive, each sampled patch is appended
        to its own path's tokens (``B * S`` rows), keeping at most ``max_tokens`` recent tokens.
        """
        p = self.config.patch_size
        if not self.is_decoder:
            dist, loc, scale = self.future_distribution(context, num_patches)
            z = dist.sample(num_samples, generator).flatten(-2)  # [S, B, H]
            return (z * scale + loc).transpose(0, 1)
        b = context.shape[0]
        max_tokens = max_tokens or self.config.seq_len
        loc, scale = self.scale(context)
        x = self.tokens(context, loc, scale).repeat_interleave(num_samples, dim=0)  # [B*S, Nc, d]
        valid = ~torch.isnan(context).unflatten(-1, (-1, p)).all(-1).repeat_interleave(num_samples, dim=0)
        loc_s, scale_s = loc.repeat_interleave(num_samples, 0), scale.repeat_interleave(num_samples, 0)
        out = []
        for _ in range(num_patches):
            x, valid = x[:, -max_tokens:], valid[:, -max_tokens:]
            h = self.backbone(x, valid)[:, -1]  # [B*S, d]
            z = self.readout(h).sample(None, generator)  # [B*S, P] scaled
            y = z * scale_s + loc_s
            out.append(y)
            x = torch.cat([x, self.tokens(y, loc_s, scale_s).to(x.dtype)], dim=1)  # y [B*S, P] -> one token
            valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], dim=1)
        return torch.cat(out, dim=-1).view(b, num_samples, -1)
