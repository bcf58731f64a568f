"""One served model: per-request checks against the model's family, and the batched model call.

:meth:`ServedModel.prepare` turns a validated :class:`~tsfm.serve.schema.ForecastRequest` into a
:class:`Prepared` request (numpy arrays, the family options, the batching key) or raises
:class:`ApiError` (4xx, naming the field or the limit). :meth:`ServedModel.run` answers a batch of
prepared requests with one ``predict_quantiles`` call; if that call fails, each request is retried
on its own so that only the faulty one gets the error.

Which requests may share a call: the same ``prediction_length``, the same family options and the
same known-future covariate names (the quantile levels of the call are the union of theirs, each
request gets its own back). A request with a ``seed`` or ``cross_learning=true`` is never merged:
a seeded answer stays reproducible, and series of different clients never inform each other.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tsfm.forecaster import Forecaster
from tsfm.inputs import normalize_inputs
from tsfm.serve.schema import OPTION_FIELDS, ForecastRequest

log = logging.getLogger(__name__)
_alone = itertools.count()  # keys of requests that are never merged
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_NUM_SAMPLES = 100  # assumed for the sample limit when a request leaves num_samples to the family


class ApiError(Exception):
    """A request the client must change (or a server fault): an HTTP status and a reason."""

    def __init__(self, status: int, detail: str | list[dict]) -> None:
        super().__init__(detail if isinstance(detail, str) else str(detail))
        self.status = status
        self.detail = detail


@dataclass
class Limits:
    max_body_bytes: int = 16 * 2**20
    max_series: int = 1_024
    max_prediction_length: int = 1_024
    max_output_values: int = 10_000_000  # inputs x variates x horizon x (quantiles + mean) in one answer
    max_sample_values: int = 200_000_000  # sampling families: variates x horizon x num_samples drawn for one request


@dataclass
class Prepared:
    """A request ready for the model."""

    targets: list[np.ndarray]  # per input [T] or [V, T] float32, NaN = missing
    past: list[dict[str, np.ndarray]] | None
    future: list[dict[str, np.ndarray]] | None
    prediction_length: int
    levels: list[float]  # as requested, duplicates removed
    options: dict[str, Any]
    key: tuple = field(default=())
    cost: float = 0.0  # share of the per-request output/sampling limits it uses (a merged call holds <= 1)

    @property
    def size(self) -> int:
        return len(self.targets)


@dataclass
class Answer:
    """The model's answer to one request (its predictions as JSON) and the batch it was computed in."""

    predictions: bytes
    batch_requests: int
    batch_series: int
    inference_ms: float


def _level_key(q: float) -> str:
    return repr(float(q))


def _f32(values: Any) -> np.ndarray:
    """Request numbers as float32 (None -> NaN); a value beyond float32 becomes inf without a RuntimeWarning
    (the checks after the cast answer 422 naming the field)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def _values(a: np.ndarray) -> np.ndarray:
    """float32, C-contiguous: orjson writes it with the shortest float32 repr, NaN/inf as null."""
    return np.ascontiguousarray(a, dtype=np.float32)


def probe_covariates(forecaster: Forecaster) -> bool:
    """Whether the family uses covariates: a tiny forecast with one past and one known-future covariate
    (families without covariates refuse it before any computation; the others are warmed up by it)."""
    x = np.linspace(0.0, 1.0, 64, dtype=np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            forecaster.predict_quantiles([x], 1, [0.5], past_covariates=[{"c": x}], future_covariates=[{"c": x[:1]}])
    except (ValueError, TypeError, NotImplementedError) as e:
        log.info("%s family: no covariates (%s)", forecaster.family, e)
        return False
    return True


class ServedModel:
    """A forecaster served under ``name``."""

    def __init__(self, name: str, forecaster: Forecaster, limits: Limits, uri: str | None = None,
                 covariates: bool | None = None, dtype: str | None = None) -> None:
        self.name = name
        self.forecaster = forecaster
        self.family = forecaster.family or type(forecaster).__name__
        self.limits = limits
        self.uri = uri
        declared = forecaster.forecast_options
        self.options = [o for o in OPTION_FIELDS if declared is None or o in declared]
        self.defaults: dict[str, Any] = {}  # options every request gets unless it sets them itself
        if dtype is not None:
            if dtype not in DTYPES:
                raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)} (or null for float32)")
            if "dtype" not in self.options:
                raise ValueError(f"dtype={dtype}: model {name!r} ({self.family} family) computes in float32 and takes "
                                 "no compute dtype; set dtype=null")
            if dtype != "float32":
                self.defaults["dtype"] = dtype
        self.covariates = probe_covariates(forecaster) if covariates is None else covariates
        self.served = 0
        self.rejected = 0

    @property
    def source(self) -> str | None:
        src = getattr(self.forecaster, "source", None)
        return str(src) if src is not None else None

    def problems(self) -> list[str]:
        src = self.source
        if src is not None and not Path(src).exists():
            return [f"model {self.name!r}: its checkpoint {src} no longer exists; still serving the copy in memory "
                    "(a restart would fail to load it)"]
        return []

    # -- request checks ---------------------------------------------------------------------
    def prepare(self, req: ForecastRequest) -> Prepared:
        lim, p = self.limits, req.parameters
        n, h = len(req.inputs), p.prediction_length
        if n > lim.max_series:
            raise ApiError(413, f"inputs: {n} series, more than the limit max_series={lim.max_series}; split the request")
        if h > lim.max_prediction_length:
            raise ApiError(413, f"parameters.prediction_length={h} is more than the limit "
                                f"max_prediction_length={lim.max_prediction_length}")
        options = {k: getattr(p, k) for k in OPTION_FIELDS if getattr(p, k) is not None}
        refused = sorted(set(options) - set(self.options))
        if refused:
            raise ApiError(422, f"parameters: option(s) {refused} are not taken by model {self.name!r} "
                                f"({self.family} family); it takes: {', '.join(self.options) or 'none'}")
        options = {**self.defaults, **options}
        if options.get("dtype") == "float32":
            del options["dtype"]  # the forecasters' default: merged with requests that do not name it
        levels = list(dict.fromkeys(float(q) for q in p.quantile_levels))
        targets = []
        for i, s in enumerate(req.inputs):
            try:
                t = _f32(s.target)  # None -> NaN
            except ValueError:
                raise ApiError(422, f"inputs[{i}].target: a multivariate target needs variates of equal length") from None
            if t.ndim == 2 and t.shape[1] == 0:
                raise ApiError(422, f"inputs[{i}].target: the variates are empty")
            if np.isinf(t).any():
                raise ApiError(422, f"inputs[{i}].target: contains an infinite value (or one beyond float32); "
                                    "use null for missing values")
            if not np.isfinite(t).any():
                raise ApiError(422, f"inputs[{i}].target has no observed value (every entry is null/NaN); "
                                    "give at least one observed value")
            targets.append(t)
        variates = sum(1 if t.ndim == 1 else t.shape[0] for t in targets)
        values = variates * h * (len(levels) + 1)
        if values > lim.max_output_values:
            raise ApiError(413, f"the answer would hold {values:,} numbers (variates x prediction_length x "
                                f"(quantiles + mean)), more than the limit max_output_values={lim.max_output_values:,}; "
                                "split the request or ask for fewer steps or levels")
        cost = values / lim.max_output_values
        if "num_samples" in self.options:  # a sampling family holds every path before taking quantiles
            drawn = variates * h * (options.get("num_samples") or DEFAULT_NUM_SAMPLES)
            cost = max(cost, drawn / lim.max_sample_values)
            if drawn > lim.max_sample_values:
                raise ApiError(413, f"the model would draw {drawn:,} values (variates x prediction_length x num_samples), "
                                    f"more than the limit max_sample_values={lim.max_sample_values:,}; "
                                    "ask for fewer samples, steps or series")
        has_past = any(s.past_covariates for s in req.inputs)
        has_future = any(s.future_covariates for s in req.inputs)
        past = future = None
        if has_past or has_future:
            if not self.covariates:
                raise ApiError(422, f"inputs: model {self.name!r} ({self.family} family) does not use covariates; "
                                    "drop past_covariates / future_covariates")
            past = [{k: _f32(v) for k, v in s.past_covariates.items()} for s in req.inputs]
            future = [{k: _f32(v) for k, v in s.future_covariates.items()} for s in req.inputs]
            try:  # shapes, names and values, as the model call will check them
                normalize_inputs(targets, h, past, future)
            except (ValueError, TypeError) as e:
                msg = re.sub(r"\bseries (\d+)", r"inputs[\1]", str(e))
                raise ApiError(422, msg if msg.startswith("inputs[") else f"inputs: {msg}") from None
        fut_names = tuple(sorted(future[0])) if future else ()
        if "seed" in options or options.get("cross_learning"):
            key = ("alone", next(_alone))
        else:
            key = (h, fut_names, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())))
        return Prepared(targets, past if has_past or has_future else None, future if has_future else None,
                        h, levels, options, key, cost)

    # -- the model call (worker thread) -------------------------------------------------------
    def run(self, batch: list[Prepared]) -> list[Answer | Exception]:
        t0 = time.perf_counter()
        try:
            per_request = self._predict(batch)
        except Exception as e:  # noqa: BLE001 - isolate the faulty request(s)
            if len(batch) == 1:
                return [_as_api_error(e)]
            log.warning("model %r: a merged batch of %d requests failed (%s: %s); answering each on its own",
                        self.name, len(batch), type(e).__name__, e)
            out: list[Answer | Exception] = []
            for p in batch:
                out.extend(self.run([p]))
            return out
        ms = (time.perf_counter() - t0) * 1e3
        series = sum(p.size for p in batch)
        return [Answer(preds, len(batch), series, ms) for preds in per_request]

    def _predict(self, batch: list[Prepared]) -> list[bytes]:
        first = batch[0]
        levels = sorted(set().union(*(p.levels for p in batch)) | {0.5})
        col = {q: j for j, q in enumerate(levels)}
        context = [t for p in batch for t in p.targets]
        past = future = None
        if any(p.past is not None for p in batch):
            past = [d for p in batch for d in (p.past or [{} for _ in p.targets])]
        if any(p.future is not None for p in batch):
            future = [d for p in batch for d in (p.future or [{} for _ in p.targets])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. long-horizon notes; nothing a client must act on
            q = self.forecaster.predict_quantiles(context, first.prediction_length, levels, past_covariates=past,
                                                  future_covariates=future, **first.options)
        per_series = list(q)  # [H, Q] (all univariate), [V, H, Q], or ragged arrays
        if len(per_series) != len(context):
            raise RuntimeError(f"the model returned {len(per_series)} forecasts for {len(context)} series")
        out, i = [], 0
        for p in batch:
            preds = []
            for t in p.targets:
                a = np.asarray(per_series[i], dtype=np.float32)
                i += 1
                if t.ndim == 1 and a.ndim == 3:  # merged with multivariate inputs: V = 1
                    a = a[0]
                preds.append({"mean": _values(a[..., col[0.5]]),
                              "quantiles": {_level_key(lv): _values(a[..., col[lv]]) for lv in p.levels}})
            out.append(orjson.dumps(preds, option=orjson.OPT_SERIALIZE_NUMPY))
        return out


def _as_api_error(e: Exception) -> Exception:
    """A model call's ValueError/TypeError is about the request (422); anything else is the server's (500)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, ValueError | TypeError):
        return ApiError(422, f"the model refused the request: {e}")
    log.error("model call failed", exc_info=e)
    return ApiError(500, f"the model failed on this request ({type(e).__name__}: {e})")
