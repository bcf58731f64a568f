"""The FastAPI application: ``create_app({name: forecaster}, **config)``.

Routes: ``POST /v1/forecast``, ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus
text format) and FastAPI's ``/openapi.json`` and ``/docs``. Each model has its own
:class:`~tsfm.serve.batcher.Batcher` (one worker thread), so concurrent compatible requests share
one ``predict_quantiles`` call while the event loop keeps accepting and checking requests.

Order of the checks of a forecast request, cheapest first: the body size (``Content-Length``, then
the bytes actually read; 413), JSON and types (pydantic; 400 for malformed JSON, 422 naming the
field), the model name (404 listing the served ones), the limits (413 naming the limit), then the
family's options, the values (a series with no observed value: 422 naming the input) and the
covariates (422). Only a request that passed all of them is queued for the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tsfm.forecaster import Forecaster
from tsfm.serve.batcher import Batcher, Job
from tsfm.serve.engine import Answer, ApiError, Limits, Prepared, ServedModel
from tsfm.serve.schema import ErrorBody, ForecastRequest, ForecastResponse, Health, ModelInfo, ModelList

log = logging.getLogger(__name__)
OFFLOAD_BYTES = 256 * 1024  # bodies above this are parsed and checked in a thread, off the event loop
MAX_ERRORS = 20  # field errors returned per request


@dataclass
class ServeConfig:
    """Batching and limits (the keyword arguments of :func:`create_app`; ``conf/serve.yaml``)."""

    max_batch_size: int = 32  # requests merged into one model call (1: one at a time)
    max_wait_ms: float = 5.0  # how long a batch waits for more requests (from its first request's arrival, or the
    #                           end of the previous model call if later)
    max_batch_series: int | None = None  # series in one model call (None: max_series, so that a merged call is
    #                                      no larger than the largest request)
    inference_nice: int = 10  # the model's worker thread runs this much nicer than the event loop (Linux; 0: off)
    dtype: str | None = None  # default compute dtype (autocast) of families that take one; a request's "dtype" wins
    max_body_bytes: int = Limits.max_body_bytes
    max_series: int = Limits.max_series
    max_prediction_length: int = Limits.max_prediction_length
    max_output_values: int = Limits.max_output_values
    max_sample_values: int = Limits.max_sample_values

    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_series, self.max_prediction_length, self.max_output_values,
                      self.max_sample_values)


class _ClientGone(Exception):
    pass


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("tsfm_serve_requests", "Forecast requests by model and HTTP status.",
                                ["model", "status"], registry=self.registry)
        self.latency = Histogram(
            "tsfm_serve_request_latency_seconds", "Time from a forecast request's arrival to its answer.",
            ["model", "status_class"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.batch_size = Histogram("tsfm_serve_batch_size", "Requests merged into one model call.", ["model"],
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.batch_series = Histogram("tsfm_serve_batch_series", "Series in one model call.", ["model"],
                                      registry=self.registry, buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384))
        self.inference = Histogram("tsfm_serve_inference_seconds", "Duration of one model call.", ["model"],
                                   registry=self.registry,
                                   buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.queued = Gauge("tsfm_serve_queued_requests", "Requests waiting for a model call.", ["model"],
                            registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _State:
    def __init__(self, models: dict[str, ServedModel], config: ServeConfig) -> None:
        self.models = models
        self.config = config
        self.metrics = Metrics()
        self.started = time.monotonic()
        self.rejected_unrouted = 0  # requests refused before a model was chosen
        self.batchers: dict[str, Batcher] = {}
        for name, m in models.items():
            def on_batch(n: int, series: int, seconds: float, name: str = name) -> None:
                self.metrics.batch_size.labels(name).observe(n)
                self.metrics.batch_series.labels(name).observe(series)
                self.metrics.inference.labels(name).observe(seconds)

            # a merged call holds no more series, and no more output/sampled values, than one request may
            b = Batcher(m.run, max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
                        max_batch_series=config.max_batch_series or config.max_series, max_batch_cost=1.0,
                        name=name, on_batch=on_batch, thread_nice=config.inference_nice)
            self.batchers[name] = b
            self.metrics.queued.labels(name).set_function(lambda b=b: b.queued)

    def pick(self, name: str | None) -> ServedModel:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ApiError(422, f"model: this server serves several models; name one of {sorted(self.models)}")
        if name not in self.models:
            raise ApiError(404, f"unknown model {name!r}; available: {sorted(self.models)}")
        return self.models[name]


def _field_errors(e: ValidationError) -> list[dict[str, Any]]:
    out, seen = [], set()
    for err in e.errors(include_url=False, include_input=False, include_context=False):
        # drop pydantic's union-member tags (e.g. 'list[nullable[float]]') from the location
        loc = ["body", *[p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]]
        sig = (tuple(loc), err["type"])
        if sig in seen:
            continue
        seen.add(sig)
        out.append({"loc": loc, "msg": err["msg"], "type": err["type"]})
        if len(out) >= MAX_ERRORS:
            break
    return out


def _parse(body: bytes) -> ForecastRequest:
    try:
        return ForecastRequest.model_validate_json(body)
    except ValidationError as e:
        errs = e.errors(include_url=False, include_input=False, include_context=False)
        if errs and errs[0]["type"] == "json_invalid":
            raise ApiError(400, f"the body is not valid JSON ({errs[0]['msg']})") from None
        raise ApiError(422, _field_errors(e)) from None


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "Content-Length must be an integer number of bytes") from None
        if declared > limit:
            raise ApiError(413, f"the body is {declared:,} bytes (Content-Length), over the limit max_body_bytes={limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over the limit max_body_bytes={limit:,} bytes")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, "empty body: send a JSON forecast request (see /openapi.json)")
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the body was read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _until_answered_or_gone(request: Request, batcher: Batcher, job: Job) -> Answer:
    answer = asyncio.ensure_future(batcher.submit(job))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()  # the batcher skips (or drops the result of) a cancelled job
    if answer in done:
        return answer.result()
    raise _ClientGone


def _response_bytes(served: ServedModel, prepared: Prepared, answer: Answer, t0: float) -> bytes:
    head = {"model": served.name, "family": served.family, "prediction_length": prepared.prediction_length,
            "quantile_levels": prepared.levels, "mean_kind": "median"}
    tail = {"latency_ms": round((time.perf_counter() - t0) * 1e3, 3),
            "batch": {"requests": answer.batch_requests, "series": answer.batch_series,
                      "inference_ms": round(answer.inference_ms, 3)}}
    return orjson.dumps(head)[:-1] + b',"predictions":' + answer.predictions + b"," + orjson.dumps(tail)[1:]


def create_app(forecasters: Mapping[str, Forecaster] | Forecaster, *, uris: Mapping[str, str] | None = None,
               covariates: Mapping[str, bool] | None = None, **config: Any) -> FastAPI:
    """The forecasting app for ``forecasters`` (name -> loaded forecaster; a single forecaster is served
    as ``"default"``). ``config``: the fields of :class:`ServeConfig` (batching and limits). ``uris``: what
    each model was loaded from, for /v1/models. ``covariates``: whether a model's family uses covariates
    (default: probed with a tiny forecast, which also warms the model up)."""
    if isinstance(forecasters, Forecaster):
        forecasters = {"default": forecasters}
    if not forecasters:
        raise ValueError("create_app needs at least one forecaster")
    known = {f.name for f in fields(ServeConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise TypeError(f"unknown serve settings {unknown}; known: {sorted(known)}")
    cfg = ServeConfig(**config)
    limits = cfg.limits()
    uris, covariates = dict(uris or {}), dict(covariates or {})
    models = {name: ServedModel(name, f, limits, uri=uris.get(name), covariates=covariates.get(name), dtype=cfg.dtype)
              for name, f in forecasters.items()}
    state = _State(models, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for b in state.batchers.values():
            await b.close()

    app = FastAPI(title="tsfm forecasting endpoint", version="1", lifespan=lifespan,
                  description="Probabilistic forecasts from time series foundation models, batched across requests.")
    app.state.tsfm = state

    errors = {code: {"model": ErrorBody, "description": what} for code, what in [
        (400, "Malformed body (not JSON, bad Content-Length)"), (404, "Unknown model (the detail lists the served ones)"),
        (413, "Over a limit (the detail names it)"),
        (422, "A field is invalid (loc / the detail names it): types, options the family does not take, "
              "a series with no observed value, covariates"),
        (500, "The model failed"),
    ]}

    @app.post("/v1/forecast", response_model=ForecastResponse, responses=errors, summary="Forecast series",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/ForecastRequest"}}}}})
    async def forecast(request: Request) -> Response:
        t0 = time.perf_counter()
        label, served = "-", None  # label: a served model's name only (no unbounded label values)
        try:
            body = await _read_body(request, cfg.max_body_bytes)
            if len(body) > OFFLOAD_BYTES:
                req = await run_in_threadpool(_parse, body)
            else:
                req = _parse(body)
            served = state.pick(req.model)
            label = served.name
            if len(body) > OFFLOAD_BYTES:
                prepared = await run_in_threadpool(served.prepare, req)
            else:
                prepared = served.prepare(req)
            job = Job(prepared.key, prepared, prepared.size, prepared.cost)
            answer = await _until_answered_or_gone(request, state.batchers[served.name], job)
            response = Response(_response_bytes(served, prepared, answer, t0), media_type="application/json")
        except ApiError as e:
            response = JSONResponse({"detail": e.detail}, status_code=e.status)
        except _ClientGone:
            response = Response(status_code=499)  # nobody reads it; counted as such
        except Exception as e:  # noqa: BLE001 - keep serving; say what failed
            log.exception("forecast request failed")
            response = JSONResponse({"detail": f"internal error ({type(e).__name__}: {e})"}, status_code=500)
        status = response.status_code
        if served is not None:
            if status == 200:
                served.served += 1
            else:
                served.rejected += 1
        else:
            state.rejected_unrouted += 1
        state.metrics.requests.labels(label, str(status)).inc()
        state.metrics.latency.labels(label, f"{status // 100}xx").observe(time.perf_counter() - t0)
        return response

    @app.get("/v1/models", response_model=ModelList, summary="Served models")
    async def list_models() -> dict[str, Any]:
        return {"models": [ModelInfo(name=m.name, family=m.family, source=m.source, uri=m.uri, options=m.options,
                                     covariates=m.covariates).model_dump() for m in models.values()]}

    @app.get("/health", response_model=Health, summary="Liveness, served models and problems")
    async def health() -> dict[str, Any]:
        problems = [p for m in models.values() for p in m.problems()]
        for name, b in state.batchers.items():
            if b.failure is not None:
                problems.append(f"model {name!r}: the batching loop stopped ({b.failure!r}); it restarts with the next request")
        families = {m.name: m.family for m in models.values()}
        return {"status": "degraded" if problems else "ok", "models": families,
                "family": next(iter(families.values())) if len(families) == 1 else None,
                "requests_served": sum(m.served for m in models.values()),
                "requests_rejected": sum(m.rejected for m in models.values()) + state.rejected_unrouted,
                "problems": problems, "uptime_s": round(time.monotonic() - state.started, 3)}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        data, content_type = state.metrics.render()
        return Response(data, media_type=content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request_schema = ForecastRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["ForecastRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # the request body is read by hand (size limit first), so its schema is added here
    return app


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`ServeConfig` fields found in ``config`` (e.g. the Hydra config, flattened)."""
    names = {f.name for f in fields(ServeConfig)}
    return {k: v for k, v in config.items() if k in names}


class ServerThread:
    """Run ``app`` with uvicorn in a background thread on a free loopback port (tests, notebooks)::

        with ServerThread(app) as url:
            httpx.post(url + "/v1/forecast", json=...)
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, **uvicorn_kwargs: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        kw = {"log_level": "warning", "access_log": False, "backlog": 2048} | uvicorn_kwargs
        self.server = uvicorn.Server(uvicorn.Config(app, **kw))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()
