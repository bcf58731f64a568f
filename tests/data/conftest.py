"""Small on-disk sub-datasets shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tsfm.data.format import write_dataset
from tsfm.data.types import Series


def make_series(
    n: int, lengths: list[int] | None = None, seed: int = 0, variates: int = 1, prefix: str = "s"
) -> list[Series]:
    rng = np.random.default_rng(seed)
    lengths = lengths or [int(x) for x in rng.integers(50, 200, size=n)]
    start = np.datetime64("2020-01-01T00:00:00", "s")
    return [
        Series(rng.standard_normal((variates, t)).astype(np.float32), "h", f"{prefix}{i}", "", start)
        for i, t in enumerate(lengths)
    ]


@pytest.fixture
def uni_dir(tmp_path: Path) -> Path:
    write_dataset(make_series(30), tmp_path / "uni")
    return tmp_path / "uni"
