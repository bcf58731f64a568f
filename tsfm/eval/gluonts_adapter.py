"""A ``gluonts`` Predictor over any tsfm forecaster, for gluonts-based evaluation pipelines.

``Forecaster.to_gluonts_predictor(prediction_length, freq)`` returns a
:class:`GluonTSPredictor`; its ``predict(dataset)`` yields one ``QuantileForecast`` per entry
(univariate: arrays ``[Q, H]``; multivariate ``[V, T]`` targets: ``[Q, H, V]``), so
``gluonts.model.evaluation.evaluate_forecasts`` and gluonts' ``Evaluator`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import Predictor

from tsfm.levels import DEFAULT_QUANTILES


class GluonTSPredictor(Predictor):
    """Wraps ``forecaster.predict_quantiles`` as a gluonts ``Predictor``.

    ``quantile_levels`` are the keys of the returned forecasts; ``batch_size`` entries go to
    the forecaster at once; other keyword arguments are passed to ``predict_quantiles``.
    """

    def __init__(
        self,
        forecaster: Any,
        prediction_length: int,
        freq: str,
        quantile_levels: Sequence[float] = DEFAULT_QUANTILES,
        batch_size: int = 256,
        **predict_kwargs: Any,
    ) -> None:
        if prediction_length <= 0:
            raise ValueError(f"prediction_length must be positive, got {prediction_length}")
        super().__init__(prediction_length=prediction_length)
        self.forecaster = forecaster
        self.freq = freq
        self.quantile_levels = [float(q) for q in quantile_levels]
        self.batch_size = int(batch_size)
        self.predict_kwargs = predict_kwargs

    def _start_of_forecast(self, entry: dict, length: int) -> pd.Period:
        start = entry.get("start")
        if start is None:
            start = pd.Period("2000-01-01", freq=self.freq)
        elif not isinstance(start, pd.Period):
            start = pd.Period(start, freq=self.freq)
        return start + length

    def predict(self, dataset: Any, **kwargs: Any) -> Iterator[QuantileForecast]:
        """One ``QuantileForecast`` per dataset entry, starting right after its target.

        GluonTS passes ``num_samples`` to every predictor (``make_evaluation_predictions``,
        ``evaluate_model``); a family that predicts quantiles directly ignores it here, and only
        here (its ``predict_quantiles`` still rejects unknown options)."""
        kw = dict(self.predict_kwargs)
        for k, v in kwargs.items():
            if k == "num_samples" and not getattr(self.forecaster, "samples", False):
                continue
            kw[k] = v
        batch: list[dict] = []
        for entry in dataset:
            batch.append(entry)
            if len(batch) >= self.batch_size:
                yield from self._predict_batch(batch, kw)
                batch = []
        if batch:
            yield from self._predict_batch(batch, kw)

    def _predict_batch(self, entries: list[dict], kw: dict) -> Iterator[QuantileForecast]:
        ctx = [np.asarray(e["target"], dtype=np.float32) for e in entries]  # [T] or [V, T]
        q = self.forecaster.predict_quantiles(ctx, self.prediction_length, self.quantile_levels, **kw)
        keys = [str(lv) for lv in self.quantile_levels]
        for e, c, qi in zip(entries, ctx, q):
            qi = np.asarray(qi, dtype=np.float64)
            # univariate qi [H, Q] -> [Q, H]; multivariate [V, H, Q] -> [Q, H, V]
            arr = qi.T if qi.ndim == 2 else np.transpose(qi, (2, 1, 0))
            yield QuantileForecast(
                forecast_arrays=arr,
                start_date=self._start_of_forecast(e, c.shape[-1]),
                forecast_keys=keys,
                item_id=e.get("item_id"),
            )
