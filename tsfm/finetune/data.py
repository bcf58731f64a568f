"""The user's data for fine-tuning: read it, check it, and hold out the last windows of each series.

Accepted: a long DataFrame (one row per item and time step), a CSV or Parquet file of that
layout, a LOTSA-style sub-dataset directory, or a list of :class:`~tsfm.data.types.Series`.
Every problem is a :class:`~tsfm.data.format.DataError` that names the item and the fix
(duplicate or unsorted timestamps, stamps off the frequency grid, non-numeric targets, mixed
frequencies). Nothing is dropped silently: series too short for the held-out windows are left
out of both training and validation, and counted in :class:`Holdout`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data import builders
from tsfm.data.format import DataError
from tsfm.data.types import Series

log = logging.getLogger(__name__)


def load_series(
    data: Any,
    *,
    id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    target: str | Sequence[str] = "target",
    covariates: Sequence[str] | None = None,
    freq: str | None = None,
    name: str = "user",
) -> list[Series]:
    """Every series of ``data`` (see the module docstring), checked; one frequency for all."""
    covariates = list(covariates or [])
    if isinstance(data, (list, tuple)) and data and all(isinstance(s, Series) for s in data):
        series = list(data)
    elif isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
        series = list(builders.from_lotsa_dir(Path(data).expanduser()))
        if covariates:
            raise DataError(f"{data}: covariates of a LOTSA directory are its stored past_feat_dynamic_real; "
                            "drop `covariates`")
    elif isinstance(data, (str, Path, pd.DataFrame)):
        df = data if isinstance(data, pd.DataFrame) else builders.read_table(Path(data).expanduser(), id_column)
        if isinstance(data, (str, Path)):
            name = Path(data).stem
        targets = [target] if isinstance(target, str) else list(target)
        extra = [c for c in df.columns if c not in {id_column, timestamp_column, *targets, *covariates}]
        if extra:
            log.info("columns %s are not used; pass covariates=[...] to use them (families with covariates: "
                     "chronos2)", extra)
        for c in targets:
            if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
                bad = df.loc[pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna(), [id_column, c]].head(1)
                where = f" (item {bad.iloc[0, 0]!r}: {bad.iloc[0, 1]!r})" if id_column in df.columns and len(bad) else ""
                raise DataError(
                    f"target column {c!r} is not numeric (dtype {df[c].dtype}){where}; convert it, e.g. "
                    f"df[{c!r}] = pd.to_numeric(df[{c!r}], errors='coerce') (bad entries become NaN = missing)"
                )
        series = builders.from_long_frame(df, id_col=id_column, timestamp_col=timestamp_column, target_cols=target,
                                          covariate_cols=covariates, freq=freq, dataset=name)
    else:
        raise TypeError(
            f"data of type {type(data).__name__}: pass a long DataFrame (item_id, timestamp, target columns), "
            "a .csv/.parquet file, a LOTSA sub-dataset directory or a list of tsfm Series"
        )
    if not series:
        raise DataError("the data holds no series")
    freqs = Counter(s.freq for s in series)
    if len(freqs) > 1:
        (main, _), *others = freqs.most_common()
        odd = next(s for s in series if s.freq != main)
        raise DataError(
            f"mixed frequencies {dict(freqs)}: e.g. item {odd.item_id!r} is {odd.freq!r} while most items are "
            f"{main!r}; fine-tune on one frequency at a time (split the data), or pass freq= to put every "
            "item on one grid"
        )
    return series


@dataclass
class Holdout:
    """The series split for fine-tuning: ``train`` ends where the held-out windows of ``full`` begin."""

    train: list[Series]  # each usable series without its last num_windows * prediction_length points
    full: list[Series]  # the same series in full: their last windows are the validation windows
    prediction_length: int
    num_windows: int
    min_context: int
    excluded: list[str] = field(default_factory=list)  # too short: neither trained on nor validated

    @property
    def span(self) -> int:
        return self.prediction_length * self.num_windows

    @property
    def freq(self) -> str:
        return self.full[0].freq

    def summary(self) -> dict[str, Any]:
        return {
            "series": len(self.full), "excluded_too_short": len(self.excluded),
            "excluded_items": self.excluded[:20], "prediction_length": self.prediction_length,
            "num_windows": self.num_windows, "min_context": self.min_context,
            "train_observations": int(sum(np.isfinite(s.target).sum() for s in self.train)),
        }  # fmt: skip


def hold_out(series: Sequence[Series], prediction_length: int, num_windows: int = 1, min_context: int = 8) -> Holdout:
    """Hold out the last ``num_windows`` windows of ``prediction_length`` points of every series.

    A series needs ``min_context + num_windows * prediction_length`` points; shorter ones are
    excluded from training *and* validation, and listed in :attr:`Holdout.excluded`.
    """
    if prediction_length < 1 or num_windows < 1 or min_context < 1:
        raise ValueError(f"prediction_length, num_windows and min_context must be >= 1, got "
                         f"{prediction_length}, {num_windows}, {min_context}")
    span = prediction_length * num_windows
    train, full, excluded = [], [], []
    for s in series:
        if s.length < min_context + span:
            excluded.append(s.item_id)
            continue
        cov = s.past_feat_dynamic_real
        train.append(Series(s.target[:, :-span], s.freq, s.item_id, s.dataset, s.start,
                            None if cov is None else cov[:, :-span]))
        full.append(s)
    if not full:
        longest = max(s.length for s in series)
        raise DataError(
            f"no series is long enough to hold out {num_windows} window(s) of {prediction_length} after a context "
            f"of {min_context}: that needs {min_context + span} points and the longest series has {longest}; "
            "lower num_windows, prediction_length or min_context"
        )
    if excluded:
        log.warning("%d of %d series are shorter than %d points (min_context %d + %d held-out); they are neither "
                    "trained on nor validated: %s%s", len(excluded), len(series), min_context + span, min_context,
                    span, excluded[:5], " ..." if len(excluded) > 5 else "")
    return Holdout(train, full, prediction_length, num_windows, min_context, excluded)
