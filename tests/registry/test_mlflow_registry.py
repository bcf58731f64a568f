"""The MLflow model registry: register exported checkpoints, load them back by alias and by version
(same forecasts as the directory), move aliases, clear errors, nothing half-made, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tsfm.forecast import load_forecaster
from tsfm.registry import (
    ModelRef,
    RegistryError,
    RegistryLocked,
    RegistryNotFound,
    get_model,
    get_version,
    list_models,
    promote,
    register,
    resolve,
    resolve_uri,
    version_metrics,
)
from tsfm.registry.mlflow_registry import ARTIFACTS_DIR, EXPERIMENT, _mlflow, normalize_uri, sqlite_path

CTX = [np.sin(np.arange(96) / 4.0).astype(np.float32), np.cos(np.arange(70) / 3.0).astype(np.float32) + 2]


def forecast(path_or_ref, uri=None) -> np.ndarray:
    """Quantile forecasts of a checkpoint (seeded: the sampling families draw samples)."""
    import torch

    f = load_forecaster(path_or_ref, registry_uri=uri) if uri else load_forecaster(path_or_ref)
    torch.manual_seed(0)
    return f.predict_quantiles(CTX, prediction_length=8, quantile_levels=[0.1, 0.5, 0.9])


def mlflow_client(uri):
    return _mlflow().MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.parametrize("family_ckpt", ["baseline", "chronos2", "moirai", "chronos"], indirect=True)
def test_a_registered_checkpoint_loads_by_alias_and_version_and_forecasts_the_same(family_ckpt, registry_uri):
    expected = forecast(family_ckpt)
    assert register(family_ckpt, "m", uri=registry_uri) == 1
    assert register(family_ckpt, "m", uri=registry_uri, alias="production") == 2
    for ref in ("models:/m@production", "models:/m/1", "models:/m/2", "models:/m/latest"):
        np.testing.assert_array_equal(forecast(ref, registry_uri), expected, err_msg=ref)
    loaded = load_forecaster("models:/m@production")  # $TSFM_REGISTRY_URI (the fixture sets it)
    assert loaded.source == resolve("models:/m/2")
    assert (loaded.source / "config.json").read_bytes() == (family_ckpt / "config.json").read_bytes()
    v = get_version("models:/m@production", uri=registry_uri)
    from tsfm.checkpoint import read_json
    from tsfm.models import detect

    assert v.version == 2 and v.aliases == ["production"] and v.family == detect(read_json(family_ckpt / "config.json"))


def test_versions_record_family_size_metrics_and_lineage(baseline_export, registry_uri):
    from safetensors.torch import load_file

    n = sum(t.numel() for t in load_file(str(baseline_export / "model.safetensors")).values())
    version = register(baseline_export, "base", uri=registry_uri, metrics={"dev/rel_wql": 0.93},
                       lineage={"parent_checkpoint": "models:/other/1", "note": {"a": 1}}, description="first")
    v = get_version(f"base/{version}", uri=registry_uri)
    assert v.family == "baseline" and v.params == n
    assert v.metrics == {"dev/rel_wql": 0.93}
    assert v.lineage["parent_checkpoint"] == "models:/other/1" and json.loads(v.lineage["note"]) == {"a": 1}
    assert len(v.lineage["git_commit"]) == 40  # the tsfm checkout's commit
    assert v.description == "first" and v.tags["tsfm.registered_from"] == str(baseline_export)
    run = mlflow_client(registry_uri).get_run(v.run_id)  # the MLflow run holds the metrics too
    assert run.data.metrics == {"dev/rel_wql": 0.93}


def fake_run_dir(tmp_path: Path, export: Path) -> Path:
    """A training run directory as python -m tsfm.train leaves it (export, final_eval, csv metrics, .hydra)."""
    run = tmp_path / "run"
    shutil.copytree(export, run / "export")
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task_name: train\nmodel:\n  family: baseline\n  module:\n"
                                                "    pretrained: /ckpts/parent\n")
    (run / ".hydra" / "overrides.yaml").write_text("- model=baseline_dec_tiny\n- trainer.max_steps=2\n")
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      model: baseline_dec_tiny\n")
    (run / "final_eval").mkdir()
    agg = {"num_datasets": 15, "failed_datasets": [], "avg_wql": 0.11, "rel_wql": 0.95, "avg_mase": 2.0, "rel_mase": 1.02}
    (run / "final_eval" / "results.json").write_text(json.dumps(
        {"suite": "dev", "model": "this run", "aggregate": {"this run": agg, "seasonal_naive": {"rel_wql": 1.0}}}))
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text(
        "step,benchmark/avg_wql,benchmark/avg_mase,train/loss\n1,0.30,2.5,\n1,,,3.0\n2,0.25,2.2,\n")
    (run / "export" / "training_data.json").write_text(json.dumps({"format": 1, "sub_datasets": [
        {"name": "m4", "path": str(tmp_path / "nowhere"), "weight": 1.0, "synthetic": False,
         "provenance": "manifest", "sources": {"m4_daily": ["ab", "cd"]}}]}))
    return run


def test_registering_a_run_dir_reads_its_evaluation_benchmark_config_and_corpus(baseline_export, registry_uri, tmp_path):
    run = fake_run_dir(tmp_path, baseline_export)
    version = register(run, "base", uri=registry_uri, metrics={"final_eval/rel_mase": 0.5})  # the caller's value wins
    v = get_version(ModelRef("base", version=version), uri=registry_uri)
    assert v.metrics == {"final_eval/avg_wql": 0.11, "final_eval/rel_wql": 0.95, "final_eval/avg_mase": 2.0,
                         "final_eval/rel_mase": 0.5, "benchmark/avg_wql": 0.25, "benchmark/avg_mase": 2.2,
                         "dev/rel_wql": 0.95, "dev/rel_mase": 1.02}  # the suite's scores under the pipeline's names
    lineage = v.lineage
    assert lineage["parent_checkpoint"] == "/ckpts/parent" and lineage["model_config"] == "baseline_dec_tiny"
    assert lineage["overrides"] == "model=baseline_dec_tiny trainer.max_steps=2"
    assert lineage["run_dir"] == str(run.resolve()) and lineage["final_eval_suite"] == "dev"
    assert lineage["corpus"] == "m4" and len(lineage["corpus_digest"]) == 64
    art = resolve(f"models:/base/{version}", uri=registry_uri).parent / "lineage"
    assert (art / "config.yaml").read_text() == (run / ".hydra" / "config.yaml").read_text()
    full = json.loads((art / "lineage.json").read_text())
    assert full["corpus_sub_datasets"][0]["sources"] == {"m4_daily": ["ab", "cd"]}
    assert full["metrics"]["benchmark/avg_wql"] == 0.25


def test_a_run_s_best_checkpoint_carries_its_own_evaluation_not_the_final_weights(baseline_export, registry_uri, tmp_path):
    """`python -m tsfm.registry register <run>/export_best` (the command a failed registration suggests)."""
    run = fake_run_dir(tmp_path, baseline_export)
    shutil.copytree(run / "export", run / "export_best")
    assert set(get_version(ModelRef("b", version=register(run / "export_best", "b", uri=registry_uri)),
                           uri=registry_uri).metrics) == {"benchmark/avg_wql", "benchmark/avg_mase"}  # not scored yet
    (run / "export_best_eval").mkdir()
    (run / "export_best_eval" / "results.json").write_text(json.dumps({"suite": "dev", "model": "this run", "aggregate": {
        "this run": {"rel_wql": 0.8, "rel_mase": 0.9}}}))
    m = get_version(ModelRef("b", version=register(run / "export_best", "b", uri=registry_uri)), uri=registry_uri).metrics
    assert m["dev/rel_wql"] == 0.8 and m["final_eval/rel_wql"] == 0.8  # not the final weights' 0.95
    elsewhere = tmp_path / "copy"
    shutil.copytree(run / "export", elsewhere)
    m = get_version(ModelRef("b", version=register(elsewhere, "b", uri=registry_uri, run_dir=run)), uri=registry_uri).metrics
    assert "dev/rel_wql" not in m  # a directory the run's evaluations did not score


def test_promote_moves_an_alias(baseline_export, registry_uri):
    for _ in range(3):
        register(baseline_export, "base", uri=registry_uri)
    assert promote("base", 1, "staging", uri=registry_uri) is None
    assert promote("base", 3, "production", uri=registry_uri) is None
    assert get_version("base@staging", uri=registry_uri).version == 1
    assert promote("base", 2, "staging", uri=registry_uri) == 1  # moved: returns where it pointed before
    info = get_model("base", uri=registry_uri)
    assert info.aliases == {"staging": 2, "production": 3}
    assert [v.aliases for v in info.versions] == [[], ["staging"], ["production"]]
    assert resolve("models:/base@staging", uri=registry_uri) == resolve("models:/base/2", uri=registry_uri)
    with pytest.raises(RegistryNotFound, match=r"no version 7 .*versions: 1, 2, 3; aliases: production -> 3, staging -> 2"):
        promote("base", 7, "staging", uri=registry_uri)
    with pytest.raises(ValueError, match="not 'latest'"):
        promote("base", 1, "latest", uri=registry_uri)


def test_version_metrics_compare_a_candidate_with_the_incumbent(baseline_export, registry_uri):
    assert version_metrics("base", alias="production", uri=registry_uri) is None  # nothing registered yet
    register(baseline_export, "base", uri=registry_uri, metrics={"dev_rel_wql": 0.95}, alias="production")
    register(baseline_export, "base", uri=registry_uri, metrics={"dev_rel_wql": 0.90})
    assert version_metrics("base", alias="production", uri=registry_uri) == {"dev_rel_wql": 0.95}
    assert version_metrics("base", uri=registry_uri) == {"dev_rel_wql": 0.90}  # the latest
    assert version_metrics("base", version=1, uri=registry_uri) == {"dev_rel_wql": 0.95}
    assert version_metrics("base", alias="staging", uri=registry_uri) is None
    assert resolve_uri(registry_uri) == registry_uri and resolve_uri() == registry_uri  # $TSFM_REGISTRY_URI


def test_unknown_names_aliases_and_versions_say_what_exists(baseline_export, registry_uri):
    register(baseline_export, "base", uri=registry_uri, alias="staging")
    register(baseline_export, "other", uri=registry_uri)
    with pytest.raises(LookupError, match=r"no registered model named 'nope'.*registered models: base, other"):
        load_forecaster("models:/nope@production", registry_uri=registry_uri)
    with pytest.raises(RegistryNotFound, match=r"'base' has no alias 'production'.*versions: 1; aliases: staging -> 1"):
        load_forecaster("models:/base@production", registry_uri=registry_uri)
    with pytest.raises(RegistryNotFound, match=r"'base' has no version 4.*versions: 1"):
        resolve("models:/base/4", uri=registry_uri)
    with pytest.raises(ValueError, match="must be a number or 'latest'"):
        resolve("models:/base/v2", uri=registry_uri)


def test_an_empty_registry_says_how_to_register(registry_uri):
    with pytest.raises(RegistryNotFound, match="the registry is empty; register a model first"):
        resolve("models:/base@production", uri=registry_uri)
    assert list_models(uri=registry_uri) == []


def test_a_missing_database_says_where_it_looked_and_is_not_created(tmp_path, monkeypatch):
    missing = tmp_path / "nothing-here" / "mlflow.db"
    for call in (lambda: load_forecaster("models:/base@production", registry_uri=f"sqlite:///{missing}"),
                 lambda: list_models(uri=str(missing.parent)), lambda: promote("base", 1, "staging", uri=str(missing))):
        with pytest.raises(RegistryNotFound, match=rf"no model registry at {missing}.*register a model first"):
            call()
    monkeypatch.delenv("TSFM_REGISTRY_URI", raising=False)
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))  # the default: <run root>/logs/mlflow.db
    with pytest.raises(RegistryNotFound, match=rf"no model registry at {tmp_path / 'logs' / 'mlflow.db'}"):
        load_forecaster("models:/base/1")
    assert not missing.parent.exists() and not (tmp_path / "logs").exists()


def test_uris_and_references():
    assert normalize_uri("/x/reg") == "sqlite:////x/reg/mlflow.db"
    assert normalize_uri("/x/my.db") == "sqlite:////x/my.db"
    assert normalize_uri("http://host:5000") == "http://host:5000"
    assert sqlite_path(normalize_uri("sqlite:///rel/m.db")) == Path.cwd() / "rel" / "m.db"
    assert ModelRef.parse("models:/a@prod") == ModelRef("a", alias="prod")
    assert ModelRef.parse("a/3") == ModelRef("a", version=3) and str(ModelRef("a", version=3)) == "models:/a/3"
    assert ModelRef.parse("models:/a/latest").latest and ModelRef.parse("a") == ModelRef("a")


def test_bad_inputs_are_refused_before_anything_is_written(baseline_export, registry_uri, tmp_path):
    with pytest.raises(ValueError, match="Names|use letters"):
        register(baseline_export, "a/b", uri=registry_uri)
    with pytest.raises(ValueError, match="model.safetensors missing"):
        (tmp_path / "half").mkdir()
        shutil.copy2(baseline_export / "config.json", tmp_path / "half" / "config.json")
        register(tmp_path / "half", "a", uri=registry_uri)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        register(tmp_path / "absent", "a", uri=registry_uri)
    assert list_models(uri=registry_uri) == []


def _state(uri: str) -> dict:
    """What a user can see: models, versions, live runs, and model artifacts on disk."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    artifacts = sorted(p.parent.parent.name for p in (sqlite_path(uri).parent / ARTIFACTS_DIR).glob("*/artifacts/model"))
    return {"models": {m.name: [v.version for v in m.versions] for m in list_models(uri=uri)},
            "runs": sorted(r.info.run_id for r in runs), "artifacts": artifacts}


@pytest.mark.parametrize("fail_at", ["log_artifacts", "create_model_version", "set_registered_model_alias"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-name", "existing-name"])
def test_a_failed_registration_leaves_nothing_behind(baseline_export, registry_uri, monkeypatch, fail_at, existing):
    if existing:
        register(baseline_export, "base", uri=registry_uri)
    before = _state(registry_uri)
    client_cls = _mlflow().MlflowClient

    def boom(self, *args, **kwargs):
        raise OSError(f"disk full during {fail_at}")

    monkeypatch.setattr(client_cls, fail_at, boom)
    with pytest.raises(RegistryError, match=f"disk full during {fail_at}.*nothing was registered"):
        register(baseline_export, "base", uri=registry_uri, alias="production")
    monkeypatch.undo()
    assert _state(registry_uri) == before
    # the next registration works; a version made and then removed (the alias failed) keeps its number
    # burnt: MLflow never reuses version numbers of a model
    burnt = existing and fail_at == "set_registered_model_alias"
    assert register(baseline_export, "base", uri=registry_uri) == (3 if burnt else 2 if existing else 1)


def test_a_locked_database_is_a_clear_error_and_registers_nothing(baseline_export, registry_uri):
    db = sqlite_path(registry_uri)
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the database
    try:
        t0 = time.perf_counter()
        with pytest.raises(RegistryLocked, match=rf"{db} is locked by another process.*Nothing was registered"):
            register(baseline_export, "base", uri=registry_uri, lock_timeout=1.0)
        assert time.perf_counter() - t0 < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _state(registry_uri)["models"] == {} and _state(registry_uri)["runs"] == []
    assert register(baseline_export, "base", uri=registry_uri) == 1


def test_concurrent_registrations_in_threads_get_distinct_versions(baseline_export, registry_uri):
    with ThreadPoolExecutor(10) as pool:
        versions = list(pool.map(lambda _: register(baseline_export, "threads", uri=registry_uri), range(10)))
    assert sorted(versions) == list(range(1, 11))
    assert [v.version for v in get_model("threads", uri=registry_uri).versions] == list(range(1, 11))


@pytest.mark.slow  # 10 spawned interpreters import torch + MLflow: ~45 s; the thread test above runs by default
def test_concurrent_registrations_in_processes_get_distinct_versions(baseline_export, tmp_path):
    """Ten processes (spawned, like ten training jobs) register the same name into a registry that does
    not exist yet: every one gets its own version, 1..10, and every version loads."""
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    with mp.get_context("spawn").Pool(10) as pool:
        versions = pool.map(partial(register, str(baseline_export), uri=uri), ["procs"] * 10)
    assert sorted(versions) == list(range(1, 11))
    info = get_model("procs", uri=uri)
    assert [v.version for v in info.versions] == list(range(1, 11))
    assert len({v.run_id for v in info.versions}) == 10
    expected = forecast(baseline_export)
    for v in (1, 10):
        np.testing.assert_array_equal(forecast(f"models:/procs/{v}", uri), expected)
