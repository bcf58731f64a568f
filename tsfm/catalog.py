"""Catalogue of the official checkpoints tsfm loads, and where they are on this machine.

A fixed list, not a registry (the model registry, versions and aliases of the models you train,
is :mod:`tsfm.registry`). Nothing is downloaded. ``python -m tsfm.catalog`` lists every known
model with its family, size and whether a local copy exists (in ``$TSFM_MODELS/<name>`` or the
Hugging Face cache); ``resolve(name)`` returns the local directory for ``load_forecaster``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelCard:
    name: str
    hub_id: str
    family: str
    params: str
    notes: str = ""


MODELS: tuple[ModelCard, ...] = (
    ModelCard("moirai-1.0-R-small", "Salesforce/moirai-1.0-R-small", "moirai", "14M"),
    ModelCard("moirai-1.0-R-base", "Salesforce/moirai-1.0-R-base", "moirai", "91M"),
    ModelCard("moirai-1.0-R-large", "Salesforce/moirai-1.0-R-large", "moirai", "311M"),
    ModelCard("moirai-1.1-R-small", "Salesforce/moirai-1.1-R-small", "moirai", "14M"),
    ModelCard("moirai-1.1-R-base", "Salesforce/moirai-1.1-R-base", "moirai", "91M"),
    ModelCard("moirai-1.1-R-large", "Salesforce/moirai-1.1-R-large", "moirai", "311M"),
    ModelCard("chronos-t5-tiny", "amazon/chronos-t5-tiny", "chronos", "8M"),
    ModelCard("chronos-t5-mini", "amazon/chronos-t5-mini", "chronos", "20M"),
    ModelCard("chronos-t5-small", "amazon/chronos-t5-small", "chronos", "46M"),
    ModelCard("chronos-t5-base", "amazon/chronos-t5-base", "chronos", "200M"),
    ModelCard("chronos-t5-large", "amazon/chronos-t5-large", "chronos", "710M"),
    ModelCard("chronos-2", "amazon/chronos-2", "chronos2", "120M", "covariates, multivariate"),
)
_BY_NAME = {m.name: m for m in MODELS} | {m.hub_id: m for m in MODELS}


def lookup(name: str) -> ModelCard | None:
    """The catalogue entry of ``name`` (short name or Hub id), or None."""
    return _BY_NAME.get(str(name))


def models_dir() -> Path:
    return Path(os.environ.get("TSFM_MODELS", "models")).expanduser()


def local_path(card: ModelCard) -> Path | None:
    """Where a copy of ``card`` lives on this machine, if anywhere."""
    for candidate in (models_dir() / card.name, models_dir() / card.hub_id.split("/")[-1]):
        if (candidate / "config.json").exists():
            return candidate
    cached = resolve_local(card.hub_id)
    return cached if (cached / "config.json").exists() else None


def resolve(name: str) -> Path:
    """Local directory of a catalogued model (by short name or Hub id); a clear error if absent."""
    card = lookup(name)
    if card is None:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(m.name for m in MODELS)}")
    path = local_path(card)
    if path is None:
        raise FileNotFoundError(
            f"{card.name} is not on this machine (looked in {models_dir() / card.name} and the Hugging Face "
            f"cache). Fetch it with: huggingface-cli download {card.hub_id} --local-dir {models_dir() / card.name}"
        )
    return path


def resolve_local(path: str | Path) -> Path:
    """A local path as given, or a Hub id (``amazon/chronos-2``) found in the local HF cache.

    Never downloads: an uncached Hub id resolves to the (missing) literal path and the caller's
    error explains how to fetch it.
    """
    p = Path(path).expanduser()
    if p.exists() or str(path).count("/") != 1 or str(path).startswith((".", "/", "~")):
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path), local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or hub lib unavailable): fall back to the literal path
        return p


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tsfm.catalog",
        description="List the official checkpoints tsfm loads and whether each is available locally "
        "($TSFM_MODELS, default ./models, or the Hugging Face cache). Nothing is downloaded. "
        "Your own trained models are in the model registry: python -m tsfm.registry list.",
    )
    p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "family", "params", "hub id", "local copy")
    for m in MODELS:
        path = local_path(m)
        table.add_row(m.name, m.family, m.params, m.hub_id, str(path) if path else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
