"""The end of a training run: the final weights as a checkpoint directory (``<run>/export``).

Shared by ``python -m tsfm.train`` and the pipeline; works under every strategy (FSDP2 shards are
gathered first).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def export(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer, out: Path) -> None:
    """Write the final weights (and the corpus summary, ``training_data.json``) as a checkpoint
    directory on rank 0.

    Under FSDP2 the shards are gathered first (collective) into a plain copy of the model on rank 0
    (``TSFMModule.unsharded``), so each family's ``save_pretrained`` works unchanged.
    """
    with module.unsharded() as full:
        if trainer.is_global_zero:
            full.save_pretrained(out)
    if trainer.is_global_zero:
        if hasattr(trainer.datamodule, "save_training_data"):  # the corpus travels with the model
            trainer.datamodule.save_training_data(out)
        log.info("exported final weights to %s", out)
    trainer.strategy.barrier("tsfm-export")
