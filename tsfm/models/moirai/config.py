"""Moirai model configuration and the frequency -> patch-size table.

:class:`MoiraiConfig` holds what the official ``config.json`` holds (``d_model``,
``num_layers``, ``patch_sizes``, ``max_seq_len``, dropouts, ``scaling``, the mixture
components) plus derived sizes filled in ``__post_init__``. ``from_official`` /
``to_official`` translate the nested ``distr_output`` dict that uni2ts writes (as data: the
``_target_`` strings are matched against a fixed list, nothing is imported).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pandas as pd

# official ``_target_`` class path -> our component name
_COMPONENT_TARGETS = {
    "uni2ts.distribution.student_t.StudentTOutput": "student_t",
    "uni2ts.distribution.normal.NormalFixedScaleOutput": "normal_fixed",
    "uni2ts.distribution.negative_binomial.NegativeBinomialOutput": "negative_binomial",
    "uni2ts.distribution.log_normal.LogNormalOutput": "log_normal",
}
_MIXTURE_TARGET = "uni2ts.distribution.mixture.MixtureOutput"
# Largest model a config may describe (8 GB of fp32 weights); official ones are far smaller.
MAX_PARAMS = 2_000_000_000
COMPONENTS = tuple(_COMPONENT_TARGETS.values())

# docs/architecture.md "Moirai patch sizes per frequency": patch sizes allowed per frequency family (Moirai paper / reference constraints).
FREQ_PATCH_RANGES: dict[str, tuple[int, int]] = {
    "yearly": (1, 8),
    "quarterly": (1, 8),
    "monthly": (8, 32),
    "weekly": (16, 32),
    "daily": (16, 32),
    "hourly": (32, 64),
    "minutely": (32, 128),
    "secondly": (64, 128),
}
_OFFSET_PREFIX = [  # pandas offset base names (old and new aliases) -> frequency family
    (("min", "T"), "minutely"),
    (("s", "S", "ms", "L", "us", "U", "ns", "N"), "secondly"),
    (("h", "H", "bh", "BH", "cbh", "CBH"), "hourly"),
    (("D", "B", "C"), "daily"),
    (("W",), "weekly"),
    (("M", "ME", "MS", "BM", "BME", "BMS", "SM", "SME", "SMS", "CBM", "CBMS"), "monthly"),
    (("Q", "QE", "QS", "BQ", "BQE", "BQS"), "quarterly"),
    (("Y", "YE", "YS", "A", "AS", "BY", "BYE", "BYS", "BA", "BAS"), "yearly"),
]


def freq_family(freq: str) -> str:
    """Map a pandas frequency string ('h', 'H', '15min', 'W-SUN', 'ME', 'QS-JAN', ...) to a family."""
    try:
        with warnings.catch_warnings():  # old aliases ('H', 'M', 'T') are deprecated, still valid here
            warnings.simplefilter("ignore", FutureWarning)
            offset = pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        raise ValueError(f"unknown frequency {freq!r}; use a pandas offset alias such as 'h', 'D', 'W', 'M'") from None
    base = offset.name.split("-")[0]
    for names, fam in _OFFSET_PREFIX:
        if base in names:
            return fam
    raise ValueError(f"frequency {freq!r} (offset {base!r}) has no Moirai patch-size rule; known: {list(FREQ_PATCH_RANGES)}")


def allowed_patch_sizes(freq: str, patch_sizes: tuple[int, ...] | list[int]) -> list[int]:
    """The model's patch sizes permitted for ``freq`` (docs/architecture.md table)."""
    lo, hi = FREQ_PATCH_RANGES[freq_family(freq)]
    return [p for p in patch_sizes if lo <= p <= hi]


def check_patch_size(patch_size: int, freq: str | None, patch_sizes: tuple[int, ...] | list[int]) -> int:
    """Validate a user-chosen patch size against the model and (optionally) the frequency."""
    if patch_size not in patch_sizes:
        raise ValueError(f"patch_size={patch_size} is not one of the model's patch sizes {list(patch_sizes)}")
    if freq is not None:
        allowed = allowed_patch_sizes(freq, patch_sizes)
        if patch_size not in allowed:
            raise ValueError(
                f"patch_size={patch_size} is not allowed for freq {freq!r} ({freq_family(freq)}); "
                f"allowed patch sizes: {allowed}"
            )
    return patch_size


@dataclass
class MoiraiConfig:
    """Sizes of a Moirai model. Heads have width ``head_dim`` (64 in every released model)."""

    d_model: int = 384
    num_layers: int = 6
    patch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    max_seq_len: int = 512
    attn_dropout_p: float = 0.0
    dropout_p: float = 0.0
    scaling: bool = True
    components: tuple[str, ...] = ("student_t", "normal_fixed", "negative_binomial", "log_normal")
    normal_scale: float = 1e-3
    head_dim: int = 64
    rope_base: float = 10000.0
    rope_fraction: float = 0.5  # RoPE on the first half of each head
    norm_eps: float = 1e-5
    # derived
    num_heads: int = field(init=False)
    d_ff: int = field(init=False)
    max_patch_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.patch_sizes = tuple(int(p) for p in self.patch_sizes)
        self.components = tuple(self.components)
        if self.head_dim <= 0:
            raise ValueError(f"head_dim must be positive, got {self.head_dim}; check config.json")
        if self.d_model <= 0 or self.d_model % self.head_dim:
            raise ValueError(f"d_model={self.d_model} must be a positive multiple of head_dim={self.head_dim}")
        if self.d_model > 65536 or self.num_layers > 1024 or not 0 < self.num_layers:
            raise ValueError(f"implausible size d_model={self.d_model}, num_layers={self.num_layers}; check config.json")
        if not self.patch_sizes or sorted(set(self.patch_sizes)) != list(self.patch_sizes) or self.patch_sizes[0] < 1:
            raise ValueError(f"patch_sizes must be increasing positive integers, got {self.patch_sizes}")
        if self.patch_sizes[-1] > 4096:
            raise ValueError(f"patch size {self.patch_sizes[-1]} is implausibly large (max 4096)")
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad or not self.components:
            raise ValueError(f"unknown mixture components {bad}; choose from {COMPONENTS}")
        self.num_heads = self.d_model // self.head_dim
        self.d_ff = (int(4 * self.d_model * 2 / 3) + 7) // 8 * 8  # GLU hidden size of the reference
        self.max_patch_size = max(self.patch_sizes)
        # size check before anything is allocated: encoder (attention 4d^2 + GLU 3*d*d_ff per layer)
        # plus one input and one output projection per patch size
        approx = self.num_layers * (4 * self.d_model**2 + 3 * self.d_model * self.d_ff) + sum(
            self.patch_sizes
        ) * self.d_model * 2 * (1 + 16)
        if approx > MAX_PARAMS:
            raise ValueError(
                f"config describes ~{approx:,} parameters (> {MAX_PARAMS:,}, the largest official Moirai "
                "has 311M); refusing to allocate. Check d_model / num_layers in config.json"
            )

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain init arguments (for hparams and tsfm checkpoints)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        d["patch_sizes"] = list(d["patch_sizes"])
        d["components"] = list(d["components"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoiraiConfig:
        names = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown Moirai config keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_official(cls, cfg: dict[str, Any]) -> MoiraiConfig:
        """Parse an official ``config.json`` (uni2ts ``MoiraiModule.save_pretrained`` layout)."""
        distr = cfg.get("distr_output", {})
        if distr.get("_target_") != _MIXTURE_TARGET:
            raise ValueError(f"distr_output must be a {_MIXTURE_TARGET}, got {distr.get('_target_')!r}")
        comps, normal_scale = [], 1e-3
        for c in distr.get("components", []):
            name = _COMPONENT_TARGETS.get(c.get("_target_"))
            if name is None:
                raise ValueError(f"unsupported mixture component {c.get('_target_')!r}; supported: {list(_COMPONENT_TARGETS)}")
            if name == "normal_fixed":
                normal_scale = float(c.get("scale", 1e-3))
            comps.append(name)
        return cls(
            d_model=int(cfg["d_model"]),
            num_layers=int(cfg["num_layers"]),
            patch_sizes=tuple(cfg["patch_sizes"]),
            max_seq_len=int(cfg.get("max_seq_len", 512)),
            attn_dropout_p=float(cfg.get("attn_dropout_p", 0.0)),
            dropout_p=float(cfg.get("dropout_p", 0.0)),
            scaling=bool(cfg.get("scaling", True)),
            components=tuple(comps),
            normal_scale=normal_scale,
            # shape settings the official layout leaves implicit; a tsfm export writes them when changed
            **{k: type(getattr(cls, k))(cfg[k]) for k in _EXTRA_OFFICIAL if k in cfg},
        )

    def to_official(self) -> dict[str, Any]:
        """The official ``config.json`` content for this configuration."""
        inv = {v: k for k, v in _COMPONENT_TARGETS.items()}
        comps = []
        for c in self.components:
            entry: dict[str, Any] = {"_target_": inv[c]}
            if c == "normal_fixed":
                entry["scale"] = self.normal_scale
            comps.append(entry)
        return {
            "attn_dropout_p": self.attn_dropout_p,
            "d_model": self.d_model,
            "distr_output": {"_target_": _MIXTURE_TARGET, "components": comps},
            "dropout_p": self.dropout_p,
            "max_seq_len": self.max_seq_len,
            "num_layers": self.num_layers,
            "patch_sizes": list(self.patch_sizes),
            "scaling": self.scaling,
            # uni2ts fixes these (64-wide heads, ...): written only when a run changed them, so an export
            # of another shape (e.g. the scaling study's 8-wide heads) loads back as it was trained
            **{k: getattr(self, k) for k in _EXTRA_OFFICIAL if getattr(self, k) != getattr(type(self), k)},
        }


_EXTRA_OFFICIAL = ("head_dim", "rope_base", "rope_fraction", "norm_eps")


def as_plain(cfg: MoiraiConfig) -> dict[str, Any]:
    """All fields (derived included), for logging."""
    return asdict(cfg)
