"""Leakage marking: was the model trained on the series of an evaluated dataset?

A tsfm checkpoint carries its training corpus (``training_data.json`` in an exported
directory, the datamodule state in a ``.ckpt``; see :mod:`tsfm.data.manifest`): per
sub-dataset, the fingerprints of the real series it draws on. Every evaluated dataset's series
(the full series, before windows are cut or values normalised) are fingerprinted the same way
(:func:`~tsfm.data.manifest.series_fingerprint`); a dataset with any series among them is
``trained_on_this_dataset`` (as fev names it) and is left out of the zero-shot aggregate.

Official checkpoints, older tsfm checkpoints and baselines carry no such record: their status
is ``unknown`` and, as in fev, ``trained_on_this_dataset`` is false.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsfm.data.manifest import TRAINING_DATA, observed, series_fingerprint
from tsfm.data.types import Series

UNKNOWN, NONE, OVERLAP = "unknown", "none", "overlap"


@dataclass
class TrainingData:
    """What a model was trained on, as far as it is known.

    ``index`` maps a series fingerprint to the training sources holding it (``sub-dataset`` or
    ``sub-dataset/source dataset``); ``unknown_sub_datasets`` are parts of the corpus without
    a manifest (their series cannot be compared).
    """

    known: bool
    where: str
    index: dict[str, set[str]] = field(default_factory=dict)
    sub_datasets: list[str] = field(default_factory=list)
    unknown_sub_datasets: list[str] = field(default_factory=list)

    @classmethod
    def unknown(cls, where: str) -> TrainingData:
        return cls(False, where)

    @classmethod
    def from_summary(cls, summary: dict[str, Any], where: str) -> TrainingData:
        """From a corpus summary (:func:`tsfm.data.manifest.corpus_summary`)."""
        subs = summary.get("sub_datasets")
        if not isinstance(subs, list):
            raise ValueError(f"{where}: training data without a `sub_datasets` list")
        out = cls(True, where)
        for sub in subs:
            name = str(sub.get("name", "?"))
            out.sub_datasets.append(name)
            if sub.get("provenance") != "manifest":
                out.unknown_sub_datasets.append(name)
            for src, fps in (sub.get("sources") or {}).items():
                label = name if src == name else f"{name}/{src}"
                for fp in fps:
                    out.index.setdefault(str(fp), set()).add(label)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"status": "known" if self.known else UNKNOWN, "where": self.where,
                "sub_datasets": self.sub_datasets, "unknown_provenance": self.unknown_sub_datasets,
                "num_source_series": len(self.index)}


def _from_checkpoint(path: Path) -> dict[str, Any] | None:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a torch zip file etc.: no record, load_forecaster reports the file
        return None
    if not isinstance(ckpt, dict):
        return None
    for value in ckpt.values():  # the datamodule's state sits under its class name
        if isinstance(value, dict) and isinstance(value.get("training_data"), dict):
            return value["training_data"]
    return None


def load_training_data(model: str | Path) -> TrainingData:
    """The training corpus recorded with ``model`` (a .ckpt or a checkpoint directory); baselines,
    official and older checkpoints: unknown."""
    from tsfm.eval.baselines import BASELINES

    if str(model) in BASELINES:
        return TrainingData.unknown(f"{model} is a statistical baseline (no training corpus recorded)")
    p = Path(model).expanduser()
    if p.is_dir():
        f = p / TRAINING_DATA
        if not f.is_file():
            return TrainingData.unknown(f"{p} has no {TRAINING_DATA} (an official or external checkpoint)")
        try:
            return TrainingData.from_summary(json.loads(f.read_text()), str(f))
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{f}: not a valid {TRAINING_DATA} ({e}); re-export the checkpoint or remove the file") from None
    if p.is_file():
        summary = _from_checkpoint(p)
        if summary is None:
            return TrainingData.unknown(f"{p} records no training data (saved by an older tsfm)")
        return TrainingData.from_summary(summary, str(p))
    return TrainingData.unknown(f"{model}: no local checkpoint to read training data from")


@dataclass
class Overlap:
    """How much of one evaluated dataset the model was trained on."""

    status: str = UNKNOWN  # overlap | none | unknown
    fraction: float | None = None  # of the dataset's series with an observed value
    num_series: int = 0
    num_overlapping: int = 0
    sources: list[str] = field(default_factory=list)  # training sources holding its series

    @property
    def trained_on(self) -> bool:
        return self.status == OVERLAP

    def label(self) -> str:
        """Short table cell: ``yes (40%)``, ``no`` or ``unknown``."""
        if self.trained_on:
            return f"yes ({100 * (self.fraction or 0.0):.0f}%)"
        return "no" if self.status == NONE else UNKNOWN


def dataset_overlap(series: Sequence[Series], training: TrainingData | None) -> Overlap:
    """Compare a dataset's series with the training sources. A series matches when it (or, for a
    multivariate item, one of its variates) has a training source's fingerprint. Series without
    an observed value are not counted."""
    if training is None or not training.known:
        return Overlap()
    usable = [s for s in series if observed(s.target)]
    if not training.index:
        status = UNKNOWN if training.unknown_sub_datasets else NONE
        return Overlap(status, 0.0, len(usable))
    hits, sources = 0, set()
    for s in usable:
        fps = {series_fingerprint(s.target)}
        if s.target.ndim == 2 and s.target.shape[0] > 1:
            fps |= {series_fingerprint(row) for row in s.target}
        found = set().union(*(training.index.get(fp, set()) for fp in fps))
        if found:
            hits += 1
            sources |= found
    fraction = hits / len(usable) if usable else 0.0
    status = OVERLAP if hits else (UNKNOWN if training.unknown_sub_datasets else NONE)
    return Overlap(status, fraction, len(usable), hits, sorted(sources))
