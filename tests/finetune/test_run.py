"""The fine-tuning workflow end to end, for every family: held-out windows, zero-shot and baseline
scores first, the presets, the guardrail, the report files, Forecaster.fit and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tsfm.finetune import finetune
from tsfm.finetune.run import resolve_lr
from tsfm.forecast import load_forecaster

from .conftest import monthly_frame

ROOT = Path(__file__).resolve().parents[2]
QUICK = dict(max_steps=4, eval_every=2, batch_size=8, baselines=("seasonal_naive",), plot=False)


def _run(ckpt: Path, frame: pd.DataFrame, out: Path, **kw):
    return finetune(load_forecaster(ckpt), ckpt, frame, 12, out, **{**QUICK, **kw})


@pytest.mark.parametrize("family_ckpt", ["chronos2", "moirai", "chronos", "baseline"], indirect=True)
@pytest.mark.parametrize("preset", ["full", "head", "lora"])
def test_every_family_fine_tunes_with_every_preset(family_ckpt, preset, frame, tmp_path):
    res = _run(family_ckpt, frame, tmp_path / "ft", preset=preset, lr=1e-3)
    assert list(res.table.index) == ["seasonal_naive", "zero_shot", "finetuned"]
    assert res.table.loc["seasonal_naive", "rel_wql"] == pytest.approx(1.0)
    assert np.isfinite(res.table.loc[["zero_shot", "finetuned"], ["wql", "mase", "rel_wql", "rel_mase"]].to_numpy()).all()
    assert res.steps == 4 and res.best_step in (2, 4)
    assert res.exported == ("finetuned" if res.improved else "zero_shot")
    exported = load_forecaster(res.model_dir)  # a plain checkpoint directory: adapters folded in
    q = exported.predict_quantiles([frame.target.to_numpy()[:60]], 12, [0.1, 0.5, 0.9])
    assert q.shape == (1, 12, 3) and np.isfinite(q).all()
    report = json.loads((res.out_dir / "finetune_report.json").read_text())
    assert report["exported"] == res.exported and report["holdout"]["series"] == 6


@pytest.mark.parametrize("preset", ["head", "lora"])
def test_presets_change_only_their_own_weights(preset, fixtures_dir, frame, tmp_path):
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"
    res = _run(ckpt, frame, tmp_path / "ft", preset=preset, lr=1e-2, force=True)
    before, after = load_file(res.out_dir / "zero_shot" / "model.safetensors"), load_file(res.out_dir / "finetuned" / "model.safetensors")
    assert before.keys() == after.keys()  # LoRA adapters are folded into the plain layout
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed
    if preset == "head":
        assert all(k.startswith("output_patch_embedding.") for k in changed)
    else:  # the reference's LoRA targets: attention q/k/v/o and the output layer
        assert all(".self_attention." in k or k.startswith("output_patch_embedding.output_layer") for k in changed)
        assert not any(".mlp." in k or "input_patch_embedding" in k for k in changed)


def test_the_guardrail_keeps_the_zero_shot_model_when_fine_tuning_hurts(fixtures_dir, frame, tmp_path):
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"
    res = _run(ckpt, frame, tmp_path / "ft", lr=5.0)  # a learning rate that wrecks the weights
    assert not res.improved and res.exported == "zero_shot"
    assert "DID NOT HELP" in res.message
    assert (res.model_dir / "model.safetensors").read_bytes() == (res.out_dir / "zero_shot" / "model.safetensors").read_bytes()
    # the export is the model that was scored, with its own config (the run's follows prediction_length)
    kept, original = load_forecaster(res.model_dir).model, load_forecaster(ckpt).model
    assert kept.config.to_dict() == original.config.to_dict()
    for (k, a), b in zip(kept.state_dict().items(), original.state_dict().values()):
        assert torch.equal(a, b), k
    forced = _run(ckpt, frame, tmp_path / "forced", lr=5.0, force=True)
    assert forced.exported == "finetuned" and "force=true" in forced.message
    assert (forced.model_dir / "model.safetensors").read_bytes() == (forced.out_dir / "finetuned" / "model.safetensors").read_bytes()


def test_fine_tuning_a_reasonable_rate_beats_zero_shot_on_the_held_out_windows(fixtures_dir, tmp_path):
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"  # a random tiny model: fine-tuning must help it
    res = _run(ckpt, monthly_frame(n_items=12), tmp_path / "ft", lr=3e-3, max_steps=30, eval_every=10)
    assert res.improved and res.exported == "finetuned"
    assert res.table.loc["finetuned", "rel_wql"] < res.table.loc["zero_shot", "rel_wql"]


def _with_recipe(ckpt: Path, to: Path, lr: float | str) -> Path:
    import shutil

    shutil.copytree(ckpt, to)
    (to / "training_recipe.json").write_text(json.dumps({"optim": {"name": "adamw", "lr": lr}, "global_step": 100}))
    return to


def test_the_default_learning_rate_follows_the_rate_the_checkpoint_was_pretrained_at(fixtures_dir, frame, tmp_path):
    official = fixtures_dir / "chronos2_tiny" / "checkpoint"  # no training_recipe.json: the preset's default_lr
    lr, why = resolve_lr("full", official)
    assert lr == pytest.approx(3e-5) and why == "the full preset's default_lr (no training_recipe.json)"
    ours = _with_recipe(official, tmp_path / "ours", 2e-3)
    lr, why = resolve_lr("full", ours)
    assert lr == pytest.approx(0.25 * 2e-3) and "0.25 x the pretraining peak lr 0.002" in why
    assert resolve_lr("full", ours, lr_scale=0.1)[0] == pytest.approx(2e-4)
    assert resolve_lr("full", ours, lr=1e-4)[0] == 1e-4  # an explicit rate wins
    assert resolve_lr("lora", ours)[0] == pytest.approx(3e-4)  # a preset with a fixed rate keeps it
    with pytest.raises(ValueError, match="positive"):
        resolve_lr("full", ours, lr=0.0)
    with pytest.raises(ValueError, match="unknown fine-tuning preset 'partial'.*'full', 'head', 'lora'"):
        resolve_lr("partial", ours)
    refined = _with_recipe(official, tmp_path / "refined", 2e-3)  # a tsfm.train run that fine-tuned a checkpoint
    (refined / "training_recipe.json").write_text(json.dumps({"optim": {"lr": 2e-3}, "pretrained": str(ours)}))
    lr, why = resolve_lr("full", refined)
    assert lr == pytest.approx(3e-5) and f"itself fine-tuned from {ours}" in why
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "training_recipe.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken/training_recipe.json: not a valid training_recipe.json"):
        resolve_lr("full", tmp_path / "broken")
    # end to end: the run trains at that rate, says so, and the zero-shot export keeps the recipe
    res = _run(ours, frame, tmp_path / "ft")
    assert res.lr == pytest.approx(5e-4) and "training_recipe.json" in res.lr_source
    report = json.loads((res.out_dir / "finetune_report.json").read_text())
    assert report["lr"] == pytest.approx(5e-4) and report["lr_source"] == res.lr_source
    trained = yaml.safe_load((res.out_dir / "train" / "config.yaml").read_text())
    assert trained["optim"]["lr"] == pytest.approx(5e-4)
    assert json.loads((res.out_dir / "zero_shot" / "training_recipe.json").read_text())["optim"]["lr"] == 2e-3
    tuned = json.loads((res.out_dir / "finetuned" / "training_recipe.json").read_text())
    assert tuned["optim"]["lr"] == 2e-3 and tuned["finetuned"]["lr"] == pytest.approx(5e-4)  # fine-tuned again: same rate
    assert tuned["finetuned"]["preset"] == "full" and tuned["finetuned"]["steps"] == res.steps


def test_forecaster_fit_returns_the_forecaster_to_use(fixtures_dir, frame, tmp_path):
    f = load_forecaster(fixtures_dir / "chronos2_tiny" / "checkpoint")
    tuned = f.fit(frame, 12, out_dir=tmp_path / "fit", **QUICK)
    assert type(tuned) is type(f) and tuned is not f
    assert tuned.source == tuned.finetune_result.model_dir  # it can be fine-tuned again
    assert tuned.finetune_result.model_dir == (tmp_path / "fit" / "model").resolve()
    out = tuned.predict_quantiles(frame, 12, [0.1, 0.5, 0.9])
    assert len(out) == 6 * 12 and {"predictions", "0.1", "0.9"} <= set(out.columns)
    with pytest.raises(ValueError, match="load_forecaster"):
        type(f)(f.model).fit(frame, 12)


def test_a_horizon_beyond_the_model_limit_fine_tunes_and_forecasts(fixtures_dir, tmp_path):
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"
    limit = 16 * load_forecaster(ckpt).config.max_output_patches
    frame = monthly_frame(length=limit + 40)
    res = finetune(load_forecaster(ckpt), ckpt, frame, limit + 8, tmp_path / "ft", **QUICK)
    assert np.isfinite(res.table.loc["finetuned", "rel_wql"])


def test_covariates_on_a_family_without_them_name_the_families_that_have_them(fixtures_dir, frame, tmp_path):
    frame = frame.assign(price=1.0)
    ckpt = fixtures_dir / "moirai_tiny" / "checkpoint"
    with pytest.raises(ValueError, match="the moirai family takes no covariates; families with covariate support: chronos2"):
        _run(ckpt, frame, tmp_path / "ft", covariates=["price"])


def test_covariates_train_with_chronos2_and_the_held_out_scores_use_them(fixtures_dir, frame, tmp_path, monkeypatch):
    """The covariates are past-only in scoring too: each window's model call gets them over its context."""
    from tsfm.models.chronos2.forecast import Chronos2Forecaster

    frame = frame.assign(price=np.cos(np.arange(len(frame)) / 5.0))
    seen = []
    real = Chronos2Forecaster.predict_quantiles

    def spy(self, context, prediction_length, *a, past_covariates=None, **k):
        seen.append((len(context), past_covariates))
        return real(self, context, prediction_length, *a, past_covariates=past_covariates, **k)

    monkeypatch.setattr(Chronos2Forecaster, "predict_quantiles", spy)
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"
    res = _run(ckpt, frame, tmp_path / "ft", covariates=["price"])
    assert res.steps == 4
    assert seen and all(covs is not None and len(covs) == n for n, covs in seen)  # zero-shot, in training, fine-tuned
    n, covs = seen[0]
    assert n == 6 and [len(c["covariate_0"]) for c in covs] == [72 - 12] * 6  # the context part only
    np.testing.assert_allclose(covs[0]["covariate_0"], frame.price.to_numpy()[:60], rtol=1e-6)
    without = _run(ckpt, frame, tmp_path / "plain")
    assert res.table.loc["zero_shot", "wql"] != pytest.approx(without.table.loc["zero_shot", "wql"], rel=1e-6)


def test_the_command_line_prints_the_table_against_every_baseline(fixtures_dir, tmp_path):
    frame = pd.concat([monthly_frame(), pd.DataFrame({"item_id": "short", "target": np.arange(15.0),
                                                      "timestamp": pd.date_range("2019-01-01", periods=15, freq="MS")})])
    frame.to_csv(tmp_path / "sales.csv", index=False)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tsfm.finetune", f"ckpt={fixtures_dir / 'chronos2_tiny' / 'checkpoint'}",
           f"dataset={tmp_path / 'sales.csv'}", "prediction_length=12", "max_steps=4", "eval_every=2",
           f"hydra.run.dir={run}", f"cache_dir={tmp_path / 'cache'}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "160"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    for name in ("seasonal_naive", "auto_ets", "auto_theta", "zero_shot", "finetuned"):
        assert name in text
    assert "1 series too short, left out of training and validation: ['short']" in text
    assert (run / "model" / "config.json").is_file() and (run / "forecasts.png").stat().st_size > 1000
    table = pd.read_csv(run / "comparison.csv", index_col=0)
    assert list(table.index) == ["seasonal_naive", "auto_ets", "auto_theta", "zero_shot", "finetuned"]
    report = json.loads((run / "finetune_report.json").read_text())
    assert report["holdout"]["excluded_too_short"] == 1 and report["holdout"]["excluded_items"] == ["short"]


def test_trials_on_the_same_file_and_checkpoint_reuse_the_split_and_the_zero_shot_scores(
        fixtures_dir, frame, tmp_path, monkeypatch, caplog):
    """A search runs its trials one after another in one process: the second trial neither re-reads the data
    nor re-scores the zero-shot model; a changed file or another checkpoint is read and scored anew."""
    import tsfm.finetune.run as run

    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    monkeypatch.setattr(run, "_MEMO", {})
    calls = {"load_series": 0, "evaluate_suite": 0}

    def counting(name):
        real = getattr(run, name)

        def wrapped(*a, **k):
            calls[name] += 1
            return real(*a, **k)
        return wrapped

    for name in calls:
        monkeypatch.setattr(run, name, counting(name))
    first = _run(ckpt, csv, tmp_path / "t0", lr=1e-3)
    assert calls == {"load_series": 1, "evaluate_suite": 2}  # zero-shot + fine-tuned
    with caplog.at_level("INFO", logger="tsfm.finetune.run"):
        second = _run(ckpt, csv, tmp_path / "t1", lr=3e-3)
    assert calls == {"load_series": 1, "evaluate_suite": 3}  # the fine-tuned model only
    assert "reusing the zero-shot and baseline scores" in caplog.text
    pd.testing.assert_series_equal(first.table.loc["zero_shot"], second.table.loc["zero_shot"])
    assert second.holdout == first.holdout and (second.out_dir / "data" / "train").is_dir()
    frame.assign(target=frame.target + 50).to_csv(csv, index=False)  # new content: read and scored again
    os.utime(csv, ns=(0, 10**18))
    third = _run(ckpt, csv, tmp_path / "t2", lr=1e-3)
    assert calls == {"load_series": 2, "evaluate_suite": 5}
    assert third.table.loc["zero_shot", "wql"] != pytest.approx(first.table.loc["zero_shot", "wql"])
    moved = load_forecaster(ckpt)
    with torch.no_grad():
        for p in moved.model.parameters():
            p.mul_(0.5)  # changed in memory: the weights on disk no longer describe it
    finetune(moved, ckpt, csv, 12, tmp_path / "t3", **{**QUICK, "lr": 1e-3})
    assert calls["evaluate_suite"] == 7


def test_fine_tuning_stops_early_when_the_held_out_score_stops_improving(fixtures_dir, frame, tmp_path):
    """lr 1e-12 leaves the weights as they are (updates below float32 resolution): the held-out WQL never improves on its first value, so the run
    stops `patience` evaluations after it and keeps that first checkpoint."""
    ckpt = fixtures_dir / "chronos2_tiny" / "checkpoint"

    class Reference(L.Callback):  # what a search's pruning callback receives (tsfm.search.pruning.TrialPruning)
        def set_reference(self, score: float) -> None:
            self.score = score

    ref = Reference()
    res = _run(ckpt, frame, tmp_path / "ft", lr=1e-12, max_steps=40, eval_every=2, patience=2, callbacks=[ref])
    assert res.steps == 6 and res.best_step == 2
    logged = pd.read_csv(next((res.out_dir / "train").rglob("metrics.csv")))
    wql = logged["holdout/avg_wql"].dropna()
    assert len(wql) == 3 and wql.nunique() == 1
    # the zero-shot score was handed over before training, in the units of the monitor: with the weights unchanged
    # the held-out WQL during training is that score
    assert ref.score == pytest.approx(res.table.loc["zero_shot", "rel_wql"], rel=1e-12)
    assert wql.iloc[0] == pytest.approx(ref.score, rel=1e-4)
    # the rich progress bar redraws every 10 steps: its thread's sleep (1 / refresh_rate s) no longer delays the end
    cfg = yaml.safe_load((res.out_dir / "train" / "config.yaml").read_text())
    assert cfg["callbacks"]["progress_bar"]["refresh_rate"] == 10
    off = _run(ckpt, frame, tmp_path / "off", lr=1e-12, max_steps=2, train_overrides=["callbacks.progress_bar.refresh_rate=0"])
    assert yaml.safe_load((off.out_dir / "train" / "config.yaml").read_text())["callbacks"]["progress_bar"]["refresh_rate"] == 0
