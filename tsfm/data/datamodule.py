"""``TSDataModule``: a corpus config + a family's task builder -> training/validation batches.

The data layer never knows the model: the family's :class:`~tsfm.data.types.TaskBuilder` turns
series into samples and collates them. Train batches form an endless (or ``batches_per_epoch``
long) stream per rank; batch ``step`` of a rank is a pure function of ``(seed, rank, step)``
(see :mod:`tsfm.data.sampler`), built and collated inside DataLoader workers. The module counts
the train batches Lightning consumed; that count is its whole checkpoint state, so a resumed run
continues with exactly the batches it would have seen. Validation uses a separate fixed-seed
stream of ``val_batches`` batches per rank, identical at every validation.

The corpus travels with the model: :meth:`TSDataModule.corpus_summary` (each sub-dataset's
weight, synthetic flag and the fingerprints of the real series it draws on, from the
manifests of :mod:`tsfm.data.manifest`) is saved in every checkpoint and, by
:meth:`~TSDataModule.save_training_data`, as ``training_data.json`` in an exported checkpoint
directory; ``tsfm.evaluate`` reads it to mark evaluation datasets the model was trained on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tsfm.data.corpus import Corpus, SubDataset
from tsfm.data.manifest import corpus_summary, write_training_data
from tsfm.data.sampler import WindowSampler
from tsfm.data.sources import ResolvedEntry, materialize, resolve
from tsfm.data.types import Batch, TaskBuilder

log = logging.getLogger(__name__)

STEP_KEY = "_tsfm_step"  # added to each train batch, removed again before the model sees it
STATS_KEY = "_tsfm_stats"  # [draws the task rejected, unobserved input values, input values] of that batch
TRAIN_STREAM, VAL_STREAM = 0, 1


class BatchStream(IterableDataset):
    """Collated batches ``start, start+1, ...`` of one rank; worker ``w`` makes every
    ``num_workers``-th one, so the DataLoader's round-robin yields them in step order."""

    def __init__(
        self, sampler: WindowSampler, start: int = 0, num_batches: int | None = None, tag: bool = False
    ) -> None:
        self.sampler, self.start, self.num_batches, self.tag = sampler, int(start), num_batches, tag

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stop = None if self.num_batches is None else self.start + self.num_batches
        for step in self.sampler.steps(self.start, stop, worker, num_workers):
            rejected = self.sampler.skipped_by_task
            batch = self.sampler.task.collate(self.sampler.sample(step))
            if self.tag:
                batch[STEP_KEY] = torch.tensor(step)
                batch[STATS_KEY] = torch.tensor([self.sampler.skipped_by_task - rejected, *unobserved_counts(batch)])
            yield batch


def unobserved_counts(batch: Batch) -> tuple[int, int]:
    """(unobserved, total) values of a batch's model input: padding plus missing values, read from its
    observation / attention mask, else the NaNs of its context tensor."""
    for key in ("observed_mask", "attention_mask"):
        m = batch.get(key)
        if isinstance(m, torch.Tensor):
            return int(m.numel() - m.bool().sum()), int(m.numel())
    for key in ("context", "past_target", "target"):
        x = batch.get(key)
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return int(torch.isnan(x).sum()), int(x.numel())
    return 0, 0


class TSDataModule(L.LightningDataModule):
    """Batches from a weighted corpus of LOTSA-style sub-datasets for any model family.

    Args:
        corpus: config entries (see :mod:`tsfm.data.sources`): ``path`` / ``lotsa_root`` /
            ``packaged`` / ``generator`` plus optional ``weight``.
        task: the family's task builder (Hydra passes it in as ``task=``).
        batch_size: samples per batch (per rank).
        num_workers: DataLoader worker processes per rank (0 = in the main process).
        seed: seed of the training stream; validation uses ``seed`` on a separate stream.
        val_batches: fixed-seed validation batches per rank (0 disables validation data).
        cache_dir: where generated and packaged sub-datasets are built on first use.
        weighting: ``observations`` (proportional to observations, capped at ``epsilon``) or
            ``explicit`` (entry weights alone).
        epsilon: cap on a sub-dataset's share of observations (Moirai: 0.001); ``None``: no cap.
        batches_per_epoch: ``None`` for an endless stream (bound training by ``max_steps``).
        page_budget_mb: resident mapped-page budget per process (see :class:`WindowSampler`).
        io: how drawn items are read: ``auto`` (one ``pread`` copy for items up to 65,536 values,
            zero-copy views of the mapped file above), ``mmap`` (always views) or ``pread``.
            Copies avoid page faults, which dominate for random short windows on kernels that
            map whole large page-cache folios per fault.
        item_weighting: ``length`` (a series is drawn proportionally to its length, uni2ts) or
            ``uniform`` (every series equally often).
        early_steps: for the first ``early_steps`` training steps, sub-datasets are drawn with their
            entries' ``early_weight`` (default: their ``weight``) — a curriculum, e.g. clean
            seasonal series first so that a short run leaves the flat-forecast plateau early.
        length_groups: training steps that share one length-sorted pool of samples, so each batch
            pads less (see :mod:`tsfm.data.sampler`; needs a task with ``sample_length``, e.g.
            Chronos-2's; other tasks ignore it; validation batches are never grouped). 1 = off.
        freq_weights: ``{freq: multiplier}`` on how often a series of that frequency is drawn within
            its sub-dataset (e.g. ``{YS: 2.0, QS: 2.0}``); unnamed frequencies keep 1.0, a name no
            corpus series has is an error. ``None``: off.
        series_scale: multiplies ``num_series`` of every generated entry (``0.01``: a toy corpus
            built in seconds, for tests and smoke runs; cached separately).
    """

    def __init__(
        self,
        corpus: list[dict[str, Any]],
        task: TaskBuilder,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        val_batches: int = 4,
        cache_dir: str = "./data",
        weighting: str = "observations",
        epsilon: float | None = None,
        batches_per_epoch: int | None = None,
        page_budget_mb: float = 256.0,
        io: str = "auto",
        item_weighting: str = "length",
        series_scale: float = 1.0,
        early_steps: int = 0,
        length_groups: int = 1,
        freq_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(task, TaskBuilder):
            raise TypeError(
                f"task must implement TaskBuilder (min_length, __call__, collate); got {type(task).__name__}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if not float(series_scale) > 0:
            raise ValueError(f"data.series_scale must be > 0, got {series_scale}")
        if float(series_scale) != 1.0:  # toy corpora: fewer generated series, same generators
            corpus = [dict(e, num_series=max(1, round(int(e["num_series"]) * float(series_scale))))
                      if e.get("generator") and "num_series" in e else e for e in corpus]
        # curriculum: an entry's `early_weight` replaces its weight for the first `early_steps` steps
        if int(early_steps) < 0:
            raise ValueError(f"data.early_steps must be >= 0, got {early_steps}")
        self.early_steps = int(early_steps)
        if int(length_groups) < 1:
            raise ValueError(f"data.length_groups must be >= 1, got {length_groups}")
        self.length_groups = int(length_groups)
        if self.length_groups > 1 and not callable(getattr(task, "sample_length", None)):
            log.info("data.length_groups=%d ignored: %s batches are not padded to their longest sample",
                     self.length_groups, type(task).__name__)
            self.length_groups = 1
        early = [e.get("early_weight") for e in corpus]
        corpus = [{k: v for k, v in e.items() if k != "early_weight"} for e in corpus]
        self.entries: list[ResolvedEntry] = resolve(corpus, cache_dir)  # errors name the entry's index
        self.early_weights = None
        if any(w is not None for w in early):  # a lotsa_root entry's sub-datasets share its early weight
            groups = [resolve([e], cache_dir) for e in corpus]
            self.early_weights = [float(w if w is not None else r.weight) for w, g in zip(early, groups) for r in g]
        missing = [e for e in self.entries if e.build is None and not Path(e.path).exists()]
        if missing:  # given paths (nothing to build) must exist now, not after the model is built
            raise FileNotFoundError(
                "; ".join(f"sub-dataset {e.name!r}: {Path(e.path).resolve()} does not exist" for e in missing)
                + "; fix the path(s) in the data config's corpus"
            )
        self.task = task
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.val_batches, self.batches_per_epoch = int(val_batches), batches_per_epoch
        self.weighting, self.epsilon, self.page_budget_mb, self.io = weighting, epsilon, page_budget_mb, io
        if item_weighting not in ("length", "uniform"):
            raise ValueError(f"data.item_weighting must be 'length' or 'uniform', got {item_weighting!r}")
        self.item_weighting = item_weighting
        self.freq_weights = {str(k): float(v) for k, v in dict(freq_weights).items()} if freq_weights else None
        self.consumed = 0  # train batches consumed by this rank (the checkpoint state)
        self._stats = {"windows": 0, "batches": 0, "rejected_by_task": 0, "unobserved_values": 0, "input_values": 0}
        self.corpus: Corpus | None = None
        self._train: BatchStream | None = None
        self._summary: dict[str, Any] | None = None
        self._inherited: list[dict[str, Any]] = []  # sub-datasets an earlier stage of this run trained on

    def prepare_data(self) -> None:
        """Build generated/packaged sub-datasets that are not cached yet (local rank 0 only)."""
        for e in self.entries:
            materialize(e)

    def _rank(self) -> int:
        """Global rank from the trainer (inside Lightning) or torch.distributed (elsewhere)."""
        if self.trainer is not None:
            return int(self.trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank()
        return 0

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is None:
            for e in self.entries:
                if not Path(e.path).exists():
                    raise FileNotFoundError(
                        f"sub-dataset {e.name!r} not found at {Path(e.path).resolve()}; call prepare_data() first "
                        "(Lightning does) or fix the corpus config"
                    )
            self.corpus = Corpus(
                [SubDataset(e.path, e.name, io=self.io) for e in self.entries],
                [e.weight for e in self.entries],
            )
            self._summary = corpus_summary(self.entries, self.weighting)

    def corpus_summary(self) -> dict[str, Any]:
        """What the model trains on: per sub-dataset its name, path, weight, synthetic flag and
        source fingerprints by dataset (``provenance: unknown`` for user data without a manifest),
        plus sub-datasets a resumed checkpoint had trained on before (``inherited: true``)."""
        summary = self._summary or corpus_summary(self.entries, self.weighting)  # before setup: read now
        return {**summary, "sub_datasets": summary["sub_datasets"] + self._inherited}

    def save_training_data(self, out_dir: str | Path) -> Path:
        """Write :meth:`corpus_summary` as ``training_data.json`` into an exported checkpoint dir."""
        return write_training_data(self.corpus_summary(), out_dir)

    def _sampler(self, stream: int) -> WindowSampler:
        if self.corpus is None:
            self.setup()
        assert self.corpus is not None
        return WindowSampler(
            self.corpus,
            self.task,
            batch_size=self.batch_size,
            seed=self.seed,
            rank=self._rank(),
            stream=stream,
            weighting=self.weighting,
            epsilon=self.epsilon,
            page_budget_mb=self.page_budget_mb,
            item_weighting=self.item_weighting,
            early_weights=self.early_weights if stream == TRAIN_STREAM else None,
            early_steps=self.early_steps,
            length_groups=self.length_groups if stream == TRAIN_STREAM else 1,
            freq_weights=self.freq_weights,
        )

    def train_dataloader(self) -> DataLoader:
        self._train = BatchStream(
            self._sampler(TRAIN_STREAM), self.consumed, self.batches_per_epoch, tag=True
        )
        return self._loader(self._train, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            BatchStream(self._sampler(VAL_STREAM), 0, self.val_batches), min(self.num_workers, 1)
        )

    @staticmethod
    def _loader(stream: BatchStream, num_workers: int) -> DataLoader:
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=False,
            prefetch_factor=4 if num_workers else None,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Drop the step tag before the model sees the batch, counting consumed train batches."""
        if isinstance(batch, dict) and STEP_KEY in batch:
            step = int(batch.pop(STEP_KEY))
            self.consumed = step + 1
            rejected, unobserved, total = (int(v) for v in batch.pop(STATS_KEY, torch.zeros(3)))
            st = self._stats
            st["windows"] += self.batch_size
            st["batches"] += 1
            st["rejected_by_task"] += rejected
            st["unobserved_values"] += unobserved
            st["input_values"] += total
            if self._train is not None:
                self._train.start = self.consumed  # the next epoch's iterator continues from here
        return batch

    def pipeline_stats(self) -> dict[str, int]:
        """This rank's data-pipeline counters since the process started: train windows and batches
        served, draws the task rejected, unobserved (padding + missing) and total input values, and the
        series too short for the task, which are never drawn (read by the health report)."""
        short = self._train.sampler.skipped_short if self._train is not None else 0
        return {**self._stats, "too_short_series": int(short)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "training_data": self.corpus_summary(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if (
            state_dict.get("seed", self.seed) != self.seed
            or state_dict.get("batch_size", self.batch_size) != self.batch_size
        ):
            log.warning(
                "resuming data stream with seed/batch_size %s/%s (checkpoint had %s/%s): batches will differ",
                self.seed,
                self.batch_size,
                state_dict.get("seed"),
                state_dict.get("batch_size"),
            )
        self.consumed = int(state_dict["consumed"])
        ours = [_same_data(s) for s in self.corpus_summary()["sub_datasets"]]
        theirs = (state_dict.get("training_data") or {}).get("sub_datasets") or []
        new = [s for s in theirs if _same_data(s) not in ours]
        if new:
            log.warning(
                "resuming on another corpus than the checkpoint's: its sub-dataset(s) %s stay recorded as "
                "training data (inherited)",
                ", ".join(str(s.get("name")) for s in new),
            )
            self._inherited += [{**s, "inherited": True} for s in new]
        if self._train is not None:
            self._train.start = self.consumed


def _same_data(sub: dict[str, Any]) -> tuple:
    """What identifies a sub-dataset's data in a corpus summary: its manifest, not where it is cached
    or its weight (for user data without a manifest: its path)."""
    keys = ["name", "provenance", "synthetic", "spec", "sources"]
    if sub.get("provenance") != "manifest":
        keys.append("path")
    return tuple(json.dumps(sub.get(k), sort_keys=True) for k in keys)
