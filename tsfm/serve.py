"""Low-latency HTTP forecasting endpoint: ``python -m tsfm.serve --ckpt PATH [--port 8000]``.

The model is loaded once and kept warm; requests are JSON over a threaded stdlib HTTP server
(no extra dependency). Concurrent requests are serialised on the model with a lock, and each
request is a single batched forward over all its series.

    POST /predict  {"context": [[...], ...], "prediction_length": 24,
                    "quantile_levels": [0.1, 0.5, 0.9],            # optional
                    "past_covariates": [{"x": [...]}, ...],        # optional
                    "future_covariates": [{"x": [...]}, ...],      # optional
                    "options": {"seed": 0, "num_samples": 100}}    # optional: seed, num_samples,
                      # context_length, batch_size, patch_size (int | "auto"), cross_learning (bool)
      -> {"quantiles": [N][H][Q] (or [N][V][H][Q]), "quantile_levels": [...], "latency_ms": ...}
    GET  /health   -> {"status": "ok", "family": ..., "requests": n}

Request bodies are size-checked before parsing; values are JSON data only; nothing in a request
reaches a shell or the filesystem.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tsfm.forecast import Forecaster, load_forecaster
from tsfm.levels import DEFAULT_QUANTILES

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 32 * 2**20
MAX_SERIES = 10_000
MAX_HORIZON = 10_000
MAX_OUTPUT_VALUES = 50_000_000  # series x variates x horizon x quantiles in one answer (~200 MB of float32)
# request options and their upper bounds (None: not an integer size)
_OPTION_LIMITS = {"num_samples": 10_000, "context_length": 100_000, "batch_size": 4_096, "patch_size": 128, "cross_learning": None,
                  "seed": 2**31 - 1}


class BadRequest(ValueError):
    """A request the client must change; answered with HTTP 400 and the reason."""


def _parse_request(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = set(body) - {"context", "prediction_length", "quantile_levels", "past_covariates", "future_covariates", "options"}
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}")
    if "context" not in body or "prediction_length" not in body:
        raise BadRequest("'context' (list of series) and 'prediction_length' (int) are required")
    ctx = body["context"]
    if not isinstance(ctx, list) or not ctx:
        raise BadRequest("'context' must be a non-empty list of series (lists of numbers, null = missing)")
    if len(ctx) > MAX_SERIES:
        raise BadRequest(f"at most {MAX_SERIES} series per request, got {len(ctx)}")
    h = body["prediction_length"]
    if not isinstance(h, int) or not 0 < h <= MAX_HORIZON:
        raise BadRequest(f"'prediction_length' must be an integer in [1, {MAX_HORIZON}]")

    def arr(x: Any, what: str) -> np.ndarray:
        try:
            return np.asarray(x, dtype=np.float32)  # JSON null -> NaN (missing)
        except (TypeError, ValueError):
            raise BadRequest(f"{what}: must be a list of numbers (or list of lists for multivariate)") from None

    levels = body.get("quantile_levels", DEFAULT_QUANTILES)
    if levels is None:
        levels = DEFAULT_QUANTILES
    if (not isinstance(levels, list | tuple) or not levels
            or not all(isinstance(q, int | float) and not isinstance(q, bool) for q in levels)):
        raise BadRequest("'quantile_levels' must be a non-empty list of numbers in (0, 1)")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("'options' must be an object")
    context = [arr(c, f"context[{i}]") for i, c in enumerate(ctx)]
    size = sum(int(np.prod(c.shape[:-1], dtype=np.int64)) if c.ndim > 1 else 1 for c in context) * h * len(levels)
    if size > MAX_OUTPUT_VALUES:
        raise BadRequest(
            f"the answer would hold {size:,} numbers (series x variates x horizon x quantiles), more than "
            f"{MAX_OUTPUT_VALUES:,}; split the request"
        )
    out = {
        "context": context,
        "prediction_length": h,
        "quantile_levels": tuple(levels),
        "options": options,
    }
    for key in ("past_covariates", "future_covariates"):
        if body.get(key) is not None:
            if not isinstance(body[key], list) or not all(isinstance(d, dict) for d in body[key]):
                raise BadRequest(f"'{key}' must be a list with one object {{name: [values]}} per series")
            out[key] = [{k: arr(v, f"{key}[{i}][{k!r}]") for k, v in d.items()} for i, d in enumerate(body[key])]
    unknown = set(options) - set(_OPTION_LIMITS)
    if unknown:
        raise BadRequest(f"unknown options {sorted(unknown)}; allowed: {sorted(_OPTION_LIMITS)}")
    for name, limit in _OPTION_LIMITS.items():
        v = options.get(name)
        auto_ok = name == "patch_size"  # Moirai picks it by backtest
        low = 0 if name == "seed" else 1
        if limit and v is not None and not (auto_ok and v == "auto") and (
                isinstance(v, bool) or not isinstance(v, int) or not low <= v <= limit):
            raise BadRequest(f"option {name!r} must be an integer in [{low}, {limit}]"
                             + (' or "auto"' if auto_ok else "") + f", got {v!r}")
        if limit is None and v is not None and not isinstance(v, bool):
            raise BadRequest(f"option {name!r} must be true or false, got {v!r}")
    return out


class ForecastService:
    """Holds the warm model; thread-safe ``predict``."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.forecaster = forecaster
        self.lock = threading.Lock()
        self.requests = 0

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        req = _parse_request(body)
        t0 = time.perf_counter()
        with self.lock:
            q = self.forecaster.predict_quantiles(
                req["context"], req["prediction_length"], req["quantile_levels"],
                past_covariates=req.get("past_covariates"), future_covariates=req.get("future_covariates"),
                **req["options"],
            )
            self.requests += 1
        if isinstance(q, np.ndarray) and q.dtype == object:  # series with different variate counts
            quantiles = [_nested_clean(np.asarray(a, dtype=np.float64).tolist()) for a in q]
        else:
            quantiles = _nested_clean(np.asarray(q, dtype=np.float64).tolist())
        return {
            "quantiles": quantiles,
            "quantile_levels": list(req["quantile_levels"]),
            "latency_ms": (time.perf_counter() - t0) * 1e3,
        }


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _nested_clean(x: Any) -> Any:
    return [_nested_clean(v) for v in x] if isinstance(x, list) else _clean(x)


def make_handler(service: ForecastService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok", "family": service.forecaster.family, "requests": service.requests})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "use GET /health or POST /predict"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                self._send(HTTPStatus.NOT_FOUND, {"error": "use POST /predict"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be an integer number of bytes"})
                return
            if length <= 0 or length > MAX_BODY_BYTES:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST,
                           {"error": f"body must be 1..{MAX_BODY_BYTES} bytes of JSON"})
                return
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"body is not valid JSON ({type(e).__name__}: {e})"})
                return
            try:
                self._send(HTTPStatus.OK, service.predict(body))
            except (BadRequest, ValueError, TypeError) as e:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - the server must keep serving
                log.exception("predict failed")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s - %s", self.address_string(), fmt % args)

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the stdlib default (5) resets connections of a burst of clients
    daemon_threads = True


def make_server(forecaster: Forecaster, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    return _Server((host, port), make_handler(ForecastService(forecaster)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tsfm.serve",
        description="Serve forecasts over HTTP from a tsfm checkpoint (.ckpt) or a checkpoint directory "
        "(official Moirai / Chronos / Chronos-2 layout or a tsfm export).",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file or directory (local; nothing is downloaded)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    forecaster = load_forecaster(args.ckpt, device=args.device)
    server = make_server(forecaster, args.host, args.port)
    log.info("serving %s (%s) on http://%s:%d  (POST /predict, GET /health)", args.ckpt, forecaster.family, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
