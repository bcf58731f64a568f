"""Moirai pretraining task: random windows, masked prediction, any-variate concatenation, packing.

``__call__(series, rng)`` (one per series handed out by the data layer) draws everything random
about a sample, using ``rng`` only: variate subsampling (uniform count, random subset, target
and past covariates alike), a patch size allowed for the frequency, a crop of <= ``max_seq_len``
tokens over all variates with >= ``min_time_patches`` patches each, the horizon fraction
U(0.15, 0.5) and a beta-binomial(128, 2, 5) group size.

**Concatenation of univariate series (design choice).** The sampler hands one series per call,
so merging happens in ``collate``: a univariate series (no covariates) yields a *deferred* sample
(a view of the series plus its random draws); in ``collate`` such samples of the same sub-dataset
and patch size are grouped, the first member's beta-binomial draw ``k`` sets the group size
(bounded by what the batch holds), and the window length is drawn for the stacked group so that
``k * n <= max_seq_len`` (see :meth:`_concat`). All randomness was drawn in ``__call__``, so a
batch is a pure function of its samples (exact resume). With few samples per batch most series of
a sub-dataset end up in one group: give Moirai batches of hundreds of samples.

``collate`` then applies masked prediction (last ``round(n * ratio)`` patches of every target
variate; covariates keep only their context part), patchifies (width = the batch's largest patch
size, not 128) and packs samples first-fit-decreasing into rows of ``max_seq_len`` tokens. Only the
last row of a batch is usually part-filled, so padding falls with the rows per batch (~0.2% at the
paper's 256 rows). Variate
ids are 0..V-1 in order: the model only uses their equality, so the reference's random relabelling
changes nothing. Counters in ``self.stats`` (per process) report skips, rows and padding.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch

from tsfm.data.types import Series
from tsfm.models.moirai.config import allowed_patch_sizes, check_patch_size


class MoiraiTask:
    """TaskBuilder for Moirai pretraining/fine-tuning (see module docstring)."""

    def __init__(
        self,
        patch_sizes: tuple[int, ...] | list[int] = (8, 16, 32, 64, 128),
        max_seq_len: int = 512,
        min_time_patches: int = 2,
        mask_ratio: tuple[float, float] | list[float] = (0.15, 0.5),
        max_dim: int = 128,
        concat_univariate: bool = False,
        concat_max: int = 128,
        concat_beta: tuple[float, float] | list[float] = (2.0, 5.0),
        patch_size: int | None = None,
    ) -> None:
        self.patch_sizes = tuple(int(p) for p in patch_sizes)
        self.max_seq_len, self.min_time_patches = int(max_seq_len), int(min_time_patches)
        self.mask_ratio = (float(mask_ratio[0]), float(mask_ratio[1]))
        if not 0.0 < self.mask_ratio[0] <= self.mask_ratio[1] < 1.0:
            raise ValueError(f"mask_ratio must satisfy 0 < low <= high < 1, got {self.mask_ratio}")
        if self.min_time_patches < 2 or self.min_time_patches > self.max_seq_len:
            raise ValueError(f"min_time_patches must be in [2, max_seq_len], got {self.min_time_patches}")
        self.max_dim, self.concat_univariate, self.concat_max = int(max_dim), bool(concat_univariate), int(concat_max)
        self.concat_beta = (float(concat_beta[0]), float(concat_beta[1]))
        if patch_size is not None and int(patch_size) not in self.patch_sizes:
            raise ValueError(f"patch_size={patch_size} is not one of the model's patch sizes {list(self.patch_sizes)}")
        self.patch_size = None if patch_size is None else int(patch_size)
        self.min_length = self.min_time_patches * (self.patch_size or min(self.patch_sizes))
        self.stats: Counter[str] = Counter()
        self._allowed: dict[str, list[int]] = {}

    def allowed(self, freq: str) -> list[int]:
        """Patch sizes usable for ``freq`` (cached); a fixed ``patch_size`` is validated against it."""
        if freq not in self._allowed:
            allowed = allowed_patch_sizes(freq, self.patch_sizes)
            if self.patch_size is not None:
                allowed = [check_patch_size(self.patch_size, freq, self.patch_sizes)]
            if not allowed:
                raise ValueError(f"freq {freq!r}: none of the patch sizes {list(self.patch_sizes)} is allowed")
            self._allowed[freq] = allowed
        return self._allowed[freq]

    # -- one series -> one sample -----------------------------------------------------------
    def __call__(self, series: Series, rng: np.random.Generator) -> dict[str, Any] | None:
        self.stats["series"] += 1
        target, cov = series.target, series.past_feat_dynamic_real
        v, t = target.shape
        c = 0 if cov is None else cov.shape[0]
        cands = [p for p in self.allowed(series.freq) if p * self.min_time_patches <= t]
        if not cands:
            self.stats["skipped_short"] += 1
            return None
        common = {
            "ratio": float(rng.uniform(*self.mask_ratio)),
            "k": int(rng.binomial(self.concat_max - 1, rng.beta(*self.concat_beta))) + 1,
            "dataset": series.dataset,
        }
        if self.concat_univariate and v == 1 and c == 0:
            # concatenation candidate: the window is cut in collate, once the group size is known
            p = cands[int(rng.integers(len(cands)))]
            self.stats["samples"] += 1
            return {"full": target[0], "patch_size": p, "offset": int(rng.integers(t % p + 1)),
                    "u_len": float(rng.random()), "u_start": float(rng.random()), "cov": None, **common}
        # variate subsampling: each field keeps a uniform number of its variates, in random order
        total = v + c
        nv = int(rng.integers(1, max(1, min(v, self.max_dim * v // total)) + 1))
        t_idx = rng.permutation(v)[:nv] if nv < v else None
        nc = 0
        if c:
            nc = int(rng.integers(1, max(1, min(c, self.max_dim * c // total)) + 1))
        p = cands[int(rng.integers(len(cands)))]
        offset = int(rng.integers(t % p + 1))
        avail = (t - offset) // p
        max_patches = min(self.max_seq_len // (nv + nc), avail)
        if max_patches < self.min_time_patches:
            self.stats["skipped_short"] += 1
            return None
        n = int(rng.integers(self.min_time_patches, max_patches + 1))
        start = offset + int(rng.integers(avail - n + 1)) * p
        stop = start + n * p
        window = target[:, start:stop] if t_idx is None else target[t_idx, start:stop]
        sample = {
            "target": window,  # [nv, n*p] (view; copied at collate)
            "cov": None if not nc else cov[rng.permutation(c)[:nc], start:stop],
            "patch_size": p,
            **common,
        }
        self.stats["samples"] += 1
        return sample

    # -- samples -> packed batch ------------------------------------------------------------
    def _concat(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Cut the windows of univariate candidates, merging groups of one (dataset, patch size).

        A group of ``k`` members (the first member's beta-binomial draw, bounded by what the batch
        holds) shares ``n`` patches: ``n ~ U[min_time_patches, cap]`` with ``cap = min(max_seq_len // k,
        shortest member)``, from the first member's uniform draw; each member places its window
        with its own draw. This is the reference's crop applied to the stacked series.
        """
        out, groups = [], defaultdict(list)
        for s in samples:
            if "full" in s:
                groups[(s["dataset"], s["patch_size"])].append(s)
            else:
                out.append(s)
        lo = self.min_time_patches
        for (_, p), members in groups.items():
            i = 0
            while i < len(members):
                first = members[i]
                k = min(first["k"], len(members) - i)
                part = members[i : i + k]
                i += k
                avail = [(m["full"].shape[0] - m["offset"]) // p for m in part]
                cap = min(self.max_seq_len // k, min(avail))
                n = lo + int(first["u_len"] * (cap - lo + 1))
                starts = [m["offset"] + int(m["u_start"] * (a - n + 1)) * p for m, a in zip(part, avail)]
                merged = np.stack([m["full"][s0 : s0 + n * p] for m, s0 in zip(part, starts)])  # [k, n*p]
                out.append({"target": merged, "cov": None, "patch_size": p, "ratio": first["ratio"]})
                if k > 1:
                    self.stats["concatenated"] += k
        return out

    def collate(self, samples: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
        samples = self._concat([s for s in samples if s is not None])  # cuts the candidates' windows
        if not samples:
            raise ValueError("MoiraiTask.collate got no samples (every series was skipped as too short)")
        # masked prediction: horizon patches and token count of each sample
        lengths, n_pred = [], []
        for s in samples:
            n = s["target"].shape[1] // s["patch_size"]
            m = min(max(1, round(n * s["ratio"])), n - 1)  # >= 1 context patch
            n_pred.append(m)
            nc = 0 if s["cov"] is None else s["cov"].shape[0]
            lengths.append(s["target"].shape[0] * n + nc * (n - m))
        rows, offsets = _first_fit_decreasing(np.asarray(lengths), self.max_seq_len)
        n_rows, width, length = int(rows.max()) + 1, max(s["patch_size"] for s in samples), self.max_seq_len
        target = np.full((n_rows, length, width), np.nan, np.float32)
        arrays = {k: np.zeros((n_rows, length), np.int64) for k in ("sample_id", "time_id", "variate_id", "patch_size", "series_id")}
        pred = np.zeros((n_rows, length), bool)
        next_sid = np.zeros(n_rows, np.int64)
        next_series = np.zeros(n_rows, np.int64)  # per-row (sample, variate) ids, < max_seq_len
        for s, r, o, m in zip(samples, rows, offsets, n_pred):
            p, tgt = s["patch_size"], s["target"]
            v, n = tgt.shape[0], tgt.shape[1] // p
            nc = 0 if s["cov"] is None else s["cov"].shape[0]
            next_sid[r] += 1
            stop = o + v * n
            target[r, o:stop, :p] = tgt.reshape(v * n, p)
            arrays["time_id"][r, o:stop] = np.tile(np.arange(n), v)
            arrays["variate_id"][r, o:stop] = np.repeat(np.arange(v), n)
            pred[r, o:stop] = np.tile(np.arange(n) >= n - m, v)
            if nc:
                nctx = n - m
                cstop = stop + nc * nctx
                target[r, stop:cstop, :p] = s["cov"][:, : nctx * p].reshape(nc * nctx, p)
                arrays["time_id"][r, stop:cstop] = np.tile(np.arange(nctx), nc)
                arrays["variate_id"][r, stop:cstop] = np.repeat(np.arange(v, v + nc), nctx)
                stop = cstop
            arrays["sample_id"][r, o:stop] = next_sid[r]
            arrays["patch_size"][r, o:stop] = p
            arrays["series_id"][r, o:stop] = next_series[r] + arrays["variate_id"][r, o:stop]
            next_series[r] += v + nc
        used = np.bincount(rows, weights=np.asarray(lengths), minlength=n_rows)
        pad = arrays["sample_id"] == 0  # trailing padding tokens: one more group per row
        arrays["series_id"][pad] = np.broadcast_to(next_series[:, None], pad.shape)[pad]
        observed = ~np.isnan(target)
        np.nan_to_num(target, copy=False)
        self.stats["rows"] += n_rows
        self.stats["tokens"] += n_rows * length
        self.stats["padding_tokens"] += int(n_rows * length - used.sum())
        batch = {"target": torch.from_numpy(target), "observed_mask": torch.from_numpy(observed),
                 "prediction_mask": torch.from_numpy(pred)}
        batch.update({k: torch.from_numpy(a) for k, a in arrays.items()})
        return batch

    @property
    def padding_fraction(self) -> float:
        return self.stats["padding_tokens"] / max(1, self.stats["tokens"])


def _first_fit_decreasing(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and token offset of each item, packing longest first into the first row with room."""
    order = np.argsort(-lengths, kind="stable")
    room = np.full(len(lengths), capacity, np.int64)  # at most one row per item
    rows, offsets = np.empty(len(lengths), np.int64), np.empty(len(lengths), np.int64)
    n_open = 0
    for i in order:
        fit = np.flatnonzero(room[:n_open] >= lengths[i])
        r = int(fit[0]) if fit.size else n_open
        n_open = max(n_open, r + 1)
        rows[i], offsets[i] = r, capacity - room[r]
        room[r] -= lengths[i]
    return rows, offsets
