"""Fine-tuning presets shared by every family: ``full``, ``head`` and ``lora`` (through ``peft``).

A family declares which of its submodules form the output head (``head``: everything else is
frozen) and which linear layers get LoRA adapters (``lora``). ``peft.inject_adapter_in_model``
swaps those ``nn.Linear`` layers for LoRA layers *in place*, so the model keeps its own class
and the Lightning module, the loss and the forecaster need no wrapper type. :func:`merge_lora`
folds the adapters back into plain ``nn.Linear`` weights (export, inference), and
:func:`fold_lora_state` does the same on a saved state dict (a LoRA run's ``.ckpt``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

PRESETS = ("full", "head", "lora")
# LoRA options other than target_modules: the chronos-forecasting Chronos2Pipeline.fit defaults
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
_LORA_KEYS = {"r", "lora_alpha", "lora_dropout", "target_modules", "bias"}


def lora_options(lora: dict[str, Any] | None, targets: Sequence[str]) -> dict[str, Any]:
    """The effective LoRA options: the defaults, the family's target modules, then ``lora``."""
    cfg = LORA_DEFAULTS | {"target_modules": list(targets)} | dict(lora or {})
    unknown = set(cfg) - _LORA_KEYS
    if unknown:
        raise ValueError(f"lora options {sorted(unknown)} are not supported; use {sorted(_LORA_KEYS)}")
    if not cfg["target_modules"]:
        raise ValueError("lora: no target_modules (this family declares none; pass lora.target_modules)")
    return cfg


def apply_lora(model: nn.Module, lora: dict[str, Any]) -> nn.Module:
    """Inject LoRA adapters (``lora``: full options, see :func:`lora_options`) and freeze every
    other parameter. Returns ``model`` (modified)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:  # pragma: no cover - peft is a declared dependency
        raise ImportError("finetune=lora needs `peft` (pip install peft)") from e
    try:
        inject_adapter_in_model(LoraConfig(**lora), model)
    except ValueError as e:
        raise ValueError(f"lora target_modules {lora['target_modules']} matched no layer of the model ({e})") from None
    n_lora = 0
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
        n_lora += p.numel() if "lora_" in name else 0
    if n_lora == 0:
        raise ValueError(f"lora target_modules {lora['target_modules']} matched no layer of the model")
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into the base weights and restore plain ``nn.Linear`` layers."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "lora_A") and hasattr(module, "get_base_layer"):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def freeze_except(model: nn.Module, heads: Sequence[str]) -> int:
    """Train only the submodules named in ``heads`` (``head`` preset); returns the trainable count."""
    if not heads:
        raise ValueError("finetune=head: this family declares no head modules")
    names = {n for n, _ in model.named_modules()}
    missing = [h for h in heads if h not in names]
    if missing:
        raise ValueError(f"finetune=head: head modules {missing} are not in the model")
    # by identity, over every name a parameter has: a head tied to an embedding (T5's lm_head) trains it too
    head_ids = {id(p) for name, p in model.named_parameters(remove_duplicate=False)
                if any(name == h or name.startswith(h + ".") for h in heads)}
    n = 0
    for p in model.parameters():
        p.requires_grad_(id(p) in head_ids)
        n += p.numel() if id(p) in head_ids else 0
    return n


def fold_lora_state(state: dict[str, torch.Tensor], lora: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """A LoRA run's state dict with the adapters folded in: the plain model's state dict.

    ``layer.base_layer.weight`` + (``lora_alpha`` / ``r``) · ``lora_B`` @ ``lora_A`` becomes
    ``layer.weight``. A state dict without adapters is returned unchanged.
    """
    if not any(".lora_A." in k for k in state):
        return state
    cfg = LORA_DEFAULTS | dict(lora or {})
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if ".lora_A." in k or ".lora_B." in k:
            continue
        if ".base_layer." in k:
            prefix, _, leaf = k.partition(".base_layer.")
            if leaf == "weight":
                a = next(t for n, t in state.items() if n.startswith(prefix + ".lora_A.") and n.endswith(".weight"))
                b = next(t for n, t in state.items() if n.startswith(prefix + ".lora_B.") and n.endswith(".weight"))
                v = v + scale * (b.float() @ a.float()).to(v.dtype)
            out[f"{prefix}.{leaf}"] = v
        else:
            out[k] = v
    return out
