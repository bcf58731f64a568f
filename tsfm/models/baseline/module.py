"""LightningModule of the baseline family: NLL training of encoder- or decoder-only patch Transformers.

Training loss: encoder, NLL of the horizon (``encoder_mask="horizon"``) or, Moirai-style, of
the last ``m`` patches of the whole window with the horizon fraction ``m / N`` drawn per sample
from ``mask_ratio`` (``encoder_mask="random"``); decoder, NLL of every next patch of the window
(``decoder_loss="all"``, the usual next-token objective) or of the horizon only. Validation
always scores the horizon given the context (``val/loss``), the same quantity for both
architectures, so scaling curves of the two are comparable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.convert import load_model, save_pretrained
from tsfm.models.baseline.model import BaselineModel
from tsfm.training.module import TSFMModule
from tsfm.training.optim import OptimConfig


class BaselineModule(TSFMModule):
    """Trains :class:`BaselineModel` on batches of :class:`~tsfm.models.baseline.task.BaselineTask`."""

    family = "baseline"
    fsdp_forward_methods = ("nll", "masked_nll")  # compute_loss calls these, not forward
    head_modules = ("head",)
    lora_targets = ("qkv", "out")  # attention projections

    @staticmethod
    def model_settings(config: dict[str, Any], prediction_length: int) -> dict[str, Any]:
        """The ``model.*`` config values (dotted keys reach into ``model.module``) a fine-tuning run of a checkpoint
        with this ``config`` (its ``to_dict()``) needs for horizon ``prediction_length``."""
        return {k: config[k] for k in ("architecture", "context_length", "prediction_length", "patch_size")}

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        decoder_loss: str = "all",
        encoder_mask: str = "horizon",
        mask_ratio: tuple[float, float] | list[float] = (0.15, 0.5),
        optim: dict | OptimConfig | None = None,
        max_nonfinite: int = 10,
        family: str = "baseline",
        gradient_checkpointing: bool = False,
        compile: bool | str = False,
        pretrained: str | None = None,
        finetune: str = "full",
        lora: dict[str, Any] | None = None,
        initialized_from: str | None = None,  # recorded in checkpoints (where the weights came from)
    ) -> None:
        super().__init__(optim=optim, max_nonfinite=max_nonfinite, compile=compile,
                         gradient_checkpointing=gradient_checkpointing)
        if family != self.family:
            raise ValueError(f"BaselineModule got family={family!r}; this module trains 'baseline'")
        if decoder_loss not in ("all", "horizon"):
            raise ValueError(f"decoder_loss={decoder_loss!r}: use 'all' (every next patch) or 'horizon'")
        if encoder_mask not in ("horizon", "random"):
            raise ValueError(f"encoder_mask={encoder_mask!r}: use 'horizon' or 'random' (Moirai-style)")
        lo, hi = (float(r) for r in mask_ratio)
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"mask_ratio={list(mask_ratio)} must satisfy 0 < low <= high < 1")
        if pretrained:  # fine-tune: the architecture and weights come from the checkpoint (config: convert.EDITABLE)
            self.model = load_model(pretrained, overrides=config).train()
            cfg = self.model.config
        else:
            cfg = BaselineConfig.from_dict(dict(config or {}), source="model.module.config")
            self.model = BaselineModel(cfg)
        self.decoder_loss = decoder_loss
        self.encoder_mask, self.mask_ratio = encoder_mask, (lo, hi)
        self.save_hyperparameters(
            {
                "family": self.family,
                "config": cfg.to_dict(),
                "decoder_loss": decoder_loss,
                "encoder_mask": encoder_mask,
                "mask_ratio": [lo, hi],
                "optim": dict(vars(self.optim_cfg)) | {"betas": list(self.optim_cfg.betas)},
                "max_nonfinite": max_nonfinite,
                "gradient_checkpointing": bool(gradient_checkpointing),
                "compile": compile,
                "pretrained": None,  # the saved config + state dict rebuild the model
                "initialized_from": str(pretrained) if pretrained else initialized_from,
            }
        )
        if finetune != "full" and not pretrained:
            raise ValueError(f"finetune={finetune!r} needs `pretrained` (the checkpoint to fine-tune)")
        self.apply_finetune(finetune, lora)

    @property
    def config(self) -> BaselineConfig:
        return self.model.config

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.training and self.encoder_mask == "random" and not self.model.is_decoder:
            window = torch.cat([batch["past_target"], batch["future_target"]], dim=1)  # [B, C+H]
            n = window.shape[1] // self.config.patch_size
            lo = min(n - 1, max(1, math.ceil(self.mask_ratio[0] * n)))
            hi = min(n - 1, max(lo, math.floor(self.mask_ratio[1] * n)))
            num_masked = torch.randint(lo, hi + 1, (window.shape[0],), device=window.device)
            return self.model.masked_nll(window, num_masked)
        horizon_only = not self.training or self.decoder_loss == "horizon"
        return self.model.nll(batch["past_target"], batch["future_target"], horizon_only=horizon_only)

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        """Patches processed in ``batch`` (for tokens/s and MFU in the training monitor)."""
        b, c = batch["past_target"].shape
        return b * (c + batch["future_target"].shape[1]) // self.config.patch_size

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), see :meth:`BaselineConfig.flops_per_token`."""
        return self.config.flops_per_token()

    def forecaster(self):
        """A :class:`BaselineForecaster` sharing this module's weights (puts the model in eval mode)."""
        from tsfm.models.baseline.forecast import BaselineForecaster

        return BaselineForecaster(self.merged_model(), device=self.device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Export ``config.json`` + ``model.safetensors`` (loadable by ``load_forecaster``)."""
        return save_pretrained(self.merged_model(), path)

    export = save_pretrained
