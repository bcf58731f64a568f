"""Compose the project's Hydra configs (conf/) in tests, as the entry points do: one helper for every test file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", hydra_config: bool = False
) -> DictConfig:
    """``config_name`` from ``conf/`` with ``overrides`` (``hydra_config``: keep the ``hydra`` node, for sweeps)."""
    GlobalHydra.instance().clear()  # a test that initialised Hydra and failed must not break the next one
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra_config)
