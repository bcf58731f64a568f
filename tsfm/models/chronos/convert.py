"""Load and export Chronos-T5 checkpoint directories in the official layout.

An ``amazon/chronos-t5-*`` directory is a plain T5 checkpoint: ``config.json`` (a T5 config with
a nested ``chronos_config``), ``model.safetensors`` (or ``pytorch_model.bin`` in old releases,
which we refuse to unpickle) and ``generation_config.json``. The tied embedding is stored once
as ``shared.weight``; some writers also store ``lm_head.weight`` / ``*.embed_tokens.weight``
duplicates, which are accepted when they equal ``shared.weight``.

Nothing here unpickles: weights are read with ``safetensors``, configs as JSON. The converter
contract every family shares (see :mod:`tsfm.checkpoint`): ``read_config``, ``load_model``,
``model_from_checkpoint``, ``save_pretrained`` and ``EDITABLE``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tsfm import checkpoint as ckpt_io
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.model import ChronosModel, build_t5

GENERATION_CONFIG_NAME = "generation_config.json"
_TIED_ALIASES = ("lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# The reference T5 ignores this key if present (cross-attention has no position bias).
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
# config keys a run may change when it starts from a checkpoint: none changes the weights' shapes
EDITABLE = frozenset({"dropout_rate", "context_length", "prediction_length", "num_samples", "temperature",
                      "top_k", "top_p"})


def read_config(path: str | Path) -> ChronosConfig:
    """The :class:`ChronosConfig` of a checkpoint directory; clear errors for anything else."""
    p = Path(path).expanduser()
    cfg_path = p / ckpt_io.CONFIG_NAME
    if not cfg_path.is_file():
        found = sorted(x.name for x in p.iterdir())[:10] if p.is_dir() else "no such directory"
        raise FileNotFoundError(
            f"{p}: no config.json (found {found}); expected an amazon/chronos-t5-* directory"
        )
    cfg = ckpt_io.read_json(cfg_path)
    return ChronosConfig.from_hf_dict(cfg, source=str(cfg_path))


def _normalize_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Our T5 key set: the ``t5.`` prefix dropped, ignored keys removed and the tied embedding
    stored once as ``shared.weight`` (duplicates must equal it)."""
    state = {k.removeprefix("t5."): v for k, v in state.items() if k not in _IGNORED}
    shared = state.get("shared.weight")
    if shared is None:
        shared = next((state[k] for k in _TIED_ALIASES if k in state), None)
        if shared is None:
            raise ValueError(f"{source}: no shared.weight (tied token embedding) in the checkpoint")
        state["shared.weight"] = shared
    for alias in _TIED_ALIASES:
        dup = state.pop(alias, None)
        if dup is not None and not torch.equal(dup, shared):
            raise ValueError(f"{source}: {alias} differs from shared.weight, but Chronos-T5 ties them")
    return state


def _build(
    config: ChronosConfig, state: Mapping[str, torch.Tensor], source: str, overrides: Mapping[str, Any] | None,
    device: str | torch.device,
) -> ChronosModel:
    """Build T5 on the meta device (no random init) and assign the weights, checking keys and shapes."""
    if overrides:  # T5 is built from the resolved config: its dropout modules read the rate at construction
        config = ChronosConfig(**ckpt_io.resolve_finetune_config(config.to_dict(), overrides, EDITABLE, source))
    state = _normalize_state(state, source)
    t5 = build_t5(config, device="meta")
    ckpt_io.load_state_checked(t5, state, source, assign=True, tied=_TIED_ALIASES)
    t5.tie_weights()
    return ChronosModel(config, t5).to(device).eval()


def model_from_checkpoint(
    ckpt: Mapping[str, Any], source: str = "checkpoint", *, overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> ChronosModel:
    """The model of a tsfm Lightning checkpoint dict (read by :func:`tsfm.checkpoint.read_checkpoint`)."""
    config = ChronosConfig(**ckpt["hyper_parameters"]["config"])
    return _build(config, ckpt_io.checkpoint_model_state(ckpt), source, overrides, device)  # a LoRA run's adapters folded in


def load_model(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> ChronosModel:
    """A :class:`ChronosModel` (eval mode, on ``device``) from an official ``amazon/chronos-t5-*`` or
    tsfm-exported directory or a tsfm ``.ckpt`` of this family. ``overrides``: config values a run
    requests, applied by :func:`tsfm.checkpoint.resolve_finetune_config` with :data:`EDITABLE`."""
    p = Path(path).expanduser()
    if p.is_dir():
        config = read_config(p)
        return _build(config, ckpt_io.read_weights(p, "an amazon/chronos-t5-* directory"), str(p), overrides, device)
    if p.is_file():
        return model_from_checkpoint(ckpt_io.read_checkpoint(p, family="chronos"), str(p), overrides=overrides, device=device)
    raise FileNotFoundError(f"pretrained={path!r}: no such directory or .ckpt file (nothing is downloaded)")


def save_pretrained(model: ChronosModel, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + ``generation_config.json`` (the official layout).

    The directory loads in the reference ``ChronosPipeline.from_pretrained`` and in
    :func:`load_model`. The tied matrix is stored once, as ``shared.weight``.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_hf_dict()
    (out / ckpt_io.CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gen = {
        "_from_model_config": True,
        "decoder_start_token_id": model.config.pad_token_id,
        "eos_token_id": model.config.eos_token_id,
        "pad_token_id": model.config.pad_token_id,
        "use_cache": True,
    }
    (out / GENERATION_CONFIG_NAME).write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.t5.state_dict().items()
        if k not in _TIED_ALIASES
    }
    save_file(state, str(out / ckpt_io.WEIGHTS_NAME), metadata={"format": "pt"})
    return out
