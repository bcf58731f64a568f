"""KernelSynth (Chronos, Ansari et al. 2024): samples of a Gaussian-process prior whose kernel is
a random composition of kernels from a fixed bank.

For each series: ``k ~ U{1..max_kernels}`` kernels are drawn from the bank (with replacement)
and folded together with a random ``+`` or ``×``; the series is one draw of the zero-mean GP
with that kernel on ``x = linspace(0, 1, length)``. The bank:

* periodic ``exp(-2 sin²(π d / p))`` with ``p = P / length`` for P in :data:`PERIODS`
* linear (dot product) ``σ0² + x x'`` with σ0 ∈ {0, 1, 10}
* RBF ``exp(-d² / 2l²)`` with l ∈ {0.1, 1, 10}
* rational quadratic ``(1 + d² / 2α)^-α`` with α ∈ {0.1, 1, 10}
* white noise (0.1, 1) and a constant (1)

Speed: every bank kernel except the linear one depends only on the lag ``|i - j|``, and sums and
products of such kernels do too, so compositions are evaluated on the ``length`` lags and
sampled exactly by circulant embedding (FFT, O(L log L)); compositions with the linear kernel,
or whose embedding is not non-negative definite, use a float64 Cholesky with growing jitter.
Series ``i`` depends only on ``(seed, i)``: the Cholesky path runs on one torch thread, because a
threaded factorisation sums in an order that depends on the thread count (1 and 2 threads gave
different float32 values in ~70% of the series, by up to 1.2e-4 of a series' standard deviation, and a
98k-parameter encoder trained 600 steps on each corpus ends at validation NLL 1.278 and 1.313).
Bit-equality across CPU instruction sets is not promised: the manifest's checksums say whether two
corpora are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from tsfm.data.types import Series

PERIODS = (24, 48, 96, 168, 336, 672, 7, 14, 30, 60, 365, 730, 4, 26, 52, 6, 12, 40, 10)
# (kind, parameter): kinds "periodic", "linear", "rbf", "rq", "white", "constant"
BANK: tuple[tuple[str, float], ...] = (
    *(("periodic", float(p)) for p in PERIODS),
    *(("linear", s) for s in (0.0, 1.0, 10.0)),
    *(("rbf", s) for s in (0.1, 1.0, 10.0)),
    *(("rq", a) for a in (0.1, 1.0, 10.0)),
    ("white", 0.1),
    ("white", 1.0),
    ("constant", 1.0),
)
# bump when what the generator draws changes: it is part of the corpus cache key (tsfm.data.sources), so
# cached corpora of an older version are rebuilt instead of silently reused. 2: one-thread Cholesky.
VERSION = 2


def _lag_kernel(kind: str, param: float, length: int) -> np.ndarray:
    """A stationary kernel as a function of the lag index 0..length-1 (x spacing 1/(length-1))."""
    d = np.arange(length) / max(length - 1, 1)  # lag distance in x units
    if kind == "periodic":
        p = param / length
        return np.exp(-2.0 * np.sin(np.pi * d / p) ** 2)
    if kind == "rbf":
        return np.exp(-(d**2) / (2.0 * param**2))
    if kind == "rq":
        return (1.0 + d**2 / (2.0 * param)) ** (-param)
    if kind == "white":
        out = np.zeros(length)
        out[0] = param
        return out
    if kind == "constant":
        return np.full(length, param)
    raise ValueError(f"not a stationary kernel: {kind}")


@lru_cache(maxsize=4)
def _lag_index(length: int) -> np.ndarray:
    i = np.arange(length, dtype=np.int32)
    return np.abs(i[:, None] - i[None, :])  # [L, L]


def _dense(k: tuple[str, np.ndarray], length: int) -> np.ndarray:
    return k[1][_lag_index(length)] if k[0] == "lag" else k[1]


def _compose(kernels: list[tuple[str, float]], ops: list[int], length: int) -> tuple[str, np.ndarray]:
    """Fold kernels left to right with + (op 0) or × (op 1); stay on lags while possible.

    Returns ``("lag", c[L])`` for a stationary composition, else ``("dense", K[L, L])``.
    """
    x = np.linspace(0.0, 1.0, length)
    acc: tuple[str, np.ndarray] | None = None
    for j, (kind, param) in enumerate(kernels):
        if kind == "linear":
            cur: tuple[str, np.ndarray] = ("dense", param**2 + np.outer(x, x))
        else:
            cur = ("lag", _lag_kernel(kind, param, length))
        if acc is None:
            acc = cur
            continue
        if acc[0] == "lag" and cur[0] == "lag":
            acc = ("lag", acc[1] + cur[1] if ops[j - 1] == 0 else acc[1] * cur[1])
        else:
            a, b = _dense(acc, length), _dense(cur, length)
            acc = ("dense", a + b if ops[j - 1] == 0 else a * b)
    assert acc is not None
    return acc


def _circulant_sample(c: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Exact GP sample for a stationary covariance by circulant embedding (O(L log L)), or
    ``None`` when the embedding is not non-negative definite (then Cholesky is used)."""
    m = 2 * (len(c) - 1)
    lam = np.fft.fft(np.concatenate([c, c[-2:0:-1]])).real  # eigenvalues of the circulant, [m]
    top = max(float(lam.max()), 1e-300)
    if lam.min() < -1e-6 * top:
        return None
    xi = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    return np.fft.fft(np.sqrt(np.clip(lam, 0.0, None) / m) * xi).real[: len(c)]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@_one_torch_thread()  # the same values whatever the process's thread count
def _cholesky_sample(cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    z = torch.from_numpy(rng.standard_normal(len(cov)))
    k = torch.from_numpy(cov)
    scale = max(float(k.diagonal().mean()), 1e-12)
    eye = torch.eye(len(cov), dtype=k.dtype)
    for jitter in (1e-8, 1e-6, 1e-4, 1e-2):
        chol, info = torch.linalg.cholesky_ex(k + eye * (jitter * scale))
        if int(info) == 0:
            return (chol @ z).numpy()
    w, v = torch.linalg.eigh(k)  # last resort: PSD square root
    return (v @ (w.clamp_min(0).sqrt() * z)).numpy()


def kernelsynth_series(i: int, seed: int = 0, length: int = 1024, max_kernels: int = 5) -> np.ndarray:
    """Series ``i`` of the KernelSynth stream ``seed``: float32 ``[length]``."""
    rng = np.random.default_rng([int(seed), int(i)])
    k = int(rng.integers(1, max_kernels + 1))
    picks = rng.integers(0, len(BANK), size=k)
    ops = rng.integers(0, 2, size=max(k - 1, 0)).tolist()
    kind, cov = _compose([BANK[p] for p in picks], ops, length)
    y = _circulant_sample(cov, rng) if kind == "lag" else None
    if y is None:
        y = _cholesky_sample(_dense((kind, cov), length), rng)
    return y.astype(np.float32)


def generate_kernelsynth(
    num_series: int, seed: int = 0, length: int = 1024, max_kernels: int = 5, freq: str = "h"
) -> Iterator[Series]:
    """``num_series`` KernelSynth series as :class:`Series` (regular ``freq``, start 2000-01-01)."""
    if num_series < 0 or length < 2 or max_kernels < 1:
        raise ValueError(
            f"need num_series >= 0, length >= 2, max_kernels >= 1 (got {num_series}, {length}, {max_kernels})"
        )
    start = np.datetime64("2000-01-01T00:00:00", "s")
    for i in range(num_series):
        y = kernelsynth_series(i, seed, length, max_kernels)
        yield Series(y[None, :], freq, f"kernelsynth_{seed}_{i}", "kernelsynth", start)
