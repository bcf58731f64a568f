"""What ``tsfm.evaluate model=...`` names: a statistical baseline, a checkpoint (``.ckpt``, an exported or
official directory) or a registered model (``models:/name@alias``), and its short label in tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsfm.eval.baselines import BASELINES, MAX_CONTEXT, StatsBaseline
from tsfm.forecast import load_forecaster

_GENERIC = {"checkpoint", "checkpoints", "export", "model", "last", ""}


def model_label(model: str) -> str:
    """Short name of a model argument: the baseline name, or the checkpoint's file/dir name
    (prefixed with its parent's when the name alone says nothing, e.g. ``chronos2_tiny/checkpoint``)."""
    if model.startswith("models:/"):
        return model.removeprefix("models:/")
    p = Path(model)
    name = p.stem if p.suffix == ".ckpt" else p.name
    parent = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return f"{parent.name}/{name}" if name in _GENERIC and parent.name else (name or str(model))


def resolve_forecaster(
    model: str, device: str = "cpu", max_context: int = MAX_CONTEXT, n_jobs: int = 1, **kwargs: Any
) -> Any:
    """A baseline by name (``seasonal_naive``, ``auto_ets``, …) or a checkpoint via ``load_forecaster``."""
    if model in BASELINES:
        return StatsBaseline(model, max_context=max_context, n_jobs=n_jobs)
    if not model.startswith("models:/") and not Path(model).expanduser().exists():
        raise FileNotFoundError(
            f"model={model!r} is neither a baseline ({', '.join(BASELINES)}) nor an existing path; pass a "
            "tsfm .ckpt file, an exported or official checkpoint directory, a registered model "
            "(models:/name@alias) or a baseline name"
        )
    return load_forecaster(model, device=device, **kwargs)
