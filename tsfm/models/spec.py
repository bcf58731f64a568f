"""What a model family is: one :class:`FamilySpec` per family, declared in its package's
``__init__.py`` and registered here. Everything outside ``tsfm/models/<family>/`` (``load_forecaster``,
fine-tuning, the configs' tests) reads the specs instead of naming families.

Adding a family (TimesFM, Toto, ...) means writing ``tsfm/models/<family>/`` (config, model, task,
LightningModule, forecaster, converter, a ``conf/model/<family>_*.yaml``) and declaring its spec
in the package's ``__init__.py``; :mod:`tsfm.models` imports every family package.

Parts are import paths (``"package.module:Class"``), resolved only when used, so declaring a spec
imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

_REGISTRY: dict[str, FamilySpec] = {}


@dataclass(frozen=True)
class FamilySpec:
    """The parts of one model family (import paths ``"module:Attribute"``) and how to recognise it."""

    name: str
    config: str  # the model config class
    model: str  # the single-device nn.Module
    module: str  # the LightningModule (pretraining / fine-tuning)
    task: str  # the TaskBuilder (training samples from Series)
    forecaster: str  # the Forecaster subclass (tsfm.forecaster.Forecaster)
    converter: str  # the module reading / writing its checkpoint directories
    model_config: str  # conf/model/<file>.yaml that fine-tuning runs are composed from
    recognizes: Callable[[dict[str, Any]], bool]  # does a config.json belong to this family?
    looks_for: str  # what `recognizes` looks for, for error messages
    covariates: bool = False  # whether its forecaster takes past / known-future covariates

    def __post_init__(self) -> None:
        missing = [f.name for f in fields(self) if f.name != "covariates" and not getattr(self, f.name)]
        if missing:
            raise ValueError(f"model family {self.name or '?'!r}: its FamilySpec lacks {missing}")
        for f in ("config", "model", "module", "task", "forecaster"):
            if ":" not in getattr(self, f):
                raise ValueError(f"model family {self.name!r}: spec part {f}={getattr(self, f)!r} must be "
                                 "'package.module:Attribute'")

    def load(self, part: str) -> Any:
        """The object a part names (``spec.load("forecaster")`` is the Forecaster class)."""
        target = getattr(self, part)
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        return getattr(obj, attr) if attr else obj


def register(spec: FamilySpec) -> FamilySpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"model family {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def families() -> dict[str, FamilySpec]:
    """Every registered family by name (import :mod:`tsfm.models` first)."""
    return dict(_REGISTRY)


def get(name: str) -> FamilySpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def detect(config: dict[str, Any]) -> str | None:
    """The family a checkpoint directory's ``config.json`` belongs to (``tsfm_family`` wins)."""
    if config.get("tsfm_family") in _REGISTRY:
        return str(config["tsfm_family"])
    matches = [n for n, s in _REGISTRY.items() if s.recognizes(config)]
    return matches[0] if len(matches) == 1 else None


def describe() -> str:
    """One line per family: what its checkpoints look like (for 'cannot tell the family' errors)."""
    return "; ".join(f"{n}: {s.looks_for}" for n, s in _REGISTRY.items())
