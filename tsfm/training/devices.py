"""Checks of the requested accelerator and precision before anything is built.

``python -m tsfm.train trainer=gpu`` on a machine without CUDA would otherwise fail deep inside
Lightning after the corpus was generated and the model built; bf16 on a GPU without bf16
(pre-Ampere: V100, T4) would fail in the first matmul or silently run slow emulation. Both are
decided here from plain values (the entry point passes ``cfg.trainer`` fields):

* a CUDA accelerator (``gpu``/``cuda``; ``auto`` falls back to the CPU by itself) without CUDA
  is an error that names ``trainer=cpu``; asking for more GPUs than one node has is an error too;
* ``bf16-mixed`` on a CUDA device without bf16 falls back to ``16-mixed`` (fp16 autocast with
  Lightning's dynamic loss scaling, ``torch.amp.GradScaler``), with a warning; ``bf16-true``
  there is an error (half weights without loss scaling would not train reliably).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

CUDA_ACCELERATORS = ("gpu", "cuda")


class DeviceUnavailableError(RuntimeError):
    """The configured accelerator or precision cannot run on this machine."""


def wants_cuda(accelerator: Any) -> bool:
    """Whether ``trainer.accelerator`` asks for CUDA (``auto`` picks CUDA only when present)."""
    return str(accelerator).lower() in CUDA_ACCELERATORS


def check_accelerator(accelerator: Any, devices: Any = 1, num_nodes: Any = 1) -> None:
    """Fail early, saying what to change, when ``trainer.accelerator`` needs CUDA that is absent."""
    if not wants_cuda(accelerator):
        return
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU, but torch sees none "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); on this machine use "
            "trainer=cpu (or trainer=ddp/fsdp with trainer.accelerator=cpu for multi-process CPU runs)"
        )
    if isinstance(devices, int) and devices > 0 and int(num_nodes or 1) == 1 and devices > torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"trainer.devices={devices} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
            f"set trainer.devices={torch.cuda.device_count()} (or check CUDA_VISIBLE_DEVICES)"
        )


def resolve_precision(precision: Any, accelerator: Any) -> str:
    """``trainer.precision`` to use on this machine: unchanged, or ``16-mixed`` in place of
    ``bf16-mixed`` on a CUDA GPU without bf16 support (fp16 autocast + dynamic loss scaling)."""
    precision = str(precision)
    if not precision.startswith("bf16") or not wants_cuda(accelerator) or not torch.cuda.is_available():
        return precision
    if torch.cuda.is_bf16_supported():
        return precision
    name = torch.cuda.get_device_name()
    if precision == "bf16-mixed":
        log.warning(
            "trainer.precision=bf16-mixed: %s has no bf16 support; falling back to 16-mixed (fp16 autocast "
            "with dynamic loss scaling). Set trainer.precision=16-mixed (or 32) to silence this.", name
        )
        return "16-mixed"
    raise DeviceUnavailableError(
        f"trainer.precision={precision}: {name} has no bf16 support; use trainer.precision=16-mixed "
        "(fp16 autocast with loss scaling) or trainer.precision=32"
    )


def check_trainer_device(trainer_cfg: Any) -> str:
    """Both checks on a ``trainer`` config node (a dict or DictConfig); returns the precision to use."""
    accelerator = trainer_cfg.get("accelerator", "auto")
    check_accelerator(accelerator, trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1))
    precision = resolve_precision(trainer_cfg.get("precision", "32"), accelerator)
    check_strategy_precision(trainer_cfg.get("strategy"), precision)
    return precision


# what Lightning's ModelParallelStrategy (trainer=fsdp) runs; fp16 autocast needs a loss scaler it lacks
FSDP_PRECISIONS = ("32", "32-true", "bf16-mixed", "bf16-true", "16-true")


def check_strategy_precision(strategy: Any, precision: str) -> None:
    """Fail before Lightning starts processes when the strategy cannot run ``precision``."""
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else str(strategy or "")
    if "ModelParallelStrategy" in str(target) and str(precision) not in FSDP_PRECISIONS:
        hint = "32-true" if precision == "16-mixed" else "bf16-mixed"
        raise ValueError(
            f"trainer=fsdp (FSDP2, Lightning's ModelParallelStrategy) cannot run trainer.precision={precision}"
            f"{' (chosen because this GPU has no bf16)' if precision == '16-mixed' else ''}: it runs "
            f"{', '.join(FSDP_PRECISIONS[1:])}. Use trainer.precision={hint}, or trainer=ddp for {precision}"
        )


_RELEASE_REGISTERED = False


def release_process_group_at_exit() -> None:
    """Destroy the default process group when the process exits, before the interpreter tears down.

    Lightning never destroys it. Left to the interpreter's finalisation, a gloo group's threads can
    be destroyed while still joinable, and the rank aborts (``terminate called without an active
    exception``, SIGABRT) after training finished, so the launcher reports a failed run. Registered
    once per process, from the training module's ``setup`` (when the strategy has initialised it).
    """
    global _RELEASE_REGISTERED
    if _RELEASE_REGISTERED or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    import atexit

    def _release() -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    atexit.register(_release)
    _RELEASE_REGISTERED = True
