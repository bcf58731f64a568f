"""LoRA fine-tuning of Chronos-2 through ``peft``, in place (the model keeps its own class).

``peft.inject_adapter_in_model`` swaps the targeted ``nn.Linear`` layers for LoRA layers inside
our :class:`~tsfm.models.chronos2.model.Chronos2Model`, so the Lightning module, the loss and
the forecaster need no wrapper type. :func:`merge_lora` folds the adapters back into plain
``nn.Linear`` weights (export, inference).
"""

from __future__ import annotations

from typing import Any

from torch import nn

# The reference fine-tuning defaults (chronos-forecasting ``Chronos2Pipeline.fit``).
DEFAULT_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": [
        "self_attention.q",
        "self_attention.v",
        "self_attention.k",
        "self_attention.o",
        "output_patch_embedding.output_layer",
    ],
}


def apply_lora(model: nn.Module, lora: dict[str, Any] | None = None) -> nn.Module:
    """Inject LoRA adapters and freeze every other parameter. Returns ``model`` (modified)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:  # pragma: no cover - peft is an optional dependency
        raise ImportError("finetune: lora needs `peft` (pip install 'tsfm[lora]')") from e
    cfg = DEFAULT_LORA | dict(lora or {})
    unknown = set(cfg) - {"r", "lora_alpha", "lora_dropout", "target_modules", "bias"}
    if unknown:
        raise ValueError(f"lora options {sorted(unknown)} are not supported; use r, lora_alpha, lora_dropout, target_modules")
    try:
        inject_adapter_in_model(LoraConfig(**cfg), model)
    except ValueError as e:
        raise ValueError(f"lora target_modules {cfg['target_modules']} matched no layer of the model ({e})") from None
    n_lora = 0
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
        n_lora += p.numel() if "lora_" in name else 0
    if n_lora == 0:
        raise ValueError(f"lora target_modules {cfg['target_modules']} matched no layer of the model")
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
