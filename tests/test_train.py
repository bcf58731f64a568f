"""The training entry point end to end: train -> checkpoint -> export -> load_forecaster; exact resume;
a Hydra multirun sweep (DDP / FSDP2: tests/training/test_distributed.py). Runs `python -m tsfm.train` in subprocesses;
the table of bad settings goes through `tsfm.train.train` in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.compose import compose_config
from tsfm.forecast import load_forecaster

ROOT = Path(__file__).resolve().parents[1]
# A toy version of the default corpus (same generators, 0.3% of the series), generated per test under tmp.
# callbacks=none and final_eval=null keep these mechanics tests (resume, errors, sweeps) fast; the default
# callbacks and the final zero-shot evaluation are run by `trained` below, tests/training/test_resume.py and,
# under DDP / FSDP, tests/training/test_distributed.py.
FAST = ["callbacks=none", "logger=csv", "trainer.limit_val_batches=1", "data.batch_size=8", "data.val_batches=1",
        "data.series_scale=0.003", "final_eval=null"]


def run_train(tmp_path: Path, run: str, *overrides: str, timeout: int = 600) -> Path:
    run_dir = tmp_path / run
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}  # corpus cache + logs under tmp
    cmd = [sys.executable, "-m", "tsfm.train", f"hydra.run.dir={run_dir}", *FAST, *overrides]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    run = run_train(
        tmp, "run", "model=chronos2_tiny", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp}/run/checkpoints", "+callbacks.ckpt.every_n_train_steps=2",
        "+callbacks.ckpt.save_top_k=-1", "+callbacks.ckpt.save_last=true",
        "final_eval=dev",  # the default: zero-shot on the dev suite after export
    )
    return tmp, run


def test_the_run_ends_with_a_zero_shot_table_against_the_baselines(trained):
    import json

    _, run = trained
    res = json.loads((run / "final_eval" / "results.json").read_text())
    assert len(res["datasets"]) == 15
    for d in res["datasets"].values():  # baselines from the shipped scores, the model scored on every dataset
        assert {"this run", "seasonal_naive", "auto_ets", "auto_theta"} <= set(d["scores"])
    agg = res["aggregate"]
    assert agg["auto_ets"]["rel_wql"] == pytest.approx(0.911, abs=0.002)  # the dev suite's published figure
    assert np.isfinite(agg["this run"]["rel_wql"]) and np.isfinite(agg["this run"]["rel_mase"])
    assert (run / "final_eval" / "report.md").exists()


def test_train_writes_checkpoints_and_an_export_that_forecasts(trained):
    _, run = trained
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 3
    assert (run / "export" / "config.json").exists() and (run / "export" / "model.safetensors").exists()
    assert (run / ".hydra" / "config.yaml").exists()
    from tsfm.eval.leakage import load_training_data

    for path in (run / "export", run / "checkpoints" / "last.ckpt"):  # the corpus travels with the model
        training = load_training_data(path)
        assert training.known and not training.index  # synthetic only: no real series to overlap
        assert training.sub_datasets == ["seasonal", "trend_seasonal", "ets", "arima", "intermittent", "synth_mix",
                                         "kernelsynth"]
    subs = json.loads((run / "export" / "training_data.json").read_text())["sub_datasets"]
    assert all(d["synthetic"] is True and not d["sources"] for d in subs)
    # how it was trained travels with it too (fine-tuning derives its default learning rate from it)
    recipe = json.loads((run / "export" / "training_recipe.json").read_text())
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert recipe["optim"]["lr"] == pytest.approx(cfg["optim"]["lr"]) and recipe["optim"]["lr"] > 0
    assert recipe["global_step"] == recipe["max_steps"] == 4 and recipe["batch_size"] == 8
    assert recipe["pretrained"] is None  # trained from scratch: its rate is a pretraining rate
    from tsfm.checkpoint import METADATA_FILES
    from tsfm.data.manifest import TRAINING_DATA

    assert TRAINING_DATA in METADATA_FILES and all((run / "export" / n).is_file() for n in METADATA_FILES)
    from tsfm.finetune.run import resolve_lr

    for path in (run / "export", run / "checkpoints" / "last.ckpt"):  # fine-tuning starts from that rate
        assert resolve_lr("full", path)[0] == pytest.approx(0.25 * cfg["optim"]["lr"])
    ctx = [np.sin(np.arange(100) / 5.0).astype(np.float32)]
    for path in (run / "export", run / "checkpoints" / "last.ckpt"):
        q = load_forecaster(path).predict_quantiles(ctx, prediction_length=8)
        assert q.shape == (1, 8, 9) and np.isfinite(q).all()
    # export and last.ckpt hold the same weights -> identical forecasts
    a = load_forecaster(run / "export").predict_quantiles(ctx, prediction_length=8)
    b = load_forecaster(run / "checkpoints" / "last.ckpt").predict_quantiles(ctx, prediction_length=8)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_resume_reproduces_the_uninterrupted_run(trained):
    tmp, run = trained
    first = sorted((run / "checkpoints").glob("epoch=*step=2*.ckpt")) or sorted((run / "checkpoints").glob("*step=2*.ckpt"))
    assert first, sorted(p.name for p in (run / "checkpoints").iterdir())
    resumed = run_train(
        tmp, "resumed", "model=chronos2_tiny", "trainer.max_steps=4", "trainer.val_check_interval=2",
        f"ckpt_path='{first[0]}'",  # quoted: the file name contains '='
    )
    full = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    from safetensors.torch import load_file

    exported = load_file(str(resumed / "export" / "model.safetensors"))
    for k, v in exported.items():
        torch.testing.assert_close(v, full[f"model.{k}"], rtol=0, atol=0, msg=f"{k} differs after resume")


def test_muon_trains_under_the_default_callbacks_and_resumes_exactly(tmp_path):
    """optim.optimizer=muon end to end: the monitor, health and checkpoint callbacks, export, and a resumed run
    that repeats the straight one to the bit (Muon's momentum and AdamW's moments both travel in the checkpoint)."""
    common = ["model=chronos2_tiny", "optim.optimizer=muon", "trainer.max_steps=4", "trainer.val_check_interval=2",
              "callbacks=default", "~callbacks.benchmark"]
    full = run_train(tmp_path, "full", *common)
    ckpt = full / "checkpoints" / "step_0000002.ckpt"
    state = torch.load(ckpt, weights_only=False)
    (opt,) = state["optimizer_states"]
    assert any("momentum_buffer" in s for s in opt["state"].values()) and any("exp_avg" in s for s in opt["state"].values())
    assert sum(1 for g in opt["param_groups"] if g.get("muon")) >= 1
    resumed = run_train(tmp_path, "resumed", *common, f"ckpt_path={ckpt}")
    from safetensors.torch import load_file

    a, b = load_file(str(full / "export" / "model.safetensors")), load_file(str(resumed / "export" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    assert any(not torch.equal(a[k], state["state_dict"][f"model.{k}"]) for k in a)  # steps 3-4 moved the weights


def test_resume_last_without_checkpoint_is_a_clear_error(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "tsfm.train", f"hydra.run.dir={tmp_path}/r", "ckpt_path=last", *FAST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode != 0 and "does not exist" in out.stderr


def run_failing(tmp_path: Path, *overrides: str) -> str:
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "tsfm.train", f"hydra.run.dir={tmp_path}/bad", *FAST, *overrides]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout[-2000:]
    assert not (tmp_path / "bad" / "checkpoints").exists()  # failed before training
    return out.stderr


def test_resume_with_another_model_config_names_the_runs_overrides(trained):
    tmp, run = trained  # trained with model=chronos2_tiny; resumed here with the default model
    err = run_failing(tmp, f"ckpt_path={run}/checkpoints/last.ckpt")
    assert "holds a chronos2 model that does not match the composed config" in err
    assert "model=chronos2_tiny" in err and "overrides.yaml" in err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=chronos2_context_extension_stage2", "model=chronos2_tiny"], "required setting(s) not given: stage1_ckpt"),
        (["model=moirai_tiny", "trainer.precision=bf16-true"], "use trainer.precision=bf16-mixed"),
        (["model=moirai_tiny", "data.batch_size=0"], "data.batch_size must be >= 1, got 0"),
        (["model=moirai_tiny", "data.corpus=[{name: foo, path: /nonexistent/ds}]"], "/nonexistent/ds does not exist"),
        (["model=moirai_tiny", "trainer=fsdp", "trainer.precision=16-mixed"], "trainer=fsdp (FSDP2, Lightning's ModelParallelStrategy) cannot run trainer.precision=16-mixed"),
        (["model=chronos2_tiny", "trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5: give a whole number of steps"),
        (["model=chronos2_tiny", "data.length_groups=0"], "data.length_groups must be >= 1, got 0"),
        (["model=chronos2_tiny", "trainer=fsdp", "optim.optimizer=muon"], "optim.optimizer=muon cannot run under trainer=fsdp"),
        (["model=chronos2_tiny", "optim.optimizer=lion"], "optim.optimizer='lion': use adamw or muon"),
    ],
    ids=["missing-stage1", "bf16-true", "batch-0", "missing-path", "fsdp-16-mixed", "fractional-val-check", "length-groups-0",
         "muon-fsdp", "unknown-optimizer"],
)
def test_bad_settings_fail_before_training_with_what_to_change(tmp_path, monkeypatch, overrides, message):
    """In this process, through ``tsfm.train.train`` (what the command runs after composing; ~0.5 s a case, where a
    subprocess costs ~7 s of imports). That the command prints such an error and exits non-zero: the two tests above."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from tsfm.train import train

    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    cfg = compose_config([f"paths.output_dir={tmp_path}/bad", *FAST, *overrides], hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(Exception) as err:
        train(cfg)
    assert message in str(err.value)
    assert not (tmp_path / "bad" / "checkpoints").exists()  # failed before training


@pytest.mark.slow
def test_multirun_sweep_runs_every_job(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "tsfm.train", "-m", "model=moirai_tiny,chronos2_tiny", "trainer.max_steps=2",
           "trainer.val_check_interval=2", f"hydra.sweep.dir={tmp_path}/sweep", *FAST]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1"]
    assert all((tmp_path / "sweep" / j / "export" / "config.json").exists() for j in ("0", "1"))


@pytest.mark.parametrize("logger", ["tensorboard", "many"])
def test_tensorboard_logger_writes_event_files(tmp_path, logger):
    """logger=tensorboard, and logger=many (CSV + TensorBoard + W&B offline) writing all three."""
    run = run_train(tmp_path, "tb", "model=chronos2_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2",
                    f"logger={logger}", "trainer.log_every_n_steps=1")
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    if logger == "many":
        (metrics,) = (run / "csv").glob("version_*/metrics.csv")
        assert "train/loss" in metrics.read_text().splitlines()[0]
        assert list((run / "wandb").glob("offline-run-*/run-*.wandb")), "no offline W&B run written"


@pytest.mark.parametrize("model", ["chronos2_tiny", "moirai_tiny", "chronos_tiny", "baseline_dec_tiny", "baseline_enc_tiny"])
def test_every_family_runs_the_training_command_under_fast_dev_run(model, tmp_path):
    """The command users run, default callbacks and logger included, one batch per family."""
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tsfm.train", f"model={model}", "+trainer.fast_dev_run=true", "data.series_scale=0.003",
           "data.batch_size=8", "final_eval=null", f"hydra.run.dir={run}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    forecaster = load_forecaster(run / "export")
    q = forecaster.predict_quantiles([np.sin(np.arange(64) / 4).astype(np.float32)], 8, [0.1, 0.5, 0.9])
    assert q.shape == (1, 8, 3) and np.isfinite(q).all()
