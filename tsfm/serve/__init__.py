"""Forecasting over HTTP: ``python -m tsfm.serve model=<checkpoint | models:/NAME@ALIAS> [port=8000]``.

A FastAPI app served by uvicorn (:mod:`tsfm.serve.app`): ``POST /v1/forecast`` with typed request
and response bodies (:mod:`tsfm.serve.schema`), ``GET /health``, ``GET /v1/models``, ``GET /metrics``
(Prometheus) and the OpenAPI schema at ``/openapi.json``. Concurrent requests with compatible
parameters are merged into one model call by a per-model batcher (:mod:`tsfm.serve.batcher`);
each request is checked before it is queued and answered on its own (:mod:`tsfm.serve.engine`).

From Python::

    from tsfm.forecast import load_forecaster
    from tsfm.serve import create_app
    app = create_app({"chronos2": load_forecaster("path/to/chronos-2")}, max_batch_size=32, max_wait_ms=5)

FastAPI is imported only with this package (``import tsfm`` does not import it).
"""

from tsfm.serve.app import ServeConfig, ServerThread, create_app

__all__ = ["ServeConfig", "ServerThread", "create_app"]
