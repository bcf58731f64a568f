"""An Optuna sweeper for Hydra: TPE over a search space, median pruning, a resumable SQLite study,
trials launched in parallel by any Hydra launcher (basic, joblib, submitit_slurm).

Why not ``hydra-optuna-sweeper``: its newest release (1.3.0) still requires ``optuna<3``, whose
SQLite storage does not run on SQLAlchemy 2, and it cannot prune (it only sees a trial's final
value). This sweeper uses Optuna's ask-and-tell interface directly:

1. the study (``storage``, default a SQLite file) is created or **resumed**: trials already
   finished count towards ``n_trials``; trials left running by an interrupted search are marked
   failed and replaced;
2. each batch asks ``n_jobs`` trials and turns their parameters into Hydra overrides
   (``finetune.lr=3.1e-4``, ``finetune=lora``), plus ``+optuna_trial=<id> +optuna_study=<name>``,
   then hands the batch to the configured launcher;
3. a job reports its intermediate metric to its trial (:class:`tsfm.search.pruning.TrialPruning`,
   which the entry points add when ``optuna_trial`` is set) and raises ``optuna.TrialPruned`` when
   the pruner says so; the sweeper records it as pruned. ``pruner.reference: true`` also counts the
   trial's reference score (fine-tuning: the zero-shot model's) as a finished trial
   (:mod:`tsfm.search.pruners`). The job's return value is the objective;
4. at the end it prints the best parameters, value and job directory, and writes
   ``optimization_results.yaml`` into the sweep directory.

The default study name is derived from the command's own overrides, so rerunning the same command
resumes the same study and a different command starts a new one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

TRIAL_KEY = "optuna_trial"  # the job override naming its trial (+optuna_trial=<trial id>)


def suggest(trial: Any, name: str, spec: Any) -> Any:
    """A value for ``name`` from its spec: ``{type: float, low, high, log}``, ``{type: int, ...}``
    or ``{type: categorical, choices: [...]}`` (a plain list means categorical)."""
    if isinstance(spec, (list, tuple)):
        spec = {"type": "categorical", "choices": list(spec)}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"search space entry {name!r}: give {{type: float|int|categorical, ...}}, got {spec!r}")
    kind = spec["type"]
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    if kind in ("float", "int"):
        low, high = spec.get("low"), spec.get("high")
        if low is None or high is None or not float(low) < float(high):
            raise ValueError(f"search space entry {name!r}: needs low < high, got low={low}, high={high}")
        if spec.get("log") and float(low) <= 0:
            raise ValueError(f"search space entry {name!r}: a log scale needs low > 0, got {low}")
        if kind == "float":
            return trial.suggest_float(name, float(low), float(high), log=bool(spec.get("log", False)))
        return trial.suggest_int(name, int(low), int(high), log=bool(spec.get("log", False)))
    raise ValueError(f"search space entry {name!r}: unknown type {kind!r}; use float, int or categorical")


def _override(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name}={value:.6g}"
    return f"{name}={value}"


# overrides that steer the search itself, not what a trial computes: left out of the study name, so
# `n_trials=12` after `n_trials=8`, or another launcher, continues the same study
_SEARCH_KEYS = ("n_trials", "hparams_search", "hydra.", "hydra/")


def study_name_for(prefix: str, arguments: Sequence[str]) -> str:
    """``<prefix>-<hash of the command's overrides>``: the same command resumes the same study."""
    kept = sorted(a for a in arguments if not a.lstrip("+~").startswith(_SEARCH_KEYS))
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def open_study(storage: str | None, study_name: str, direction: str, sampler: Any, pruner: Any) -> Any:
    """Create or load the study; a corrupt or foreign database file is an error naming it."""
    import optuna

    try:
        return optuna.create_study(storage=storage, study_name=study_name, direction=direction, sampler=sampler,
                                   pruner=pruner, load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - sqlalchemy/optuna raise many kinds for a bad file
        where = storage.removeprefix("sqlite:///") if storage else "(in memory)"
        raise RuntimeError(
            f"cannot open the Optuna study {study_name!r} in {where}: {type(e).__name__}: {str(e).splitlines()[0]}. The file is corrupt "
            "or not an Optuna database: move it away (a new search starts) or set hydra.sweeper.storage to "
            "another file"
        ) from None


def startup_points(params: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``n`` start-up points that cover every numeric range evenly, from the top of each range down:
    point ``i`` sits at quantile ``1 - (i + 1/2) / n``, on a log scale where the spec says ``log``.
    Categorical entries are left to the sampler.

    Why evenly: random start-up draws cluster. TPE's seeded draws for lr in [1e-6, 1e-2] were 1.6e-4,
    7.3e-4 and 2.6e-4, all inside one tenth of the range, and its next proposals went to the range's
    edge (1.2e-6, twice). Why from the top: the pruner never prunes its own start-up trials, and a high
    learning rate is the trial most at risk of unfair pruning (it first hurts, then may win after the
    decay); the lowest rate stays closest to the zero-shot model, which is scored anyway. Low to high,
    the median pruner cut the 2.2e-3 start-up trial that an unpruned search found best
    (experiments/benchmarks/optuna_pruning.py)."""
    points: list[dict[str, Any]] = [{} for _ in range(max(0, int(n)))]
    for name, spec in params.items():
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int"):
            continue
        low, high, log_scale = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
        if low is None or high is None or not float(low) < float(high) or (log_scale and float(low) <= 0):
            continue  # suggest() names the problem
        low, high = float(low), float(high)
        for i, point in enumerate(points):
            q = 1 - (i + 0.5) / len(points)
            v = math.exp(math.log(low) + q * math.log(high / low)) if log_scale else low + q * (high - low)
            point[name] = math.floor(v + 0.5) if spec["type"] == "int" else float(f"{v:.6g}")
    return [p for p in points if p]


class OptunaSweeper:
    """The Hydra ``Sweeper`` (the plugin class in ``hydra_plugins.tsfm_optuna`` subclasses this
    together with Hydra's base class). Constructor arguments are ``hydra.sweeper.*``."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        n_trials: int = 8,
        n_jobs: int = 1,
        direction: str = "minimize",
        storage: str | None = None,
        study_name: str | None = None,
        seed: int = 0,
        n_startup_trials: int = 3,
        pruner: dict[str, Any] | None = None,
    ) -> None:
        if not params:
            raise ValueError("hydra.sweeper.params is empty: give the search space, e.g. {optim.lr: {type: float, "
                             "low: 1e-5, high: 1e-2, log: true}}")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"n_trials and n_jobs must be >= 1, got {n_trials}, {n_jobs}")
        self.params = {str(k): (OmegaConf.to_container(v) if isinstance(v, DictConfig) else v)
                       for k, v in dict(params).items()}  # fmt: skip
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.direction, self.storage, self.study_name = direction, storage, study_name
        self.seed, self.n_startup_trials = int(seed), int(n_startup_trials)
        self.pruner_cfg = dict(pruner or {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: Any = None

    # -- Hydra Sweeper interface -----------------------------------------------------------
    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _pruner(self) -> Any:
        return make_pruner(self.pruner_cfg)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from hydra.core.utils import JobStatus

        assert self.config is not None and self.launcher is not None
        for a in arguments:  # a comma list (a=1,2) is a basic-sweeper sweep; lists and dicts are values
            value = a.split("=", 1)[-1]
            if "," in value and not value.startswith(("[", "{", "'", '"')):
                raise ValueError(f"override {a!r}: the Optuna sweeper takes the search space from hydra.sweeper.params, "
                                 "not comma lists")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        name = self.study_name or study_name_for(str(self.config.get("task_name", "search")), arguments)
        if self.storage and self.storage.startswith("sqlite:///"):
            Path(self.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials)
        study = open_study(self.storage, name, self.direction, sampler, self._pruner())
        if not study.trials:  # a new study: the start-up trials cover the numeric ranges evenly
            for point in startup_points(self.params, self.n_startup_trials):
                study.enqueue_trial(point)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.warning("trial %d was left running by an interrupted search: marked failed, rerun", t.number)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=done_states))
        if done:
            log.info("study %r resumed: %d of %d trials already finished", name, done, self.n_trials)
        job_idx = len([t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING])
        returns: list[Any] = []
        failures: list[str] = []
        while done < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - done)
            trials = [study.ask() for _ in range(batch)]
            overrides = []
            for t in trials:
                values = [_override(k, suggest(t, k, spec)) for k, spec in self.params.items()]
                overrides.append([*arguments, *values, f"+{TRIAL_KEY}={t._trial_id}", f"+optuna_study={name}"])
            results = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += batch
            for t, r, ov in zip(trials, results, overrides):
                t.set_user_attr("job_dir", _job_dir(r))
                t.set_user_attr("overrides", ov[len(arguments):-2])
                if r.status == JobStatus.COMPLETED:
                    value = _objective(r.return_value)
                    if value is None:
                        why = f"its job returned {r.return_value!r}, not a finite number"
                        log.error("trial %d: %s; marked failed", t.number, why)
                        study.tell(t, state=optuna.trial.TrialState.FAIL)
                        failures.append(why)
                    else:
                        study.tell(t, value)
                        done += 1
                else:
                    err = getattr(r, "_return_value", None)
                    if isinstance(err, optuna.TrialPruned):
                        study.tell(t, state=optuna.trial.TrialState.PRUNED)
                        done += 1
                    else:
                        log.error("trial %d failed: %r", t.number, err)
                        study.tell(t, state=optuna.trial.TrialState.FAIL)
                        failures.append(repr(err))
            returns.append(results)
            if len(failures) >= self.n_trials:  # never loop forever on a broken objective
                raise RuntimeError(f"{len(failures)} trials of study {name!r} failed (the search stops); last: "
                                   f"{failures[-1]}. See the job logs under {sweep_dir}")
        self._report(study, sweep_dir)
        return returns

    def _report(self, study: Any, sweep_dir: Path) -> None:
        import optuna

        asked = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]  # not enqueued start-up points
        complete = [t for t in asked if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in asked)
        if not complete:
            raise RuntimeError(f"study {study.study_name!r}: no trial completed ({pruned} pruned); see the job logs")
        best = study.best_trial
        results = {
            "name": "optuna", "study_name": study.study_name, "storage": self.storage,
            "best_params": dict(best.params), "best_value": float(best.value), "best_trial": best.number,
            "best_job_dir": best.user_attrs.get("job_dir"), "best_overrides": best.user_attrs.get("overrides"),
            "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                        "job_dir": t.user_attrs.get("job_dir")} for t in asked],
        }  # fmt: skip
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info("best of %d trials (%d completed, %d pruned): value %.4f with %s; job dir %s; results in %s",
                 len(asked), len(complete), pruned, best.value, best.params, results["best_job_dir"],
                 sweep_dir / "optimization_results.yaml")
        print(f"best trial {best.number}: {study.direction.name.lower()} objective {best.value:.4f} with "
              f"{dict(best.params)}\n  its run: {results['best_job_dir']}\n  results: {sweep_dir / 'optimization_results.yaml'}")


def make_pruner(cfg: dict[str, Any] | None) -> Any:
    """``hydra.sweeper.pruner`` as an Optuna pruner (the sweeper and every job build the same one:
    a study loaded from storage does not remember its pruner)."""
    import optuna

    cfg = dict(cfg or {})
    kind = cfg.pop("type", "median")
    # patience: prune only a trial whose score got worse (by more than min_delta) over its last `patience`
    # reports and that the wrapped pruner would prune: a high learning rate that starts worse but improves
    # survives (optuna.pruners.PatientPruner)
    patience = cfg.pop("patience", None)
    min_delta = float(cfg.pop("min_delta", 0.0))
    # reference: the median also counts the trial's reference score (fine-tuning: the zero-shot model's) as a
    # finished trial (tsfm.search.pruners.ReferenceMedianPruner)
    reference = cfg.pop("reference", False)
    if not isinstance(reference, bool):
        raise ValueError(f"hydra.sweeper.pruner.reference={reference!r} must be true or false")
    if kind in (None, "none", "nop"):
        return optuna.pruners.NopPruner()  # no pruning: patience has nothing to wrap
    if reference and kind != "median":
        raise ValueError(f"hydra.sweeper.pruner.reference=true needs type: median (got {kind!r})")
    if reference:
        from tsfm.search.pruners import ReferenceMedianPruner

        pruner = ReferenceMedianPruner(**cfg)
    elif kind == "median":
        pruner = optuna.pruners.MedianPruner(**cfg)
    elif kind == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(**cfg)
    else:
        raise ValueError(f"hydra.sweeper.pruner.type={kind!r}: use median, hyperband or none")
    if patience is None:
        return pruner
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"hydra.sweeper.pruner.patience={patience!r} must be a non-negative integer (reports)")
    return optuna.pruners.PatientPruner(pruner, patience=patience, min_delta=min_delta)


def _job_dir(ret: Any) -> str:
    """A job's output directory (where its checkpoints and exported model are)."""
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # noqa: BLE001 - a launcher without hydra_cfg on its returns
        return str(getattr(ret, "working_dir", "") or "")


def _objective(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None
