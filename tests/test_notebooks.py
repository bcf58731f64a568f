"""The demo notebook's code runs top to bottom (cells executed in order, outputs checked)."""

import json
from pathlib import Path

import matplotlib
import numpy as np

NB = Path(__file__).resolve().parents[1] / "notebooks" / "forecasting_demo.ipynb"


def test_forecasting_demo_runs(fixtures_dir, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(NB.parent)
    assert (NB.parent.parent / "tests" / "fixtures" / "chronos2_tiny").is_dir()
    cells = [c for c in json.loads(NB.read_text())["cells"] if c["cell_type"] == "code"]
    ns: dict = {}
    for cell in cells:
        exec(compile("".join(cell["source"]), str(NB), "exec"), ns)  # noqa: S102 - our own notebook
    assert ns["forecaster"].family == "chronos2"
    assert ns["q"].shape == (4, 18, 3)
    assert np.isfinite(ns["q"]).all()  # a random model: quantiles may cross, but must be finite
    assert list(ns["pred"].columns[:3]) == ["item_id", "timestamp", "target_name"]
    assert len(ns["pred"]) == 18
    assert ns["samples"].shape == (4, 100, 18)
