"""The :class:`Forecaster` base class every family's forecaster extends.

Every family implements two methods over a normalised batch (:class:`~tsfm.inputs.ForecastInput`):
``_quantiles`` and, for families that sample, ``_samples``. This class owns everything around
them: accepting numpy lists or a long DataFrame, validating covariates and options, stacking the
result, the DataFrame output, the GluonTS adapter and fine-tuning (``fit``). Families import this
module, never the public entry point :mod:`tsfm.forecast`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tsfm.inputs import ForecastInput, normalize_inputs
from tsfm.levels import DEFAULT_QUANTILES


def _placeholder_unobserved(inputs: ForecastInput, names: Sequence[str] | None = None) -> list[int]:
    """Series whose context has no observed value at all get a NaN forecast (with a warning),
    never one made up from nothing: the model sees a zero placeholder, the answer is replaced."""
    dead = [i for i, t in enumerate(inputs.targets) if not np.isfinite(t).any()]
    for i in dead:
        inputs.targets[i] = np.zeros_like(inputs.targets[i])
    if dead:
        which = [names[i] for i in dead] if names is not None else dead
        warnings.warn(f"series {which[:10]}{' ...' if len(dead) > 10 else ''}: the context has no observed value; "
                      "their forecasts are NaN (give at least one observed value)", stacklevel=3)
    return dead


def _nan_out(out: list[np.ndarray], dead: list[int]) -> list[np.ndarray]:
    for i in dead:
        out[i] = np.full(np.shape(out[i]), np.nan, dtype=np.float32)
    return out


def _df_to_inputs(
    df: pd.DataFrame,
    future_df: pd.DataFrame | None,
    id_column: str,
    timestamp_column: str,
    target: str | list[str],
) -> tuple[list[str], list[np.ndarray], list[dict], list[dict] | None, list[pd.DatetimeIndex]]:
    targets = [target] if isinstance(target, str) else list(target)
    missing = [c for c in [id_column, timestamp_column, *targets] if c not in df.columns]
    if missing:
        raise ValueError(f"DataFrame lacks columns {missing}; it has {list(df.columns)}")
    cov_cols = [c for c in df.columns if c not in {id_column, timestamp_column, *targets}]
    df = df.sort_values([id_column, timestamp_column])
    ids, ctx, past, stamps = [], [], [], []
    for item, g in df.groupby(id_column, sort=False):
        ids.append(item)  # keep the caller's id type so results merge back on id_column
        arr = g[targets].to_numpy(dtype=np.float32).T
        ctx.append(arr[0] if len(targets) == 1 else arr)
        past.append({c: g[c].to_numpy() for c in cov_cols})
        stamps.append(pd.DatetimeIndex(g[timestamp_column]))
        if len(g) < 3:
            raise ValueError(f"item {item!r}: {len(g)} timestamp(s) cannot fix a frequency; give it at least 3 regular steps")
    fut = None
    if future_df is not None:
        missing_cols = [c for c in (id_column, timestamp_column) if c not in future_df.columns]
        if missing_cols:
            raise ValueError(f"future DataFrame lacks columns {missing_cols}; it has {list(future_df.columns)}")
        fut_groups = dict(tuple(future_df.sort_values([id_column, timestamp_column]).groupby(id_column, sort=False)))
        fut = []
        for item, ts in zip(ids, stamps):
            g = fut_groups.get(item)
            if g is None:
                raise ValueError(f"future DataFrame has no rows for item_id {item!r}")
            freq = pd.infer_freq(ts)
            got = pd.DatetimeIndex(g[timestamp_column])
            expected = pd.date_range(ts[-1], periods=len(got) + 1, freq=freq)[1:] if freq else None
            if expected is not None and not got.equals(expected):
                raise ValueError(
                    f"item {item!r}: future DataFrame timestamps {got[0]} .. {got[-1]} do not continue the context "
                    f"(expected {expected[0]} .. {expected[-1]}, every {freq}); known covariates must cover the "
                    "steps right after the context's last timestamp"
                )
            fut.append({c: g[c].to_numpy() for c in g.columns if c not in {id_column, timestamp_column}})
    return ids, ctx, past, fut, stamps


def per_series_samples(paths: torch.Tensor, counts: Sequence[int]) -> list[np.ndarray]:
    """Sample paths ``[R, S, H]`` of stacked rows -> per series ``[S, V, H]`` (``counts``: rows per series)."""
    arr, out, i = paths.numpy(), [], 0
    for v in counts:
        out.append(np.ascontiguousarray(arr[i : i + v].transpose(1, 0, 2)))
        i += v
    return out


def per_series_quantiles(paths: torch.Tensor, levels: Sequence[float], counts: Sequence[int]) -> list[np.ndarray]:
    """Empirical quantiles of sample paths ``[R, S, H]`` -> per series ``[V, H, Q]``."""
    q = torch.quantile(paths, torch.tensor(list(levels), dtype=paths.dtype), dim=1).permute(1, 2, 0).numpy()
    out, i = [], 0
    for v in counts:
        out.append(q[i : i + v])
        i += v
    return out


class Forecaster(ABC):
    """A loaded model that forecasts. Subclasses implement ``_quantiles`` (and ``_samples``)."""

    family: str = ""
    samples: bool = False  # whether predict_samples is supported
    accepts_freq: bool = False  # whether a `freq=` keyword changes the forecast (Moirai patch sizes)
    forecast_options: tuple[str, ...] | None = None  # keyword options the family takes (None: not checked)

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.source: Path | None = None  # the checkpoint it was loaded from (load_forecaster sets it)

    # -- loading (the family's converter: tsfm/models/<family>/convert.py) ----------------------
    init_options: tuple[str, ...] = ()  # keyword arguments of the subclass's __init__ that loading passes on

    @classmethod
    def converter(cls) -> Any:
        """The family's convert module, as its FamilySpec names it."""
        import tsfm.models  # noqa: F401 - registers every family's spec
        from tsfm.models.spec import get

        return get(cls.family).load("converter")

    @classmethod
    def _split(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """``kwargs`` of a load -> (constructor options, config overrides, dtype)."""
        kwargs = dict(kwargs)
        dtype = kwargs.pop("dtype", None)
        init = {k: kwargs.pop(k) for k in cls.init_options if k in kwargs}
        return init, kwargs, dtype

    @classmethod
    def _wrap(cls, model: torch.nn.Module, device: str | torch.device, init: dict[str, Any], dtype: Any) -> Forecaster:
        if dtype is not None:
            model = model.to(dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return cls(model, device=device, **init)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> Forecaster:
        """Load an official (or exported tsfm) checkpoint directory. ``kwargs``: the subclass's
        ``init_options``, ``dtype`` (the weights' dtype) and config overrides, which follow the
        override policy of :func:`tsfm.checkpoint.resolve_finetune_config` (the converter's ``EDITABLE``)."""
        init, overrides, dtype = cls._split(kwargs)
        model = cls.converter().load_model(path, overrides=overrides or None, device=device)
        return cls._wrap(model, device, init, dtype)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, device: str | torch.device = "cpu", **kwargs: Any) -> Forecaster:
        """Build from a tsfm Lightning checkpoint dict (read with ``weights_only=True``); a LoRA run's
        adapters are folded into the weights. ``kwargs`` as for :meth:`from_pretrained`."""
        hp = ckpt.get("hyper_parameters") or {}
        if hp.get("family") != cls.family or "state_dict" not in ckpt:
            raise ValueError(f"not a tsfm {cls.family} checkpoint (family={hp.get('family')!r}, state_dict present: "
                             f"{'state_dict' in ckpt})")
        init, overrides, dtype = cls._split(kwargs)
        model = cls.converter().model_from_checkpoint(ckpt, "checkpoint", overrides=overrides or None, device=device)
        return cls._wrap(model, device, init, dtype)

    @abstractmethod
    def _quantiles(
        self, inputs: ForecastInput, prediction_length: int, quantile_levels: Sequence[float], **kwargs: Any
    ) -> list[np.ndarray]:
        """Per series an array ``[V, H, Q]``."""

    def _samples(
        self, inputs: ForecastInput, prediction_length: int, num_samples: int, **kwargs: Any
    ) -> list[np.ndarray]:
        """Per series an array ``[S, V, H]``."""
        raise NotImplementedError(f"{type(self).__name__} predicts quantiles directly; use predict_quantiles")

    # -- public API -----------------------------------------------------------------------
    def predict_quantiles(
        self,
        context: Any,
        prediction_length: int,
        quantile_levels: Sequence[float] = DEFAULT_QUANTILES,
        past_covariates: Sequence[dict[str, Any]] | None = None,
        future_covariates: Sequence[dict[str, Any]] | pd.DataFrame | None = None,
        *,
        id_column: str = "item_id",
        timestamp_column: str = "timestamp",
        target: str | list[str] = "target",
        **kwargs: Any,
    ) -> np.ndarray | pd.DataFrame:
        """Quantile forecasts: ``[N, H, Q]`` (univariate) / ``[N, V, H, Q]``, or a DataFrame."""
        self._check_option_names(kwargs)
        levels = [float(q) for q in quantile_levels]
        if not levels or any(not 0.0 < q < 1.0 for q in levels):
            raise ValueError(f"quantile_levels must be a non-empty list of values in (0, 1), got {levels}")
        if isinstance(context, pd.DataFrame):
            if past_covariates is not None or not (future_covariates is None or isinstance(future_covariates, pd.DataFrame)):
                raise ValueError(
                    "with a DataFrame context, covariates are columns of that DataFrame (past) and of a future "
                    "DataFrame passed as future_covariates (known future); lists of dicts are for numpy inputs"
                )
            ids, ctx, past, fut, stamps = _df_to_inputs(
                context, future_covariates if isinstance(future_covariates, pd.DataFrame) else None,
                id_column, timestamp_column, target,
            )
            inputs = normalize_inputs(ctx, prediction_length, past, fut, names=ids)
            dead = _placeholder_unobserved(inputs, ids)
            out = _nan_out(self._quantiles(inputs, prediction_length, levels, **kwargs), dead)
            return self._to_frame(ids, stamps, out, levels, prediction_length, id_column, timestamp_column, target)
        inputs = normalize_inputs(context, prediction_length, past_covariates, future_covariates)  # type: ignore[arg-type]
        dead = _placeholder_unobserved(inputs)
        out = _nan_out(self._quantiles(inputs, prediction_length, levels, **kwargs), dead)
        return self._stack(out, inputs.univariate, axis=0)

    def predict_samples(
        self,
        context: Any,
        prediction_length: int,
        num_samples: int = 100,
        past_covariates: Sequence[dict[str, Any]] | None = None,
        future_covariates: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Sample paths: ``[N, S, H]`` (univariate) / ``[N, S, V, H]``."""
        if not self.samples:
            raise NotImplementedError(
                f"the {self.family} family predicts quantiles directly; use predict_quantiles instead"
            )
        self._check_option_names(kwargs)
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        inputs = normalize_inputs(context, prediction_length, past_covariates, future_covariates)
        dead = _placeholder_unobserved(inputs)
        out = _nan_out(self._samples(inputs, prediction_length, num_samples, **kwargs), dead)
        return self._stack(out, inputs.univariate, axis=1)

    def fit(self, data: Any, prediction_length: int, out_dir: str | Path | None = None, **kwargs: Any) -> Forecaster:
        """Fine-tune this model on ``data`` and return the forecaster to use (a new object).

        ``data``: a long DataFrame (``item_id``, ``timestamp``, ``target`` columns), a CSV/Parquet
        file or a LOTSA directory. The last ``num_windows`` windows of each series are held out;
        the zero-shot model, the baselines and the fine-tuned model are scored on them, and the
        result is the fine-tuned model only if it beats zero-shot there (else the zero-shot one,
        unless ``force=True``). ``out_dir`` (default: a new temporary directory) receives the
        report, the fan chart and ``model/``. Keywords: see :func:`tsfm.finetune.run.finetune`
        (``preset``, ``lr``, ``max_steps``, ``num_windows``, ...). The full
        :class:`~tsfm.finetune.run.FinetuneResult` is kept as ``.finetune_result`` on the result.
        """
        import tempfile

        from tsfm.finetune.run import finetune

        if self.source is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs the checkpoint this forecaster was loaded from; load it with "
                "load_forecaster(<checkpoint dir or .ckpt>) first"
            )
        out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="tsfm-finetune-"))
        result = finetune(self, self.source, data, prediction_length, out, **kwargs)
        result.forecaster.finetune_result = result
        return result.forecaster

    def to_gluonts_predictor(self, prediction_length: int, freq: str, **kwargs: Any):
        """Wrap as a ``gluonts`` Predictor yielding QuantileForecasts."""
        from tsfm.eval.gluonts_adapter import GluonTSPredictor

        return GluonTSPredictor(self, prediction_length, freq, **kwargs)

    # -- helpers --------------------------------------------------------------------------
    def _check_option_names(self, kwargs: dict[str, Any]) -> None:
        """Unknown keyword options are an error naming the ones this family takes."""
        if self.forecast_options is None:
            return
        unknown = sorted(set(kwargs) - set(self.forecast_options))
        if unknown:
            raise TypeError(
                f"unknown {self.family} forecast option(s) {unknown}; the {self.family} family takes "
                f"{', '.join(self.forecast_options)}"
            )

    @staticmethod
    def _stack(per_series: list[np.ndarray], univariate: bool, axis: int) -> np.ndarray:
        # per series [V, H, Q] (axis=0 is V) or [S, V, H] (axis=1 is V)
        if univariate:
            return np.stack([np.take(a, 0, axis=axis) for a in per_series])
        shapes = {a.shape for a in per_series}
        if len(shapes) > 1:  # ragged variate counts: a 1-D object array of per-series arrays
            out = np.empty(len(per_series), dtype=object)  # (np.array(list) would try to broadcast)
            for i, a in enumerate(per_series):
                out[i] = a
            return out
        return np.stack(per_series)

    @staticmethod
    def _to_frame(ids, stamps, out, levels, h, id_column, timestamp_column, target) -> pd.DataFrame:
        frames = []
        targets = [target] if isinstance(target, str) else list(target)
        for item, ts, q in zip(ids, stamps, out):
            freq = pd.infer_freq(ts) if len(ts) >= 3 else None
            if freq is None:
                raise ValueError(f"item {item!r}: cannot infer the frequency of its timestamps; make them regular")
            future_ts = pd.date_range(ts[-1], periods=h + 1, freq=freq)[1:]
            for v, name in enumerate(targets):
                f = pd.DataFrame({id_column: item, timestamp_column: future_ts, "target_name": name})
                f["predictions"] = _median_from(q[v], levels)
                for j, lv in enumerate(levels):
                    f[str(lv)] = q[v, :, j]
                frames.append(f)
        return pd.concat(frames, ignore_index=True)


def _median_from(q: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Median column for a DataFrame result: the 0.5 level if requested, else interpolated."""
    levels = list(levels)
    if 0.5 in levels:
        return q[:, levels.index(0.5)]
    order = np.argsort(levels)  # np.interp needs increasing levels
    return np.array([np.interp(0.5, np.asarray(levels)[order], row[order]) for row in q])
