"""Load and export the official ``amazon/chronos-2`` directory layout (config.json + model.safetensors).

Our parameter names are the official ones, so conversion is a checked state load: missing,
unexpected or mis-shaped tensors are errors that name the tensor. Nothing is unpickled
(safetensors + JSON only) and the config's sizes are validated before anything is allocated.

Its public names are the converter contract of :mod:`tsfm.checkpoint`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tsfm import checkpoint as ckpt_io
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.model import Chronos2Model

log = logging.getLogger(__name__)

# config keys a run may change when it starts from a checkpoint: a longer context (stage 2 of the
# context extension; ``time_encoding_scale`` stays the checkpoint's), the output patches, dropout, and the
# inference-time context ensemble (``load_forecaster(path, context_ensemble=[])`` turns it off)
EDITABLE = frozenset({"context_length", "max_output_patches", "dropout_rate", "context_ensemble"})


def read_config(path: str | Path) -> Chronos2Config:
    """The :class:`Chronos2Config` of a checkpoint directory (official or exported by tsfm)."""
    cfg_path = Path(path).expanduser() / ckpt_io.CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no {ckpt_io.CONFIG_NAME}; expected an amazon/chronos-2 style directory")
    raw = ckpt_io.read_json(cfg_path)
    return Chronos2Config.from_hf_dict(raw)


def _build(
    cfg: Chronos2Config, state: Mapping[str, torch.Tensor], source: str, overrides: Mapping[str, Any] | None,
    device: str | torch.device,
) -> Chronos2Model:
    if overrides:  # the model is built from the resolved config: its dropout modules read p at construction
        base = cfg
        cfg = Chronos2Config.from_dict(ckpt_io.resolve_finetune_config(base.to_dict(), overrides, EDITABLE, source))
        if cfg.context_length != base.context_length:
            log.info("context length %d -> %d (time_encoding_scale stays %s)",
                     base.context_length, cfg.context_length, cfg.time_encoding_scale)  # fmt: skip
    model = Chronos2Model(cfg)
    ckpt_io.load_state_checked(model, state, source)
    return model.to(device).eval()


def model_from_checkpoint(
    ckpt: Mapping[str, Any], source: str = "checkpoint", *, overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Chronos2Model:
    """The model of a tsfm Lightning checkpoint dict (read by :func:`tsfm.checkpoint.read_checkpoint`);
    its effective config is ``chronos2_config`` (written by ``Chronos2Module.on_save_checkpoint``)."""
    cfg = ckpt.get("chronos2_config") or ckpt["hyper_parameters"].get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: not a Chronos-2 tsfm checkpoint (no chronos2_config)")
    return _build(Chronos2Config.from_dict(dict(cfg)), ckpt_io.checkpoint_model_state(ckpt), source, overrides, device)


def load_model(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> Chronos2Model:
    """A :class:`Chronos2Model` (eval mode, on ``device``) from an official or tsfm-exported directory
    or a tsfm ``.ckpt`` of this family. ``overrides``: config values a run requests, applied by
    :func:`tsfm.checkpoint.resolve_finetune_config` with :data:`EDITABLE` (e.g.
    ``{"context_length": 8192}`` for a longer context, ``{"dropout_rate": 0.0}``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        cfg = read_config(p)
        state = ckpt_io.read_weights(p, "an amazon/chronos-2 style directory (only safetensors weights are read)")
        return _build(cfg, state, str(p / ckpt_io.WEIGHTS_NAME), overrides, device)
    if p.is_file():
        return model_from_checkpoint(ckpt_io.read_checkpoint(p, family="chronos2"), str(p), overrides=overrides, device=device)
    raise FileNotFoundError(f"pretrained={p}: no such checkpoint directory or .ckpt file (nothing is downloaded)")


def save_pretrained(model: Chronos2Model, path: str | Path) -> Path:
    """Write ``model`` in the official layout; ``Chronos2Pipeline.from_pretrained`` reads it."""
    p = Path(path).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    (p / ckpt_io.CONFIG_NAME).write_text(json.dumps(model.config.to_hf_dict(), indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(p / ckpt_io.WEIGHTS_NAME), metadata={"format": "pt"})
    log.info("exported Chronos-2 checkpoint to %s", p)
    return p
