"""`python -m tsfm.pipeline`: corpus -> search -> train -> evaluate -> register -> serve, each step skipped
when its output exists for the same inputs, so a rerun after a failure resumes at the failed step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsfm.pipeline import Step, content_key

ROOT = Path(__file__).resolve().parents[1]


def test_content_key_is_stable_and_sees_every_input():
    a = content_key(["model=chronos2_tiny"], {"n_trials": 2})
    assert a == content_key(["model=chronos2_tiny"], {"n_trials": 2}) and len(a) == 12
    assert a != content_key(["model=chronos2_tiny"], {"n_trials": 3})
    assert a != content_key(["model=moirai_tiny"], {"n_trials": 2})


def test_a_step_is_done_only_once_its_record_is_written(tmp_path):
    step = Step(tmp_path, "train", "abc")
    assert step.dir == tmp_path / "train-abc" and step.result is None
    step.dir.mkdir()
    (step.dir / "done.json.tmp").write_text("{half")  # an interrupted write is not a finished step
    assert step.result is None
    step.finish({"export": "x"})
    assert step.result == {"export": "x"} and not (step.dir / "done.json.tmp").exists()


def _pipeline(tmp: Path, *overrides: str, timeout: int = 900) -> tuple[int, str]:
    env = {**os.environ, "PROJECT_ROOT": str(tmp), "TSFM_REGISTRY_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    log = tmp / f"pipeline-{len(list(tmp.glob('pipeline-*.log')))}.log"
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "tsfm.pipeline", f"root={tmp / 'pipe'}", *overrides], cwd=ROOT,
                            env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
    return rc, log.read_text()


def test_a_failed_step_names_its_command_and_a_rerun_skips_the_finished_ones(tmp_path):
    bad = ["train=['model=chronos2_tiny','data.series_scale=0.003','trainer.max_steps=0']", "search.enabled=false",
           "serve.enabled=false"]
    rc, out = _pipeline(tmp_path, *bad)
    assert rc != 0
    assert "step failed" in out and "tsfm.train" in out and "trains nothing" in out  # the cause, from the step's log
    (corpus,) = (tmp_path / "pipe").glob("corpus-*")
    assert json.loads((corpus / "done.json").read_text())["sub_datasets"]
    assert not list((tmp_path / "pipe").glob("train-*/done.json"))
    rc, out = _pipeline(tmp_path, *bad)
    assert rc != 0 and "[corpus] done before, skipped" in out


@pytest.mark.slow
def test_the_smoke_pipeline_runs_end_to_end_and_a_rerun_skips_every_step(tmp_path):
    rc, out = _pipeline(tmp_path, "experiment=pipeline_smoke", timeout=900)
    assert rc == 0, out[-5000:]
    res = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())
    assert set(res) == {"corpus", "search", "train", "evaluate", "register", "serve"}
    assert res["search"]["best_params"]  # the searched learning rate
    assert res["register"]["version"] == 1 and res["register"]["promoted"] == "staging"  # no @production yet
    assert res["serve"]["forecast_status"] == 200 and res["serve"]["health"]
    assert 0 < res["evaluate"]["rel_wql"] < 10
    rc, out = _pipeline(tmp_path, "experiment=pipeline_smoke", timeout=900)
    assert rc == 0, out[-5000:]
    for step in ("corpus", "search", "train", "evaluate", "register"):
        assert f"[{step}] done before, skipped" in out
    assert json.loads((tmp_path / "pipe" / "pipeline.json").read_text())["register"]["version"] == 1
