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


FT = NB.parent / "finetune_your_data.ipynb"


def test_finetune_notebook_runs_and_keeps_no_outputs(monkeypatch, tmp_path):
    matplotlib.use("Agg")
    nb = json.loads(FT.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)  # stripped in git
    monkeypatch.chdir(NB.parent)
    monkeypatch.setenv("TSFM_NOTEBOOK_STEPS", "4")
    ns: dict = {}
    for i, cell in enumerate(code):
        src = "".join(cell["source"]).replace('out_dir="finetune_demo_run"', f'out_dir="{tmp_path / "run"}"')
        exec(compile(src, f"{FT}:cell{i}", "exec"), ns)  # noqa: S102 - our own notebook
    assert ns["df"].item_id.nunique() == 54
    assert len(ns["pred"]) == 54 * 12 and {"0.1", "0.5", "0.9"} <= set(ns["pred"].columns)
    res = ns["result"]
    assert list(res.table.index) == ["seasonal_naive", "auto_ets", "auto_theta", "zero_shot", "finetuned"]
    assert res.files["plot"].is_file() and len(ns["final"]) == 54 * 12
    assert not (NB.parent / "finetune_demo_run").exists()  # the test wrote to tmp only
