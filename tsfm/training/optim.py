"""Optimizer and learning-rate schedule shared by every family.

The recipes of the papers differ only in numbers (Moirai: AdamW 1e-3, wd 0.1, betas
(0.9, 0.98), warmup + cosine; Chronos: AdamW 1e-3, wd 0.01, linear decay; Chronos-2
fine-tuning: lr 1e-6, linear), so one :class:`OptimConfig` expresses all of them in YAML.

``optimizer: muon`` trains the hidden weight matrices (the 2-D weights of the repeated Transformer blocks) with
Muon (``tsfm.training.muon``: torch's Muon with batched Newton-Schulz iterations; orthogonalised momentum; Jordan et al. 2024, with Moonshot's update scaling so AdamW's learning rate
and weight decay carry over: Liu et al. 2025, "Muon is Scalable for LLM Training") and everything else (embeddings,
patch projections, output heads, norms, biases) with AdamW, as one optimizer with one schedule
(:class:`MuonWithAdamW`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tsfm.training.muon import BatchedMuon

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
    # adamw | muon (Muon on the hidden matrices, AdamW on the rest: MuonWithAdamW)
    optimizer: str = "adamw"
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5

    def __post_init__(self) -> None:
        if self.optimizer not in {"adamw", "muon"}:
            raise ValueError(f"optim.optimizer={self.optimizer!r}: use adamw or muon")
        if not 0.0 <= self.muon_momentum < 1.0 or int(self.muon_ns_steps) < 1:
            raise ValueError(
                f"optim.muon_momentum must be in [0, 1) (got {self.muon_momentum}) and optim.muon_ns_steps >= 1 "
                f"(got {self.muon_ns_steps})"
            )
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


def hidden_matrices(model: nn.Module, no_decay_names: list[str] = ("bias", "norm", "embed", "mask_token")) -> set[int]:
    """``id`` of every 2-D weight inside a repeated stack of blocks (a submodule of an ``nn.ModuleList``): the
    attention and feed-forward matrices of each family's Transformer layers. Embeddings, patch projections and
    output heads sit outside such stacks, norms and biases are 1-D, and what :func:`param_groups` would not decay
    (embedding and norm modules, names with a ``no_decay_names`` fragment) is left out inside a stack too."""
    out: set[int] = set()
    for stack in (m for m in model.modules() if isinstance(m, nn.ModuleList)):
        for mod_name, module in stack.named_modules():
            if isinstance(module, _NO_DECAY_TYPES) or "norm" in type(module).__name__.lower():
                continue
            for name, p in module.named_parameters(prefix=mod_name, recurse=False):
                if p.ndim == 2 and not any(s in name.lower() for s in no_decay_names):
                    out.add(id(p))
    return out


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the groups marked ``muon: True``, AdamW on the others: one optimizer to Lightning, the LR scheduler
    and gradient clipping, with one ``state`` and one list of ``param_groups`` (a standard state dict, keyed like
    AdamW's, so checkpoints resume under every strategy). Muon's update is scaled by ``0.2·sqrt(max(A, B))``
    (``match_rms_adamw``), so both halves take the same learning rate and weight decay."""

    def __init__(self, groups: list[dict], *, lr: float, betas: tuple[float, float], eps: float, fused: bool,
                 momentum: float, ns_steps: int) -> None:
        muon_groups = [g for g in groups if g.get("muon")]
        adamw_groups = [g for g in groups if not g.get("muon")]
        if not muon_groups or not any(g["params"] for g in muon_groups):
            raise ValueError(
                "optim.optimizer=muon found no hidden weight matrices (2-D weights inside an nn.ModuleList of "
                "blocks) in this model; use optim.optimizer=adamw"
            )
        self.muon = BatchedMuon(muon_groups, lr=lr, momentum=momentum, ns_steps=int(ns_steps),
                                adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(adamw_groups or [{"params": []}], lr=lr, betas=betas, eps=eps,
                                       fused=fused or None)
        super().__init__(self.muon.param_groups + self.adamw.param_groups, {"lr": lr})
        self._share()

    def _share(self) -> None:
        """Point both inner optimizers at this optimizer's groups and state (a scheduler's lr reaches them)."""
        self.muon.param_groups = [g for g in self.param_groups if g.get("muon")]
        self.adamw.param_groups = [g for g in self.param_groups if not g.get("muon")]
        self.muon.state = self.adamw.state = self.state

    def add_param_group(self, param_group: dict) -> None:
        """A group added after construction (e.g. by a fine-tuning callback) gets its optimizer's defaults and
        reaches it; ``muon: True`` sends it to Muon (2-D parameters only)."""
        if "muon" in self.__dict__:  # (Optimizer.__init__ calls this too, before the inner optimizers are shared)
            ps = param_group["params"]
            param_group = {**param_group, "params": [ps] if isinstance(ps, torch.Tensor) else list(ps)}
            inner = self.muon if param_group.get("muon") else self.adamw
            if param_group.get("muon") and any(p.ndim != 2 for p in param_group["params"]):
                raise ValueError("a Muon parameter group holds 2-D weight matrices only")
            for k, v in inner.defaults.items():
                param_group.setdefault(k, v)
        super().add_param_group(param_group)
        if "muon" in self.__dict__:
            self._share()

    def __getstate__(self) -> dict:  # deepcopy / pickle keep the inner optimizers
        return {**super().__getstate__(), "muon": self.muon, "adamw": self.adamw}

    def __setstate__(self, state: dict) -> None:  # also what load_state_dict ends with: it replaces state and groups
        super().__setstate__(state)
        if "muon" in self.__dict__:
            self._share()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = self.muon.step(closure)  # evaluates the closure (forward + backward) first
        if any(g["params"] for g in self.adamw.param_groups):
            self.adamw.step()
        return loss


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> dict:
    """Return what ``LightningModule.configure_optimizers`` returns (AdamW, or Muon + AdamW, and a per-step
    schedule)."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_names)
    if cfg.optimizer == "muon":  # split each group into its hidden matrices (Muon) and the rest (AdamW)
        hidden = hidden_matrices(model, cfg.no_decay_names)
        split = []
        for g in groups:
            for muon in (True, False):
                ps = [p for p in g["params"] if (id(p) in hidden) == muon]
                if ps:
                    split.append({**g, "params": ps} | ({"muon": True} if muon else {}))
        groups = split
    for g in groups:
        g["lr"] = cfg.lr * g.get("lr_scale", 1.0)  # LambdaLR scales each group's own initial lr
    if cfg.optimizer == "muon":
        opt: torch.optim.Optimizer = MuonWithAdamW(
            groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=cfg.fused,
            momentum=cfg.muon_momentum, ns_steps=cfg.muon_ns_steps,
        )
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=cfg.fused or None)
    if cfg.fused and cfg.optimizer == "adamw":
        # The fused kernel can also unscale fp16 gradients itself, and Lightning's mixed-precision plugin then
        # refuses gradient clipping (the clip would see scaled gradients). Declining that keeps a GradScaler
        # unscaling before the clip and the step, as for the plain optimizer (and bf16 has no scaler at all).
        opt._step_supports_amp_scaling = False
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
