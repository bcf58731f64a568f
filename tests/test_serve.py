"""HTTP endpoint: round trip, bad requests, health — against a local server on a free port."""

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from tsfm.forecast import Forecaster
from tsfm.serve import make_server


class LastValue(Forecaster):
    """Test double: every quantile = last observed value + level (exact, easy to assert)."""

    family = "test"

    def __init__(self):
        import torch

        super().__init__(torch.nn.Identity())

    @classmethod
    def from_pretrained(cls, path, **kw):
        return cls()

    @classmethod
    def from_checkpoint(cls, ckpt, **kw):
        return cls()

    def _quantiles(self, inputs, prediction_length, quantile_levels, **kw):
        out = []
        for t in inputs.targets:
            last = np.array([row[~np.isnan(row)][-1] for row in t])  # [V]
            out.append(np.broadcast_to(last[:, None, None] + np.array(quantile_levels), (len(t), prediction_length, len(quantile_levels))))
        return out


@pytest.fixture
def server():
    srv = make_server(LastValue(), port=0)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _post(url, payload):
    req = urllib.request.Request(url + "/predict", data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_predict_round_trip(server):
    status, out = _post(server, {"context": [[1, 2, None, 4], [5, 6]], "prediction_length": 3, "quantile_levels": [0.1, 0.9]})
    assert status == 200
    q = np.array(out["quantiles"])
    assert q.shape == (2, 3, 2)
    np.testing.assert_allclose(q[0, :, 0], 4.1, rtol=1e-6)
    np.testing.assert_allclose(q[1, :, 1], 6.9, rtol=1e-6)
    assert out["quantile_levels"] == [0.1, 0.9] and out["latency_ms"] >= 0


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"prediction_length": 3}, "required"),
        ({"context": [], "prediction_length": 3}, "non-empty"),
        ({"context": [[1, 2]], "prediction_length": 0}, "prediction_length"),
        ({"context": [["a", "b"]], "prediction_length": 2}, "list of numbers"),
        ({"context": [[1, 2]], "prediction_length": 2, "bogus": 1}, "unknown fields"),
        ({"context": [[1, 2]], "prediction_length": 2, "options": {"rm": 1}}, "unknown options"),
        ({"context": [[1, 2]], "prediction_length": 2, "options": {"num_samples": 10**9}}, "num_samples"),
        ({"context": [[1, 2]], "prediction_length": 2, "quantile_levels": 0.5}, "quantile_levels"),
        ({"context": [[1, 2]], "prediction_length": 2, "past_covariates": [[1, 2]]}, "one object"),
        ({"context": [[1, 2]], "prediction_length": 2, "quantile_levels": []}, "non-empty list"),
        ({"context": [[1, 2]], "prediction_length": 2, "options": {"batch_size": "auto"}}, "'batch_size' must be an integer"),
        ({"context": [[1, 2]], "prediction_length": 2, "options": {"batch_size": True}}, "'batch_size' must be an integer"),
        ({"context": [[1, 2]], "prediction_length": 2, "options": {"cross_learning": "yes"}}, "true or false"),
        ({"context": [[1, 2]] * 10_000, "prediction_length": 10_000}, "split the request"),
    ],
)
def test_bad_requests_get_400_with_reason(server, payload, match):
    status, out = _post(server, payload)
    assert status == 400 and match in out["error"]


def test_series_with_different_variate_counts(server):
    status, out = _post(server, {"context": [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9]]], "prediction_length": 2,
                                 "quantile_levels": [0.5]})
    assert status == 200
    assert np.array(out["quantiles"][0]).shape == (2, 2, 1) and np.array(out["quantiles"][1]).shape == (1, 2, 1)
    assert out["quantiles"][0][1][0][0] == pytest.approx(6.5)


def test_health_counts_requests(server):
    _post(server, {"context": [[1.0]], "prediction_length": 1})
    with urllib.request.urlopen(server + "/health", timeout=10) as r:
        h = json.loads(r.read())
    assert h == {"status": "ok", "family": "test", "requests": 1}


def _raw(url: str, request: bytes) -> bytes:
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            reply += chunk
        return reply


def test_malformed_http_gets_400_and_the_server_keeps_serving(server):
    bad_length = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    assert b" 400 " in _raw(server, bad_length).split(b"\r\n")[0] and b"Content-Length" in _raw(server, bad_length)
    deep = b"[" * 100_000 + b"]" * 100_000
    reply = _raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep)
    assert b" 400 " in reply.split(b"\r\n")[0] and b"not valid JSON" in reply
    assert _post(server, {"context": [[1.0, 2.0]], "prediction_length": 1})[0] == 200


def test_a_burst_of_clients_is_served(server):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(lambda i: _post(server, {"context": [[float(i)]], "prediction_length": 1})[0], range(40)))
    assert codes == [200] * 40
