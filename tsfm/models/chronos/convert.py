"""Load and export Chronos-T5 checkpoint directories in the official layout.

An ``amazon/chronos-t5-*`` directory is a plain T5 checkpoint: ``config.json`` (a T5 config with
a nested ``chronos_config``), ``model.safetensors`` (or ``pytorch_model.bin`` in old releases,
which we refuse to unpickle) and ``generation_config.json``. The tied embedding is stored once
as ``shared.weight``; some writers also store ``lm_head.weight`` / ``*.embed_tokens.weight``
duplicates, which are accepted when they equal ``shared.weight``.

Nothing here unpickles: weights are read with ``safetensors``, configs as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tsfm.checkpoint import load_safetensors, read_json
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.model import ChronosModel, build_t5

_TIED_ALIASES = ("lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# The reference T5 ignores this key if present (cross-attention has no position bias).
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def read_config(path: str | Path) -> ChronosConfig:
    """The :class:`ChronosConfig` of a checkpoint directory; clear errors for anything else."""
    p = Path(path)
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        found = sorted(x.name for x in p.iterdir())[:10] if p.is_dir() else "no such directory"
        raise FileNotFoundError(
            f"{p}: no config.json (found {found}); expected an amazon/chronos-t5-* directory"
        )
    cfg = read_json(cfg_path)
    return ChronosConfig.from_hf_dict(cfg, source=str(cfg_path))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    st = p / "model.safetensors"
    if not st.is_file():
        found = sorted(x.name for x in p.iterdir())[:10]
        hint = (
            " (pytorch_model.bin is a pickle and is not loaded; convert it to safetensors)"
            if (p / "pytorch_model.bin").exists()
            else ""
        )
        raise FileNotFoundError(f"{p}: no model.safetensors (found {found}){hint}")
    return load_safetensors(st)


def model_from_state_dict(
    config: ChronosConfig, state: dict[str, Any], source: str = "state dict"
) -> ChronosModel:
    """Build T5 on the meta device (no random init) and assign the given weights, checking keys and shapes."""
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
    t5 = build_t5(config, device="meta")
    expected = {k: v for k, v in t5.state_dict().items() if k not in _TIED_ALIASES}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the T5 shape in config.json: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{source}: {k} has shape {tuple(state[k].shape)}, config.json implies {tuple(v.shape)}"
            )
    t5.load_state_dict({k: state[k].float().contiguous() for k in expected}, strict=False, assign=True)
    t5.tie_weights()
    t5.eval()
    return ChronosModel(config, t5)


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> ChronosModel:
    """Load an official ``amazon/chronos-t5-*`` (or tsfm-exported) directory."""
    config = read_config(path)
    model = model_from_state_dict(config, load_state_dict(path), source=str(path))
    return model.to(device).eval()


def export_pretrained(model: ChronosModel, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + ``generation_config.json`` (the official layout).

    The directory loads in the reference ``ChronosPipeline.from_pretrained`` and in
    :func:`load_pretrained`. The tied matrix is stored once, as ``shared.weight``.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_hf_dict()
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gen = {
        "_from_model_config": True,
        "decoder_start_token_id": model.config.pad_token_id,
        "eos_token_id": model.config.eos_token_id,
        "pad_token_id": model.config.pad_token_id,
        "use_cache": True,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.t5.state_dict().items()
        if k not in _TIED_ALIASES
    }
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
