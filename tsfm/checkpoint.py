"""Checkpoint IO shared by every family: JSON configs, safetensors weights, Lightning ``.ckpt``
files (``weights_only``), the state of a LoRA run folded into plain weights, checked state loading,
the config-override policy of fine-tuning from a checkpoint, inference autocast.

Every family's converter (``tsfm/models/<family>/convert.py``) has the same contract, built on
these helpers: ``read_config(dir)``, ``load_model(path, *, overrides=None, device="cpu")`` (an
official or exported directory, or a tsfm ``.ckpt``), ``model_from_checkpoint(ckpt, source)``,
``save_pretrained(model, dir)`` and the set ``EDITABLE`` of config keys fine-tuning may change.

A leaf of the package: families' ``module.py`` / ``convert.py`` / ``forecast.py`` import it, and it
imports no family and not the public API (:mod:`tsfm.forecast`). Nothing here unpickles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from tsfm.training.lora import fold_lora_state

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# how a tsfm checkpoint was trained (optimizer settings, steps, batch, precision): written at export; fine-tuning
# derives its default learning rate from it (tsfm.finetune.run.resolve_lr). Official checkpoints have none.
RECIPE_NAME = "training_recipe.json"
# what describes the weights beside them (the corpus summary, tsfm.data.manifest.TRAINING_DATA, and the recipe):
# copied wherever the same weights are written again (the best checkpoint's export, a fine-tuning run's zero_shot/)
METADATA_FILES = ("training_data.json", RECIPE_NAME)
_SHOWN = 5  # offending keys named in an error message


def read_recipe(directory: str | Path) -> dict[str, Any] | None:
    """``<directory>/training_recipe.json`` (how the checkpoint was trained), or None when there is none (an
    official checkpoint, a ``.ckpt`` file); an unreadable one is an error naming the file."""
    p = Path(directory).expanduser() / RECIPE_NAME
    if not p.is_file():
        return None
    try:
        recipe = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: not a valid {RECIPE_NAME} ({e}); re-export the checkpoint or remove the file") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"{p}: expected a JSON object, got {type(recipe).__name__}; re-export the checkpoint or "
                         "remove the file")
    return recipe


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


def read_weights(directory: str | Path, expected: str) -> dict[str, torch.Tensor]:
    """The tensors of ``<directory>/model.safetensors``; a missing file is an error naming the
    directory, what it holds and ``expected`` (what kind of directory it should be)."""
    d = Path(directory)
    weights = d / WEIGHTS_NAME
    if not weights.is_file():
        found = sorted(x.name for x in d.iterdir())[:10] if d.is_dir() else "no such directory"
        hint = (" (pytorch_model.bin is a pickle and is not loaded; convert it to safetensors)"
                if (d / "pytorch_model.bin").exists() else "")
        raise FileNotFoundError(f"{d}: no {WEIGHTS_NAME} (found {found}); expected {expected}{hint}")
    return load_safetensors(weights)


def _first(keys: list[str]) -> str:
    return f"{keys[:_SHOWN]}{'...' if len(keys) > _SHOWN else ''}"


def load_state_checked(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    assign: bool = False,
    tied: Iterable[str] = (),
) -> torch.nn.Module:
    """Load ``state`` into ``model`` after checking it against ``model.state_dict()``.

    Every key of the model's state must be in ``state`` with the same shape, and ``state`` must
    hold nothing else; otherwise a ``ValueError`` names ``source`` and the first few missing,
    unexpected and mis-shaped tensors (with both shapes). Tensors are cast to the model's dtypes.
    ``assign=True`` replaces the parameters instead of copying into them (for a model built on the
    meta device); ``tied``: keys of the model that share their tensor with another key (tied
    embeddings) and may be absent from ``state`` - the caller re-ties them after loading.
    Returns ``model``.
    """
    own = model.state_dict()
    skip = set(tied)
    missing = sorted(set(own) - set(state) - skip)
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        problems = [f"{what} {_first(keys)}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong)) if keys]
        raise ValueError(f"{source}: weights do not match the config ({', '.join(problems)}); was the checkpoint "
                         "saved from a different architecture or size?")
    cast = {k: v.to(own[k].dtype).contiguous() if assign else v.to(own[k].dtype) for k, v in state.items()}
    model.load_state_dict(cast, strict=not skip, assign=assign)
    return model


def _plain(v: Any) -> Any:
    """``v`` with tuples as lists (YAML gives lists, dataclass configs may hold tuples)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def resolve_finetune_config(
    checkpoint_cfg: Mapping[str, Any], requested: Mapping[str, Any] | None, editable: Iterable[str], source: str
) -> dict[str, Any]:
    """The config of a model loaded from a checkpoint when a run asks for ``requested`` values.

    The policy every family follows (``docs/architecture.md``, "Fine-tuning from a checkpoint:
    config overrides"):

    * the architecture comes from the checkpoint: the result starts as ``checkpoint_cfg``;
    * keys in ``editable`` (the family's converter declares them: dropouts, sampling settings,
      the context length where the family allows it) take the ``requested`` value;
    * any other requested key whose value differs from the checkpoint's is ignored, with ONE
      warning naming each such key, the checkpoint's value and the requested one;
    * a requested key the config does not have is a ``ValueError`` naming it.
    """
    requested = dict(requested or {})
    editable = set(editable)
    unknown = sorted(set(requested) - set(checkpoint_cfg))
    if unknown:
        raise ValueError(f"{source}: unknown config keys {unknown}; known keys: {sorted(checkpoint_cfg)}")
    ignored = {k: v for k, v in requested.items() if k not in editable and _plain(v) != _plain(checkpoint_cfg[k])}
    if ignored:
        log.warning(
            "%s: the architecture comes from the checkpoint; ignoring requested config values that differ from "
            "it: %s (only %s may change)", source,
            "; ".join(f"{k}: checkpoint {checkpoint_cfg[k]!r}, requested {v!r}" for k, v in ignored.items()),
            sorted(editable),
        )
    return dict(checkpoint_cfg) | {k: v for k, v in requested.items() if k in editable}


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
