"""Configuration of the Chronos (T5) family: the T5 backbone shape plus the tokenizer/sampling settings.

One dataclass holds both halves because an official ``amazon/chronos-t5-*`` ``config.json`` does
too (a T5 config with a nested ``chronos_config``). :meth:`ChronosConfig.from_hf_dict` reads that
file; :meth:`ChronosConfig.to_hf_dict` writes one the reference pipeline loads unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Paper sizes (Ansari et al. 2024, Table/Appendix): T5-efficient tiny/mini/small/base/large shapes
# with a 4096-token vocabulary. Parameter counts: 8M / 20M / 46M / 200M / 710M.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=256, d_ff=1024, d_kv=64, num_heads=4, num_layers=4, num_decoder_layers=4),
    "mini": dict(d_model=384, d_ff=1536, d_kv=64, num_heads=8, num_layers=4, num_decoder_layers=4),
    "small": dict(d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6, num_decoder_layers=6),
    "base": dict(d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "large": dict(d_model=1024, d_ff=4096, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24),
}

# Keys of an official ``chronos_config`` block, in the order the reference writes them.
CHRONOS_KEYS = (
    "tokenizer_class", "tokenizer_kwargs", "context_length", "prediction_length", "n_tokens",
    "n_special_tokens", "pad_token_id", "eos_token_id", "use_eos_token", "model_type",
    "num_samples", "temperature", "top_k", "top_p",
)  # fmt: skip
# Largest sizes accepted before anything is allocated (docs/architecture.md, "Size limits"): a config claiming a 10^9-wide
# layer is an error, not an out-of-memory crash.
_LIMITS = dict(d_model=16384, d_ff=65536, d_kv=1024, num_heads=256, num_layers=256, num_decoder_layers=256,
               vocab_size=1 << 20, context_length=1 << 16, prediction_length=1 << 14)  # fmt: skip


@dataclass
class ChronosConfig:
    """T5 shape + Chronos tokenizer and sampling defaults (``num_samples``, ``temperature``, ...)."""

    # T5 backbone
    d_model: int = 512
    d_ff: int = 2048
    d_kv: int = 64
    num_heads: int = 8
    num_layers: int = 6
    num_decoder_layers: int = 6
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    initializer_factor: float = 0.05  # released checkpoints use 0.05 (T5 default 1.0)
    # tokenizer (MeanScaleUniformBins)
    n_tokens: int = 4096
    n_special_tokens: int = 2
    pad_token_id: int = 0
    eos_token_id: int = 1
    use_eos_token: bool = True
    low_limit: float = -15.0
    high_limit: float = 15.0
    context_length: int = 512
    prediction_length: int = 64
    # sampling defaults
    num_samples: int = 20
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0

    def __post_init__(self) -> None:
        for name, limit in _LIMITS.items():
            value = self.vocab_size if name == "vocab_size" else getattr(self, name)
            if not isinstance(value, int) or not 0 < value <= limit:
                raise ValueError(f"chronos config: {name}={value!r} must be an integer in [1, {limit}]")
        if not (
            0 <= self.pad_token_id < self.n_special_tokens and 0 <= self.eos_token_id < self.n_special_tokens
        ):
            raise ValueError(
                f"chronos config: pad_token_id={self.pad_token_id} and eos_token_id={self.eos_token_id} "
                f"must be < n_special_tokens={self.n_special_tokens}"
            )
        if self.n_tokens - self.n_special_tokens - 1 < 2:
            raise ValueError(f"chronos config: n_tokens={self.n_tokens} leaves fewer than 2 bins")
        if not self.low_limit < self.high_limit:
            raise ValueError(
                f"chronos config: low_limit={self.low_limit} must be < high_limit={self.high_limit}"
            )
        if self.feed_forward_proj not in {"relu", "gated-gelu", "gelu", "gated-relu"}:
            raise ValueError(
                f"chronos config: feed_forward_proj={self.feed_forward_proj!r} is not a T5 activation"
            )

    @property
    def vocab_size(self) -> int:
        return self.n_tokens

    @property
    def num_bins(self) -> int:
        """Number of bin centres: vocabulary minus special tokens minus one (4093 for 4096)."""
        return self.n_tokens - self.n_special_tokens - 1

    @classmethod
    def from_name(cls, size: str, **overrides: Any) -> ChronosConfig:
        """Paper size (``tiny``/``mini``/``small``/``base``/``large``) with optional overrides."""
        key = size.removeprefix("chronos_").removeprefix("chronos-t5-")
        if key not in SIZES:
            raise ValueError(f"unknown Chronos size {size!r}; choose one of {sorted(SIZES)}")
        return cls(**{**SIZES[key], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- official config.json -------------------------------------------------------------
    def chronos_config_dict(self) -> dict[str, Any]:
        """The nested ``chronos_config`` block of an official ``config.json``."""
        return {
            "tokenizer_class": "MeanScaleUniformBins",
            "tokenizer_kwargs": {"low_limit": float(self.low_limit), "high_limit": float(self.high_limit)},
            "context_length": self.context_length,
            "prediction_length": self.prediction_length,
            "n_tokens": self.n_tokens,
            "n_special_tokens": self.n_special_tokens,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "use_eos_token": self.use_eos_token,
            "model_type": "seq2seq",
            "num_samples": self.num_samples,
            "temperature": float(self.temperature),
            "top_k": self.top_k,
            "top_p": float(self.top_p),
        }

    def t5_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``transformers.T5Config`` for this shape."""
        return dict(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            d_ff=self.d_ff,
            d_kv=self.d_kv,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            num_decoder_layers=self.num_decoder_layers,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            dropout_rate=self.dropout_rate,
            layer_norm_epsilon=self.layer_norm_epsilon,
            feed_forward_proj=self.feed_forward_proj,
            initializer_factor=self.initializer_factor,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.pad_token_id,
            n_positions=self.context_length,
        )

    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any], source: str = "config.json") -> ChronosConfig:
        """Read an official (or tsfm-exported) Chronos-T5 ``config.json`` dict.

        Raises a ``ValueError`` naming what was found when the file is not a Chronos-T5 config
        (no ``chronos_config``, a Chronos-2 / Bolt config, a causal model, another tokenizer).
        """
        cc = cfg.get("chronos_config")
        if not isinstance(cc, dict):
            found = cfg.get("architectures") or cfg.get("model_type") or sorted(cfg)[:8]
            raise ValueError(
                f"{source}: not a Chronos (T5) checkpoint: no 'chronos_config' block (found {found}). "
                "Expected the config.json of an amazon/chronos-t5-* directory."
            )
        arch = cfg.get("architectures") or []
        if cfg.get("model_type") != "t5" or (arch and "T5ForConditionalGeneration" not in arch):
            raise ValueError(
                f"{source}: a Chronos config for model_type={cfg.get('model_type')!r}, architectures={arch}; "
                "this loader reads Chronos-T5 (T5ForConditionalGeneration). Chronos-2 and Chronos-Bolt "
                "directories need their own family."
            )
        if (
            cc.get("model_type", "seq2seq") != "seq2seq"
            or cc.get("tokenizer_class") != "MeanScaleUniformBins"
        ):
            raise ValueError(
                f"{source}: chronos_config has model_type={cc.get('model_type')!r}, "
                f"tokenizer_class={cc.get('tokenizer_class')!r}; only seq2seq + MeanScaleUniformBins is supported"
            )
        if cfg.get("tie_word_embeddings") is False:
            raise ValueError(
                f"{source}: tie_word_embeddings=false is not a Chronos-T5 layout (tied embeddings expected)"
            )
        tk = cc.get("tokenizer_kwargs") or {}
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: cfg[k] for k in known if k in cfg and k not in CHRONOS_KEYS}
        kw.update({k: cc[k] for k in CHRONOS_KEYS if k in cc and k in known})
        kw["low_limit"] = float(tk.get("low_limit", -15.0))
        kw["high_limit"] = float(tk.get("high_limit", 15.0))
        if cfg.get("vocab_size", cc.get("n_tokens")) != cc.get("n_tokens", cfg.get("vocab_size")):
            raise ValueError(
                f"{source}: vocab_size={cfg.get('vocab_size')} differs from chronos_config.n_tokens={cc.get('n_tokens')}"
            )
        if "num_decoder_layers" not in cfg and "num_layers" in cfg:
            kw["num_decoder_layers"] = cfg["num_layers"]
        return cls(**kw)

    def to_hf_dict(self) -> dict[str, Any]:
        """A ``config.json`` in the key set of the released ``amazon/chronos-t5-*`` configs."""
        return {
            "architectures": ["T5ForConditionalGeneration"],
            "chronos_config": self.chronos_config_dict(),
            **self.t5_kwargs(),
            "dense_act_fn": self.feed_forward_proj.removeprefix("gated-"),
            "is_gated_act": self.feed_forward_proj.startswith("gated-"),
            "is_encoder_decoder": True,
            "model_type": "t5",
            "torch_dtype": "float32",
            "use_cache": True,
            "tsfm_family": "chronos",
        }
