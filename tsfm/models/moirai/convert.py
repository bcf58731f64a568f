"""Official Moirai checkpoint directories (``config.json`` + ``model.safetensors``) <-> our model.

Our parameter names are the official ones, so conversion is a checked state load: every key and
shape must match (a missing, extra or mis-shaped tensor is an error naming the file and the
tensor). Weights are read with ``safetensors`` only; nothing is unpickled. ``save_pretrained``
writes the same layout, loadable by uni2ts' ``MoiraiModule.from_pretrained``.

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
from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.model import MoiraiModel

# config keys a run may change when it starts from a checkpoint (the dropouts)
EDITABLE = frozenset({"attn_dropout_p", "dropout_p"})


def read_config(path: str | Path) -> MoiraiConfig:
    """Parse ``<dir>/config.json`` (official layout, or one exported by tsfm) into a config."""
    cfg_path = Path(path).expanduser() / ckpt_io.CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing; a Moirai checkpoint directory needs config.json + {ckpt_io.WEIGHTS_NAME}")
    raw = ckpt_io.read_json(cfg_path)
    if raw.get("tsfm_family") not in (None, "moirai"):
        raise ValueError(f"{cfg_path}: this is a {raw['tsfm_family']!r} checkpoint, not a Moirai one")
    missing = [k for k in ("d_model", "num_layers", "patch_sizes", "distr_output") if k not in raw]
    if missing:
        raise ValueError(f"{cfg_path}: not a Moirai config (missing {missing}); is this another model family's checkpoint?")
    try:
        return MoiraiConfig.from_official(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: invalid Moirai config: {e}") from None


def _build(
    cfg: MoiraiConfig, state: dict[str, torch.Tensor], source: str, overrides: Mapping[str, Any] | None,
    device: str | torch.device,
) -> MoiraiModel:
    if overrides:  # the model is built from the resolved config: its dropout modules read p at construction
        cfg = MoiraiConfig.from_dict(ckpt_io.resolve_finetune_config(cfg.to_dict(), overrides, EDITABLE, source))
    model = MoiraiModel(cfg)
    ckpt_io.load_state_checked(model, state, source)
    return model.to(device).eval()


def model_from_checkpoint(
    ckpt: Mapping[str, Any], source: str = "checkpoint", *, overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> MoiraiModel:
    """The model of a tsfm Lightning checkpoint dict (read by :func:`tsfm.checkpoint.read_checkpoint`)."""
    cfg = MoiraiConfig.from_dict(ckpt["hyper_parameters"]["config"])
    return _build(cfg, ckpt_io.checkpoint_model_state(ckpt), source, overrides, device)  # a LoRA run's adapters folded in


def load_model(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> MoiraiModel:
    """A :class:`MoiraiModel` (eval mode, on ``device``) from an official or tsfm-exported checkpoint
    directory or a tsfm ``.ckpt`` of this family. ``overrides``: config values a run requests,
    applied by :func:`tsfm.checkpoint.resolve_finetune_config` with :data:`EDITABLE`."""
    p = Path(path).expanduser()
    if p.is_dir():
        expected = f"a Moirai checkpoint directory (config.json + {ckpt_io.WEIGHTS_NAME})"
        return _build(read_config(p), ckpt_io.read_weights(p, expected), str(p / ckpt_io.WEIGHTS_NAME), overrides, device)
    if p.is_file():
        return model_from_checkpoint(ckpt_io.read_checkpoint(p, family="moirai"), str(p), overrides=overrides, device=device)
    raise FileNotFoundError(f"pretrained={p}: no such checkpoint directory or .ckpt file (nothing is downloaded)")


def save_pretrained(model: MoiraiModel, path: str | Path) -> Path:
    """Write ``model`` as an official-layout directory (config.json + model.safetensors)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / ckpt_io.CONFIG_NAME).write_text(json.dumps(model.cfg.to_official(), indent=2, sort_keys=True))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / ckpt_io.WEIGHTS_NAME))
    return out
