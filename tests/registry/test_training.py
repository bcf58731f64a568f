"""``python -m tsfm.train registry=mlflow``: the run ends by registering its model, which loads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.registry.test_mlflow_registry import forecast
from tests.test_train import run_train
from tsfm.registry import get_model, get_version

TINY = ["model=chronos2_tiny", "trainer.val_check_interval=2", "registry=mlflow"]


def test_a_training_run_registers_its_export(tmp_path, registry_uri):
    run = run_train(tmp_path, "run", *TINY, "trainer.max_steps=2", f"registry.uri={registry_uri}",
                    "registry.alias=staging")
    v = get_version("models:/chronos2_tiny@staging", uri=registry_uri)  # named after the model config
    assert v.version == 1 and v.family == "chronos2"
    lineage = v.lineage
    assert lineage["run_dir"] == str(run) and lineage["weights"] == "final" and lineage["model_config"] == "chronos2_tiny"
    assert "registry=mlflow" in lineage["overrides"] and lineage["corpus"].startswith("seasonal,")
    assert {"train/loss", "val/loss"} <= set(v.metrics)
    np.testing.assert_array_equal(forecast("models:/chronos2_tiny@staging", registry_uri), forecast(run / "export"))


def test_a_training_run_registers_its_best_top_k_checkpoint(tmp_path, registry_uri):
    """With a checkpoint callback that keeps the best by a metric, that checkpoint is what is registered
    (here "best" = the lowest step, so an earlier one than the final weights of export/), with its own score
    on the final evaluation's suite (the run's final_eval scores the final weights, not these)."""
    run = run_train(
        tmp_path, "run", *TINY, "trainer.max_steps=3", "registry.name=best", f"registry.uri={registry_uri}",
        "final_eval=dev",
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint", f"+callbacks.ckpt.dirpath={tmp_path}/ckpts",
        "+callbacks.ckpt.monitor=step", "+callbacks.ckpt.mode=min", "+callbacks.ckpt.save_top_k=2",
        "+callbacks.ckpt.every_n_train_steps=1",
    )
    (v,) = get_model("best", uri=registry_uri).versions
    lineage = v.lineage
    assert lineage["weights"] == "best" and lineage["checkpoint_monitor"] == "step" and lineage["checkpoint_step"] == "1"
    assert lineage["checkpoint"].startswith(f"{tmp_path}/ckpts/")
    assert set(v.metrics) == {"step", "dev/rel_wql", "dev/rel_mase"} and v.metrics["step"] == 1.0
    best_eval = json.loads((run / "export_best_eval" / "results.json").read_text())
    final_eval = json.loads((run / "final_eval" / "results.json").read_text())
    assert v.metrics["dev/rel_wql"] == pytest.approx(best_eval["aggregate"]["this run"]["rel_wql"])
    assert v.metrics["dev/rel_wql"] != pytest.approx(final_eval["aggregate"]["this run"]["rel_wql"])
    assert lineage["final_eval_results"] == str(run / "export_best_eval" / "results.json")
    assert v.tags["tsfm.registered_from"] == str(run / "export_best")
    assert (run / "export_best" / "training_data.json").is_file()  # the corpus travels with it
    recipe = json.loads((run / "export_best" / "training_recipe.json").read_text())  # and how it was trained
    assert recipe == json.loads((run / "export" / "training_recipe.json").read_text()) and recipe["optim"]["lr"] > 0
    best = forecast("models:/best/1", registry_uri)
    np.testing.assert_allclose(best, forecast(lineage["checkpoint"]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(best, forecast(run / "export"))  # not the final weights
