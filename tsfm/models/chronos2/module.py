"""Chronos-2 LightningModule: pretraining, full or LoRA fine-tuning, context extension.

* ``pretrained``: an official / exported checkpoint directory or a tsfm ``.ckpt`` whose
  weights initialise the model. The architecture comes from the checkpoint; ``context_length``,
  ``max_output_patches`` and ``dropout_rate`` (``convert.EDITABLE``) come from this module's
  config (the YAML; docs/architecture.md, "Fine-tuning from a checkpoint"), so loading a stage-1
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
import math
from pathlib import Path
from typing import Any

import torch

from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.convert import load_model, save_pretrained
from tsfm.models.chronos2.forecast import Chronos2Forecaster
from tsfm.models.chronos2.model import Chronos2Model
from tsfm.training.module import TSFMModule


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
        loss_horizon: str = "full",
    ) -> None:
        super().__init__(optim=optim, max_nonfinite=max_nonfinite, compile=compile,
                         gradient_checkpointing=gradient_checkpointing)
        self.save_hyperparameters({
            "family": self.family, "config": dict(config or {}), "optim": dict(optim or {}),
            "pretrained": pretrained, "finetune": finetune, "lora": dict(lora) if lora else None,
            "prediction_length": prediction_length, "max_nonfinite": max_nonfinite,
            "gradient_checkpointing": bool(gradient_checkpointing), "compile": compile,
            "loss_horizon": loss_horizon,
        })  # fmt: skip
        if loss_horizon not in ("full", "observed"):
            raise ValueError(f"model.module.loss_horizon must be 'full' or 'observed', got {loss_horizon!r}")
        self.loss_horizon = loss_horizon
        requested = dict(config or {})
        if pretrained:  # the architecture comes from the checkpoint; `config` may change convert.EDITABLE
            self.model = load_model(pretrained, overrides=requested).train()
        else:
            self.model = Chronos2Model(Chronos2Config.from_dict(requested))
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
            loss_horizon=self.loss_horizon,
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
