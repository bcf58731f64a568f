"""Checkpoint IO shared by every family: JSON configs, safetensors weights, Lightning ``.ckpt``
files (``weights_only``), the state of a LoRA run folded into plain weights, inference autocast.

A leaf of the package: families' ``module.py`` / ``convert.py`` / ``forecast.py`` import it, and it
imports no family and not the public API (:mod:`tsfm.forecast`). Nothing here unpickles.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import torch

from tsfm.training.lora import fold_lora_state

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file's tensors; a missing, truncated or corrupt file is an error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such weights file (only safetensors weights are read, never pickles)")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(
            f"{p}: cannot read safetensors weights ({e}); the file is truncated or corrupt - download or export "
            "the checkpoint again"
        ) from None


def inference_autocast(device: torch.device, dtype: str | torch.dtype | None):
    """Context for a forecaster's ``dtype`` option: nothing for float32, autocast for bf16/fp16."""
    if dtype is None or dtype in ("float32", torch.float32):
        return nullcontext()
    dt = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if dt not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype={dtype!r}: use float32, bfloat16 or float16")
    return torch.autocast(device.type, dtype=dt)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_checkpoint(path: Path, family: str | None = None) -> dict:
    """A tsfm Lightning ``.ckpt`` read with ``weights_only=True``; every failure names the file.

    ``family``: the checkpoint's ``hyper_parameters["family"]`` must equal it, and its
    ``hyper_parameters["config"]`` (the model sizes) must be present.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any decoding failure with the file name
        raise ValueError(f"{path}: not a readable tsfm checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path}: not a tsfm Lightning checkpoint (no state_dict)")
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise ValueError(f"{path}: not a tsfm Lightning checkpoint (no hyper_parameters)")
    if family is not None and hp.get("family") != family:
        raise ValueError(f"{path}: checkpoint of family {hp.get('family')!r}, expected {family!r}")
    if family is not None and not isinstance(hp.get("config"), dict):
        raise ValueError(f"{path}: a {family} checkpoint without hyper_parameters['config']; re-save it with tsfm")
    return ckpt


def checkpoint_model_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The wrapped model's weights of a Lightning checkpoint (``model.`` prefix removed); a LoRA
    run's adapters are folded in, so the result loads into the plain model."""
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return fold_lora_state(state, (ckpt.get("hyper_parameters") or {}).get("lora"))
