"""Zero-copy, memory-mapped reading of sub-dataset directories, and a weighted corpus of them.

Opening a sub-dataset maps its Arrow files and precomputes, per item, where its values start
inside the mapped file (plus length, variates, item-id byte range, start and freq code): a
few dozen bytes per item, computed with numpy over the Arrow offset buffers. Reading an item
is then a numpy slice of the mapping, ``flat[start : start + V*T].reshape(V, T)``: no copy,
no per-row dict conversion, no ``datasets`` in the hot path.

Mapped pages that were read count towards the process' resident memory until released;
:meth:`SubDataset.release` hands them back (``madvise(MADV_DONTNEED)``; the kernel keeps them
in its page cache) so sampling from a corpus larger than RAM keeps a bounded footprint.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tsfm.data.format import DataError
from tsfm.data.types import Series

_EPOCH = np.datetime64("1970-01-01", "s")
IO_MODES = ("auto", "mmap", "pread")
PREAD_MAX_VALUES = 1 << 16  # io="auto": items up to this many values are read with one pread


def arrow_files(path: Path) -> list[Path]:
    """The Arrow files of a sub-dataset dir, in ``state.json`` order (else sorted by name)."""
    state = path / "state.json"
    if state.is_file():
        try:
            names = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{state} is not a valid datasets state.json ({exc}); rebuild the sub-dataset"
            ) from exc
        files = [path / n for n in names]
    else:
        files = sorted(path.glob("*.arrow"))
    if not files:
        raise DataError(f"{path} holds no Arrow files; expected a directory written by datasets.save_to_disk")
    for f in files:
        if not f.is_file():
            raise DataError(f"{f} is listed in {state} but missing; re-download or rebuild the sub-dataset")
    return files


class _Parts:
    """Per-batch numpy pieces, concatenated once at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {}

    def add(self, **arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            self.cols.setdefault(k, []).append(v)

    def cat(self, key: str, dtype: type) -> np.ndarray:
        parts = self.cols.get(key, [])
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


class SubDataset:
    """One sub-dataset directory, memory-mapped. ``series(i)`` reads item ``i``.

    ``io`` picks how items are read: ``mmap`` always returns zero-copy views of the mapping;
    ``pread`` copies each item with one ``os.preadv`` (no page fault, no mapped page left behind);
    ``auto`` (default) copies items of up to :data:`PREAD_MAX_VALUES` values and views longer ones.
    """

    def __init__(self, path: str | Path, name: str | None = None, io: str = "auto") -> None:
        if io not in IO_MODES:
            raise ValueError(
                f"io must be 'mmap' (zero-copy views), 'pread' (one read per item) or 'auto' "
                f"(pread up to {PREAD_MAX_VALUES} values, views above), got {io!r}"
            )
        self.io = io
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"sub-dataset directory {self.path} does not exist")
        self.name = name or self.path.name
        self._maps: list[mmap.mmap] = []
        self._float_src: list[np.ndarray] = []  # float32 arrays items are sliced from
        self._files: list[str | None] = []  # per float source: the file it maps (None: in memory)
        self._fds: list[int | None] = []  # opened lazily per process, for io="pread"
        self._pid = -1
        self._byte_src: list[np.ndarray] = []  # uint8 arrays item ids are decoded from
        self._freqs: list[str] = []
        self.has_covariates = False
        self.multivariate = False
        parts = _Parts()
        for file in arrow_files(self.path):
            self._open_file(file, parts)
        self.src = parts.cat("src", np.int32)  # which float source holds the item
        self.start_elem = parts.cat("start", np.int64)  # first value of variate 0 in that source
        self.num_variates = parts.cat("nvar", np.int32)
        self.lengths = parts.cat("len", np.int64)  # T
        self.cov_src = parts.cat("csrc", np.int32)
        self.cov_start = parts.cat("cstart", np.int64)
        self.cov_num = parts.cat("cnum", np.int32)
        self.id_src = parts.cat("isrc", np.int32)
        self.id_start = parts.cat("istart", np.int64)
        self.id_end = parts.cat("iend", np.int64)
        self.starts = parts.cat("ts", "datetime64[s]")
        self.freq_code = parts.cat("freq", np.int32)

    # ------------------------------------------------------------------ opening
    def _source(self, buf: pa.Buffer, base: pa.Buffer, file_src: int, kind: str) -> tuple[int, int]:
        """(source index, element offset) of ``buf``: inside the file mapping when possible."""
        itemsize = 4 if kind == "f" else 1
        rel = buf.address - base.address
        if 0 <= rel and rel + buf.size <= base.size and rel % itemsize == 0:
            return file_src, rel // itemsize
        arr = np.frombuffer(buf, dtype=np.float32 if kind == "f" else np.uint8)
        srcs = self._float_src if kind == "f" else self._byte_src
        srcs.append(arr)
        if kind == "f":
            self._files.append(None)
        return len(srcs) - 1, 0

    def _open_file(self, file: Path, parts: _Parts) -> None:
        try:
            with open(file, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            base = pa.py_buffer(mm)
            batches = list(pa.ipc.open_stream(base))
            for b in batches:
                b.validate()
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise DataError(
                f"corrupted or truncated Arrow file {file}: {exc}; re-download or rebuild this sub-dataset"
            ) from exc
        mm.madvise(mmap.MADV_RANDOM)  # windows are read at random: no read-ahead
        if hasattr(mmap, "MADV_NOHUGEPAGE"):  # a fault must not map a whole 2 MiB page-cache folio
            mm.madvise(mmap.MADV_NOHUGEPAGE)
        self._maps.append(mm)
        fsrc = len(self._float_src)
        self._float_src.append(np.frombuffer(base, dtype=np.float32, count=base.size // 4))
        self._files.append(str(file))
        bsrc = len(self._byte_src)
        self._byte_src.append(np.frombuffer(base, dtype=np.uint8))
        for b in batches:
            try:
                self._add_batch(b, base, fsrc, bsrc, parts)
            except DataError as exc:
                raise DataError(f"{file}: {exc}") from exc

    def _nested(self, arr: pa.Array, base: pa.Buffer, fsrc: int, what: str, ids: pa.Array) -> tuple:
        """Per row (source, start element, count, length) of a list<float> or list<list<float>> column."""
        n = len(arr)
        offs = _offsets(arr)
        child = arr.values
        if pa.types.is_list(child.type) or pa.types.is_large_list(child.type):
            inner = _offsets(child)[offs]  # [n+1] value offsets at each row boundary
            leaf = child.values
            nvar = np.diff(offs)
            lens = np.diff(_offsets(child))
            rows = np.nonzero(nvar > 0)[0]  # rows with >= 1 variate: their first variate index is increasing
            if len(rows):
                used = lens[: offs[-1]]
                lo = np.minimum.reduceat(used, offs[rows])
                hi = np.maximum.reduceat(used, offs[rows])
                bad = np.nonzero(lo != hi)[0]
                if len(bad):
                    j = int(bad[0])
                    raise DataError(
                        f"item {ids[int(rows[j])].as_py()!r}: ragged variates in {what} "
                        f"(lengths {int(lo[j])}..{int(hi[j])}); rebuild with every variate covering the same steps "
                        "(pad with NaN)"
                    )
            length = np.where(nvar > 0, np.diff(inner) // np.maximum(nvar, 1), 0)
        else:
            inner, leaf, nvar, length = offs, child, np.ones(n, np.int64), np.diff(offs)
        if not pa.types.is_float32(leaf.type):
            raise DataError(
                f"{what} values are {leaf.type}, expected float32; rebuild with python -m tsfm.data build"
            )
        if leaf.null_count:  # undefined bytes under nulls: make a NaN-filled copy for this batch
            filled = np.asarray(pc.fill_null(leaf, np.float32("nan")))
            self._float_src.append(filled)
            self._files.append(None)
            src, elem = len(self._float_src) - 1, -leaf.offset
        else:
            src, elem = self._source(leaf.buffers()[1], base, fsrc, "f")
        if arr.null_count:
            length = np.where(np.asarray(arr.is_valid()), length, 0)
        return np.full(n, src), elem + leaf.offset + inner[:-1], nvar, length

    def _add_batch(self, b: pa.RecordBatch, base: pa.Buffer, fsrc: int, bsrc: int, parts: _Parts) -> None:
        names = b.schema.names
        if "target" not in names:
            raise DataError(f"no 'target' column (columns: {names}); this is not a time series sub-dataset")
        n = b.num_rows
        ids = b.column("item_id") if "item_id" in names else pa.array([str(i) for i in range(n)])
        if not pa.types.is_string(ids.type):
            ids = ids.cast(pa.string())
        target = b.column("target")
        src, start, nvar, length = self._nested(target, base, fsrc, "target", ids)
        self.multivariate |= pa.types.is_list(target.type.value_type)
        if "past_feat_dynamic_real" in names:
            self.has_covariates = True
            csrc, cstart, cnum, clen = self._nested(
                b.column("past_feat_dynamic_real"), base, fsrc, "past_feat_dynamic_real", ids
            )
            bad = np.nonzero((cnum > 0) & (clen != length))[0]
            if len(bad):
                i = int(bad[0])
                raise DataError(
                    f"item {ids[i].as_py()!r}: past_feat_dynamic_real has {int(clen[i])} steps, target {int(length[i])}"
                )
        else:
            csrc, cstart, cnum = np.full(n, -1), np.zeros(n, np.int64), np.zeros(n, np.int32)
        isrc, ioff = self._source(ids.buffers()[2] or pa.py_buffer(b""), base, bsrc, "b")
        io = _offsets(ids)
        if "start" in names:
            ts = np.asarray(
                b.column("start").cast(pa.timestamp("s"), safe=False).to_numpy(zero_copy_only=False),
                "datetime64[s]",
            )
        else:
            ts = np.full(n, _EPOCH)
        if "freq" in names:
            enc = pc.dictionary_encode(b.column("freq").fill_null(""))
            table = {f: self._freq_index(f) for f in enc.dictionary.to_pylist()}
            lut = np.array([table[f] for f in enc.dictionary.to_pylist()] or [0], np.int32)
            codes = lut[np.asarray(enc.indices)]
        else:
            codes = np.full(n, self._freq_index(""), np.int32)
        parts.add(
            src=src,
            start=start,
            nvar=nvar,
            len=length,
            csrc=csrc,
            cstart=cstart,
            cnum=cnum,
            isrc=np.full(n, isrc),
            istart=ioff + io[:-1],
            iend=ioff + io[1:],
            ts=ts,
            freq=codes,
        )

    def _freq_index(self, freq: str) -> int:
        if freq not in self._freqs:
            self._freqs.append(freq)
        return self._freqs.index(freq)

    def __getstate__(self) -> dict:  # mappings do not pickle: a spawned worker re-opens the files
        return {"path": self.path, "name": self.name, "io": self.io}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["name"], state.get("io", "auto"))  # type: ignore[misc]

    def _file_fds(self) -> list[int | None]:
        if self._pid != os.getpid():  # one set of descriptors per process (forked workers too)
            self._pid = os.getpid()
            self._fds = [os.open(f, os.O_RDONLY) if f else None for f in self._files]
        return self._fds

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_observations(self) -> int:
        """Stored values (variates x steps) over all items, NaN included."""
        return int((self.lengths * self.num_variates).sum())

    @property
    def freqs(self) -> list[str]:
        return list(self._freqs)

    def series(self, i: int) -> Series:
        return self.series_many(np.array([i]))[0]

    def series_many(self, rows: np.ndarray) -> list[Series]:
        """Zero-copy :class:`Series` views of ``rows`` (attributes gathered with numpy first)."""
        cols = (
            self.src[rows].tolist(),
            self.start_elem[rows].tolist(),
            self.num_variates[rows].tolist(),
            self.lengths[rows].tolist(),
            self.id_src[rows].tolist(),
            self.id_start[rows].tolist(),
            self.id_end[rows].tolist(),
            self.freq_code[rows].tolist(),
            self.starts[rows],
        )
        cov = self.cov_num[rows].tolist() if self.has_covariates else None
        fl, by, freqs, name = self._float_src, self._byte_src, self._freqs, self.name
        fds = self._file_fds() if self.io != "mmap" else None
        limit = PREAD_MAX_VALUES if self.io == "auto" else 1 << 62
        out = []
        for k, (s, e, v, t, isr, i0, i1, fc) in enumerate(zip(*cols[:8])):
            if fds is not None and fds[s] is not None and v * t <= limit:  # a copy: no page fault
                target = np.empty((v, t), np.float32)
                os.preadv(fds[s], [target], e * 4)
            else:
                target = fl[s][e : e + v * t].reshape(v, t)
            pf = None
            if cov is not None and cov[k] > 0:
                r = int(rows[k])
                c0 = int(self.cov_start[r])
                pf = fl[int(self.cov_src[r])][c0 : c0 + cov[k] * t].reshape(cov[k], t)
            item = by[isr][i0:i1].tobytes().decode()
            out.append(Series(target, freqs[fc], item, name, cols[8][k], pf))
        return out

    def release(self) -> None:
        """Drop mapped pages from this process' resident set (they stay in the page cache)."""
        for mm in self._maps:
            mm.madvise(mmap.MADV_DONTNEED)


def _offsets(arr: pa.Array) -> np.ndarray:
    """The ``len + 1`` offsets of a list/string array as int64 (zero-copy read of the buffer)."""
    large = pa.types.is_large_list(arr.type) or pa.types.is_large_string(arr.type)
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
    return raw[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)


@dataclass
class Corpus:
    """Sub-datasets with user weights (multipliers on the sampling probability)."""

    datasets: list[SubDataset]
    weights: list[float]

    @classmethod
    def open(
        cls, paths: Sequence[str | Path], weights: Sequence[float] | None = None, io: str = "auto"
    ) -> Corpus:
        subs = [SubDataset(p, io=io) for p in paths]
        return cls(subs, list(weights) if weights is not None else [1.0] * len(subs))

    @classmethod
    def from_lotsa_root(cls, root: str | Path, names: Sequence[str] | None = None) -> Corpus:
        """Every sub-dataset folder under a ``lotsa_data``-style root (or only ``names``)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"LOTSA root {root.resolve()} does not exist; download Salesforce/lotsa_data there "
                "(huggingface-cli download Salesforce/lotsa_data --repo-type dataset --local-dir ...) "
                "or point the corpus entry at your copy (Hydra: data.corpus.0.lotsa_root=<dir>)"
            )
        dirs = (
            [root / n for n in names]
            if names
            else sorted(p for p in root.iterdir() if (p / "state.json").is_file())
        )
        if not dirs:
            raise DataError(f"no sub-dataset folders (with state.json) under {root.resolve()}")
        return cls.open(dirs)

    def probabilities(
        self,
        weighting: str = "observations",
        epsilon: float | None = None,
        eligible_obs: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Sub-dataset sampling probabilities.

        ``observations``: proportional to observations, each share capped at ``epsilon`` and
        renormalised (Moirai: epsilon = 0.001), times the user weight. ``explicit``: the user
        weights alone.
        """
        w = np.asarray(self.weights, np.float64)
        if weighting == "observations":
            obs = np.asarray(
                eligible_obs if eligible_obs is not None else [d.num_observations for d in self.datasets],
                np.float64,
            )
            share = obs / max(obs.sum(), 1.0)
            if epsilon is not None:
                share = np.minimum(share, epsilon)
            w = w * share
        elif weighting != "explicit":
            raise ValueError(f"weighting must be 'observations' or 'explicit', got {weighting!r}")
        if not (w > 0).any():
            raise DataError("every sub-dataset has zero sampling weight (no usable series, or all weights 0)")
        return w / w.sum()

    def release(self) -> None:
        for d in self.datasets:
            d.release()
