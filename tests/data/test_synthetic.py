"""KernelSynth and TSMixup: deterministic by seed, right lengths and statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsfm.data.synthetic import kernelsynth as ks
from tsfm.data.synthetic.tsmixup import generate_tsmixup, tsmixup_series
from tsfm.data.types import Series


def test_kernelsynth_deterministic_by_seed_and_index() -> None:
    a = list(ks.generate_kernelsynth(4, seed=3, length=256))
    b = list(ks.generate_kernelsynth(4, seed=3, length=256))
    c = list(ks.generate_kernelsynth(4, seed=4, length=256))
    assert all(s.target.shape == (1, 256) and s.target.dtype == np.float32 for s in a)
    assert all(np.array_equal(x.target, y.target) for x, y in zip(a, b))
    assert not np.array_equal(a[0].target, c[0].target)
    np.testing.assert_array_equal(ks.kernelsynth_series(2, seed=3, length=256), a[2].target[0])


def test_kernelsynth_does_not_depend_on_the_thread_count() -> None:
    """A threaded Cholesky sums in a thread-count-dependent order: the same seed gave two corpora on 1 and 2
    threads (and a cache holding either). Series 0-5 at length 1024 include Cholesky and circulant draws."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [ks.kernelsynth_series(i, seed=0, length=1024) for i in range(6)]
        torch.set_num_threads(2)
        two = [ks.kernelsynth_series(i, seed=0, length=1024) for i in range(6)]
        assert torch.get_num_threads() == 2  # the generator restores the caller's setting
    finally:
        torch.set_num_threads(threads)
    for i, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"series {i}")


def test_kernelsynth_bank_matches_design() -> None:
    kinds = [k for k, _ in ks.BANK]
    assert kinds.count("periodic") == 19 and kinds.count("linear") == 3 and kinds.count("rbf") == 3
    assert kinds.count("rq") == 3 and kinds.count("white") == 2 and kinds.count("constant") == 1


@pytest.mark.parametrize("kernels", [[("rbf", 0.1)], [("periodic", 24.0), ("white", 0.1)], [("linear", 1.0)]])
def test_gp_samples_have_the_kernel_covariance(kernels: list) -> None:
    """Empirical covariance of many samples matches the kernel matrix (circulant and Cholesky paths)."""
    length, n = 64, 2000
    kind, c = ks._compose(kernels, [0] * (len(kernels) - 1), length)
    cov = ks._dense((kind, c), length)
    rng = np.random.default_rng(0)
    draws = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread start-up would dominate
    try:
        for _ in range(n):
            y = ks._circulant_sample(c, rng) if kind == "lag" else None
            draws.append(y if y is not None else ks._cholesky_sample(cov, rng))
    finally:
        torch.set_num_threads(threads)
    emp = np.cov(np.array(draws).T, bias=True) + 0.0
    assert np.abs(emp - cov).mean() < 0.04 * np.abs(cov).max()  # sampling noise ~ sqrt(2/n)


def test_tsmixup_lengths_scale_and_determinism() -> None:
    rng = np.random.default_rng(0)
    sources = [Series((rng.random((1, 3000)) * 100 + 50).astype(np.float32), "h") for _ in range(5)]
    sources.append(Series(np.ones((1, 50), np.float32), "h"))  # too short: never used
    out = list(generate_tsmixup(sources, 20, seed=1))
    lengths = [s.length for s in out]
    assert min(lengths) >= 128 and max(lengths) <= 2048 and len(set(lengths)) > 5
    for s in out:  # convex mix of mean-scaled series: mean about 1, positive
        assert 0.5 < float(np.mean(s.target)) < 1.5 and (s.target > 0).all()
    again = list(generate_tsmixup(sources, 20, seed=1))
    assert all(np.array_equal(x.target, y.target) for x, y in zip(out, again))
    single = tsmixup_series(0, [np.arange(1.0, 201.0)], k_max=1, min_length=200, max_length=200)
    np.testing.assert_allclose(single, np.arange(1.0, 201.0) / 100.5, rtol=1e-6)


def test_tsmixup_without_long_sources_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs source series of at least min_length=128"):
        list(generate_tsmixup([Series(np.ones((1, 10), np.float32), "h")], 1))
