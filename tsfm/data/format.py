"""The on-disk format: LOTSA-style sub-dataset directories, validated and written atomically.

A sub-dataset is a directory written by ``datasets.Dataset.save_to_disk`` (Arrow IPC stream
files + ``dataset_info.json`` + ``state.json``), so ``datasets.load_from_disk`` opens it and a
downloaded Salesforce ``lotsa_data`` folder reads unchanged. Columns:

* ``item_id`` string, ``start`` timestamp[s], ``freq`` string
* ``target`` list<float32> (univariate) or list<list<float32>> (multivariate, variate-major)
* optional ``past_feat_dynamic_real`` list<list<float32>> (``[C, T]`` per item)

Validation follows one rule: data that cannot be right (±inf, non-numbers, unknown frequency,
ragged variates) is an error naming the item and what to change; data that is merely unusable
(empty, all-missing or too short) is skipped and counted in a :class:`BuildReport`. NaN means
missing and is kept.
"""

from __future__ import annotations

import logging
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tsfm.data.types import Series

log = logging.getLogger(__name__)

MAX_REPORTED_ITEMS = 20  # item ids listed per skip reason in a report


class DataError(ValueError):
    """Bad input data: the message names the item or file and says what to change."""


def normalize_freq(freq: str, where: str = "") -> str:
    """Return pandas' canonical spelling of ``freq`` (``"H"`` -> ``"h"``); error if unknown."""
    if not isinstance(freq, str) or not freq.strip():
        raise DataError(
            f"{where}missing frequency {freq!r}; pass a pandas offset alias such as 'h', 'D', 'W', 'MS'"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns on old aliases ("H", "T"); we accept them
            offset = pd.tseries.frequencies.to_offset(freq.strip())
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{where}unknown frequency {freq!r}; use a pandas offset alias such as "
            "'min', '30min', 'h', 'D', 'W-SUN', 'MS', 'QS', 'YS'"
        ) from exc
    if offset.n <= 0:
        raise DataError(f"{where}frequency {freq!r} is not a positive step; use e.g. '1D' or '15min'")
    return offset.freqstr


def as_target(values: object, item: str, name: str = "target") -> np.ndarray:
    """Convert one item's values to a float32 array ``[V, T]`` (1-D input becomes ``V = 1``).

    Raises :class:`DataError` for non-numeric values, ±inf and ragged variates (variates of
    different lengths cannot form one ``[V, T]`` item).
    """
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1 and len(values):
        if isinstance(values[0], (np.ndarray, list, tuple)):
            values = list(values)  # variates of a multivariate item, possibly ragged
    if isinstance(values, np.ndarray):
        arr = values
    else:
        seq = list(values)  # type: ignore[call-overload]
        if seq and all(isinstance(v, (list, tuple, np.ndarray)) for v in seq):
            lengths = sorted({len(v) for v in seq})
            if len(lengths) > 1:
                raise DataError(
                    f"item {item!r}: ragged variates in {name} (lengths {lengths}); every variate of a "
                    "multivariate item must cover the same time steps - pad the short ones with NaN"
                )
        arr = np.asarray(seq)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"item {item!r}: {name} has non-numeric values ({exc}); convert the column to numbers "
                "(e.g. pandas.to_numeric(..., errors='coerce') turns bad entries into NaN = missing)"
            ) from exc
    if arr.dtype.kind not in "fiu":
        raise DataError(
            f"item {item!r}: {name} has dtype {arr.dtype}; expected numbers (float32). Convert it "
            "with pandas.to_numeric or numpy .astype('float32')"
        )
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DataError(f"item {item!r}: {name} must be 1-D [T] or 2-D [V, T], got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.isinf(arr)
    if bad.any():
        v, t = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(
            f"item {item!r}: {name} contains ±inf (variate {v}, step {t}); replace it with NaN "
            "(missing) or a finite value"
        )
    return arr


@dataclass
class BuildReport:
    """What a build wrote and what it skipped (never a silent drop)."""

    path: str = ""
    num_series: int = 0
    num_observations: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_items: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)  # written, but worth knowing (e.g. duplicate ids)
    noted_items: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, item: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        items = self.skipped_items.setdefault(reason, [])
        if len(items) < MAX_REPORTED_ITEMS:
            items.append(item)

    def note(self, what: str, item: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1
        items = self.noted_items.setdefault(what, [])
        if len(items) < MAX_REPORTED_ITEMS:
            items.append(item)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def __str__(self) -> str:
        lines = [f"wrote {self.num_series} series ({self.num_observations} observations) to {self.path}"]
        for reason, n in sorted(self.skipped.items()):
            shown = ", ".join(self.skipped_items.get(reason, []))
            more = " ..." if n > len(self.skipped_items.get(reason, [])) else ""
            lines.append(f"skipped {n} series ({reason}): {shown}{more}")
        if not self.skipped:
            lines.append("skipped 0 series")
        for what, n in sorted(self.notes.items()):
            shown = ", ".join(self.noted_items.get(what, []))
            more = " ..." if n > len(self.noted_items.get(what, [])) else ""
            lines.append(f"note: {n} series {what}: {shown}{more}")
        return "\n".join(lines)


def _features(multivariate: bool, covariates: bool) -> dict:
    import datasets

    seq = datasets.Sequence
    value = datasets.Value("float32")
    feats = {
        "item_id": datasets.Value("string"),
        "start": datasets.Value("timestamp[s]"),
        "freq": datasets.Value("string"),
        "target": seq(seq(value)) if multivariate else seq(value),
    }
    if covariates:
        feats["past_feat_dynamic_real"] = seq(seq(value))
    return datasets.Features(feats)


def _list_array(arrays: Sequence[np.ndarray], nested: bool) -> pa.Array:
    """Arrow list<float32> of 1-D arrays, or list<list<float32>> of 2-D [V, T] arrays (no per-value Python)."""
    if nested:
        inner = _list_array([row for a in arrays for row in a], nested=False)
        outer = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays], dtype=np.int64)])
        return pa.ListArray.from_arrays(pa.array(outer.astype(np.int32)), inner)
    lengths = np.array([a.shape[-1] for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] >= 2**31:
        raise DataError("a write chunk holds more than 2^31 values; lower chunk_rows")
    values = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, pa.float32()))


def series_table(series: Sequence[Series], multivariate: bool, covariates: bool) -> pa.Table:
    """One Arrow table in the format's schema (series must already be validated)."""
    targets = [s.target for s in series] if multivariate else [s.target[0] for s in series]
    starts = [s.start if s.start is not None else np.datetime64("1970-01-01") for s in series]
    cols = {
        "item_id": pa.array([s.item_id for s in series], pa.string()),
        "start": pa.array(np.array(starts, dtype="datetime64[s]"), pa.timestamp("s")),
        "freq": pa.array([s.freq for s in series], pa.string()),
        "target": _list_array(targets, nested=multivariate),
    }
    if covariates:
        cols["past_feat_dynamic_real"] = _list_array([s.past_feat_dynamic_real for s in series], nested=True)
    return pa.table(cols)


def write_table(table: pa.Table, out: str | Path, *, overwrite: bool = False) -> None:
    """Write an Arrow table already in the format's schema (vectorised builders, benchmarks) as a
    sub-dataset directory, atomically. Values are checked for ±inf; rows are not validated one by one."""
    import datasets
    import pyarrow.compute as pc

    out = Path(out)
    if "target" not in table.column_names:
        raise DataError(f"table has no 'target' column (columns: {table.column_names})")
    leaf = table.column("target").combine_chunks().flatten()
    while pa.types.is_list(leaf.type):
        leaf = leaf.flatten()
    if not pa.types.is_float32(leaf.type):
        raise DataError(f"target values are {leaf.type}; cast them to float32")
    if pc.any(pc.is_inf(leaf)).as_py():
        raise DataError("target contains ±inf; replace it with NaN (missing) or a finite value")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True or choose another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    progress = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        datasets.Dataset(table).save_to_disk(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            datasets.utils.logging.enable_progress_bar()


def _validate(s: Series, idx: int, min_length: int, report: BuildReport) -> Series | None:
    item = s.item_id or f"#{idx}"
    target = as_target(s.target, item)
    freq = normalize_freq(s.freq, where=f"item {item!r}: ")
    if target.shape[1] == 0 or not np.isfinite(target).any():
        report.skip("empty or all-missing", item)
        return None
    if target.shape[1] < min_length:
        report.skip(f"shorter than {min_length}", item)
        return None
    pfdr = s.past_feat_dynamic_real
    if pfdr is not None:
        pfdr = as_target(pfdr, item, name="past_feat_dynamic_real")
        if pfdr.shape[1] != target.shape[1]:
            raise DataError(
                f"item {item!r}: past_feat_dynamic_real has {pfdr.shape[1]} steps but target has "
                f"{target.shape[1]}; covariates must cover exactly the target's time steps"
            )
    return Series(target, freq, s.item_id or str(idx), s.dataset, s.start, pfdr)


def write_dataset(
    series: Iterable[Series],
    out: str | Path,
    *,
    min_length: int = 1,
    multivariate: bool | None = None,
    overwrite: bool = False,
    chunk_rows: int = 200_000,
    finalize: Callable[[Path], None] | None = None,
) -> BuildReport:
    """Validate ``series`` and write them as one sub-dataset directory ``out``, atomically.

    The data goes to a hidden temporary sibling directory that is renamed to ``out`` only when
    everything succeeded, so a failed build leaves nothing behind. ``multivariate=None``
    infers the schema from the first series (``V > 1`` -> list<list<float32>>). Series are
    buffered ``chunk_rows`` at a time, so memory stays bounded for large builds. ``finalize`` is
    called with the finished temporary directory before the rename (e.g. to add a manifest,
    :func:`tsfm.data.manifest.manifest_writer`), so it is part of the atomic write.
    """
    import datasets

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    report = BuildReport(path=str(out))
    covariates: bool | None = None
    chunks: list[Path] = []
    buf: list[Series] = []
    seen_ids: set[str] = set()

    def flush() -> None:
        if not buf:
            return
        table = series_table(buf, bool(multivariate), bool(covariates))
        path = tmp / f"chunk-{len(chunks):05d}"
        datasets.Dataset(
            table, info=datasets.DatasetInfo(features=_features(bool(multivariate), bool(covariates)))
        ).save_to_disk(str(path))
        chunks.append(path)
        buf.clear()

    progress = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        tmp.mkdir()
        for idx, raw in enumerate(series):
            s = _validate(raw, idx, min_length, report)
            if s is None:
                continue
            if multivariate is None:
                multivariate = s.num_variates > 1
            if covariates is None:
                covariates = s.past_feat_dynamic_real is not None
            if s.num_variates > 1 and not multivariate:
                raise DataError(
                    f"item {s.item_id!r} has {s.num_variates} variates but the dataset is univariate; "
                    "build it with multivariate=True (CLI: --multivariate)"
                )
            if (s.past_feat_dynamic_real is not None) != covariates:
                raise DataError(
                    f"item {s.item_id!r}: past_feat_dynamic_real is given for some items but not others; "
                    "give covariates for every item or for none"
                )
            if s.start is None:
                report.note("have no start timestamp (written as 1970-01-01)", s.item_id)
            if s.item_id in seen_ids:
                report.note("repeat an item id already written (kept: ids need not be unique)", s.item_id)
            seen_ids.add(s.item_id)
            buf.append(s)
            report.num_series += 1
            report.num_observations += int(np.isfinite(s.target).sum())
            if len(buf) >= chunk_rows:
                flush()
        if multivariate is None:
            multivariate = False
        flush()
        final = tmp / "final"
        if not chunks:  # an empty Arrow dataset cannot be reopened: say why nothing was written
            why = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "the input had no series"
            raise DataError(
                f"{out}: no series to write ({why}); nothing was written. Check the input, or lower "
                "min_length (CLI: --min-length)"
            )
        if len(chunks) == 1:
            chunks[0].rename(final)
        else:
            parts = [datasets.load_from_disk(str(c)) for c in chunks]
            datasets.concatenate_datasets(parts).save_to_disk(str(final))
        if finalize is not None:
            finalize(final)
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            datasets.utils.logging.enable_progress_bar()
    log.info("%s", report)
    return report
