"""`python -m tsfm.pipeline`: corpus -> search -> train -> evaluate -> register -> serve, each step skipped
when its output exists for the same inputs, so a rerun after a failure resumes at the failed step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsfm.pipeline import Pipeline, Step, _check_port_free, content_key

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


def test_a_register_step_rerun_after_a_failure_reuses_its_version(tmp_path, baseline_export, monkeypatch):
    from omegaconf import OmegaConf

    from tsfm import registry
    from tsfm.registry.mlflow_registry import _client, normalize_uri

    uri = normalize_uri(str(tmp_path / "mlflow.db"))
    _client(uri, write=True)
    cfg = OmegaConf.create({"root": str(tmp_path / "pipe"), "train": [], "registry": {
        "uri": uri, "name": "pipe-model", "promote_to": "staging", "compare_with": "production"}})
    scores = {"suite": "dev", "rel_wql": 0.9, "rel_mase": 0.95}

    def promote_fails(*a, **k):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(registry, "promote", promote_fails)
    with pytest.raises(RuntimeError, match="went away"):
        Pipeline(cfg).register("evalkey", str(baseline_export), str(baseline_export.parent), scores)
    assert [v.version for v in registry.get_model("pipe-model", uri=uri).versions] == [1]
    monkeypatch.undo()
    done = Pipeline(cfg).register("evalkey", str(baseline_export), str(baseline_export.parent), scores)
    model = registry.get_model("pipe-model", uri=uri)
    assert done["version"] == 1 and [v.version for v in model.versions] == [1]  # no second version
    assert model.aliases == {"staging": 1}
    # a different evaluation is a different step: a new version
    assert Pipeline(cfg).register("otherkey", str(baseline_export), str(baseline_export.parent), scores)["version"] == 2


def _register_cfg(tmp_path):
    from omegaconf import OmegaConf

    from tsfm.registry.mlflow_registry import _client, normalize_uri

    uri = normalize_uri(str(tmp_path / "mlflow.db"))
    _client(uri, write=True)
    return uri, OmegaConf.create({"root": str(tmp_path / "pipe"), "train": [], "paths": {"root_dir": str(tmp_path)},
                                  "registry": {"uri": uri, "name": "m", "promote_to": "staging",
                                               "compare_with": "production"}})


@pytest.mark.parametrize("recorded", [
    {"metrics": {"dev/rel_wql": 0.5}},  # a pipeline registration
    {"metrics": {"dev_rel_wql": 0.5}},  # the pipeline's earlier metric name
    {"metrics": {"final_eval/rel_wql": 0.5}, "lineage": {"final_eval_suite": "dev"}},  # a training run's final_eval
], ids=["pipeline", "old-pipeline-name", "training-final-eval"])
def test_a_worse_candidate_is_not_promoted_over_production_however_its_score_was_recorded(
        tmp_path, baseline_export, recorded):
    from tsfm import registry

    uri, cfg = _register_cfg(tmp_path)
    registry.register(baseline_export, "m", uri=uri, alias="production", discover_metrics=False, **recorded)
    res = Pipeline(cfg).register("k", str(baseline_export), str(baseline_export.parent),
                                 {"suite": "dev", "rel_wql": 0.9, "rel_mase": 0.95})
    assert res["version"] == 2 and res["promoted"] is None and res["incumbent"] == 0.5
    assert registry.get_model("m", uri=uri).aliases == {"production": 1}
    assert registry.get_version("models:/m/2", uri=uri).metrics == {"dev/rel_wql": 0.9, "dev/rel_mase": 0.95}
    better = Pipeline(cfg).register("k2", str(baseline_export), str(baseline_export.parent),
                                    {"suite": "dev", "rel_wql": 0.4, "rel_mase": 0.95})
    assert better["promoted"] == "staging" and registry.get_model("m", uri=uri).aliases == {"production": 1, "staging": 3}


def test_a_production_version_without_a_score_on_the_suite_is_evaluated_before_comparing(
        tmp_path, baseline_export, monkeypatch):
    from tsfm import registry
    from tsfm.training import final_eval

    uri, cfg = _register_cfg(tmp_path)
    registry.register(baseline_export, "m", uri=uri, alias="production", discover_metrics=False,
                      metrics={"lite/rel_wql": 0.1})  # scored on another suite only
    calls = []

    def evaluate(export_dir, suite, paths, out_dir):
        calls.append((Path(export_dir), suite, Path(out_dir)))
        return {"rel_wql": 0.7, "rel_mase": 0.8}

    monkeypatch.setattr(final_eval, "evaluate_export", evaluate)
    res = Pipeline(cfg).register("k", str(baseline_export), str(baseline_export.parent),
                                 {"suite": "dev", "rel_wql": 0.8, "rel_mase": 0.9})
    ((where, suite, out),) = calls
    assert where == registry.resolve("models:/m/1", uri=uri) and (where / "config.json").is_file()
    assert suite == "dev" and out.name == "incumbent-v1"
    assert res["incumbent"] == 0.7 and res["promoted"] is None


def test_serving_refuses_a_port_already_in_use():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port} is already in use.*serve.port"):
            _check_port_free("127.0.0.1", port)
    _check_port_free("127.0.0.1", port)  # closed again: free


def test_help_describes_the_pipeline():
    out = subprocess.run([sys.executable, "-m", "tsfm.pipeline", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120).stdout
    assert out.startswith("python -m tsfm.pipeline: corpus -> learning-rate search")
    assert "tsfm.train: pretrain" not in out and "registry:" in out and "serve:" in out


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
