"""Chronos-2 model configuration and its mapping to the official ``amazon/chronos-2`` config.json.

The official file is a T5-style config with the forecasting fields nested in ``chronos_config``;
:class:`Chronos2Config` flattens both into one dataclass (litgpt style: derived fields filled in
``__post_init__``) and converts back losslessly, so an exported tsfm model loads in the
reference ``Chronos2Pipeline.from_pretrained`` and vice versa.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_QUANTILES: list[float] = [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
                                  0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]  # fmt: skip

# Sanity bounds checked before any allocation (a config from a stranger's directory claiming a
# 10^9-wide layer is an error, not an out-of-memory crash).
_MAX_WIDTH = 65_536
_MAX_LAYERS = 512
_MAX_CONTEXT = 1 << 20
_MAX_PARAMS = 2_000_000_000  # 8 GB of fp32 weights; the official model has 120M


@dataclass
class Chronos2Config:
    """Architecture and forecasting settings of a Chronos-2 encoder.

    ``time_encoding_scale`` defaults to ``context_length`` when the model is first built and is
    then part of the model: extending the context (stage 2) keeps the stage-1 value.
    """

    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    rope_theta: float = 10000.0
    initializer_factor: float = 0.05
    context_length: int = 2048
    patch_size: int = 16
    max_output_patches: int = 4
    quantiles: list[float] = field(default_factory=lambda: list(DEFAULT_QUANTILES))
    use_reg_token: bool = True
    use_arcsinh: bool = True
    time_encoding_scale: int | None = None
    # a tsfm inference setting, not architecture: the forecast averages the quantiles of the full-context
    # forecast with those from the last L points of the context, for each L here (empty: the reference's forecast)
    context_ensemble: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.time_encoding_scale is None:
            self.time_encoding_scale = self.context_length
        self.quantiles = [float(q) for q in self.quantiles]
        self.context_ensemble = [int(n) for n in (self.context_ensemble or [])]
        self.validate()

    def validate(self) -> None:
        for name in ("d_model", "d_kv", "d_ff", "num_heads", "patch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 < v <= _MAX_WIDTH:
                raise ValueError(f"chronos2 config: {name}={v!r} must be an integer in [1, {_MAX_WIDTH}]")
        if not 0 < self.num_layers <= _MAX_LAYERS:
            raise ValueError(f"chronos2 config: num_layers={self.num_layers} must be in [1, {_MAX_LAYERS}]")
        if not 0 < self.context_length <= _MAX_CONTEXT:
            raise ValueError(f"chronos2 config: context_length={self.context_length} must be in [1, {_MAX_CONTEXT}]")
        if not 0 < self.max_output_patches <= 4096:
            raise ValueError(f"chronos2 config: max_output_patches={self.max_output_patches} must be in [1, 4096]")
        if self.d_kv % 2:
            raise ValueError(f"chronos2 config: d_kv={self.d_kv} must be even (RoPE rotates pairs)")
        if not self.quantiles or any(not 0.0 < q < 1.0 for q in self.quantiles):
            raise ValueError(f"chronos2 config: quantiles must be a non-empty list in (0, 1), got {self.quantiles}")
        if sorted(self.quantiles) != self.quantiles:
            raise ValueError("chronos2 config: quantiles must be sorted ascending")
        if any(n < 1 for n in self.context_ensemble):
            raise ValueError(f"chronos2 config: context_ensemble={self.context_ensemble} must list positive context "
                             "lengths (e.g. [64]), or be empty for the single full-context forecast")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"chronos2 config: dropout_rate={self.dropout_rate} must be in [0, 1)")
        if self.num_parameters() > _MAX_PARAMS:
            raise ValueError(f"chronos2 config describes {self.num_parameters():,} parameters (> {_MAX_PARAMS:,}); refusing to allocate")

    @property
    def num_quantiles(self) -> int:
        return len(self.quantiles)

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @property
    def max_prediction_length(self) -> int:
        """Longest horizon predicted in one forward pass (longer ones are unrolled)."""
        return self.max_output_patches * self.patch_size

    def num_parameters(self) -> int:
        d, f, p, i = self.d_model, self.d_ff, self.patch_size, self.inner_dim
        per_layer = 2 * (4 * d * i + d) + 2 * d * f + d
        emb_in = (3 * p + 1) * f + (f + 1) * d + (3 * p + 1) * d
        emb_out = (d + 1) * f + (f + 1) * p * self.num_quantiles + (d + 1) * p * self.num_quantiles
        return self.num_layers * per_layer + emb_in + emb_out + 2 * d + d

    # -- official layout -----------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any]) -> Chronos2Config:
        """Read an official Chronos-2 ``config.json`` dict (T5-style + ``chronos_config``)."""
        cc = cfg.get("chronos_config")
        if not isinstance(cc, dict):
            raise ValueError("not a Chronos-2 config: config.json has no 'chronos_config' section")
        in_p, out_p = cc.get("input_patch_size", 16), cc.get("output_patch_size", 16)
        stride = cc.get("input_patch_stride", in_p)
        if not (in_p == out_p == stride):
            raise ValueError(
                f"chronos2: input_patch_size={in_p}, input_patch_stride={stride}, output_patch_size={out_p}; "
                "only equal, non-overlapping input/output patches are supported"
            )
        act = cfg.get("feed_forward_proj", "relu")
        if act != "relu":
            raise ValueError(f"chronos2: feed_forward_proj={act!r} is not supported (the released models use 'relu')")
        return cls(
            d_model=int(cfg.get("d_model", 512)),
            d_kv=int(cfg.get("d_kv", 64)),
            d_ff=int(cfg.get("d_ff", 2048)),
            num_layers=int(cfg.get("num_layers", 6)),
            num_heads=int(cfg.get("num_heads", 8)),
            dropout_rate=float(cfg.get("dropout_rate", 0.1)),
            layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-6)),
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            initializer_factor=float(cfg.get("initializer_factor", 0.05)),
            context_length=int(cc["context_length"]),
            patch_size=int(in_p),
            max_output_patches=int(cc.get("max_output_patches", 1)),
            quantiles=list(cc["quantiles"]),
            use_reg_token=bool(cc.get("use_reg_token", False)),
            use_arcsinh=bool(cc.get("use_arcsinh", False)),
            time_encoding_scale=cc.get("time_encoding_scale"),
            context_ensemble=list(cfg.get("tsfm_context_ensemble") or []),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The official config.json layout (readable by ``Chronos2Pipeline.from_pretrained``); a context ensemble
        is the top-level key ``tsfm_context_ensemble``, which the reference ignores."""
        extra = {"tsfm_context_ensemble": list(self.context_ensemble)} if self.context_ensemble else {}
        return {**extra,
            "architectures": ["Chronos2Model"],
            "chronos_config": {
                "context_length": self.context_length,
                "input_patch_size": self.patch_size,
                "input_patch_stride": self.patch_size,
                "max_output_patches": self.max_output_patches,
                "output_patch_size": self.patch_size,
                "quantiles": list(self.quantiles),
                "time_encoding_scale": self.time_encoding_scale,
                "use_arcsinh": self.use_arcsinh,
                "use_reg_token": self.use_reg_token,
            },
            "chronos_pipeline_class": "Chronos2Pipeline",
            "d_ff": self.d_ff,
            "d_kv": self.d_kv,
            "d_model": self.d_model,
            "dense_act_fn": "relu",
            "dropout_rate": self.dropout_rate,
            "dtype": "float32",
            "feed_forward_proj": "relu",
            "initializer_factor": self.initializer_factor,
            "is_gated_act": False,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "model_type": "t5",
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "pad_token_id": 0,
            "reg_token_id": 1,
            "rope_theta": self.rope_theta,
            "vocab_size": 2 if self.use_reg_token else 1,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for Lightning hyperparameters)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chronos2Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"chronos2 config: unknown fields {unknown}; valid fields: {sorted(known)}")
        return cls(**d)
