"""Turn common inputs into :class:`Series` ready for :func:`tsfm.data.format.write_dataset`.

Sources: pandas long frames (one row per item and time step) and wide frames (one column per
item), CSV/Parquet files of either layout, a Hugging Face ``datasets.Dataset``, a GluonTS
dataset (any iterable of GluonTS entries) and an existing LOTSA-style sub-dataset directory.

Timestamps must be strictly increasing within an item (unsorted or duplicate stamps are an
error naming the item, never silently re-ordered). Gaps on the frequency grid become NaN
(missing); stamps off the grid are an error. The frequency is given or inferred per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data.format import DataError, as_target, normalize_freq
from tsfm.data.types import Series


def _timestamps(values: Any, item: str) -> pd.DatetimeIndex:
    try:
        ts = pd.DatetimeIndex(pd.to_datetime(values))
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"item {item!r}: timestamps could not be parsed ({exc}); give ISO dates or datetime values"
        ) from exc
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if ts.hasnans:
        raise DataError(f"item {item!r}: missing timestamps (NaT); every row needs a timestamp")
    return ts


def regularize(
    ts: pd.DatetimeIndex, values: np.ndarray, freq: str | None, item: str
) -> tuple[np.datetime64, np.ndarray, str]:
    """Check stamps and put ``values`` [V, T] on the regular ``freq`` grid (gaps -> NaN)."""
    if len(ts) != values.shape[-1]:
        raise DataError(f"item {item!r}: {len(ts)} timestamps for {values.shape[-1]} values")
    if len(ts) == 0:
        return np.datetime64("1970-01-01", "s"), values, normalize_freq(freq or "D", f"item {item!r}: ")
    step = np.diff(ts.asi8)
    if (step == 0).any():
        i = int(np.nonzero(step == 0)[0][0])
        raise DataError(f"item {item!r}: duplicate timestamp {ts[i]}; aggregate or drop duplicate rows first")
    if (step < 0).any():
        i = int(np.nonzero(step < 0)[0][0])
        raise DataError(
            f"item {item!r}: timestamps are not increasing ({ts[i]} then {ts[i + 1]}); sort the rows by time first"
        )
    if freq is None:
        freq = pd.infer_freq(ts) if len(ts) >= 3 else None
        if freq is None:
            raise DataError(
                f"item {item!r}: cannot infer the frequency from its timestamps; pass freq (CLI: --freq)"
            )
    freq = normalize_freq(freq, f"item {item!r}: ")
    grid = pd.date_range(ts[0], ts[-1], freq=freq)
    if len(grid) != len(ts) or not (grid == ts).all():
        pos = grid.get_indexer(ts)
        if (pos < 0).any():
            bad = ts[int(np.nonzero(pos < 0)[0][0])]
            raise DataError(
                f"item {item!r}: timestamp {bad} is not on the {freq!r} grid starting at {ts[0]}; "
                "resample the data or pass the right freq"
            )
        full = np.full((values.shape[0], len(grid)), np.nan, np.float32)
        full[:, pos] = values
        values = full
    return np.datetime64(ts[0].to_datetime64(), "s"), values, freq


def from_long_frame(
    df: pd.DataFrame,
    *,
    id_col: str | None = "item_id",
    timestamp_col: str = "timestamp",
    target_cols: str | Sequence[str] = "target",
    covariate_cols: Sequence[str] = (),
    freq: str | None = None,
    dataset: str = "",
) -> list[Series]:
    """One item per ``id_col`` value (``None``: the whole frame is one item); ``target_cols`` as a
    list makes multivariate items ``[V, T]``; ``covariate_cols`` become ``past_feat_dynamic_real``."""
    targets = [target_cols] if isinstance(target_cols, str) else list(target_cols)
    needed = [c for c in [id_col, timestamp_col, *targets, *covariate_cols] if c is not None]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"columns {missing} not in the frame (columns: {list(df.columns)}); pass the right names"
        )
    if id_col is not None and df[id_col].isna().any():
        rows = np.flatnonzero(df[id_col].isna().to_numpy())
        raise DataError(
            f"{len(rows)} row(s) have no {id_col!r} (first at row {int(rows[0])}); give every row an id "
            "(or drop those rows) so no data is lost silently"
        )
    groups = df.groupby(id_col, sort=False) if id_col is not None else [(dataset or "0", df)]
    out = []
    for key, g in groups:
        item = str(key[0] if isinstance(key, tuple) else key)
        ts = _timestamps(g[timestamp_col], item)
        y = as_target(g[targets].to_numpy().T, item)
        rows = [y]
        if covariate_cols:
            rows.append(as_target(g[list(covariate_cols)].to_numpy().T, item, "past_feat_dynamic_real"))
        start, full, f = regularize(ts, np.concatenate(rows), freq, item)
        cov = full[len(targets) :] if covariate_cols else None
        out.append(Series(full[: len(targets)], f, item, dataset, start, cov))
    return out


def from_wide_frame(
    df: pd.DataFrame, *, timestamp_col: str | None = None, freq: str | None = None, dataset: str = ""
) -> list[Series]:
    """One univariate item per column; timestamps from ``timestamp_col`` or the index."""
    if timestamp_col is not None:
        if timestamp_col not in df.columns:
            raise DataError(
                f"timestamp column {timestamp_col!r} not in the frame (columns: {list(df.columns)})"
            )
        df = df.set_index(timestamp_col)
    ts = _timestamps(df.index, f"{dataset or 'frame'} index")
    out = []
    for col in df.columns:
        item = str(col)
        start, y, f = regularize(ts, as_target(df[col].to_numpy(), item), freq, item)
        out.append(Series(y, f, item, dataset, start))
    return out


def read_table(path: str | Path, id_col: str | None = "item_id") -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (by suffix). A CSV's ``id_col`` is read as text, so
    ids such as ``001`` and ``01`` stay distinct."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".gz", ".txt"):
        try:
            return pd.read_csv(path, dtype={id_col: str} if id_col else None)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty (no header, no rows)") from None
    raise DataError(f"{path}: unknown file type {path.suffix!r}; give a .csv or .parquet file")


def from_file(path: str | Path, *, layout: str = "long", **kwargs: Any) -> list[Series]:
    """CSV/Parquet in ``long`` (see :func:`from_long_frame`) or ``wide`` layout."""
    df = read_table(path, kwargs.get("id_col", "item_id") if layout == "long" else None)
    kwargs.setdefault("dataset", Path(path).stem)
    if layout == "long":
        return from_long_frame(df, **kwargs)
    if layout == "wide":
        return from_wide_frame(df, **kwargs)
    raise DataError(f"layout must be 'long' or 'wide', got {layout!r}")


def _start(value: Any) -> np.datetime64:
    if isinstance(value, pd.Period):
        value = value.start_time
    if isinstance(value, np.ndarray) and value.ndim == 0:  # datasets' numpy format: 0-d datetime64 / str
        value = value.item() if value.dtype.kind != "M" else value[()]
    if isinstance(value, np.str_):
        value = str(value)
    return np.datetime64(pd.Timestamp(value).to_datetime64(), "s")


def from_records(
    records: Iterable[dict[str, Any]], *, freq: str | None = None, dataset: str = "", target: str = "target"
) -> Iterator[Series]:
    """Items from dicts with ``target``, ``start`` and optional ``item_id``, ``freq`` and
    ``past_feat_dynamic_real`` / ``feat_dynamic_real`` (the GluonTS / HF / LOTSA row layout)."""
    for i, r in enumerate(records):
        item = str(r.get("item_id", i))
        if target not in r:
            raise DataError(f"item {item!r}: no {target!r} field (fields: {sorted(r)})")
        start = r.get("start")
        f = r.get("freq") or freq or (start.freqstr if isinstance(start, pd.Period) else None)
        if f is None:
            raise DataError(f"item {item!r}: no frequency in the data; pass freq (CLI: --freq)")
        cov = r.get("past_feat_dynamic_real", r.get("feat_dynamic_real"))
        yield Series(
            as_target(r[target], item),
            normalize_freq(str(f), f"item {item!r}: "),
            item,
            dataset,
            _start(start) if start is not None else None,
            as_target(cov, item, "past_feat_dynamic_real") if cov is not None else None,
        )


def from_hf_dataset(
    ds: Any, *, freq: str | None = None, dataset: str = "", target: str = "target"
) -> Iterator[Series]:
    """A ``datasets.Dataset`` (or a path ``load_from_disk`` opens) with LOTSA/GluonTS columns."""
    if isinstance(ds, (str, Path)):
        import datasets

        ds = datasets.load_from_disk(str(ds))
    return from_records(
        ds.with_format("numpy") if hasattr(ds, "with_format") else ds,
        freq=freq,
        dataset=dataset,
        target=target,
    )


def from_gluonts(
    ds: Iterable[dict[str, Any]], *, freq: str | None = None, dataset: str = ""
) -> Iterator[Series]:
    """A GluonTS dataset (``ListDataset``, ``FileDataset``, ``get_dataset(...).train`` or any
    iterable of entries); the frequency comes from ``start`` periods unless ``freq`` is given."""
    return from_records(ds, freq=freq, dataset=dataset)


def from_lotsa_dir(path: str | Path) -> Iterator[Series]:
    """Every item of an existing sub-dataset directory (to re-validate or re-shard it)."""
    from tsfm.data.corpus import SubDataset

    sub = SubDataset(path)
    for i in range(len(sub)):
        yield sub.series(i)
