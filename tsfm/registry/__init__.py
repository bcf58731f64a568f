"""Model registry: versions and aliases of the models you train, on MLflow's model registry.

The fixed list of official checkpoints is the catalogue, :mod:`tsfm.catalog`. Here::

    from tsfm.registry import register, promote
    v = register("logs/train/runs/<time>", "chronos2-mini")    # a run dir or its export/: version 1, 2, ...
    promote("chronos2-mini", v, "production")
    load_forecaster("models:/chronos2-mini@production")           # or models:/chronos2-mini/3

or ``python -m tsfm.registry list | show NAME[@ALIAS|/VERSION] | register DIR --name NAME |
promote NAME VERSION --alias ALIAS``, or train with ``registry=mlflow``. The registry is
``$TSFM_REGISTRY_URI``, else the SQLite database ``logs/mlflow.db`` (``$PROJECT_ROOT/logs``);
any MLflow URI works (``--uri``, ``registry.uri=``). Nothing needs a network.
"""

from __future__ import annotations

from tsfm.registry.errors import RegistryError, RegistryLocked, RegistryNotFound
from tsfm.registry.mlflow_registry import (
    EXPERIMENT,
    ModelInfo,
    ModelRef,
    VersionInfo,
    default_uri,
    get_model,
    get_version,
    list_models,
    normalize_uri,
    promote,
    register,
    remove_alias,
    resolve,
    resolve_uri,
    version_metrics,
)

__all__ = [
    "EXPERIMENT", "ModelInfo", "ModelRef", "RegistryError", "RegistryLocked", "RegistryNotFound", "VersionInfo",
    "default_uri", "get_model", "get_version", "list_models", "normalize_uri", "promote", "register", "remove_alias",
    "resolve", "resolve_uri", "version_metrics",
]
