"""Weighted, vectorised, exactly resumable sampling of training samples from a :class:`Corpus`.

Sub-dataset ``d`` is drawn with the probability :meth:`Corpus.probabilities` gives (Moirai:
observations capped at epsilon, renormalised); an item within it proportionally to its length
(``item_weighting="length"``, uni2ts) or uniformly (``"uniform"``: each series equally often,
so short histories such as yearly series are not drowned by long sub-daily ones).
Items shorter than the task's ``min_length`` get probability 0 and are counted once, at set-up.

Reproducibility: batch ``step`` of a rank is a pure function of ``(seed, stream, rank, step)``,
every random draw (indices and the task's own window/masking choices) coming from
``np.random.default_rng([seed, stream, rank, step])``. A resumed run only needs the next step
number (a plain int); DataLoader workers split the steps of their rank round-robin
(``step % num_workers``), which is also the order the DataLoader yields them in, so the stream is
identical for any number of workers. Draws are made in numpy blocks (thousands of indices per
call); the per-sample Python cost is one :class:`Series` view plus the task call.

Length grouping (``length_groups=G > 1``, for tasks whose collate pads to the longest sample and
that say how long a sample is, ``task.sample_length``): the ``G`` consecutive steps
``[kG, kG + G)`` share one pool of ``G * batch_size`` samples drawn with the RNG of step ``kG``;
the pool is sorted by length, cut into ``G`` batches of similar lengths, and the batches are
handed to the ``G`` steps in a random order. Every sample is still drawn from the same
distribution, batches just carry less padding (Chronos-2's default corpus: a median context of 85
points padded to 512 without grouping; about 1.45x the training steps per second with ``G = 8``). A step's batch
is still a pure function of the step, so resumption stays exact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np

from tsfm.data.corpus import Corpus
from tsfm.data.format import DataError, normalize_freq
from tsfm.data.types import Sample, Series, TaskBuilder

log = logging.getLogger(__name__)

CHECK_EVERY = 64  # series between two looks at the mapped-page footprint


class _MappedPages:
    """Hands mapped corpus pages back to the kernel when they pass ``budget`` bytes.

    A page fault on a memory-mapped file maps far more than the window read (fault-around, and
    whole large page-cache folios on recent kernels: about 1 MiB per random window here), so the
    footprint is measured, not estimated: file-backed resident memory from ``/proc/self/statm``
    above its value at start. Without ``/proc``, 1 MiB per series is assumed.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self._count, self._pid, self._fd = budget, 0, -1, None
        self._base = self._shared()

    def _shared(self) -> int:
        if self._pid != os.getpid():  # (re)open in each process: a forked worker has its own /proc/self
            self._pid = os.getpid()
            self._fd = (
                os.open("/proc/self/statm", os.O_RDONLY) if os.path.exists("/proc/self/statm") else None
            )
        if self._fd is None:
            self._count += CHECK_EVERY
            return self._count << 20
        return int(os.pread(self._fd, 256, 0).split()[2]) * PAGE

    def check(self, corpus: Corpus) -> None:
        if self._shared() - self._base >= self.budget:
            corpus.release()
            self._count = 0
            if self._fd is not None:
                self._base = min(self._base, self._shared())

    def __getstate__(self) -> dict:  # file descriptors do not cross process boundaries
        return {"budget": self.budget}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["budget"])  # type: ignore[misc]


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def check_freq_weights(freq_weights: dict[str, float] | None, corpus: Corpus) -> dict[str, float]:
    """``freq_weights`` as floats, after checking that each is >= 0 and names a corpus frequency."""
    if not freq_weights:
        return {}
    fw: dict[str, float] = {}
    for k, v in dict(freq_weights).items():  # "YS" and "YS-JAN" name one frequency
        fw[normalize_freq(str(k), "data.freq_weights: ")] = float(v)
    bad = {k: v for k, v in fw.items() if not v >= 0}
    if bad:
        raise ValueError(f"data.freq_weights must be >= 0, got {bad}")
    have = sorted({f for d in corpus.datasets for f in d.freqs})
    unknown = sorted(set(fw) - set(have))
    if unknown:
        raise ValueError(
            f"data.freq_weights names frequencies no corpus series has: {unknown}; the corpus has {have}"
        )
    return fw


class WindowSampler:
    """Draws series views and turns them into samples with ``task``.

    Args:
        corpus: the sub-datasets and their user weights.
        task: the family's task builder (``min_length``, ``__call__``, ``collate``).
        batch_size: samples per step.
        seed, rank, stream: select the RNG stream (``stream`` separates train from validation).
        weighting, epsilon: see :meth:`Corpus.probabilities`.
        item_weighting: ``length`` (items proportional to their length) or ``uniform``.
        page_budget_mb: mapped pages read since the last release are handed back to the kernel
            once their estimated size passes this budget, bounding resident memory.
        length_groups: steps that share one length-sorted pool of samples (1: no grouping; see
            the module docstring).
        freq_weights: multipliers on the item weight by the series' frequency string (e.g.
            ``{"YS": 2.0}``: yearly series twice as often within each sub-dataset); frequencies not
            named keep 1.0. Sub-dataset probabilities are unchanged.
    """

    def __init__(
        self,
        corpus: Corpus,
        task: TaskBuilder,
        *,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        stream: int = 0,
        weighting: str = "observations",
        epsilon: float | None = None,
        page_budget_mb: float = 256.0,
        item_weighting: str = "length",
        early_weights: list[float] | None = None,
        early_steps: int = 0,
        length_groups: int = 1,
        freq_weights: dict[str, float] | None = None,
    ) -> None:
        if int(length_groups) < 1:
            raise ValueError(f"length_groups must be >= 1, got {length_groups}")
        if int(length_groups) > 1 and not callable(getattr(task, "sample_length", None)):
            raise ValueError(
                f"length_groups={length_groups} needs a task that pads batches to their longest sample and "
                f"defines sample_length(sample); {type(task).__name__} does not (set data.length_groups=1)"
            )
        self.length_groups = int(length_groups)
        self._pool: tuple[int, list[list[Sample]], int] | None = None  # (group, batches, rejections)
        if item_weighting not in ("length", "uniform"):
            raise ValueError(f"item_weighting must be 'length' or 'uniform', got {item_weighting!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.corpus, self.task, self.batch_size = corpus, task, batch_size
        self.seed, self.rank, self.stream = int(seed), int(rank), int(stream)
        self.skipped_short = 0  # items never sampled: shorter than task.min_length
        self.skipped_by_task = 0  # draws the task rejected (returned None)
        self._rows: list[np.ndarray] = []  # eligible item rows per sub-dataset
        self._cum: list[np.ndarray] = []  # cumulative eligible lengths per sub-dataset
        fw = check_freq_weights(freq_weights, corpus)
        eligible_obs = []
        for d in corpus.datasets:
            ok = np.nonzero(d.lengths >= max(int(task.min_length), 1))[0]
            self.skipped_short += len(d) - len(ok)
            w = d.lengths[ok].astype(np.float64) if item_weighting == "length" else np.ones(len(ok))
            if fw:
                w = w * np.array([fw.get(f, 1.0) for f in d.freqs] or [1.0])[d.freq_code[ok]]
            if fw and not (w > 0).any():  # every item of this sub-dataset weighted 0: never draw it
                ok, w = ok[:0], w[:0]
            self._rows.append(ok)
            self._cum.append(np.cumsum(w))
            eligible_obs.append(int((d.lengths[ok] * d.num_variates[ok]).sum()))
        if self.skipped_short:
            log.info(
                "sampler: %d series shorter than min_length=%d are never drawn",
                self.skipped_short,
                task.min_length,
            )
        if not any(len(r) for r in self._rows):
            raise DataError(
                "no sub-dataset has a series to draw: every series is shorter than the task's min_length "
                f"({task.min_length}) or weighted 0 by data.freq_weights"
            )
        self.probs = self._drawable(corpus.probabilities(weighting, epsilon, eligible_obs))
        # curriculum: other sub-dataset weights for the first `early_steps` steps (a pure function
        # of the step, like everything else here, so a resumed run draws the same batches)
        self.early_steps, self.early_probs = int(early_steps), None
        if early_weights is not None and self.early_steps > 0:
            if len(early_weights) != len(corpus.datasets):
                raise ValueError(f"early_weights has {len(early_weights)} entries for {len(corpus.datasets)} sub-datasets")
            saved = corpus.weights
            corpus.weights = list(early_weights)
            try:
                self.early_probs = self._drawable(corpus.probabilities(weighting, epsilon, eligible_obs))
            finally:
                corpus.weights = saved
        self._pages = _MappedPages(int(page_budget_mb * 2**20))

    def _drawable(self, probs: np.ndarray) -> np.ndarray:
        """``probs`` with sub-datasets that have nothing to draw (every series too short, or
        weighted 0 by ``freq_weights``) set to 0 and the rest renormalised."""
        probs = np.where([len(r) > 0 for r in self._rows], probs, 0.0)
        if not probs.sum() > 0:
            raise DataError("every sub-dataset that has series to draw has sampling weight 0; raise a weight")
        return probs / probs.sum()

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.stream, self.rank, int(step)])

    def draw(self, rng: np.random.Generator, n: int, probs: np.ndarray | None = None) -> list[Series]:
        """``n`` series views: sub-dataset by ``probs`` (default: the corpus's), item by length (vectorised)."""
        probs = self.probs if probs is None else probs
        ds = (
            rng.choice(len(probs), size=n, p=probs)
            if len(probs) > 1
            else np.zeros(n, np.int64)
        )
        u = rng.random(n)
        out: list[Series | None] = [None] * n
        for d in np.unique(ds):
            pos = np.nonzero(ds == d)[0]
            cum = self._cum[d]
            idx = np.searchsorted(cum, u[pos] * cum[-1], side="right")
            rows = self._rows[d][np.minimum(idx, len(cum) - 1)]
            for p, s in zip(pos.tolist(), self.corpus.datasets[d].series_many(rows)):
                out[p] = s
        return out  # type: ignore[return-value]

    def sample(self, step: int) -> list[Sample]:
        """The ``batch_size`` samples of ``step`` (deterministic in seed, stream, rank, step)."""
        g = self.length_groups
        if g == 1:
            return self._draw_samples(self.rng(step), self.batch_size, step)
        group = step // g
        if self._pool is None or self._pool[0] != group:
            first = group * g
            before = self.skipped_by_task
            pool = self._draw_samples(self.rng(first), self.batch_size * g, first)
            rejected, self.skipped_by_task = self.skipped_by_task - before, before
            rng = np.random.default_rng([self.seed, self.stream, self.rank, first, 1])
            length = self.task.sample_length  # type: ignore[attr-defined]
            order = np.argsort([length(x) for x in pool], kind="stable")
            batches = [[pool[i] for i in chunk] for chunk in np.split(order, g)]
            self._pool = (group, [batches[i] for i in rng.permutation(g)], rejected)
        if step % g == 0:  # rejections of the pool are counted once, with its first step
            self.skipped_by_task += self._pool[2]
        return self._pool[1][step % g]

    def _draw_samples(self, rng: np.random.Generator, need: int, step: int) -> list[Sample]:
        samples: list[Sample] = []
        task = self.task
        for _attempt in range(64):
            block = need - len(samples)
            probs = self.early_probs if self.early_probs is not None and step < self.early_steps else self.probs
            for k, s in enumerate(self.draw(rng, block + block // 8 + 1, probs)):
                if k % CHECK_EVERY == 0:
                    self._pages.check(self.corpus)
                x = task(s, rng)
                if x is None:
                    self.skipped_by_task += 1
                    continue
                samples.append(x)
                if len(samples) == need:
                    return samples
        raise RuntimeError(
            f"the task rejected almost every drawn series ({self.skipped_by_task} rejections); check that "
            "the corpus has series long enough (and observed enough) for the task's window"
        )

    def steps(self, start: int, stop: int | None, worker: int = 0, num_workers: int = 1) -> Iterator[int]:
        """The steps of this worker: ``start + worker``, then every ``num_workers``-th, until ``stop``."""
        step = start + worker
        while stop is None or step < stop:
            yield step
            step += num_workers
