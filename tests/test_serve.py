"""The forecasting endpoint (tsfm.serve): answers equal predict_quantiles for every family, concurrent
requests are merged into one model call, a bad request fails alone, limits, health, metrics, OpenAPI,
and the command line. In process with FastAPI's TestClient, or a real uvicorn server on a free
loopback port (ServerThread) where concurrency matters."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tsfm.forecast import Forecaster, load_forecaster
from tsfm.serve import ServerThread, create_app
from tsfm.serve.batcher import Batcher, Job


class LastValue(Forecaster):
    """Test double: every quantile = last observed value + level (exact). Records the series of each
    call; sleeps ``delay`` s per call; a series whose last value is 666 makes the call fail."""

    family = "test"
    forecast_options = ("num_samples", "seed")

    def __init__(self, delay: float = 0.0):
        import torch

        super().__init__(torch.nn.Identity())
        self.delay = delay
        self.calls: list[int] = []

    @classmethod
    def from_pretrained(cls, path, **kw):
        return cls()

    @classmethod
    def from_checkpoint(cls, ckpt, **kw):
        return cls()

    def _quantiles(self, inputs, prediction_length, quantile_levels, **kw):
        self.calls.append(len(inputs.targets))
        time.sleep(self.delay)
        out = []
        for t in inputs.targets:
            last = np.array([row[~np.isnan(row)][-1] for row in t])  # [V]
            if (last == 666).any():
                raise ValueError("series ending in 666 are refused by this model")
            out.append(np.broadcast_to(last[:, None, None] + np.array(quantile_levels),
                                       (len(t), prediction_length, len(quantile_levels))).astype(np.float32))
        return out


def _app(delay=0.0, **config):
    model = LastValue(delay)
    app = create_app({"lv": model}, **config)
    model.calls.clear()  # create_app's covariate probe is a call
    return app, model


def _series(n, t=48, seed=0):
    rng = np.random.default_rng(seed)
    return [(10 + 3 * np.sin(2 * np.pi * np.arange(t + 3 * i) / 12) + rng.normal(0, 0.3, t + 3 * i)).astype(np.float32)
            for i in range(n)]


# -- answers -------------------------------------------------------------------------------------
FAMILY_OPTIONS = {"chronos2": {}, "moirai": {"seed": 3, "num_samples": 16},
                  "chronos": {"seed": 3, "num_samples": 8}, "baseline": {"seed": 3, "num_samples": 16}}


@pytest.mark.parametrize("family_ckpt", ["chronos2", "moirai", "chronos", "baseline"], indirect=True)
def test_forecast_equals_predict_quantiles(family_ckpt):
    f = load_forecaster(family_ckpt)
    opts = FAMILY_OPTIONS[f.family]  # sampled families: seeded (a seeded request is computed on its own)
    ctx = _series(2)
    ctx[0][5] = np.nan
    levels, h = [0.1, 0.9], 6
    with TestClient(create_app({"m": f})) as client:
        r = client.post("/v1/forecast", json={
            "inputs": [{"target": [None if np.isnan(v) else float(v) for v in c]} for c in ctx],
            "parameters": {"prediction_length": h, "quantile_levels": levels, **opts}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "m" and out["family"] == f.family and out["mean_kind"] == "median"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = f.predict_quantiles(ctx, h, levels, **opts)
        median = f.predict_quantiles(ctx, h, [0.5], **opts)
    for i, pred in enumerate(out["predictions"]):
        assert list(pred["quantiles"]) == ["0.1", "0.9"]
        got = np.stack([pred["quantiles"][k] for k in ("0.1", "0.9")], axis=-1)
        np.testing.assert_allclose(got, want[i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pred["mean"], median[i, :, 0], rtol=1e-5, atol=1e-5)


def test_server_dtype_is_the_default_a_request_may_override(fixtures_dir):
    f = load_forecaster(fixtures_dir / "chronos2_tiny/checkpoint")
    ctx, h = _series(2, t=40), 5
    want = {d: f.predict_quantiles(ctx, h, [0.1, 0.9], dtype=d) for d in ("bfloat16", "float32")}
    assert np.abs(want["bfloat16"] - want["float32"]).max() > 0  # the two dtypes are told apart
    inputs = [{"target": c.tolist()} for c in ctx]
    with TestClient(create_app({"m": f}, dtype="bfloat16")) as client:
        for asked, expect in ((None, "bfloat16"), ("float32", "float32"), ("bfloat16", "bfloat16")):
            params = {"prediction_length": h, "quantile_levels": [0.1, 0.9], **({"dtype": asked} if asked else {})}
            r = client.post("/v1/forecast", json={"inputs": inputs, "parameters": params})
            assert r.status_code == 200, r.text
            got = np.array([[p["quantiles"][k] for k in ("0.1", "0.9")] for p in r.json()["predictions"]])
            got = got.transpose(0, 2, 1)  # [series, level, step] -> [series, step, level]
            np.testing.assert_allclose(got, want[expect], rtol=1e-5, atol=1e-5)


def test_server_dtype_is_refused_where_it_cannot_apply(fixtures_dir):
    with pytest.raises(ValueError, match="use one of float32, bfloat16, float16"):
        create_app({"m": load_forecaster(fixtures_dir / "chronos2_tiny/checkpoint")}, dtype="int8")
    with pytest.raises(ValueError, match="moirai family.*takes no compute dtype; set dtype=null"):
        create_app({"m": load_forecaster(fixtures_dir / "moirai_tiny/checkpoint")}, dtype="bfloat16")


def test_multivariate_and_covariates_equal_predict_quantiles(fixtures_dir):
    f = load_forecaster(fixtures_dir / "chronos2_tiny/checkpoint")
    a, b = _series(2, t=40)
    x = np.linspace(0, 1, 40, dtype=np.float32)
    xf = np.linspace(1, 1.2, 5, dtype=np.float32)
    params = {"prediction_length": 5, "quantile_levels": [0.5]}
    with TestClient(create_app({"m": f})) as client:
        r0 = client.post("/v1/forecast", json={"inputs": [{"target": [a.tolist(), b[:40].tolist()]}], "parameters": params})
        r1 = client.post("/v1/forecast", json={"inputs": [{"target": a.tolist(), "past_covariates": {"x": x.tolist()},
                                                            "future_covariates": {"x": xf.tolist()}}], "parameters": params})
        # every input of a request names the same known-future covariates (as predict_quantiles asks)
        r2 = client.post("/v1/forecast", json={"inputs": [{"target": a.tolist()}, {
            "target": a.tolist(), "past_covariates": {"x": x.tolist()}, "future_covariates": {"x": xf.tolist()}}], "parameters": params})
    assert r0.status_code == 200 and r1.status_code == 200, (r0.text, r1.text)
    assert r2.status_code == 422 and "inputs[1] declares known-future covariates ['x']" in r2.json()["detail"]
    p0, p1 = r0.json()["predictions"][0], r1.json()["predictions"][0]
    assert np.array(p0["mean"]).shape == (2, 5) and np.array(p1["mean"]).shape == (5,)
    want0 = f.predict_quantiles([np.stack([a, b[:40]])], 5, [0.5])[0, ..., 0]
    want1 = f.predict_quantiles([a], 5, [0.5], past_covariates=[{"x": x}], future_covariates=[{"x": xf}])[0, :, 0]
    np.testing.assert_allclose(p0["quantiles"]["0.5"], want0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p1["quantiles"]["0.5"], want1, rtol=1e-5, atol=1e-5)


def test_missing_values_null_and_nan():
    app, _ = _app()
    with TestClient(app) as client:
        r = client.post("/v1/forecast", content=b'{"inputs": [{"target": [1, NaN, 3, null]}], '
                                                 b'"parameters": {"prediction_length": 2, "quantile_levels": [0.25]}}')
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0] == {"mean": [3.5, 3.5], "quantiles": {"0.25": [3.25, 3.25]}}


# -- batching -------------------------------------------------------------------------------------
def _post_many(url, payloads, workers=None):
    barrier = threading.Barrier(len(payloads))

    def post(p):
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            return c.post(url + "/v1/forecast", json=p)

    with ThreadPoolExecutor(workers or len(payloads)) as pool:
        return list(pool.map(post, payloads))


def test_concurrent_requests_are_merged_into_one_call():
    app, model = _app(delay=0.3, max_batch_size=16, max_wait_ms=100)
    n = 12
    with ServerThread(app) as url:
        rs = _post_many(url, [{"inputs": [{"target": [float(i), float(i + 1)]}],
                               "parameters": {"prediction_length": 2, "quantile_levels": [0.5]}} for i in range(n)])
        metrics = httpx.get(url + "/metrics").text
    assert [r.status_code for r in rs] == [200] * n
    for i, r in enumerate(rs):
        assert r.json()["predictions"][0]["quantiles"]["0.5"] == [i + 1.5, i + 1.5]
    assert max(model.calls) > 1 and len(model.calls) < n  # fewer model calls than requests
    assert max(r.json()["batch"]["requests"] for r in rs) > 1
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("tsfm_serve_batch_size_count")))
    total = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("tsfm_serve_batch_size_sum")))
    assert count == len(model.calls) and total == n


def test_a_merged_call_holds_no_more_output_values_than_one_request_may():
    # each request asks for 1 x 10 x (1 level + mean) = 20 values: a fifth of the limit of 100
    app, model = _app(delay=0.3, max_batch_size=16, max_wait_ms=150, max_output_values=100)
    n = 12
    with ServerThread(app) as url:
        rs = _post_many(url, [{"inputs": [{"target": [float(i)]}],
                               "parameters": {"prediction_length": 10, "quantile_levels": [0.5]}} for i in range(n)])
    assert [r.status_code for r in rs] == [200] * n
    assert sum(model.calls) == n and max(model.calls) == 5  # merged, but never past the per-request limit
    assert max(r.json()["batch"]["requests"] for r in rs) == 5


def test_incompatible_parameters_are_not_merged():
    app, model = _app(delay=0.2, max_batch_size=16, max_wait_ms=100)
    payloads = [{"inputs": [{"target": [1.0]}], "parameters": {"prediction_length": 1 + i % 2}} for i in range(6)]
    with ServerThread(app) as url:
        rs = _post_many(url, payloads)
    assert all(r.status_code == 200 for r in rs)
    for r, p in zip(rs, payloads):
        assert len(r.json()["predictions"][0]["mean"]) == p["parameters"]["prediction_length"]
    assert len(model.calls) >= 2


def test_mixed_quantile_levels_share_a_call():
    app, model = _app(delay=0.2, max_batch_size=16, max_wait_ms=200)
    payloads = [{"inputs": [{"target": [1.0]}], "parameters": {"prediction_length": 1, "quantile_levels": [q]}}
                for q in (0.1, 0.3, 0.7, 0.9)]
    with ServerThread(app) as url:
        rs = _post_many(url, payloads)
    for r, q in zip(rs, (0.1, 0.3, 0.7, 0.9)):
        assert r.status_code == 200 and r.json()["predictions"][0]["quantiles"] == {repr(q): [1 + q]}
    assert max(r.json()["batch"]["requests"] for r in rs) > 1


def test_a_bad_request_fails_alone_in_its_batch():
    app, model = _app(delay=0.3, max_batch_size=32, max_wait_ms=150)
    good = [{"inputs": [{"target": [float(i)]}], "parameters": {"prediction_length": 1, "quantile_levels": [0.5]}}
            for i in range(6)]
    poison = {"inputs": [{"target": [666.0]}], "parameters": {"prediction_length": 1, "quantile_levels": [0.5]}}
    all_nan = {"inputs": [{"target": [1.0]}, {"target": [None, None]}], "parameters": {"prediction_length": 1}}
    with ServerThread(app) as url:
        rs = _post_many(url, [*good, poison, all_nan])
    for i, r in enumerate(rs[:6]):
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["mean"] == [i + 0.5]
    assert rs[6].status_code == 422 and "666" in rs[6].json()["detail"]
    assert rs[7].status_code == 422 and "inputs[1].target has no observed value" in rs[7].json()["detail"]
    assert max(model.calls) > 2  # the poisoned request was in a merged call, then retried alone


def test_malformed_requests_are_answered_while_a_batch_runs():
    app, model = _app(delay=1.0, max_batch_size=8, max_wait_ms=0)
    with ServerThread(app) as url, httpx.Client(timeout=30) as c:
        slow = threading.Thread(target=lambda: c.post(url + "/v1/forecast", json={"inputs": [{"target": [1.0]}]}))
        slow.start()
        time.sleep(0.2)  # the model is busy now
        t0 = time.perf_counter()
        with httpx.Client(timeout=30) as c2:
            r = c2.post(url + "/v1/forecast", json={"inputs": [{"target": ["x"]}]})
        elapsed = time.perf_counter() - t0
        slow.join()
    assert r.status_code == 422 and elapsed < 0.5


@pytest.mark.parametrize("leaves_after", [0.1, 0.4], ids=["before-the-batch-runs", "during-the-model-call"])
def test_a_client_that_disconnects_does_not_break_the_batch(leaves_after):
    """The batch forms 0.2 s after the first request and the model takes 0.5 s: one client leaves at 0.15 s
    (before the call) or at 0.45 s (during it); the other client's answer is right either way, and the
    leaver is counted as 499."""
    app, model = _app(delay=0.5, max_batch_size=8, max_wait_ms=200)
    with ServerThread(app) as url:
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"inputs": [{"target": [5.0]}]}).encode()
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.05)
        with httpx.Client(timeout=30) as c:
            t = threading.Thread(target=lambda: time.sleep(leaves_after) or sock.close())
            t.start()
            r = c.post(url + "/v1/forecast", json={"inputs": [{"target": [7.0]}], "parameters": {"quantile_levels": [0.5]}})
            t.join()
            assert r.status_code == 200 and r.json()["predictions"][0]["mean"][0] == 7.5
            deadline = time.monotonic() + 10
            while 'status="499"' not in c.get(url + "/metrics").text and time.monotonic() < deadline:
                time.sleep(0.1)
            assert 'status="499"' in c.get(url + "/metrics").text
            assert c.post(url + "/v1/forecast", json={"inputs": [{"target": [1.0]}]}).status_code == 200


def test_batcher_skips_cancelled_jobs_and_drops_their_results():
    seen: list[list[int]] = []
    started = threading.Event()

    def run(payloads):
        seen.append(list(payloads))
        started.set()
        time.sleep(0.2)
        return [p * 10 if p != 3 else ValueError("three") for p in payloads]

    async def main():
        b = Batcher(run, max_batch_size=8, max_wait_ms=50)
        jobs = [asyncio.ensure_future(b.submit(Job("k", p))) for p in (1, 2, 3, 4)]
        await asyncio.sleep(0)
        jobs[1].cancel()  # gone before the batch forms: skipped
        await asyncio.sleep(0.1)  # the batch runs now
        jobs[3].cancel()  # gone while it runs: its result is dropped
        results = await asyncio.gather(*jobs, return_exceptions=True)
        later = await b.submit(Job("k", 5))
        await b.close()
        return results, later

    results, later = asyncio.run(main())
    assert seen[0] == [1, 3, 4] and later == 50
    assert results[0] == 10 and isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[2], ValueError) and isinstance(results[3], asyncio.CancelledError)


def test_batcher_waits_after_a_call_for_the_clients_it_answered():
    seen: list[list[str]] = []

    def run(payloads):
        seen.append(list(payloads))
        time.sleep(0.2)
        return payloads

    async def main():
        b = Batcher(run, max_batch_size=8, max_wait_ms=100)
        first = asyncio.ensure_future(b.submit(Job("k", "a")))
        await asyncio.sleep(0.15)  # "a" runs (it waited 100 ms alone)
        during = asyncio.ensure_future(b.submit(Job("k", "b")))  # its own 100 ms pass while "a" runs
        await first
        await asyncio.sleep(0.02)  # the client answered with "a" comes back
        after = asyncio.ensure_future(b.submit(Job("k", "c")))
        await asyncio.gather(during, after)
        await b.close()

    asyncio.run(main())
    assert seen == [["a"], ["b", "c"]]


# -- validation and limits --------------------------------------------------------------------------
@pytest.mark.parametrize("payload, status, where", [
    ({"inputs": []}, 422, "inputs"),
    ({"inputs": [{"target": []}]}, 422, "target"),
    ({"inputs": [{"target": ["a"]}]}, 422, "target"),
    ({"inputs": [{"target": [True]}]}, 422, "target"),
    ({"inputs": [{"target": [1.0]}], "bogus": 1}, 422, "bogus"),
    ({"inputs": [{"target": [1.0], "extra": 1}]}, 422, "extra"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"prediction_length": 0}}, 422, "prediction_length"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"prediction_length": "3"}}, 422, "prediction_length"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"quantile_levels": [1.5]}}, 422, "quantile_levels"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"quantile_levels": []}}, 422, "quantile_levels"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"num_samples": 10**9}}, 422, "num_samples"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"top_k": 5}}, 422, "'top_k'] are not taken by model 'lv'"),
    ({"inputs": [{"target": [1.0]}], "parameters": {"rm": 1}}, 422, "rm"),
    ({"inputs": [{"target": [[1.0, 2.0], [3.0]]}]}, 422, "inputs[0].target: a multivariate target needs variates"),
    ({"inputs": [{"target": [1.0, 2.0]}, {"target": [None, None]}]}, 422, "inputs[1].target has no observed value"),
    ({"inputs": [{"target": [1.0, 2.0], "past_covariates": {"x": [1.0]}}]}, 422, "inputs[0]: past covariate 'x'"),
    ({"inputs": [{"target": [1.0], "past_covariates": {"x": [1.0]}, "future_covariates": {"x": [1.0]}}],
      "parameters": {"prediction_length": 2}}, 422, "future covariate 'x'"),
    ({"inputs": [{"target": [1.0, 2.0], "past_covariates": {"x": [1.0, 1e39]}}]}, 422,
     "past_covariates[0]['x']: contains +-inf"),
    ({"model": "nope", "inputs": [{"target": [1.0]}]}, 404, "available: ['lv']"),
])
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a value beyond float32 is refused without a cast warning
def test_bad_requests_name_the_field(payload, status, where):
    app, model = _app()
    with TestClient(app) as client:
        r = client.post("/v1/forecast", json=payload)
    assert r.status_code == status, r.text
    assert where in json.dumps(r.json()["detail"]) if not isinstance(r.json()["detail"], str) else where in r.json()["detail"]
    assert model.calls == []  # refused before the model


def test_field_errors_carry_their_location():
    app, _ = _app()
    with TestClient(app) as client:
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}, {"target": [1.0, "x"]}]})
    assert r.status_code == 422
    assert ["body", "inputs", 1, "target", 1] in [e["loc"] for e in r.json()["detail"]]


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    (b"", 400, "empty body"),
    (b'{"inputs": [{"target": [1e400]}]}', 422, "infinite"),
])
def test_malformed_bodies(body, status, words):
    app, _ = _app(max_body_bytes=1_000_000)
    with TestClient(app) as client:
        r = client.post("/v1/forecast", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status and words in r.json()["detail"]


def test_limits_answer_413_naming_the_limit():
    app, model = _app(max_body_bytes=20_000, max_series=4, max_prediction_length=50, max_output_values=1_000,
                      max_sample_values=100_000)
    big = json.dumps({"inputs": [{"target": [1.0] * 5_000}]}).encode()
    with TestClient(app) as client:
        r = client.post("/v1/forecast", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "max_body_bytes=20,000" in r.json()["detail"]
        # no Content-Length (chunked): the bytes read are counted
        r = client.post("/v1/forecast", content=iter([big[:10_000], big[10_000:]]))
        assert r.status_code == 413 and "max_body_bytes=20,000" in r.json()["detail"]
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}] * 5})
        assert r.status_code == 413 and "max_series=4" in r.json()["detail"]
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}], "parameters": {"prediction_length": 51}})
        assert r.status_code == 413 and "max_prediction_length=50" in r.json()["detail"]
        r = client.post("/v1/forecast", json={"inputs": [{"target": [[1.0], [2.0], [3.0]]}] * 4,
                                               "parameters": {"prediction_length": 50, "quantile_levels": [0.5]}})
        assert r.status_code == 413 and "max_output_values=1,000" in r.json()["detail"]
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}], "parameters": {"num_samples": 10_000}})
        assert r.status_code == 413 and "max_sample_values=" in r.json()["detail"]
        assert client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}]}).status_code == 200
    assert model.calls == [1]


def test_limit_on_a_real_server_before_the_body_is_read():
    app, _ = _app(max_body_bytes=1_000)
    with ServerThread(app) as url:
        r = httpx.post(url + "/v1/forecast", content=b"x" * 5_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "max_body_bytes=1,000" in r.json()["detail"]
        assert httpx.post(url + "/v1/forecast", json={"inputs": [{"target": [1.0]}]}).status_code == 200


def test_covariates_refused_by_a_family_without_them(baseline_export):
    f = load_forecaster(baseline_export)
    with TestClient(create_app({"b": f})) as client:
        assert client.get("/v1/models").json()["models"][0]["covariates"] is False
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0, 2.0], "past_covariates": {"x": [1.0, 2.0]}}]})
    assert r.status_code == 422 and "does not use covariates" in r.json()["detail"]


# -- several models, health, metrics, schema ------------------------------------------------------------
def test_several_models_by_name():
    app = create_app({"a": LastValue(), "b": LastValue()})
    with TestClient(app) as client:
        models = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["family"]) for m in models] == [("a", "test"), ("b", "test")]
        assert models[0]["options"] == ["num_samples", "seed"]
        r = client.post("/v1/forecast", json={"model": "b", "inputs": [{"target": [1.0]}]})
        assert r.status_code == 200 and r.json()["model"] == "b"
        r = client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}]})
        assert r.status_code == 422 and "['a', 'b']" in r.json()["detail"]
        r = client.post("/v1/forecast", json={"model": "c", "inputs": [{"target": [1.0]}]})
        assert r.status_code == 404 and r.json()["detail"] == "unknown model 'c'; available: ['a', 'b']"
        h = client.get("/health").json()
    assert h["models"] == {"a": "test", "b": "test"} and h["family"] is None
    assert h["requests_served"] == 1 and h["requests_rejected"] == 2


def test_health_reports_a_deleted_model_directory(fixtures_dir, tmp_path):
    ckpt = tmp_path / "model"
    shutil.copytree(fixtures_dir / "chronos2_tiny/checkpoint", ckpt)
    f = load_forecaster(ckpt)
    with TestClient(create_app({"c2": f}, uris={"c2": str(ckpt)})) as client:
        h = client.get("/health").json()
        assert h["status"] == "ok" and h["problems"] == [] and h["family"] == "chronos2"
        assert client.get("/v1/models").json()["models"][0]["uri"] == str(ckpt)
        shutil.rmtree(ckpt)
        r = client.post("/v1/forecast", json={"inputs": [{"target": _series(1)[0].tolist()}]})
        assert r.status_code == 200  # still served from memory
        h = client.get("/health").json()
    assert h["status"] == "degraded" and str(ckpt) in h["problems"][0] and "no longer exists" in h["problems"][0]
    assert h["requests_served"] == 1


def test_metrics_exposition():
    app, _ = _app()
    with TestClient(app) as client:
        client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}]})
        client.post("/v1/forecast", json={"inputs": [{"target": [None]}]})
        text = client.get("/metrics").text
    for name in ("tsfm_serve_requests_total", "tsfm_serve_batch_size_bucket", "tsfm_serve_request_latency_seconds_bucket",
                 "tsfm_serve_inference_seconds_count", "tsfm_serve_queued_requests"):
        assert name in text, name
    assert 'tsfm_serve_requests_total{model="lv",status="200"} 1.0' in text
    assert 'tsfm_serve_requests_total{model="lv",status="422"} 1.0' in text


def test_openapi_schema_is_typed():
    app, _ = _app()
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    post = schema["paths"]["/v1/forecast"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ForecastRequest"
    comps = schema["components"]["schemas"]
    assert {"ForecastRequest", "ForecastParameters", "SeriesInput", "ForecastResponse"} <= set(comps)
    assert "prediction_length" in comps["ForecastParameters"]["properties"]
    assert "median" in comps["SeriesForecast"]["properties"]["mean"]["description"]
    assert {"200", "404", "413", "422"} <= set(post["responses"])
    assert {"/health", "/v1/models", "/metrics"} <= set(schema["paths"])


def test_an_app_serves_again_after_its_shutdown():
    app, model = _app()
    for _ in range(2):  # each TestClient runs the lifespan: startup, then shutdown (batchers closed)
        with TestClient(app) as client:
            assert client.post("/v1/forecast", json={"inputs": [{"target": [1.0]}]}).status_code == 200
    assert model.calls == [1, 1]


def test_create_app_refuses_unknown_settings():
    with pytest.raises(TypeError, match="max_batch"):
        create_app({"a": LastValue()}, max_bath_size=3)


# -- command line -----------------------------------------------------------------------------------
def test_model_sources_from_the_config():
    from omegaconf import OmegaConf

    from tsfm.serve.__main__ import _rewrite_argv, model_sources

    assert _rewrite_argv(["x", "model=models:/a@prod", "port=1"]) == ["x", "ckpt=models:/a@prod", "port=1"]
    cfg = OmegaConf.create({"ckpt": "dir0", "name": None, "models": {"a": "dir1", "b": "models:/n@alias"}})
    assert model_sources(cfg) == {"default": "dir0", "a": "dir1", "b": "models:/n@alias"}
    with pytest.raises(ValueError, match="nothing to serve"):
        model_sources(OmegaConf.create({"ckpt": None, "models": None}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_line_batching_and_limit_settings_reach_the_batcher():
    """`python -m tsfm.serve max_batch_size=7 max_wait_ms=9 limits.max_series=5` configures the served batcher."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tsfm.serve.__main__ import CONF_DIR
    from tsfm.serve.app import settings
    from tsfm.utils.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("serve", overrides=["max_batch_size=7", "max_wait_ms=9", "limits.max_series=5"])
    cfg = OmegaConf.to_container(cfg, resolve=False)  # the paths need a running Hydra app; the settings do not
    app = create_app({"lv": LastValue()}, **(settings(cfg) | settings(cfg["limits"])))
    batcher = app.state.tsfm.batchers["lv"]
    assert batcher.max_batch_size == 7 and batcher.max_wait == pytest.approx(0.009)
    assert batcher.max_batch_series == 5  # a merged call holds no more series than one request may


def test_help_names_the_serve_command():
    out = subprocess.run([sys.executable, "-m", "tsfm.serve", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("tsfm.serve: serve forecasts over HTTP") and "tsfm.train" not in out.stdout


def test_cli_serves_a_checkpoint(fixtures_dir, baseline_export, tmp_path):
    port = _free_port()
    log = tmp_path / "serve.log"
    models = f"models={{a: {fixtures_dir / 'chronos2_tiny/checkpoint'}, b: {baseline_export}}}"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tsfm.serve", models, f"port={port}", "max_wait_ms=1",
                                 f"hydra.run.dir={tmp_path / 'run'}"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, Path(log).read_text()[-3000:]
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, Path(log).read_text()[-3000:]
                time.sleep(0.3)
        assert health["status"] == "ok" and health["models"] == {"a": "chronos2", "b": "baseline"}
        r = httpx.post(url + "/v1/forecast", json={"model": "a", "inputs": [{"target": _series(1)[0].tolist()}],
                                                   "parameters": {"prediction_length": 4}}, timeout=60)
        assert r.status_code == 200 and len(r.json()["predictions"][0]["mean"]) == 4
        assert [m["name"] for m in httpx.get(url + "/v1/models").json()["models"]] == ["a", "b"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "serving a, b on http://127.0.0.1" in log.read_text()


def test_import_tsfm_does_not_import_fastapi():
    code = "import sys, tsfm, tsfm.forecast; assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
