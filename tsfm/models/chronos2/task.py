"""Chronos-2 training task: one series -> one *group* of rows; a batch is a set of groups.

A stored :class:`~tsfm.data.types.Series` becomes the rows ``[target variates | covariates]``
(covariates = ``past_feat_dynamic_real``). A random cut point splits it into a context (the
last ``context_length`` steps before the cut) and a ``prediction_length`` future:

* target rows are predicted (their future is the loss target);
* covariate rows are past-only, or - with probability ``known_covariate_prob`` each - known in
  the future (their future values are fed to the model and excluded from the loss);
* a univariate series without covariates is a singleton group (no group attention cost);
* groups larger than ``max_group_size`` keep a random subset of rows (targets first);
* ``min_future < prediction_length`` admits series shorter than ``min_past + prediction_length``
  (short yearly or quarterly histories): the cut leaves at least ``min_future`` observed future
  steps, and the rest of the future is NaN, which the loss masks out. The reference needs the
  whole horizon (``min_future = prediction_length``, the default).
* the cut is uniform over the admissible positions; ``long_context_prob`` (default 0) makes that share of the
  cuts give a full ``context_length`` window (or a short series' whole history) before an observed horizon.

This is the reference's task layout (``Chronos2Dataset`` in training mode) driven by our RNG so
runs resume exactly. ``collate`` left-pads contexts with NaN and numbers the groups.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tsfm.data.types import Batch, Sample, Series


class Chronos2Task:
    """TaskBuilder for Chronos-2 pretraining and fine-tuning."""

    # univariate series without covariates take a shortcut with the same draws and samples (False: the general
    # path for every series; tests compare the two)
    fast_univariate = True

    def __init__(
        self,
        context_length: int = 2048,
        prediction_length: int = 64,
        min_past: int = 16,
        patch_size: int = 16,
        max_group_size: int = 64,
        known_covariate_prob: float = 0.5,
        target_as_covariate_prob: float = 0.0,
        min_future: int | None = None,
        long_context_prob: float = 0.0,
    ) -> None:
        min_future = prediction_length if min_future is None else int(min_future)
        if not 1 <= min_future <= prediction_length:
            raise ValueError(f"min_future must be in [1, prediction_length={prediction_length}], got {min_future}")
        if context_length < 1 or prediction_length < 1 or min_past < 1:
            raise ValueError(
                f"context_length ({context_length}), prediction_length ({prediction_length}) and "
                f"min_past ({min_past}) must all be >= 1"
            )
        if max_group_size < 1:
            raise ValueError(f"max_group_size must be >= 1, got {max_group_size}")
        for name, p in (("known_covariate_prob", known_covariate_prob), ("target_as_covariate_prob", target_as_covariate_prob),
                        ("long_context_prob", long_context_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.context_length = context_length
        self.prediction_length = prediction_length
        self.min_past = min_past
        self.patch_size = patch_size
        self.max_group_size = max_group_size
        self.known_covariate_prob = known_covariate_prob
        self.target_as_covariate_prob = target_as_covariate_prob
        self.min_future = min_future
        self.min_length = min_past + min_future
        self.long_context_prob = float(long_context_prob)

    @property
    def num_output_patches(self) -> int:
        return math.ceil(self.prediction_length / self.patch_size)

    def __call__(self, series: Series, rng: np.random.Generator) -> Sample | None:
        """A group sample: ``context`` [R, L], ``future_target`` [R, H], ``future_covariates`` [R, H]."""
        target = np.asarray(series.target, dtype=np.float32)
        if target.ndim != 2:
            raise ValueError(f"series {series.item_id!r} ({series.dataset}): target must be [V, T], got {target.shape}")
        covs = series.past_feat_dynamic_real
        if covs is not None:
            covs = np.asarray(covs, dtype=np.float32)
            if covs.ndim != 2 or covs.shape[1] != target.shape[1]:
                raise ValueError(
                    f"series {series.item_id!r} ({series.dataset}): past_feat_dynamic_real has shape {covs.shape}, "
                    f"expected [C, {target.shape[1]}] to match the target length"
                )
        length = target.shape[1]
        h = self.prediction_length
        if length < self.min_length:
            return None
        n_t = target.shape[0]
        if n_t == 1 and covs is None and self.fast_univariate:
            return self._univariate(target, length, rng)
        # multivariate targets may be re-cast as known covariates of the remaining targets
        known_t = np.zeros(n_t, dtype=bool)
        if n_t > 1 and self.target_as_covariate_prob > 0:
            known_t = rng.random(n_t) < self.target_as_covariate_prob
            if known_t.all():
                known_t[rng.integers(n_t)] = False
        t_idx = np.flatnonzero(~known_t)
        c_rows = [target[known_t]] if known_t.any() else []
        c_known = [np.ones(int(known_t.sum()), dtype=bool)]
        if covs is not None and len(covs):
            c_rows.append(covs)
            c_known.append(rng.random(len(covs)) < self.known_covariate_prob)
        cov = np.concatenate(c_rows) if c_rows else np.zeros((0, length), np.float32)
        cov_known = np.concatenate(c_known) if c_rows else np.zeros(0, dtype=bool)
        # cap the group size: keep targets first, then a random subset of covariates
        if len(t_idx) > self.max_group_size:
            t_idx = np.sort(rng.choice(t_idx, self.max_group_size, replace=False))
        room = self.max_group_size - len(t_idx)
        if len(cov) > room:
            keep = np.sort(rng.choice(len(cov), room, replace=False))
            cov, cov_known = cov[keep], cov_known[keep]
        # rows: targets, past-only covariates, known-future covariates
        order = np.concatenate([np.flatnonzero(~cov_known), np.flatnonzero(cov_known)])
        cov, cov_known = cov[order], cov_known[order]
        rows = np.concatenate([target[t_idx], cov], axis=0)  # [R, T]
        cut = self._cut(length, rng)
        context = rows[:, max(0, cut - self.context_length) : cut]
        future = rows[:, cut : cut + h]
        if future.shape[1] < h:  # min_future < h: the part past the series end is missing
            future = np.pad(future, ((0, 0), (0, h - future.shape[1])), constant_values=np.nan)
        n_targets = len(t_idx)
        future_target = np.full_like(future, np.nan)
        future_target[:n_targets] = future[:n_targets]
        future_cov = np.full_like(future, np.nan)
        known_rows = n_targets + np.flatnonzero(cov_known)
        future_cov[known_rows] = future[known_rows]
        if np.isnan(future_target[:n_targets]).all() or np.isnan(context[:n_targets]).all():
            return None  # nothing to learn from (all-missing window)
        return {
            "context": context,
            "future_target": future_target,
            "future_covariates": future_cov,
            "n_targets": n_targets,
        }

    def _univariate(self, target: np.ndarray, length: int, rng: np.random.Generator) -> Sample | None:
        """The group of a univariate series without covariates (most of a synthetic corpus): the same sample and
        the same random draws as the general path below, without its group bookkeeping (~3x faster per sample)."""
        h = self.prediction_length
        cut = self._cut(length, rng)
        context = target[:, max(0, cut - self.context_length) : cut].copy()
        if np.isnan(context).all():
            return None
        future_target = np.full((1, h), np.nan, dtype=np.float32)
        observed = target[:, cut : cut + h]
        future_target[:, : observed.shape[1]] = observed
        if np.isnan(future_target).all():
            return None
        return {
            "context": context,
            "future_target": future_target,
            "future_covariates": np.full((1, h), np.nan, dtype=np.float32),
            "n_targets": 1,
        }

    def _cut(self, length: int, rng: np.random.Generator) -> int:
        """Where the context ends. Uniform over the admissible cuts; with ``long_context_prob`` the context is as
        long as possible instead: a full ``context_length`` window (or the whole history of a shorter series)
        before a horizon that is observed wherever the series is long enough."""
        hi = length - self.min_future
        if self.long_context_prob > 0.0 and rng.random() < self.long_context_prob:
            full = length - self.prediction_length if length - self.prediction_length >= self.min_past else hi
            return int(rng.integers(min(max(self.context_length, self.min_past), full), full + 1))
        return int(rng.integers(self.min_past, hi + 1))

    @staticmethod
    def sample_length(sample: Sample) -> int:
        """Context length of a sample: ``collate`` pads a batch to its longest (length grouping)."""
        return int(sample["context"].shape[1])

    def collate(self, samples: list[Sample]) -> Batch:
        """Left-pad contexts to the longest, stack rows, ``group_ids`` = sample index."""
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        rows = sum(s["context"].shape[0] for s in samples)
        length = max(s["context"].shape[1] for s in samples)
        h = self.prediction_length
        ctx = np.full((rows, length), np.nan, dtype=np.float32)
        fut_t = np.empty((rows, h), dtype=np.float32)
        fut_c = np.empty((rows, h), dtype=np.float32)
        gids = np.empty(rows, dtype=np.int64)
        r = 0
        for g, s in enumerate(samples):
            n, t = s["context"].shape
            ctx[r : r + n, length - t :] = s["context"]
            fut_t[r : r + n] = s["future_target"]
            fut_c[r : r + n] = s["future_covariates"]
            gids[r : r + n] = g
            r += n
        return {
            "context": torch.from_numpy(ctx),
            "future_target": torch.from_numpy(fut_t),
            "future_covariates": torch.from_numpy(fut_c),
            "group_ids": torch.from_numpy(gids),
        }
