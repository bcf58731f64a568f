"""Configuration of the ``baseline`` family: plain patch Transformers for scaling-law studies.

One dataclass describes both architectures of Yao et al. 2025 ("Towards Neural Scaling Laws for
Time Series Foundation Models"): ``architecture="encoder"`` (bidirectional attention, future
patches replaced by a learned mask embedding, as Moirai) and ``architecture="decoder"`` (causal
attention, each patch predicts the next one). Derived fields (``d_ff``, ``head_dim``) are filled
in ``__post_init__``; sizes are checked before anything is allocated (docs/architecture.md, "Size limits").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

ARCHITECTURES = ("encoder", "decoder")
FFN_TYPES = ("swiglu", "gelu")
PARAMETRIZATIONS = ("sp", "mup")
# Largest values accepted: a config claiming a 10^9-wide layer is an error, not an OOM crash.
_LIMITS = dict(
    d_model=16384, num_layers=256, num_heads=256, d_ff=65536, patch_size=4096,
    context_length=1 << 20, prediction_length=1 << 18, num_components=64,
)  # fmt: skip


@dataclass
class BaselineConfig:
    """Shape and forecasting defaults of a baseline patch Transformer.

    ``context_length``/``prediction_length`` (time steps, multiples of ``patch_size``) are the
    training window; forecasting accepts other lengths. ``d_ff=None`` picks ``8/3 d`` rounded to
    a multiple of 8 for SwiGLU (same parameter count as a ``4 d`` GELU FFN) and ``4 d`` for GELU.
    """

    architecture: str = "encoder"
    patch_size: int = 32
    context_length: int = 512
    prediction_length: int = 64
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int | None = None
    ffn: str = "swiglu"
    num_components: int = 4
    dropout: float = 0.0
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    scale_eps: float = 1e-5  # floor of the per-series std used for instance scaling
    num_samples: int = 100  # default sample paths per series when forecasting
    # "sp": standard parametrisation (GPT-2 init, one learning rate). "mup": maximal-update
    # parametrisation (Yang et al. 2022, the Adam table) relative to a model of width `base_width`:
    # hidden matrices initialised with std 0.02 * sqrt(base_width / d_model) and trained at
    # lr * base_width / d_model, attention logits q.k * sqrt(base_head_dim) / head_dim, the head
    # reading the last hidden state times base_width / d_model. At d_model = base_width and
    # head_dim = base_head_dim both are the same model; under "mup" the best lr tuned at base_width
    # carries to wider models (experiments/scaling/README.md, "One recipe across sizes").
    parametrization: str = "sp"
    base_width: int = 64
    base_head_dim: int = 32
    # The multipliers muP tunes on the base model and keeps across widths (Yang et al. 2022, "muTransfer": the
    # output, initialisation and attention multipliers); 1 / 0.02 / 1 are the plain model. output_mult scales the
    # head's input (times 1 / width_mult under mup), init_std the hidden matrices' init std at base width,
    # attn_mult the attention logits.
    output_mult: float = 1.0
    init_std: float = 0.02
    attn_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"baseline config: architecture={self.architecture!r}; use one of {ARCHITECTURES}"
            )
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"baseline config: parametrization={self.parametrization!r}; use one of {PARAMETRIZATIONS}"
            )
        for name in ("base_width", "base_head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"baseline config: {name}={value!r} must be a positive integer")
        for name in ("output_mult", "init_std", "attn_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"baseline config: {name}={value!r} must be a positive number")
        if self.ffn not in FFN_TYPES:
            raise ValueError(f"baseline config: ffn={self.ffn!r}; use one of {FFN_TYPES}")
        if self.d_ff is None:
            self.d_ff = 8 * (-(-8 * self.d_model // 3) // 8) if self.ffn == "swiglu" else 4 * self.d_model
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
                raise ValueError(f"baseline config: {name}={value!r} must be an integer in [1, {limit}]")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"baseline config: d_model={self.d_model} is not divisible by num_heads={self.num_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"baseline config: head_dim={self.head_dim} must be even for RoPE; change num_heads"
            )
        for name in ("context_length", "prediction_length"):
            if getattr(self, name) % self.patch_size:
                raise ValueError(
                    f"baseline config: {name}={getattr(self, name)} must be a multiple of "
                    f"patch_size={self.patch_size}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"baseline config: dropout={self.dropout} must be in [0, 1)")
        if self.num_samples <= 0:
            raise ValueError(f"baseline config: num_samples={self.num_samples} must be positive")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def width_mult(self) -> float:
        """``d_model / base_width`` under ``mup`` (1.0 under ``sp``): how much wider than the tuned proxy."""
        return self.d_model / self.base_width if self.parametrization == "mup" else 1.0

    @property
    def context_patches(self) -> int:
        return self.context_length // self.patch_size

    @property
    def prediction_patches(self) -> int:
        return self.prediction_length // self.patch_size

    @property
    def seq_len(self) -> int:
        """Tokens of one training window (context + horizon patches), both architectures."""
        return self.context_patches + self.prediction_patches

    def non_embedding_params(self) -> int:
        """Parameters of the Transformer blocks and final norm (Kaplan et al.'s ``N``).

        The input patch projection, mask embedding and output head scale with the patch size,
        not with width x depth, and are excluded, as embeddings are for language models.
        """
        d, f = self.d_model, int(self.d_ff)  # type: ignore[arg-type]
        attn = 4 * d * d
        ffn = 3 * d * f if self.ffn == "swiglu" else 2 * d * f + f + d
        return self.num_layers * (attn + ffn + 2 * d) + d

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs (forward + backward) per token: ``6 N_matmul + 6 L S d`` (x 1/2 if causal).

        ``N_matmul`` counts every weight used in a matmul per token (blocks, input projection and
        head); the second term is the attention score/value products (Kaplan et al. 2020, Table 1).
        """
        s = self.seq_len if seq_len is None else seq_len
        d, p, k = self.d_model, self.patch_size, self.num_components
        n = self.non_embedding_params() + 2 * p * d + d * p * 4 * k
        attn = 6 * self.num_layers * s * d * (0.5 if self.architecture == "decoder" else 1.0)
        return float(6 * n + attn)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> BaselineConfig:
        """Build from plain data, rejecting unknown keys with a message naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"tsfm_family"})
        if unknown:
            raise ValueError(f"{source}: unknown baseline config keys {unknown}; known keys: {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if k in known})
