"""Baseline-family checkpoint directories: ``config.json`` (with ``"tsfm_family": "baseline"``) +
``model.safetensors``, and tsfm ``.ckpt`` files of this family.

Its public names are the converter contract of :mod:`tsfm.checkpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tsfm import checkpoint as ckpt_io
from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel

# config keys a run may change when it starts from a checkpoint (dropout, default sample paths)
EDITABLE = frozenset({"dropout", "num_samples"})
_EXPECTED = "a directory written by BaselineModule.save_pretrained"


def read_config(path: str | Path) -> BaselineConfig:
    """The :class:`BaselineConfig` of an export directory (its ``config.json``)."""
    cfg_path = Path(path).expanduser() / ckpt_io.CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing; expected {_EXPECTED}")
    return BaselineConfig.from_dict(ckpt_io.read_json(cfg_path), source=str(cfg_path))


def _build(
    config: BaselineConfig, state: Mapping[str, torch.Tensor], source: str, overrides: Mapping[str, Any] | None,
    device: str | torch.device,
) -> BaselineModel:
    if overrides:  # the model is built from the resolved config: its dropout modules read p at construction
        config = BaselineConfig.from_dict(ckpt_io.resolve_finetune_config(config.to_dict(), overrides, EDITABLE, source),
                                          source=source)
    model = BaselineModel(config)
    ckpt_io.load_state_checked(model, state, source)
    return model.to(device).eval()


def model_from_checkpoint(
    ckpt: Mapping[str, Any], source: str = "checkpoint", *, overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> BaselineModel:
    """The model of a tsfm Lightning checkpoint dict (read by :func:`tsfm.checkpoint.read_checkpoint`)."""
    config = BaselineConfig.from_dict(ckpt["hyper_parameters"]["config"], source=f"{source} hyper_parameters")
    return _build(config, ckpt_io.checkpoint_model_state(ckpt), source, overrides, device)  # a LoRA run's adapters folded in


def load_model(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> BaselineModel:
    """A :class:`BaselineModel` (eval mode, on ``device``) from a directory written by
    :func:`save_pretrained` or a tsfm ``.ckpt`` of this family. ``overrides``: config values a run
    requests, applied by :func:`tsfm.checkpoint.resolve_finetune_config` with :data:`EDITABLE`."""
    p = Path(path).expanduser()
    if p.is_dir():
        state = ckpt_io.read_weights(p, _EXPECTED)
        return _build(read_config(p), state, str(p), overrides, device)
    if p.is_file():
        return model_from_checkpoint(ckpt_io.read_checkpoint(p, family="baseline"), str(p), overrides=overrides, device=device)
    raise FileNotFoundError(f"pretrained={p}: no such checkpoint directory or .ckpt file (nothing is downloaded)")


def save_pretrained(model: BaselineModel, path: str | Path) -> Path:
    """Write ``config.json`` (with ``"tsfm_family": "baseline"``) and ``model.safetensors``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / ckpt_io.CONFIG_NAME).write_text(
        json.dumps({"tsfm_family": "baseline", **model.config.to_dict()}, indent=2)
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / ckpt_io.WEIGHTS_NAME), metadata={"format": "pt"})
    return out
