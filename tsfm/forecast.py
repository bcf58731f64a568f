"""Public forecasting API: ``load_forecaster`` and the :class:`Forecaster` base class.

Every family implements two methods over a normalised batch (:class:`ForecastInput`):
``_quantiles`` and, for families that sample, ``_samples``. This module owns everything
around them: accepting numpy lists or a long DataFrame, validating covariates, stacking the
result, and detecting the family of a checkpoint directory.

Nothing here unpickles: official directories are read as JSON + safetensors, Lightning
``.ckpt`` files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from tsfm.catalog import local_path, lookup, resolve_local
from tsfm.checkpoint import checkpoint_model_state, inference_autocast, read_checkpoint, read_json  # noqa: F401 - re-exported
from tsfm.forecaster import Forecaster  # noqa: F401 - re-exported: the public API
from tsfm.inputs import ForecastInput, normalize_inputs  # noqa: F401 - re-exported
from tsfm.models import describe, detect, families, get

log = logging.getLogger(__name__)

FAMILIES = tuple(families())  # every registered model family (tsfm.models.spec)


def detect_family(config: dict) -> str | None:
    """Family of a checkpoint directory from its config.json (official or tsfm-exported)."""
    return detect(config)


def load_forecaster(path: str | Path, device: str | torch.device = "cpu", *, registry_uri: str | None = None,
                    **kwargs: Any) -> Forecaster:
    """Load any supported checkpoint: a tsfm ``.ckpt``, a checkpoint directory (official or exported),
    a catalogued official model (``chronos-2``, :mod:`tsfm.catalog`) or a registered model version
    (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, :mod:`tsfm.registry`; ``registry_uri``
    chooses the registry, default ``$TSFM_REGISTRY_URI`` or ``logs/mlflow.db``).

    The family is read from the directory's ``config.json`` (or the ``.ckpt`` hyperparameters).
    A Hugging Face Hub id is accepted only if it is already a local directory: nothing is downloaded.
    """
    if isinstance(path, str) and path.startswith("models:/"):
        from tsfm.registry import resolve as resolve_registered

        return load_forecaster(resolve_registered(path, uri=registry_uri), device, **kwargs)
    p = resolve_local(path)
    if not p.exists():
        card = lookup(str(path))
        p = (local_path(card) if card else None) or p
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: no such file or directory (nor a Hub id in the local cache). load_forecaster takes a "
            "local checkpoint directory (config.json + model.safetensors) or a tsfm .ckpt file; nothing is "
            f"downloaded at run time: fetch Hub models first, e.g. `huggingface-cli download {path} --local-dir DIR`."
        )
    if p.is_file():
        ckpt = read_checkpoint(p)
        family = ckpt["hyper_parameters"].get("family")
        if family not in FAMILIES:
            raise ValueError(f"{p}: checkpoint hyperparameters name no known family (got {family!r}); expected one of {FAMILIES}")
        cls = get(family).load("forecaster")
        forecaster = cls.from_checkpoint(ckpt, device=device, **kwargs)
        forecaster.source = p
        return forecaster
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{p}: no config.json; expected a checkpoint directory (config.json + model.safetensors)")
    family = detect_family(read_json(cfg_path))
    if family is None:
        raise ValueError(f"{cfg_path}: no model family recognises this checkpoint. What each looks for: {describe()}")
    cls = get(family).load("forecaster")
    forecaster = cls.from_pretrained(p, device=device, **kwargs)
    forecaster.source = p
    return forecaster
