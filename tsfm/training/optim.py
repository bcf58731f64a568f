"""Optimizer and learning-rate schedule shared by every family.

The recipes of the papers differ only in numbers (Moirai: AdamW 1e-3, wd 0.1, betas
(0.9, 0.98), warmup + cosine; Chronos: AdamW 1e-3, wd 0.01, linear decay; Chronos-2
fine-tuning: lr 1e-6, linear), so one :class:`OptimConfig` expresses all of them in YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

_NO_DECAY_TYPES = (nn.LayerNorm, nn.Embedding, nn.GroupNorm, nn.BatchNorm1d, nn.RMSNorm)


@dataclass
class OptimConfig:
    """What ``conf/optim/*.yaml`` holds. ``max_steps`` is interpolated from the trainer."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 0
    scheduler: str = "cosine"  # cosine | linear | constant | wsd
    decay_fraction: float = 0.2  # wsd: the last fraction of the steps decays linearly to min_lr_ratio
    max_steps: int = 10_000
    min_lr_ratio: float = 0.0
    no_decay_names: list[str] = field(default_factory=lambda: ["bias", "norm", "embed", "mask_token"])
    # AdamW's implementation: false = torch's default for the device (a per-tensor loop on CPU, foreach on
    # CUDA); true = the fused kernel (CPU and CUDA; ~4x faster optimizer step on CPU, rounding differs in
    # the last bit)
    fused: bool = False

    def __post_init__(self) -> None:
        if self.scheduler not in {"cosine", "linear", "constant", "wsd"}:
            raise ValueError(f"optim.scheduler={self.scheduler!r}: use one of cosine, linear, constant, wsd")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"optim.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.max_steps <= 0:
            raise ValueError(
                f"optim.warmup_steps must be >= 0 (got {self.warmup_steps}) and optim.max_steps > 0 "
                f"(got {self.max_steps}; it follows trainer.max_steps: set trainer.max_steps to a positive number)"
            )
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if not isinstance(self.fused, bool):
            raise ValueError(f"optim.fused must be true or false, got {self.fused!r}")


def _lr_multipliers(model: nn.Module) -> dict[int, float]:
    """``id(param) -> lr factor`` from every submodule that defines ``lr_multipliers()`` (a width-aware
    parametrisation such as the baseline family's ``mup``); parameters not named keep factor 1."""
    out: dict[int, float] = {}
    for module in model.modules():
        fn = getattr(module, "lr_multipliers", None)
        if callable(fn):
            params = dict(module.named_parameters())
            out.update({id(params[name]): float(f) for name, f in fn().items() if name in params})
    return out


def param_groups(model: nn.Module, weight_decay: float, no_decay_names: list[str]) -> list[dict]:
    """Split trainable parameters into decayed and non-decayed groups.

    Norm weights, biases and embeddings are not decayed (Moirai/Chronos recipes), detected by
    module type, by 1-D shape, or by a name fragment in ``no_decay_names``. Parameters that a
    submodule's ``lr_multipliers()`` names get their own groups with ``lr_scale`` (the base lr and
    its schedule times that factor; see :func:`build_optimizer`).
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NO_DECAY_TYPES) or "norm" in type(module).__name__.lower():
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    scales = _lr_multipliers(model)
    decay: dict[float, list[nn.Parameter]] = {1.0: []}
    no_decay: dict[float, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        plain = id(p) in no_decay_ids or p.ndim < 2 or any(s in lname for s in no_decay_names)
        (no_decay if plain else decay).setdefault(scales.get(id(p), 1.0), []).append(p)
    groups = []
    for wd, buckets in ((weight_decay, decay), (0.0, no_decay)):
        for scale, params in buckets.items():
            if params or (wd, scale) == (weight_decay, 1.0):
                groups.append({"params": params, "weight_decay": wd} | ({"lr_scale": scale} if scale != 1.0 else {}))
    return groups


def lr_lambda(cfg: OptimConfig):
    """Multiplier of the base lr at a given step: linear warmup then cosine/linear/constant, or
    ``wsd`` (warmup-stable-decay): constant, then a linear decay over the last ``decay_fraction``
    of the run. A short run spends most of its steps at the full rate, and any prefix of it is a
    good model; a cosine to 0 spends half its steps below half the rate."""

    def fn(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "constant":
            return 1.0
        if cfg.scheduler == "wsd":
            decay_start = max(cfg.warmup_steps, int(round(cfg.max_steps * (1.0 - cfg.decay_fraction))))
            progress = min(1.0, max(0, step - decay_start) / max(1, cfg.max_steps - decay_start))
            return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * (1.0 - progress)
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        if cfg.scheduler == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay

    return fn


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> dict:
    """Return what ``LightningModule.configure_optimizers`` returns (AdamW + per-step schedule)."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_names)
    for g in groups:
        g["lr"] = cfg.lr * g.get("lr_scale", 1.0)  # LambdaLR scales each group's own initial lr
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=cfg.fused or None)
    if cfg.fused:
        # The fused kernel can also unscale fp16 gradients itself, and Lightning's mixed-precision plugin then
        # refuses gradient clipping (the clip would see scaled gradients). Declining that keeps a GradScaler
        # unscaling before the clip and the step, as for the plain optimizer (and bf16 has no scaler at all).
        opt._step_supports_amp_scaling = False
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
