"""The end of a training run: the final weights as a checkpoint directory (``<run>/export``).

Shared by ``python -m tsfm.train`` and the pipeline; works under every strategy (FSDP2 shards are
gathered first).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from tsfm.checkpoint import RECIPE_NAME

log = logging.getLogger(__name__)


def recipe(cfg: DictConfig, trainer: L.Trainer) -> dict[str, Any]:
    """How the run trained (``training_recipe.json``): the optimizer settings, steps, batch, precision and seed."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True) if cfg.get("optim") is not None else {}
    data = cfg.get("data") or {}
    module = cfg.model.get("module") if cfg.get("model") is not None else None
    return {
        "optim": optim,
        # the checkpoint this run started from (a fine-tuning run): its optim.lr is then not a pretraining rate
        "pretrained": module.get("pretrained") if module is not None else None,
        "global_step": int(trainer.global_step),
        "max_steps": int(cfg.trainer.get("max_steps", -1)) if cfg.get("trainer") is not None else -1,
        "batch_size": data.get("batch_size"),
        "precision": str(trainer.precision),
        "world_size": int(trainer.world_size),
        "seed": cfg.get("seed"),
    }


def export(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer, out: Path) -> None:
    """Write the final weights (and the corpus summary, ``training_data.json``, and how the run trained,
    ``training_recipe.json``) as a checkpoint directory on rank 0.

    Under FSDP2 the shards are gathered first (collective) into a plain copy of the model on rank 0
    (``TSFMModule.unsharded``), so each family's ``save_pretrained`` works unchanged.
    """
    with module.unsharded() as full:
        if trainer.is_global_zero:
            full.save_pretrained(out)
    if trainer.is_global_zero:
        if hasattr(trainer.datamodule, "save_training_data"):  # the corpus travels with the model
            trainer.datamodule.save_training_data(out)
        tmp = out / f".{RECIPE_NAME}.tmp"
        tmp.write_text(json.dumps(recipe(cfg, trainer), indent=2, default=str))
        tmp.replace(out / RECIPE_NAME)
        log.info("exported final weights to %s", out)
    trainer.strategy.barrier("tsfm-export")
