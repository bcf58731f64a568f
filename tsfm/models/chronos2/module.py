"""Chronos-2 LightningModule: pretraining, full or LoRA fine-tuning, context extension.

* ``pretrained``: an official / exported checkpoint directory or a tsfm ``.ckpt`` whose
  weights initialise the model. The architecture comes from the checkpoint; ``context_length``
  and ``max_output_patches`` come from this module's config (the YAML), so loading a stage-1
  checkpoint with a larger ``context_length`` *extends* the context (stage 2 of the TSM-Trainer
  recipe: 2048 -> 8192). ``time_encoding_scale`` stays the checkpoint's value.
* ``finetune``: ``full`` (all weights), ``head`` (the output patch embedding only) or ``lora``
  (peft adapters with ``lora`` options: ``r``, ``lora_alpha``, ``lora_dropout``,
  ``target_modules``; the reference's defaults otherwise), see :meth:`TSFMModule.apply_finetune`.
* A training batch whose context is longer than the model's ``context_length`` is an error,
  never a silent truncation.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch

from tsfm.checkpoint import checkpoint_model_state, load_safetensors, read_checkpoint
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.convert import load_state_dict_checked, read_config, save_pretrained
from tsfm.models.chronos2.forecast import Chronos2Forecaster
from tsfm.models.chronos2.model import Chronos2Model
from tsfm.training.module import TSFMModule

log = logging.getLogger(__name__)

# fields a stage-2 / fine-tuning config may change relative to its checkpoint
_EDITABLE = {"context_length", "max_output_patches", "dropout_rate"}


def _load_pretrained_weights(path: str | Path) -> tuple[Chronos2Config, dict[str, torch.Tensor]]:
    p = Path(path).expanduser()
    if p.is_dir():
        return read_config(p), load_safetensors(p / "model.safetensors")
    if p.is_file():
        ckpt = read_checkpoint(p, family="chronos2")
        cfg = ckpt.get("chronos2_config") or ckpt["hyper_parameters"].get("config")
        if not isinstance(cfg, dict):
            raise ValueError(f"{p}: not a Chronos-2 tsfm checkpoint (no chronos2_config)")
        return Chronos2Config.from_dict(cfg), checkpoint_model_state(ckpt)  # a LoRA run's adapters folded in
    raise FileNotFoundError(f"pretrained={p}: no such checkpoint directory or .ckpt file (nothing is downloaded)")


class Chronos2Module(TSFMModule):
    """Chronos-2 pretraining / fine-tuning (``family = "chronos2"``)."""

    family = "chronos2"
    head_modules = ("output_patch_embedding",)
    # the reference's LoRA targets (chronos-forecasting Chronos2Pipeline.fit)
    lora_targets = ("self_attention.q", "self_attention.v", "self_attention.k", "self_attention.o",
                    "output_patch_embedding.output_layer")

    @staticmethod
    def model_settings(config: dict[str, Any], prediction_length: int) -> dict[str, Any]:
        """The ``model.*`` config values (dotted keys reach into ``model.module``) a fine-tuning run of a checkpoint
        with this ``config`` (its ``to_dict()``) needs for horizon ``prediction_length``."""
        p = int(config["patch_size"])
        return {"context_length": config["context_length"], "patch_size": p,
                "prediction_length": math.ceil(prediction_length / p) * p}

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        optim: dict | None = None,
        pretrained: str | None = None,
        finetune: str = "full",
        lora: dict[str, Any] | None = None,
        prediction_length: int = 64,
        max_nonfinite: int = 10,
        gradient_checkpointing: bool = False,
        compile: bool | str = False,
    ) -> None:
        super().__init__(optim=optim, max_nonfinite=max_nonfinite, compile=compile,
                         gradient_checkpointing=gradient_checkpointing)
        self.save_hyperparameters({
            "family": self.family, "config": dict(config or {}), "optim": dict(optim or {}),
            "pretrained": pretrained, "finetune": finetune, "lora": dict(lora) if lora else None,
            "prediction_length": prediction_length, "max_nonfinite": max_nonfinite,
            "gradient_checkpointing": bool(gradient_checkpointing), "compile": compile,
        })  # fmt: skip
        requested = dict(config or {})
        state = None
        if pretrained:
            base_cfg, state = _load_pretrained_weights(pretrained)
            fixed = {k: v for k, v in requested.items() if k not in _EDITABLE and k in base_cfg.to_dict()
                     and base_cfg.to_dict()[k] != v and k != "time_encoding_scale"}  # fmt: skip
            if fixed:
                log.warning("pretrained=%s fixes the architecture; ignoring config values %s", pretrained, fixed)
            merged = base_cfg.to_dict() | {k: v for k, v in requested.items() if k in _EDITABLE}
            cfg = Chronos2Config.from_dict(merged)
            if cfg.context_length != base_cfg.context_length:
                log.info("context length %d -> %d (time_encoding_scale stays %s)",
                         base_cfg.context_length, cfg.context_length, cfg.time_encoding_scale)  # fmt: skip
        else:
            cfg = Chronos2Config.from_dict(requested)
        self.model = Chronos2Model(cfg)
        if state is not None:
            load_state_dict_checked(self.model, state, str(pretrained))
        self.apply_finetune(finetune, lora)
        self.prediction_length = prediction_length
        if prediction_length < 1:
            raise ValueError(f"prediction_length must be >= 1, got {prediction_length}")

    @property
    def config(self) -> Chronos2Config:
        return self.model.config

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ctx = batch["context"]
        if ctx.shape[-1] > self.config.context_length:
            raise ValueError(
                f"batch context length {ctx.shape[-1]} exceeds the model's context_length "
                f"{self.config.context_length}; set model.context_length (the task and model share it)"
            )
        target = batch["future_target"]
        n = math.ceil(target.shape[-1] / self.config.patch_size)
        out = self.model(
            ctx,
            group_ids=batch.get("group_ids"),
            future_covariates=batch.get("future_covariates"),
            num_output_patches=n,
            future_target=target,
        )
        assert out.loss is not None
        return out.loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the effective config (after pretrained / context extension), plain values only
        checkpoint["chronos2_config"] = self.config.to_dict()

    def merged_model(self) -> Chronos2Model:
        """A standalone copy of the current weights (LoRA adapters folded in)."""
        model = super().merged_model()
        return copy.deepcopy(model) if model is self.model else model

    def forecaster(self) -> Chronos2Forecaster:
        return Chronos2Forecaster(self.merged_model(), device=self.device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the weights in the official ``amazon/chronos-2`` layout."""
        return save_pretrained(self.merged_model(), path)
