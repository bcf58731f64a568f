"""Build a training run from a composed config: the LightningModule, the DataModule and the Trainer.

Shared by ``python -m tsfm.train`` and ``python -m tsfm.finetune``; every object comes from the
config's ``_target_`` entries, so this module names no model family.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from tsfm.models.layers.linear import set_cpu_gemm
from tsfm.training.checkpoint_io import AtomicCheckpointIO
from tsfm.training.devices import check_trainer_device
from tsfm.utils.config import to_plain


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every named entry of a dict-of-configs group (callbacks, logger)."""
    if not group:
        return []
    return [instantiate(node, _convert_="all") for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Everything ``train`` needs, in the order that keeps runs reproducible (seed first)."""
    L.seed_everything(cfg.seed, workers=True)
    task = instantiate(cfg.model.task, _convert_="all")
    datamodule = instantiate(cfg.data, task=task, _convert_="all")
    module = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)  # resolved in place: ${paths...} works
    trainer_cfg.pop("cpu_gemm", None)  # tsfm's setting, not a Lightning Trainer argument
    module.cpu_gemm_mode = str(cfg.trainer.get("cpu_gemm", "auto"))
    if module.cpu_gemm_mode == "auto":  # the environment variable still forces a kernel
        module.cpu_gemm_mode = os.environ.get("TSFM_CPU_LINEAR", "auto").lower()
    set_cpu_gemm(module.cpu_gemm_mode)
    trainer = instantiate(
        trainer_cfg,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=instantiate_group(cfg.get("logger")) or False,
        plugins=[AtomicCheckpointIO()],
        _convert_="all",
    )
    return module, datamodule, trainer


def check_config(cfg: DictConfig) -> None:
    """Settings that would otherwise fail deep inside Lightning or torch (may set
    ``trainer.precision=16-mixed`` in place of bf16 on a GPU without bf16, see tsfm.training.devices)."""
    missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(
            f"required setting(s) not given: {', '.join(missing)}; set them on the command line, e.g. "
            f"{missing[0]}=<value> (the experiment config's header comment says what they are)"
        )
    if cfg.trainer.get("max_steps") is not None and cfg.trainer.max_steps == 0:
        raise ValueError("trainer.max_steps=0 trains nothing; give a positive number (or -1 with max_epochs)")
    vci = cfg.trainer.get("val_check_interval")
    if vci is not None and (isinstance(vci, bool) or not float(vci).is_integer() or float(vci) < 1):
        raise ValueError(
            f"trainer.val_check_interval={vci}: give a whole number of steps (e.g. 1000); the training stream "
            "has no epochs to take a fraction of, and the checkpoint, benchmark and health callbacks count steps"
        )
    strategy = cfg.trainer.get("strategy")
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else str(strategy or "")
    if "ModelParallelStrategy" in str(target) and cfg.get("optim") is not None and cfg.optim.get("optimizer") == "muon":
        raise ValueError(
            "optim.optimizer=muon cannot run under trainer=fsdp: Muon orthogonalises whole weight matrices and FSDP2 "
            "shards them; use trainer=ddp (or optim.optimizer=adamw)"
        )
    precision = check_trainer_device(cfg.trainer)  # no CUDA for trainer=gpu, bf16 on a pre-Ampere GPU
    if precision != str(cfg.trainer.get("precision")):
        with open_dict(cfg):
            cfg.trainer.precision = precision


def check_precision(cfg: DictConfig, module: L.LightningModule) -> None:
    precision = str(cfg.trainer.get("precision", "32"))
    half_weights = precision.endswith("-true") and not precision.startswith(("32", "64"))
    if half_weights and not getattr(module, "supports_half_weights", False):
        raise ValueError(
            f"trainer.precision={precision} (half-precision weights) is not supported by the "
            f"{getattr(module, 'family', type(module).__name__)} family; use trainer.precision=bf16-mixed "
            "(fp32 weights, bf16 compute)"
        )
