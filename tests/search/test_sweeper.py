"""The Optuna sweeper: search-space specs, pruning, a resumable SQLite study, parallel trials through
a Hydra launcher, and the `hparams_search=optuna` commands of tsfm.finetune and tsfm.train."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from tsfm.search.pruners import REFERENCE_ATTR
from tsfm.search.pruning import TrialPruning
from tsfm.search.sweeper import make_pruner, open_study, startup_points, study_name_for, suggest

ROOT = Path(__file__).resolve().parents[2]


def test_suggest_reads_float_int_and_categorical_specs():
    study = optuna.create_study()
    t = study.ask()
    assert 1e-5 <= suggest(t, "lr", {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}) <= 1e-2
    assert suggest(t, "r", {"type": "int", "low": 4, "high": 16}) in range(4, 17)
    assert suggest(t, "preset", ["full", "lora"]) in ("full", "lora")
    with pytest.raises(ValueError, match="needs low < high"):
        suggest(t, "a", {"type": "float", "low": 1.0, "high": 1.0})
    with pytest.raises(ValueError, match="log scale needs low > 0"):
        suggest(t, "b", {"type": "float", "low": 0.0, "high": 1.0, "log": True})
    with pytest.raises(ValueError, match="unknown type 'uniform'"):
        suggest(t, "c", {"type": "uniform", "low": 0, "high": 1})


def test_start_up_points_cover_each_numeric_range_evenly():
    space = {"lr": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}, "r": {"type": "int", "low": 4, "high": 16},
             "preset": {"type": "categorical", "choices": ["full", "lora"]}, "bad": {"type": "float", "low": 1, "high": 1}}
    pts = startup_points(space, 4)
    assert [set(p) for p in pts] == [{"lr", "r"}] * 4  # categorical and invalid entries are the sampler's / suggest's
    # from the top down: the pruner's own start-up trials (never pruned) are the high rates
    assert [p["lr"] for p in pts] == pytest.approx([1e-6 * 10 ** (4 * q) for q in (0.875, 0.625, 0.375, 0.125)], rel=1e-5)
    assert [p["r"] for p in pts] == [15, 12, 9, 6]  # 4 + 12 * (1 - (i + 1/2) / 4), halves rounded up
    assert startup_points({"preset": ["full", "lora"]}, 3) == [] and startup_points(space, 0) == []


def test_the_study_name_ignores_overrides_that_steer_the_search():
    a = study_name_for("finetune", ["ckpt=m", "dataset=d.csv", "n_trials=8", "hydra/launcher=joblib"])
    assert a == study_name_for("finetune", ["dataset=d.csv", "ckpt=m", "n_trials=12", "hydra.sweeper.n_jobs=2"])
    assert a != study_name_for("finetune", ["ckpt=m", "dataset=other.csv"])


def test_a_trial_worse_than_the_median_is_pruned(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    done = study.ask()
    done.report(1.0, 2)
    done.report(1.0, 4)
    study.tell(done, 1.0)
    good, bad = study.ask(), study.ask()
    pruner = make_pruner({"type": "median", "n_startup_trials": 1})  # as the sweeper's config builds it
    cb = TrialPruning(storage, "s", good._trial_id, "holdout/avg_wql", every_n_steps=2, pruner=pruner)
    cb.on_train_batch_end(SimpleNamespace(global_step=2, callback_metrics={"holdout/avg_wql": torch.tensor(0.5)}),
                          None, None, None, 0)  # better than the median: continues
    cb = TrialPruning(storage, "s", bad._trial_id, "holdout/avg_wql", every_n_steps=2, pruner=pruner)
    cb.on_train_batch_end(SimpleNamespace(global_step=3, callback_metrics={"holdout/avg_wql": torch.tensor(9.0)}),
                          None, None, None, 0)  # not a benchmark step: nothing reported
    with pytest.raises(optuna.TrialPruned, match="pruned at step 4"):
        cb.on_train_batch_end(SimpleNamespace(global_step=4, callback_metrics={"holdout/avg_wql": torch.tensor(9.0)}),
                              None, None, None, 0)


def test_patience_spares_an_improving_trial_and_prunes_a_stalled_one(tmp_path):
    """A high learning rate often starts worse than the median and then overtakes it: with `patience`
    the pruner waits while the trial improves, and prunes it once it gets worse (below the median)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    done = study.ask()
    for step, value in ((1, 1.0), (2, 0.95), (3, 0.9)):
        done.report(value, step)
    study.tell(done, 0.9)
    pruner = make_pruner({"type": "median", "n_startup_trials": 1, "patience": 1})
    assert isinstance(pruner, optuna.pruners.PatientPruner)

    def verdicts(values):
        trial = study.ask()
        out = []
        for step, value in enumerate(values, start=1):
            trial.report(value, step)
            out.append(pruner.prune(study, study._storage.get_trial(trial._trial_id)))
        return out

    assert verdicts([1.4, 1.2, 1.0]) == [False, False, False]  # worse than the median, but improving
    assert verdicts([1.4, 1.5, 1.6]) == [False, False, True]  # below the median and worse than `patience` reports ago
    median_only = make_pruner({"type": "median", "n_startup_trials": 1})
    trial = study.ask()
    trial.report(1.4, 1)
    assert median_only.prune(study, study._storage.get_trial(trial._trial_id))  # prunes the improving one at once
    with pytest.raises(ValueError, match="patience=-1 must be a non-negative integer"):
        make_pruner({"type": "median", "patience": -1})
    with pytest.raises(ValueError, match="use median, hyperband or none"):
        make_pruner({"type": "asha"})
    assert isinstance(make_pruner({"type": "hyperband", "min_resource": 1}), optuna.pruners.HyperbandPruner)
    # switching pruning off (the benchmark's unpruned search) leaves nothing to wrap: no pruning at all
    assert isinstance(make_pruner({"type": "none", "patience": 1}), optuna.pruners.NopPruner)


def test_the_zero_shot_reference_counts_as_a_finished_trial(tmp_path):
    """Fine-tuning's pruner also compares with the zero-shot score (the lr = 0 run): on data where the finished
    trials start above it, a trial that only stays at the zero-shot level is pruned at once, not run until early
    stopping; where fine-tuning helps, the reference makes the median no stricter than the finished trials."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    done = study.ask()
    for step, value in ((30, 1.09), (60, 1.05), (90, 1.00)):  # a high rate: first hurts, then wins
        done.report(value, step)
    study.tell(done, 1.0)
    pruner = make_pruner({"type": "median", "n_startup_trials": 1, "reference": True})
    plain = make_pruner({"type": "median", "n_startup_trials": 1})
    assert type(pruner).__name__ == "ReferenceMedianPruner" and isinstance(plain, optuna.pruners.MedianPruner)

    def verdicts(p, values, reference=None, steps=(30, 60, 90)):
        trial = study.ask()
        if reference is not None:
            trial.set_user_attr(REFERENCE_ATTR, reference)
        out = []
        for step, value in zip(steps, values):
            trial.report(value, step)
            out.append(p.prune(study, study._storage.get_trial(trial._trial_id)))
            if out[-1]:  # a pruned trial stops
                break
        return out

    # a trial between the finished one and zero-shot: under Optuna's median (1.09 at step 30) it runs on; with the
    # reference the median is (1.09 + 1.0328) / 2 = 1.0614 and it stops at its first report
    assert verdicts(plain, [1.0630, 1.0470, 1.0630]) == [False, False, True]
    assert verdicts(pruner, [1.0630, 1.0470, 1.0630], reference=1.0328) == [True]
    flat = [1.0335, 1.0340, 1.0349]  # a tiny rate, at the zero-shot score give or take: kept while under the median
    assert verdicts(pruner, flat, reference=1.0328) == [False, False, True]  # medians 1.0614, 1.0414, 1.0164
    assert verdicts(pruner, [1.03, 1.01, 0.99], reference=1.0328) == [False, False, False]  # beats them: kept
    # without a reference (pretraining, or a trial that recorded none) it judges as Optuna's MedianPruner
    for values in (flat, [1.0630, 1.0470, 1.0630], [1.2, 1.1, 1.0]):
        assert verdicts(pruner, values) == verdicts(plain, values)
    # where fine-tuning helps (zero-shot worse than the finished trial) the reference relaxes the median
    assert verdicts(plain, [1.12]) == [True]
    assert verdicts(pruner, [1.12, 1.13, 1.12], reference=1.2) == [False, False, True]  # medians 1.145, 1.125, 1.1
    # the first report of a trial with only NaN so far is pruned (nothing to keep); no finished trial: no verdict
    assert verdicts(pruner, [float("nan")], reference=1.0) == [True]
    empty = optuna.create_study(storage=storage, study_name="e")
    t = empty.ask()
    t.set_user_attr(REFERENCE_ATTR, 1.0)
    t.report(5.0, 30)
    assert not pruner.prune(empty, empty._storage.get_trial(t._trial_id))
    with pytest.raises(ValueError, match="reference=true needs type: median"):
        make_pruner({"type": "hyperband", "reference": True})
    with pytest.raises(ValueError, match="reference='yes' must be true or false"):
        make_pruner({"type": "median", "reference": "yes"})
    with pytest.raises(ValueError, match="n_startup_trials=-1 must be an integer >= 0"):
        make_pruner({"type": "median", "reference": True, "n_startup_trials": -1})
    assert isinstance(make_pruner({"type": "none", "reference": True}), optuna.pruners.NopPruner)


def test_the_pruning_callback_records_its_reference_on_the_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    cb = TrialPruning(storage, "s", trial._trial_id, "holdout/avg_wql", every_n_steps=2)
    cb.set_reference(0.9015)
    cb.set_reference(float("nan"))  # not a score: ignored, the first stays
    assert optuna.load_study(study_name="s", storage=storage).trials[0].user_attrs == {REFERENCE_ATTR: 0.9015}


def test_a_corrupt_study_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "optuna.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match=rf"{bad}.*corrupt or not an Optuna database"):
        open_study(f"sqlite:///{bad}", "s", "minimize", None, None)


def _search(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    import numpy as np
    import pandas as pd

    csv = tmp_path / "sales.csv"
    if not csv.exists():
        t, rng = np.arange(60), np.random.default_rng(0)  # noisy: Seasonal Naive (the reference) must not be exact
        pd.concat([pd.DataFrame({"item_id": f"s{i}", "timestamp": pd.date_range("2015-01-01", periods=60, freq="MS"),
                                 "target": 50 + 10 * np.sin(2 * np.pi * t / 12 + i) + rng.normal(0, 1, 60)})
                   for i in range(4)]).to_csv(csv, index=False)
    cmd = [sys.executable, "-m", "tsfm.finetune", f"ckpt={ROOT / 'tests/fixtures/chronos2_tiny/checkpoint'}",
           f"dataset={csv}", "prediction_length=12", "max_steps=4", "eval_every=2", "batch_size=8",
           f"paths.log_dir={tmp_path / 'logs'}", f"cache_dir={tmp_path / 'cache'}", "hparams_search=optuna", *extra]
    # output to files, not pipes: joblib's loky workers outlive the command for a while and would hold a pipe open
    log = tmp_path / f"search-{len(list(tmp_path.glob('search-*.out')))}"
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=err, timeout=600, env={**os.environ}).returncode
    return subprocess.CompletedProcess(cmd, rc, Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text())


def test_finetune_search_runs_trials_in_parallel_and_resumes_its_study(tmp_path):
    out = _search(tmp_path, "n_trials=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best trial" in out.stdout
    (sweep,) = (tmp_path / "logs" / "finetune" / "multiruns").iterdir()
    res = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # a trial that fails (e.g. a worker lost on a loaded machine) is recorded FAIL and rerun: 2 finish
    finished = [t for t in res["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert {"finetune", "finetune.lr"} == set(res["best_params"]) and len(finished) == 2
    assert (Path(res["best_job_dir"]) / "model" / "config.json").is_file()  # the best trial's exported model
    # the first trials are the start-up points (lr at quantiles 5/6 and 3/6 of 1e-6..1e-2 on a log scale), in job dirs 0, 1
    first = sorted(res["trials"], key=lambda t: t["number"])[:2]  # asked first, whatever became of them
    assert sorted(t["params"]["finetune.lr"] for t in first) == pytest.approx([1e-4, 10 ** (-6 + 4 * 5 / 6)], rel=1e-5)
    assert sorted(Path(t["job_dir"]).name for t in first) == ["0", "1"]
    db = tmp_path / "logs" / "finetune" / "optuna.db"
    assert db.is_file()
    # the same command with a larger budget continues the stored study: one new trial, not three
    again = _search(tmp_path, "n_trials=3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 3 trials already finished" in again.stdout + again.stderr
    with sqlite3.connect(db) as con:
        states = [s for (s,) in con.execute("select state from trials")]
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 3 and set(states) <= {"COMPLETE", "PRUNED", "FAIL"}
    with sqlite3.connect(db) as con:  # the third start-up point, enqueued by the first command, ran in the second
        lrs = [v for (v,) in con.execute("select param_value from trial_params")]
    assert any(v == pytest.approx(10 ** (-6 + 4 / 6), rel=1e-5) for v in lrs)


def test_a_search_whose_trials_all_fail_stops_and_says_why(tmp_path):
    out = _search(tmp_path, "n_trials=2", "batch_size=0")  # every trial fails to build its data loader
    assert out.returncode != 0
    assert "2 trials of study" in out.stderr and "failed (the search stops)" in out.stderr


def test_train_search_scores_trials_by_the_lite_benchmark(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "tsfm.train", "hparams_search=optuna", "n_trials=2", "model=chronos2_tiny",
           "trainer.max_steps=4", "trainer.val_check_interval=2", "data.batch_size=8", "data.series_scale=0.003",
           "eval.max_series=4", "final_eval=null", "callbacks.progress_bar.refresh_rate=0"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    res = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(res["best_params"]) == {"optim.lr"} and 3e-4 <= res["best_params"]["optim.lr"] <= 1e-2
    assert all(t["state"] == "COMPLETE" and t["value"] > 0 for t in res["trials"])
