"""Baseline-family checkpoint directories: ``config.json`` (with ``"tsfm_family": "baseline"``) +
``model.safetensors``, and tsfm ``.ckpt`` files of this family."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tsfm.checkpoint import load_safetensors
from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def export_pretrained(model: BaselineModel, path: str | Path) -> Path:
    """Write ``config.json`` (with ``"tsfm_family": "baseline"``) and ``model.safetensors``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(
        json.dumps({"tsfm_family": "baseline", **model.config.to_dict()}, indent=2)
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    return out


def model_from_state_dict(
    config: BaselineConfig, state: dict[str, torch.Tensor], source: str
) -> BaselineModel:
    """Build a model and load ``state`` strictly, naming the mismatching keys on failure."""
    model = BaselineModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the baseline config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); was it saved by a different architecture or size?"
        )
    return model


def load_pretrained(path: str | Path) -> BaselineModel:
    """A directory written by :func:`export_pretrained` or a tsfm ``.ckpt`` of this family."""
    p = Path(path).expanduser()
    if p.is_dir():

        from tsfm.checkpoint import read_json

        if not (p / WEIGHTS_NAME).exists():
            raise FileNotFoundError(f"pretrained={p}: no {WEIGHTS_NAME}; expected a baseline export directory")
        config = BaselineConfig.from_dict(read_json(p / CONFIG_NAME), source=str(p / CONFIG_NAME))
        return model_from_state_dict(config, load_safetensors(p / WEIGHTS_NAME), source=str(p))
    if p.is_file():
        from tsfm.checkpoint import checkpoint_model_state, read_checkpoint

        ckpt = read_checkpoint(p, family="baseline")
        config = BaselineConfig.from_dict(ckpt["hyper_parameters"]["config"], source=f"{p} hyper_parameters")
        return model_from_state_dict(config, checkpoint_model_state(ckpt), source=str(p))
    raise FileNotFoundError(f"pretrained={p}: no such checkpoint directory or .ckpt file (nothing is downloaded)")
