"""Load and export the official ``amazon/chronos-2`` directory layout (config.json + model.safetensors).

Our parameter names are the official ones, so conversion is a checked ``load_state_dict``:
missing, unexpected or mis-shaped tensors are errors that name the tensor. Nothing is unpickled
(safetensors + JSON only) and the config's sizes are validated before anything is allocated.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from tsfm.checkpoint import load_safetensors, read_json
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.model import Chronos2Model

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def read_config(path: str | Path) -> Chronos2Config:
    """The :class:`Chronos2Config` of a checkpoint directory (official or exported by tsfm)."""
    cfg_path = Path(path) / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME}; expected an amazon/chronos-2 style directory")
    raw = read_json(cfg_path)
    return Chronos2Config.from_hf_dict(raw)


def load_state_dict_checked(model: Chronos2Model, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with errors that name the offending tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the Chronos-2 architecture of its config "
            f"(missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''})"
        )
    bad = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise ValueError(f"{source}: tensor shapes differ from the config: {bad[:8]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_pretrained(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **overrides
) -> Chronos2Model:
    """Build a :class:`Chronos2Model` from a checkpoint directory.

    ``overrides`` replace config fields (e.g. ``context_length`` for a longer context,
    ``dropout_rate=0`` for inference); ``time_encoding_scale`` stays the checkpoint's.
    """
    p = Path(path).expanduser()
    cfg = read_config(p)
    if overrides:
        d = cfg.to_dict() | overrides
        cfg = Chronos2Config.from_dict(d)
    weights = p / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{p}: no {WEIGHTS_NAME} (only safetensors weights are read, never pickles)")
    model = Chronos2Model(cfg)
    load_state_dict_checked(model, load_safetensors(weights), str(weights))
    return model.to(device=device, dtype=dtype).eval()


def save_pretrained(model: Chronos2Model, path: str | Path) -> Path:
    """Write ``model`` in the official layout; ``Chronos2Pipeline.from_pretrained`` reads it."""
    p = Path(path).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    (p / CONFIG_NAME).write_text(json.dumps(model.config.to_hf_dict(), indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(p / WEIGHTS_NAME), metadata={"format": "pt"})
    log.info("exported Chronos-2 checkpoint to %s", p)
    return p
