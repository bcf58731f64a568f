"""Lightning module for Moirai pretraining and fine-tuning.

``mode="pretrain"`` trains every parameter from ``config`` (or from ``pretrained``).
``mode="finetune"`` starts from ``pretrained`` (an official checkpoint directory or a tsfm
``.ckpt``) and trains ``finetune="full"`` (everything), ``"freeze_ffn"`` (encoder FFNs frozen) or
``"head"`` / ``"head_only"`` (only ``param_proj``), the reference's three patterns, or ``"lora"``
(peft adapters on the attention projections, see :meth:`TSFMModule.apply_finetune`). With
``pretrained`` the architecture comes from the checkpoint and ``config`` may change only the
dropouts (``convert.EDITABLE``; docs/architecture.md, "Fine-tuning from a checkpoint"). The loss
(train and validation) is the packed NLL of :meth:`MoiraiModel.loss`. The optimizer recipe lives
in ``conf/optim`` (TSFMModule builds it, excluding norms, biases and embeddings from weight decay).

``gradient_checkpointing`` recomputes each encoder layer in backward. ``compile`` compiles each
layer's norms and FFN (:meth:`MoiraiModule.compile_targets`), and under Lightning's
``ModelParallelStrategy`` FSDP2 shards every encoder layer, then the whole model
(``TSFMModule.configure_model`` over :meth:`MoiraiModule.parallel_blocks`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.convert import load_model, save_pretrained
from tsfm.models.moirai.model import MoiraiModel
from tsfm.training.module import TSFMModule

log = logging.getLogger(__name__)
MODES = ("pretrain", "finetune")
FINETUNE = ("full", "head", "lora", "freeze_ffn", "head_only")


class MoiraiModule(TSFMModule):
    """Moirai in Lightning; ``self.model`` is the single-device :class:`MoiraiModel`."""

    family = "moirai"
    head_modules = ("param_proj",)
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj")

    @staticmethod
    def model_settings(config: dict[str, Any], prediction_length: int) -> dict[str, Any]:
        """The ``model.*`` config values (dotted keys reach into ``model.module``) a fine-tuning run of a checkpoint
        with this ``config`` (its ``to_dict()``) needs for horizon ``prediction_length``."""
        return {"max_seq_len": config["max_seq_len"], "patch_sizes": list(config["patch_sizes"]),
                "module.mode": "finetune"}  # presets apply in finetune mode

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        mode: str = "pretrain",
        finetune: str = "full",
        pretrained: str | None = None,
        lora: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        optim: dict[str, Any] | None = None,
        max_nonfinite: int = 10,
        compile: bool | str = False,
    ) -> None:
        super().__init__(optim=optim, max_nonfinite=max_nonfinite, compile=compile,
                         gradient_checkpointing=gradient_checkpointing)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {MODES}")
        if finetune not in FINETUNE:
            raise ValueError(f"finetune={finetune!r}: use one of {FINETUNE}")
        if finetune != "full" and mode != "finetune":
            raise ValueError(f"finetune={finetune!r} applies with mode='finetune' (and `pretrained`)")
        if mode == "finetune" and not pretrained:
            raise ValueError("mode='finetune' needs `pretrained`: an official Moirai directory or a tsfm .ckpt")
        config = dict(config or {})
        if pretrained:  # the architecture comes from the checkpoint; `config` may change its dropouts
            self.model = load_model(pretrained, overrides=config).train()
        else:
            self.model = MoiraiModel(MoiraiConfig.from_dict(config))
        self.save_hyperparameters()
        # the resolved model config (from `pretrained` if given) makes the checkpoint self-contained
        self.hparams["config"] = self.model.cfg.to_dict()
        self.hparams["family"] = self.family
        if mode == "finetune":
            self._apply_finetune_pattern(finetune, lora)

    def _apply_finetune_pattern(self, pattern: str, lora: dict[str, Any] | None) -> None:
        if pattern != "freeze_ffn":  # the presets every family shares
            self.apply_finetune("head" if pattern == "head_only" else pattern, lora)
            return
        for name, p in self.model.named_parameters():
            if ".ffn." in name:
                p.requires_grad_(False)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("finetune=%s: %d trainable parameters", pattern, n_train)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def forecaster(self):
        """A forecaster sharing this module's weights (Lightning restores train mode after eval)."""
        from tsfm.models.moirai.forecast import MoiraiForecaster

        return MoiraiForecaster(self.merged_model(), device=self.device)

    def parallel_blocks(self) -> list[torch.nn.Module]:
        """The encoder layers (compiled and FSDP2-sharded one by one in ``configure_model``)."""
        return list(self.model.encoder.layers)

    def compile_targets(self) -> list[torch.nn.Module]:
        """Each layer's norms and FFN (most of its FLOPs outside attention). The attention stays
        eager: packed rows are cut into per-sample length buckets whose number changes with every
        batch, so a compiled layer would recompile for each new count."""
        return [m for layer in self.model.encoder.layers for m in (layer.norm1, layer.norm2, layer.ffn)]

    def save_pretrained(self, path: str | Path) -> Path:
        """Export the weights as an official-layout directory (loads in uni2ts and in tsfm)."""
        return save_pretrained(self.merged_model(), path)
