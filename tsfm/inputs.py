"""Validation and normalisation of forecast requests, shared by every forecaster and the baselines.

A request is a list of series (numpy/torch, 1-D ``[T]`` or 2-D ``[V, T]``) with optional named
past / known-future covariates; :func:`normalize_inputs` checks it and returns a
:class:`ForecastInput`. A leaf module: it imports nothing from tsfm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch


@dataclass
class ForecastInput:
    """One normalised request: per series a ``[V, T]`` target and named 1-D covariates."""

    targets: list[np.ndarray]  # each [V, T] float32
    past_covariates: list[dict[str, np.ndarray]]  # each name -> [T]
    future_covariates: list[dict[str, np.ndarray]]  # each name -> [H] (known-future subset)
    univariate: bool  # every input was 1-D -> squeeze V in the output


def _as_float_array(x: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{what}: could not convert to float32 ({e}). Covariates must be numeric; encode "
            "categorical covariates as numbers (e.g. integer codes or one-hot) first."
        ) from None
    if np.isinf(arr).any():
        raise ValueError(f"{what}: contains +-inf; replace with NaN (missing) or a finite value")
    return arr


def normalize_inputs(
    context: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    prediction_length: int,
    past_covariates: Sequence[dict[str, Any]] | None = None,
    future_covariates: Sequence[dict[str, Any]] | None = None,
    names: Sequence[Any] | None = None,
) -> ForecastInput:
    """Validate and normalise numpy/torch inputs to :class:`ForecastInput`.

    ``names``: how errors call the series (the item ids of a DataFrame); default ``series <i>``.
    """
    if isinstance(prediction_length, bool) or not isinstance(prediction_length, (int, np.integer)) or prediction_length <= 0:
        raise ValueError(f"prediction_length must be a positive integer, got {prediction_length!r}")
    if isinstance(context, pd.DataFrame):
        raise TypeError(
            "context is a DataFrame: this call takes numpy/torch series (a list of [T] or [V, T] arrays); "
            "use predict_quantiles for long DataFrames (id, timestamp, target columns)"
        )
    if isinstance(context, torch.Tensor):
        context = context.detach().cpu().numpy()
    if isinstance(context, np.ndarray):
        if context.ndim == 1:
            context = [context]
        elif context.ndim == 2:  # a batch of univariate series of equal length
            context = list(context)
        else:
            raise ValueError(f"context array must be 1-D or 2-D, got shape {context.shape}; pass a list of [V, T] arrays")
    if len(context) == 0:
        raise ValueError("context is empty: pass at least one series")
    targets, univariate = [], True
    for i, c in enumerate(context):
        arr = _as_float_array(c, f"context[{i}]")
        if arr.ndim == 1:
            arr = arr[None]
        elif arr.ndim == 2:
            univariate = False
        else:
            raise ValueError(f"context[{i}] must be 1-D [T] or 2-D [V, T], got shape {arr.shape}")
        if arr.shape[-1] == 0:
            raise ValueError(f"context[{i}] is empty (length 0)")
        targets.append(arr)
    n = len(targets)
    past = [dict(d) for d in past_covariates] if past_covariates is not None else [{} for _ in range(n)]
    fut = [dict(d) for d in future_covariates] if future_covariates is not None else [{} for _ in range(n)]
    if len(past) != n or len(fut) != n:
        raise ValueError(
            f"got {n} series but {len(past)} past_covariates and {len(fut)} future_covariates entries; "
            "pass one dict per series (empty dict for none)"
        )
    def label(i: int) -> str:
        return f"item {names[i]!r}" if names is not None else f"series {i}"

    for i in range(n):
        t_len = targets[i].shape[-1]
        for name, v in list(past[i].items()):
            arr = _as_float_array(v, f"past_covariates[{i}][{name!r}]")
            if arr.ndim != 1 or arr.shape[0] != t_len:
                raise ValueError(
                    f"{label(i)}: past covariate {name!r} has shape {arr.shape}, expected ({t_len},) "
                    "to match the target's length"
                )
            past[i][name] = arr
        for name, v in list(fut[i].items()):
            if name not in past[i]:
                raise ValueError(
                    f"{label(i)}: future covariate {name!r} has no past values; add it to past_covariates[{i}]"
                )
            arr = _as_float_array(v, f"future_covariates[{i}][{name!r}]")
            if arr.ndim != 1 or arr.shape[0] != prediction_length:
                raise ValueError(
                    f"{label(i)}: future covariate {name!r} has shape {arr.shape}, expected "
                    f"({prediction_length},) = prediction_length"
                )
            fut[i][name] = arr
        if i > 0 and set(fut[i]) != set(fut[0]):
            raise ValueError(
                f"{label(i)} declares known-future covariates {sorted(fut[i])} but {label(0)} declares "
                f"{sorted(fut[0])}; every series needs the same known-future covariates"
            )
    return ForecastInput(targets, past, fut, univariate)
