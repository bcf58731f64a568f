"""Official Moirai checkpoint directories (``config.json`` + ``model.safetensors``) <-> our model.

Our parameter names are the official ones, so conversion is a checked ``load_state_dict``: every
key and shape must match (a missing, extra or mis-shaped tensor is an error naming the file).
Weights are read with ``safetensors`` only; nothing is unpickled. Export writes the same layout,
loadable by uni2ts' ``MoiraiModule.from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tsfm.checkpoint import load_safetensors, read_json
from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.model import MoiraiModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def read_config(path: str | Path) -> MoiraiConfig:
    """Parse ``<dir>/config.json`` (official layout, or one exported by tsfm) into a config."""
    cfg_path = Path(path) / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing; a Moirai checkpoint directory needs config.json + {WEIGHTS_NAME}")
    raw = read_json(cfg_path)
    if raw.get("tsfm_family") not in (None, "moirai"):
        raise ValueError(f"{cfg_path}: this is a {raw['tsfm_family']!r} checkpoint, not a Moirai one")
    missing = [k for k in ("d_model", "num_layers", "patch_sizes", "distr_output") if k not in raw]
    if missing:
        raise ValueError(f"{cfg_path}: not a Moirai config (missing {missing}); is this another model family's checkpoint?")
    try:
        return MoiraiConfig.from_official(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: invalid Moirai config: {e}") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load ``<dir>/model.safetensors``; a corrupt or truncated file is an error naming it."""
    w_path = Path(path) / WEIGHTS_NAME
    if not w_path.is_file():
        raise FileNotFoundError(f"{w_path}: missing; a Moirai checkpoint directory needs config.json + {WEIGHTS_NAME}")
    return load_safetensors(w_path)


def load_state(model: MoiraiModel, state: dict[str, torch.Tensor], source: str) -> MoiraiModel:
    """Copy ``state`` into ``model`` after checking every key and shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: weights do not match the config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shapes {wrong[:5]}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model


def load_official(path: str | Path) -> MoiraiModel:
    """Build a :class:`MoiraiModel` from an official (or tsfm-exported) checkpoint directory."""
    cfg = read_config(path)
    model = MoiraiModel(cfg)
    return load_state(model, read_weights(path), str(Path(path) / WEIGHTS_NAME))


def save_official(model: MoiraiModel, path: str | Path) -> Path:
    """Write ``model`` as an official-layout directory (config.json + model.safetensors)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(model.cfg.to_official(), indent=2, sort_keys=True))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_NAME))
    return out
