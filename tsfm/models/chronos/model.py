"""Chronos model: the mean-scale tokenizer over a ``transformers`` T5 encoder-decoder.

The backbone is ``transformers.T5ForConditionalGeneration`` unchanged (same modules, same
parameter names as the released checkpoints). What this file adds:

* :func:`build_t5` builds it from a :class:`ChronosConfig` (random init, or on the meta device
  for loading), with attention routed through :func:`shared_kv_attention`;
* :class:`ChronosModel` wraps tokenizer + T5: teacher-forced cross-entropy, ``embed``, and a
  KV-cached sampler that draws ``num_samples`` paths for all series in one batch.

Why a custom attention function: when sampling S paths per series, ``generate`` repeats each
encoder output S times, so the cross-attention keys/values are projected and stored S times
(for 32 series x 20 samples x 513 tokens at the small shape that is ~2 TFLOP and ~8 GB). Our
sampler hands the decoder the encoder output once per series; :func:`shared_kv_attention`
(registered through transformers' public ``AttentionInterface``) then attends the S query rows
of a series to its single copy of the keys/values. Every other attention call goes to SDPA
unchanged, so logits are the same function of the tokens as in plain T5.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, T5Config, T5ForConditionalGeneration
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.tokenizer import MeanScaleUniformBins

ATTN_IMPLEMENTATION = "tsfm_shared_kv"


def shared_kv_attention(
    module: nn.Module,
    query: torch.Tensor,  # [Bq, H, q, d]
    key: torch.Tensor,  # [Bk, H, k, d], Bq = Bk * S
    value: torch.Tensor,  # [Bk, H, k, d]
    attention_mask: torch.Tensor | None,  # [Bk | 1, 1, q | 1, k] bool or additive float
    dropout: float = 0.0,
    scaling: float | None = None,
    position_bias: torch.Tensor | None = None,  # [1 | Bk, H, q, k]
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA, plus attention of ``S`` query rows per key row when the batch sizes differ."""
    bq, bk = query.shape[0], key.shape[0]
    mask_ok = attention_mask is None or attention_mask.shape[0] in (1, bk)
    bias_ok = position_bias is None or position_bias.shape[0] in (1, bk)
    if bq % bk:
        raise ValueError(f"query batch {bq} is not a multiple of key/value batch {bk}")
    if bq == bk or not (mask_ok and bias_ok):
        if bq != bk:  # unexpected layout: fall back to repeating keys/values
            key, value = key.repeat_interleave(bq // bk, 0), value.repeat_interleave(bq // bk, 0)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            position_bias=position_bias, **kwargs,
        )  # fmt: skip
    s, (_, h, q, d) = bq // bk, query.shape
    qg = query.reshape(bk, s, h, q, d).transpose(1, 2).reshape(bk, h, s * q, d)  # [Bk, H, S*q, d]
    bias = position_bias if position_bias is not None else query.new_zeros(1, h, q, key.shape[2])
    if attention_mask is None:
        add = bias
    elif attention_mask.dtype == torch.bool:  # same combination as transformers' SDPA path
        add = torch.where(attention_mask, bias, torch.finfo(key.dtype).min)
    else:
        add = bias + attention_mask
    if q > 1:  # [b, h, q, k] -> [b, h, S*q, k] (sample-major like qg)
        add = (
            add.unsqueeze(2)
            .expand(add.shape[0], add.shape[1], s, q, add.shape[-1])
            .reshape(add.shape[0], add.shape[1], s * q, add.shape[-1])
        )
    out = F.scaled_dot_product_attention(
        qg, key, value, attn_mask=add.to(query.dtype), dropout_p=dropout, scale=scaling
    )  # [Bk, H, S*q, d]
    out = out.reshape(bk, h, s, q, d).permute(0, 2, 3, 1, 4).reshape(bq, q, h, d)  # [Bq, q, H, d]
    return out, None


AttentionInterface.register(ATTN_IMPLEMENTATION, shared_kv_attention)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def t5_config(config: ChronosConfig) -> T5Config:
    cfg = T5Config(**config.t5_kwargs())
    cfg._attn_implementation = ATTN_IMPLEMENTATION
    return cfg


def build_t5(config: ChronosConfig, device: torch.device | str | None = None) -> T5ForConditionalGeneration:
    """A ``T5ForConditionalGeneration`` of this shape (random init; ``device="meta"`` allocates nothing)."""
    with torch.device(device) if device is not None else nullcontext():
        model = T5ForConditionalGeneration(t5_config(config))
    return model


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers' sampling warpers do.

    ``logits [N, V]`` -> filtered logits (removed entries are ``-inf``). top_k <= 0 and
    top_p >= 1 disable the filters; temperature 1 is a no-op.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # [N, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1:] = False  # always keep the most likely token
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


class ChronosModel(nn.Module):
    """Tokenizer + T5. Single device, no Lightning."""

    def __init__(self, config: ChronosConfig, t5: T5ForConditionalGeneration | None = None) -> None:
        super().__init__()
        self.config = config
        self.t5 = t5 if t5 is not None else build_t5(config)
        if self.t5.config._attn_implementation != ATTN_IMPLEMENTATION:  # e.g. a T5 built elsewhere
            self.t5.set_attn_implementation(ATTN_IMPLEMENTATION)  # also sets the stacks' config copies
        self.tokenizer = MeanScaleUniformBins(config)

    @property
    def device(self) -> torch.device:
        return self.t5.shared.weight.device

    # -- training -------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,  # [B, C+1]
        attention_mask: torch.Tensor,  # [B, C+1] bool
        labels: torch.Tensor,  # [B, H+1], -100 = ignored
    ) -> torch.Tensor:
        """Mean token cross-entropy over labels != -100 (teacher forcing)."""
        return self.t5(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss

    def logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, H+1, V]``."""
        return self.t5(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).logits

    def tokenize_batch(
        self, context: torch.Tensor, future: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``context [B, T]`` (+ ``future [B, H]``) -> model inputs; NaN labels become -100."""
        ids, mask, scale = self.tokenizer.context_input_transform(context)
        out = {"input_ids": ids, "attention_mask": mask, "scale": scale}
        if future is not None:
            labels, label_mask = self.tokenizer.label_input_transform(future, scale)
            out["labels"] = labels.masked_fill(~label_mask, -100)
        return out

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``[B, T'+1, d_model]`` and scale ``[B]`` for ``context [B, T]``."""
        ids, mask, scale = self.tokenizer.context_input_transform(context)
        hidden = self.t5.encoder(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        ).last_hidden_state
        return hidden, scale

    @torch.no_grad()
    def sample_tokens(
        self,
        input_ids: torch.Tensor,  # [B, C+1]
        attention_mask: torch.Tensor,  # [B, C+1] bool
        prediction_length: int,
        num_samples: int,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        return_scores: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Sampled token paths ``[B, S, H]``: encoder once, then a KV-cached decoder over B*S rows.

        The distribution is that of transformers' ``generate(do_sample=True, min_new_tokens =
        max_new_tokens = H)``: EOS is never sampled, then temperature / top-k / top-p, softmax and
        one ``torch.multinomial`` per step. Rows are series-major (series i's S paths are
        adjacent), as in ``generate(num_return_sequences=S)``. ``return_scores`` also returns the
        per-step logits ``[B, S, H, V]`` (EOS masked, before filtering) for checks.
        """
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        b, s = input_ids.shape[0], num_samples
        dev = self.device
        enc = self.t5.encoder(
            input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev)
        ).last_hidden_state
        enc_mask = attention_mask.to(dev)[:, None, None, :]  # [B, 1, 1, C+1] bool, shared by the S rows
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        token = torch.full((b * s, 1), self.t5.config.decoder_start_token_id, dtype=torch.long, device=dev)
        out = torch.empty(b * s, prediction_length, dtype=torch.long, device=dev)
        scale_out = self.t5.config.d_model**-0.5
        eos = self.config.eos_token_id
        scores = [] if return_scores else None
        for t in range(prediction_length):
            hidden = self.t5.decoder(
                input_ids=token,
                encoder_hidden_states=enc,
                encoder_attention_mask=enc_mask,
                past_key_values=cache,
                use_cache=True,
            ).last_hidden_state  # [B*S, 1, d]
            logits = self.t5.lm_head(hidden[:, -1] * scale_out).float()  # [B*S, V]
            logits[:, eos] = float("-inf")
            if scores is not None:
                scores.append(logits)
            probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator)  # [B*S, 1]
            out[:, t] = token[:, 0]
        out = out.reshape(b, s, prediction_length)
        if scores is not None:
            return out, torch.stack(scores, 1).reshape(b, s, prediction_length, -1)
        return out
