"""LightningModule for Chronos-T5: cross-entropy pretraining and fine-tuning.

Random init from a config (``config: {...}`` in ``conf/model/chronos_*.yaml``), or fine-tuning
from ``pretrained``: an official ``amazon/chronos-t5-*`` directory, a tsfm-exported directory,
or a tsfm ``.ckpt`` (read with ``weights_only=True``); its config changes only in the keys
``convert.EDITABLE`` names (docs/architecture.md, "Fine-tuning from a checkpoint"). The
optimizer recipe (AdamW 1e-3, linear decay to 0, wd 0.01) comes from ``conf/optim/chronos.yaml``
through :class:`TSFMModule`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.convert import load_model, save_pretrained
from tsfm.models.chronos.model import ChronosModel
from tsfm.training.module import TSFMModule
from tsfm.training.optim import OptimConfig


class ChronosModule(TSFMModule):
    """Chronos-T5 training: teacher-forced token cross-entropy on tokenised batches from :class:`ChronosTask`."""

    family = "chronos"
    supports_half_weights = True  # trainer.precision=bf16-true works (HF T5 casts its inputs)
    head_modules = ("t5.lm_head",)
    lora_targets = ("q", "k", "v", "o")  # T5 self- and cross-attention projections

    @staticmethod
    def model_settings(config: dict[str, Any], prediction_length: int) -> dict[str, Any]:
        """The ``model.*`` config values (dotted keys reach into ``model.module``) a fine-tuning run of a checkpoint
        with this ``config`` (its ``to_dict()``) needs for horizon ``prediction_length``."""
        return {"context_length": config["context_length"],
                "prediction_length": min(prediction_length, config["prediction_length"])}

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        size: str | None = None,
        pretrained: str | None = None,
        finetune: str = "full",
        lora: dict[str, Any] | None = None,
        optim: dict | OptimConfig | None = None,
        max_nonfinite: int = 10,
        family: str = "chronos",
        initialized_from: str | None = None,
        gradient_checkpointing: bool = False,
        compile: bool | str = False,
    ) -> None:
        super().__init__(optim=optim, max_nonfinite=max_nonfinite, compile=compile,
                         gradient_checkpointing=gradient_checkpointing)
        if family != self.family:
            raise ValueError(f"ChronosModule got family={family!r}; this module trains 'chronos'")
        overrides = dict(config or {})
        if pretrained:  # the architecture comes from the checkpoint; `config` may change convert.EDITABLE
            self.model = load_model(pretrained, overrides=overrides)
        else:
            cfg = ChronosConfig.from_name(size, **overrides) if size else ChronosConfig(**overrides)
            self.model = ChronosModel(cfg)
        self.model.train()
        self.save_hyperparameters(
            {
                "family": self.family,
                "config": self.model.config.to_dict(),  # resolved: a checkpoint rebuilds without `pretrained`
                "size": size,
                # the resolved config + state dict rebuild the model; the source dir is not needed again
                "pretrained": None,
                "initialized_from": str(pretrained) if pretrained else None,
                "optim": dict(vars(self.optim_cfg)) | {"betas": list(self.optim_cfg.betas)},
                "max_nonfinite": max_nonfinite,
                "gradient_checkpointing": bool(gradient_checkpointing),
                "compile": compile,
            }
        )
        if finetune != "full" and not pretrained:
            raise ValueError(f"finetune={finetune!r} needs `pretrained` (the checkpoint to fine-tune)")
        self.apply_finetune(finetune, lora)

    @property
    def config(self) -> ChronosConfig:
        return self.model.config

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["input_ids"], batch["attention_mask"].bool(), batch["labels"])

    def forecaster(self):
        """A :class:`ChronosForecaster` sharing this module's weights (puts the model in eval mode)."""
        from tsfm.models.chronos.forecast import ChronosForecaster

        return ChronosForecaster(self.merged_model(), device=self.device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the official checkpoint layout (loads in ``ChronosPipeline`` and ``load_forecaster``)."""
        return save_pretrained(self.merged_model(), path)

    export = save_pretrained
