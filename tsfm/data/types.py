"""The contracts between the data layer and the model families.

The data layer yields :class:`Series` (zero-copy numpy views of one stored item). A model
family's :class:`TaskBuilder` turns a series into one training sample (cropping a window,
masking, choosing a patch size, ...) and collates samples into a batch (padding or packing).
The data layer never imports a model family; families never read Arrow files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class Series:
    """One stored item of a sub-dataset.

    ``target`` is always 2-D ``[V, T]`` float32 (a univariate item has ``V == 1``); NaN means
    missing. ``past_feat_dynamic_real`` is ``[C, T]`` float32 or ``None``. Arrays may be
    read-only views into memory-mapped Arrow buffers: copy before writing to them.
    """

    target: np.ndarray  # [V, T] float32
    freq: str
    item_id: str = ""
    dataset: str = ""
    start: np.datetime64 | None = None
    past_feat_dynamic_real: np.ndarray | None = None  # [C, T] float32

    @property
    def num_variates(self) -> int:
        return int(self.target.shape[0])

    @property
    def length(self) -> int:
        return int(self.target.shape[-1])


Sample = dict[str, Any]
Batch = dict[str, torch.Tensor]


@runtime_checkable
class TaskBuilder(Protocol):
    """Turns series into model inputs; implemented once per model family.

    ``min_length`` lets the sampler skip (and count) series too short for the task.
    ``__call__`` returns ``None`` when a series cannot give a sample (counted as a skip, never
    silently dropped). It must only use ``rng`` for randomness, so runs resume exactly.
    """

    min_length: int

    def __call__(self, series: Series, rng: np.random.Generator) -> Sample | None: ...

    def collate(self, samples: list[Sample]) -> Batch: ...
