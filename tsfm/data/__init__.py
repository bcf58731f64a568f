"""LOTSA-style Arrow data: format, builders, synthetic generators, streaming sampler, DataModule.

Exports are imported lazily, so ``python -m tsfm.data`` starts without loading Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

from tsfm.data.types import Batch, Sample, Series, TaskBuilder

_LAZY = {
    "Corpus": "corpus",
    "SubDataset": "corpus",
    "TSDataModule": "datamodule",
    "BuildReport": "format",
    "DataError": "format",
    "write_dataset": "format",
    "series_fingerprint": "manifest",
    "PACKAGED": "packaged",
    "build_packaged": "packaged",
    "load_packaged": "packaged",
    "WindowSampler": "sampler",
    "FixedWindowTask": "tasks",
}

__all__ = ["Batch", "Sample", "Series", "TaskBuilder", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"tsfm.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tsfm.data' has no attribute {name!r}")
