"""Fine-tune a checkpoint on the user's data, safely: score first, train, compare, keep the better.

:func:`finetune` is the whole workflow behind ``python -m tsfm.finetune`` and
``Forecaster.fit``:

1. read and check the data (:mod:`tsfm.finetune.data`) and hold out the last ``num_windows``
   windows of every series; nothing from them is trained on;
2. score the **zero-shot** model and the statistical baselines (Seasonal Naive, AutoETS,
   AutoTheta) on the held-out windows;
3. fine-tune with ``tsfm.train``'s machinery (the family's LightningModule from ``pretrained``,
   the preset ``full`` / ``head`` / ``lora``), evaluating the held-out WQL every ``eval_every``
   steps, keeping the best checkpoint and stopping early after ``patience`` evaluations without
   improvement;
4. score the fine-tuned model on the same windows, print the table (WQL, MASE and both relative
   to Seasonal Naive) and draw a fan chart;
5. **guardrail**: if fine-tuning did not beat zero-shot on held-out WQL, say so and export the
   zero-shot model (unless ``force``). ``<out_dir>/model`` is the exported checkpoint directory.

This module does not import :mod:`tsfm.forecast` (which calls it from ``Forecaster.fit``): the
fine-tuned model is loaded with the same forecaster class as the zero-shot one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from tsfm.checkpoint import CONFIG_NAME, METADATA_FILES, RECIPE_NAME, WEIGHTS_NAME, read_recipe
from tsfm.data.format import DataError, write_dataset
from tsfm.eval.runner import SuiteResult, evaluate_suite
from tsfm.finetune.data import Holdout, hold_out, load_series
from tsfm.finetune.report import comparison_table, plot_comparison, print_comparison
from tsfm.levels import DEFAULT_QUANTILES
from tsfm.models import families
from tsfm.models import get as get_family
from tsfm.training.build import build, check_config, check_precision
from tsfm.utils.config import register_resolvers

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
BASELINES = ("seasonal_naive", "auto_ets", "auto_theta")
REFERENCE = "seasonal_naive"
MONITOR = "holdout/avg_wql"


# What every trial of a search over one dataset and checkpoint repeats (the basic launcher runs trials one
# after another in one process): the read, checked and split series, and the zero-shot model's and the
# baselines' scores on the held-out windows. Keyed by the data file's and the checkpoint's path, size and
# modification time, and every argument the result depends on; a few entries at most.
_MEMO: dict[tuple, Any] = {}
_MEMO_ENTRIES = 4


def _stat_key(path: str | Path) -> tuple | None:
    """A file's identity for the memo (a checkpoint directory: its weights file); None if there is none."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / WEIGHTS_NAME  # the only weights file a checkpoint directory is loaded from
    if not p.is_file():
        return None
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def _weights_sum(forecaster: Any) -> float | None:
    """A cheap fingerprint of the weights in memory (a forecaster changed after loading is scored anew)."""
    model = getattr(forecaster, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters()))


def _forecaster_settings(forecaster: Any, model_cfg: dict[str, Any]) -> str:
    """What besides the weights shapes a forecaster's output: its class, model config, load-time options
    (``init_options``: sampling settings and the like) and the weights' dtype."""
    options = {k: getattr(forecaster, k, None) for k in getattr(type(forecaster), "init_options", ())}
    first = next(iter(forecaster.model.parameters()), None) if isinstance(getattr(forecaster, "model", None),
                                                                          torch.nn.Module) else None
    return json.dumps([type(forecaster).__qualname__, model_cfg, options, str(getattr(first, "dtype", None))],
                      sort_keys=True, default=str)


def _memo(key: tuple | None, make: Any, what: str) -> Any:
    if key is None:
        return make()
    if key in _MEMO:
        log.info("reusing %s from an earlier run in this process (same inputs)", what)
        return _MEMO[key]
    value = make()
    while len(_MEMO) >= _MEMO_ENTRIES:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = value
    return value


def preset_defaults(preset: str) -> dict[str, Any]:
    """``conf/finetune/<preset>.yaml`` (what ``python -m tsfm.finetune finetune=<preset>`` starts from)."""
    path = Path(CONFIG_DIR) / "finetune" / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown fine-tuning preset {preset!r}; use one of {known}")
    return dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def resolve_lr(preset: str, pretrained: str | Path, lr: float | None = None, lr_scale: float | None = None,
               default_lr: float | None = None) -> tuple[float, str]:
    """The fine-tuning learning rate and where it comes from.

    An explicit ``lr`` wins. Otherwise, when the preset has an ``lr_scale`` and the checkpoint says how it was
    pretrained (``training_recipe.json``, written by ``tsfm.train``'s export; a ``.ckpt``: its module's
    optimizer hyperparameters), ``lr_scale`` x its pretraining peak rate: a model pretrained at 3e-3 and one
    pretrained at 1e-4 want fine-tuning rates that far apart too. Else the preset's ``default_lr`` (set for
    the official checkpoints; also for a checkpoint of a ``tsfm.train`` run that itself started from one,
    whose rate is not a pretraining rate). Unset arguments come from ``conf/finetune/<preset>.yaml``.
    """
    if lr is not None:
        if not float(lr) > 0:
            raise ValueError(f"the fine-tuning learning rate must be positive, got lr={lr}")
        return float(lr), "set (lr= / finetune.lr=)"
    defaults = preset_defaults(preset)
    if defaults.get("lr") is not None:
        return float(defaults["lr"]), f"conf/finetune/{preset}.yaml"
    scale = defaults.get("lr_scale") if lr_scale is None else lr_scale
    default = defaults.get("default_lr") if default_lr is None else default_lr
    src = Path(pretrained).expanduser()
    recipe = read_recipe(src) if src.is_dir() else _ckpt_recipe(src) if src.suffix == ".ckpt" else None
    optim, parent = (recipe or {}).get("optim"), (recipe or {}).get("pretrained")
    peak = optim.get("lr") if isinstance(optim, dict) and not parent else None  # a fine-tuning run's rate is not one
    if scale is not None and peak is not None and float(peak) > 0:
        where = RECIPE_NAME if src.is_dir() else "the checkpoint's hyperparameters"
        return float(scale) * float(peak), f"{float(scale):g} x the pretraining peak lr {float(peak):.3g} ({where})"
    if default is None:
        raise ValueError(f"preset {preset!r} sets no lr and no default_lr; pass lr=<rate> (finetune.lr=<rate>)")
    why = ("no " + RECIPE_NAME if recipe is None else f"it was itself fine-tuned from {parent}" if parent
           else "its recipe names no optim.lr")
    return float(default), f"the {preset} preset's default_lr ({why})"


def _ckpt_recipe(path: Path) -> dict[str, Any] | None:
    """The optimizer settings a tsfm ``.ckpt`` was pretrained with (its module's hyperparameters); None for a
    checkpoint of a fine-tuning run (its rate is not a pretraining rate) or one without them."""
    if not path.is_file():
        return None
    hp = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    optim = hp.get("optim")
    if hp.get("pretrained") or not isinstance(optim, dict):
        return None
    return {"optim": dict(optim)}


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced; ``model_dir`` is the exported (chosen) checkpoint."""

    table: pd.DataFrame  # one row per model: wql, mase, rel_wql, rel_mase on the held-out windows
    improved: bool  # fine-tuned beat zero-shot on held-out WQL
    exported: str  # "finetuned" or "zero_shot"
    model_dir: Path
    out_dir: Path
    best_step: int | None
    steps: int
    seconds: float
    lr: float
    lr_source: str
    holdout: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    forecaster: Any = None

    @property
    def message(self) -> str:
        zs, ft = self.table.loc["zero_shot", "rel_wql"], self.table.loc["finetuned", "rel_wql"]
        if self.improved:
            return (f"fine-tuning improved held-out WQL: {ft:.3f} vs zero-shot {zs:.3f} (relative to Seasonal "
                    f"Naive); exported the fine-tuned model to {self.model_dir}")
        kept = "the fine-tuned model (force=true)" if self.exported == "finetuned" else "the zero-shot model"
        return (f"FINE-TUNING DID NOT HELP: held-out WQL {ft:.3f} is not better than zero-shot {zs:.3f} "
                f"(relative to Seasonal Naive); exported {kept} to {self.model_dir}")


def _model_config(forecaster: Any) -> dict[str, Any]:
    model = forecaster.model
    cfg = getattr(model, "config", None) or getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise TypeError(f"{type(forecaster).__name__}: its model has no config to fine-tune from")
    return dict(cfg.to_dict())


def _model_overrides(family: str, c: dict[str, Any], prediction_length: int) -> dict[str, Any]:
    """Top-level ``model.*`` settings (shared with the task) that follow the checkpoint's architecture:
    the family's LightningModule says which (``model_settings``)."""
    return get_family(family).load("module").model_settings(c, prediction_length)


def holdout_suite(path: Path, holdout: Holdout, name: str, baselines: Sequence[str], season_length: int | None,
                  max_context: int) -> dict[str, Any]:
    """The held-out windows as an evaluation suite (one dataset) for :func:`evaluate_suite`."""
    ds = {"name": name, "source": "arrow", "path": str(path), "freq": holdout.freq,
          "prediction_length": holdout.prediction_length, "num_windows": holdout.num_windows,
          "min_context": holdout.min_context, "covariates": True}  # fmt: skip
    if season_length:
        ds["season_length"] = int(season_length)
    return {"name": "holdout", "quantile_levels": list(DEFAULT_QUANTILES), "metrics": ["wql", "mase"],
            "baselines": list(baselines), "reference": REFERENCE, "use_precomputed": False,
            "max_context": max_context, "datasets": [ds]}  # fmt: skip


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (inside a Hydra app or from plain Python)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def train_config(
    family: str, model_cfg: dict[str, Any], pretrained: Path, train_dir: Path, out_dir: Path, suite: dict,
    prediction_length: int, *, preset: str, lr: float, max_steps: int, batch_size: int, eval_every: int,
    patience: int, seed: int, lora: dict | None, overrides: Sequence[str], cache_dir: str, min_context: int = 8,
) -> DictConfig:
    """The ``tsfm.train`` config of the fine-tuning run (checked, ready for :func:`build`)."""
    # the family's model config; the architecture itself comes from the checkpoint (model.module.pretrained)
    base = [f"model={get_family(family).model_config}", "optim=finetune", "data=synthetic", "logger=csv", "final_eval=null",
            "export=false", "ckpt_path=null", f"seed={seed}", f"paths.output_dir={out_dir}"]  # fmt: skip
    cfg = compose_train([*base, *overrides])
    with open_dict(cfg):
        for k, v in _model_overrides(family, model_cfg, prediction_length).items():
            OmegaConf.update(cfg.model, k, v, merge=False)  # dotted keys reach into model.module
        shared = {k: v for k, v in model_cfg.items() if k in cfg.model.module.config}
        for k, v in shared.items():  # the architecture is the checkpoint's (the module checks it too)
            if k not in ("context_length", "prediction_length", "patch_size", "max_output_patches", "max_seq_len",
                         "patch_sizes", "architecture"):
                cfg.model.module.config[k] = v
        cfg.model.module.pretrained = str(pretrained)
        cfg.model.module.finetune = preset
        cfg.model.module.lora = dict(lora) if lora else None
        cfg.data.corpus = [{"name": "finetune_train", "path": str(train_dir), "weight": 1.0}]
        cfg.data.batch_size = int(batch_size)
        cfg.data.early_steps = 0
        cfg.data.item_weighting = "uniform"
        if "min_past" in cfg.model.task:  # short user series: contexts down to min_context points
            cfg.model.task.min_past = min(int(cfg.model.task.min_past), int(min_context))
        cfg.optim.lr = float(lr)
        cfg.trainer.max_steps = int(max_steps)
        cfg.trainer.val_check_interval = int(eval_every)
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.log_every_n_steps = max(1, min(10, int(eval_every)))
        cfg.callbacks.benchmark.suite = suite
        cfg.callbacks.benchmark.prefix = "holdout"
        cfg.callbacks.benchmark.cache_dir = cache_dir
        cfg.callbacks.benchmark.on_train_end = False
        # the sanity probes monitor pretraining on synthetic patterns; here every evaluation is the user's held-out
        # windows (up to a search's trials x evaluations), and the probes would add their cost to each
        cfg.callbacks.benchmark.probes = False
        cfg.callbacks.model_checkpoint.monitor = MONITOR
        cfg.callbacks.model_checkpoint.save_top_k = 1
        cfg.callbacks.early_stopping = {
            "_target_": "tsfm.training.callbacks.BenchmarkEarlyStopping", "monitor": MONITOR, "mode": "min",
            "patience": int(patience), "every_n_steps": int(eval_every)}  # fmt: skip
        if "monitor" in cfg.callbacks:
            cfg.callbacks.monitor.print_every_n_steps = int(eval_every)
        bar = cfg.callbacks.get("progress_bar")
        if bar is not None and "RichProgressBar" in str(bar.get("_target_")) and int(bar.get("refresh_rate", 1)) > 0:
            # Lightning's rich bar redraws from a thread that sleeps 1 / refresh_rate seconds and is joined when
            # training ends (or a search prunes the trial): at refresh_rate 1 every run ended up to 1 s late
            # (0.6 s measured), a tenth of a pruned trial. Redraw every 10 steps (a fine-tuning step takes ~50 ms).
            bar.refresh_rate = max(10, int(bar.get("refresh_rate", 1)))
    OmegaConf.resolve(cfg)
    check_config(cfg)
    return cfg


def finetune(
    forecaster: Any,
    pretrained: str | Path,
    data: Any,
    prediction_length: int,
    out_dir: str | Path,
    *,
    preset: str = "full",
    lr: float | None = None,
    lr_scale: float | None = None,
    default_lr: float | None = None,
    max_steps: int = 300,
    batch_size: int = 32,
    eval_every: int = 50,
    patience: int = 3,
    num_windows: int = 1,
    min_context: int = 8,
    season_length: int | None = None,
    force: bool = False,
    seed: int = 0,
    lora: dict | None = None,
    id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    target: str | Sequence[str] = "target",
    covariates: Sequence[str] | None = None,
    freq: str | None = None,
    baselines: Sequence[str] = BASELINES,
    train_overrides: Sequence[str] = (),
    callbacks: Sequence[Any] = (),
    cache_dir: str | Path | None = None,
    plot: bool = True,
    console: Any = None,
) -> FinetuneResult:
    """Fine-tune ``forecaster`` (loaded from ``pretrained``) on ``data``; see the module docstring.

    ``lr``: the learning rate; None: as :func:`resolve_lr` says (``lr_scale`` x the checkpoint's pretraining
    rate, else the preset's ``default_lr``). ``callbacks``: extra Lightning callbacks for the training run
    (e.g. an Optuna pruning callback reading ``holdout/avg_wql``). ``train_overrides``: further ``tsfm.train`` overrides
    (``trainer.precision=32``, ...). A callback with a ``set_reference(score)`` method is given the zero-shot model's
    held-out WQL relative to Seasonal Naive (what ``holdout/avg_wql`` measures) before training.
    """
    t0 = time.perf_counter()
    family = getattr(forecaster, "family", "")
    if family not in families():
        raise ValueError(f"cannot fine-tune a {type(forecaster).__name__}: families {sorted(families())} only")
    with_covariates = [n for n, spec in families().items() if spec.covariates]
    if covariates and not get_family(family).covariates:
        raise ValueError(
            f"covariates {list(covariates)} given, but the {family} family takes no covariates; families with "
            f"covariate support: {', '.join(with_covariates)}. Drop `covariates` or use such a model."
        )
    lr, lr_source = resolve_lr(preset, pretrained, lr, lr_scale, default_lr)
    log.info("fine-tuning learning rate %.3g (%s)", lr, lr_source)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = str(Path(cache_dir).expanduser() if cache_dir else out / "cache")
    data_file = _stat_key(data) if isinstance(data, (str, Path)) and Path(data).expanduser().is_file() else None
    split_key = None if data_file is None else (
        "split", data_file, id_column, timestamp_column, target if isinstance(target, str) else tuple(target),
        tuple(covariates or ()), freq, int(prediction_length), int(num_windows), int(min_context))
    holdout = _memo(split_key, lambda: hold_out(
        load_series(data, id_column=id_column, timestamp_column=timestamp_column, target=target,
                    covariates=covariates, freq=freq), prediction_length, num_windows, min_context),
        "the checked and split data")
    data_dir = out / "data"
    for stale in ("data", "train", "zero_shot", "finetuned", "model"):  # an earlier run into the same out_dir
        if (out / stale).exists():
            log.info("replacing %s from an earlier run", out / stale)
            shutil.rmtree(out / stale)
    write_dataset(holdout.train, data_dir / "train")
    write_dataset(holdout.full, data_dir / "holdout")
    model_cfg = _model_config(forecaster)
    max_context = int(_model_overrides(family, model_cfg, prediction_length).get("context_length") or 2048)
    suite = holdout_suite(data_dir / "holdout", holdout, "holdout", baselines, season_length, max_context)

    log.info("scoring the zero-shot model and the baselines on %d held-out window(s) of %d series",
             holdout.num_windows, len(holdout.full))
    source = getattr(forecaster, "source", None)
    same_weights = source is not None and Path(source).expanduser().resolve() == Path(pretrained).expanduser().resolve()
    ckpt_key = (_stat_key(pretrained), _weights_sum(forecaster), _forecaster_settings(forecaster, model_cfg)) \
        if same_weights else None
    zero_shot = _memo(
        None if split_key is None or ckpt_key is None else (
            "zero_shot", split_key, ckpt_key, str(getattr(forecaster, "device", "cpu")), season_length,
            tuple(baselines), max_context),
        lambda: evaluate_suite(forecaster, suite, model_name="zero_shot", cache_dir=cache, plot_series=4),
        "the zero-shot and baseline scores")

    cfg = train_config(
        family, model_cfg, Path(pretrained).expanduser().resolve(), data_dir / "train",
        out / "train", holdout_suite(data_dir / "holdout", holdout, "holdout", [], season_length, max_context),
        prediction_length, preset=preset, lr=lr, max_steps=max_steps, batch_size=batch_size, eval_every=eval_every,
        patience=patience, seed=seed, lora=lora, overrides=train_overrides, cache_dir=cache, min_context=min_context,
    )
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    module, datamodule, trainer = build(cfg)
    check_precision(cfg, module)
    need = getattr(getattr(datamodule, "task", None), "min_length", None)
    longest = max(s.length for s in holdout.train)
    if need is not None and longest < need:
        raise DataError(
            f"the {family} model trains on windows of at least {need} points (context + horizon), but the longest "
            f"training part (a series minus its {holdout.span} held-out points) has {longest}; use longer series, or a "
            "shorter prediction_length / num_windows"
        )
    reference = zero_shot.aggregates.get("zero_shot", {}).get("rel_wql", float("nan"))
    for cb in callbacks:
        if hasattr(cb, "set_reference"):  # the zero-shot score, in MONITOR's units: a search's reference
            cb.set_reference(reference)
        trainer.callbacks.append(cb)
    _save_zero_shot(forecaster, pretrained, out / "zero_shot")
    trainer.fit(module, datamodule=datamodule)
    ckpt_cb = trainer.checkpoint_callback
    best_path = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    best_step = None
    if best_path:
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        best_step = int(ckpt.get("global_step", 0))
    module.save_pretrained(out / "finetuned")
    _save_recipe(pretrained, out / "finetuned", {"preset": preset, "lr": lr, "lr_source": lr_source,
                                                 "steps": int(trainer.global_step), "best_step": best_step})
    device = getattr(forecaster, "device", "cpu")
    tuned_fc = type(forecaster).from_pretrained(out / "finetuned", device=device)
    tuned = evaluate_suite(tuned_fc, suite, model_name="finetuned", cache_dir=cache, plot_series=4)

    table = comparison_table(zero_shot, tuned, baselines)
    improved = bool(table.loc["finetuned", "rel_wql"] < table.loc["zero_shot", "rel_wql"])
    chosen = "finetuned" if improved or force else "zero_shot"
    model_dir = out / "model"
    shutil.copytree(out / chosen, model_dir)
    result = FinetuneResult(table, improved, chosen, model_dir, out, best_step, int(trainer.global_step),
                            time.perf_counter() - t0, lr, lr_source, holdout.summary())  # fmt: skip
    result.files = _write_report(result, zero_shot, tuned, plot)
    print_comparison(result, console)
    result.forecaster = tuned_fc if chosen == "finetuned" else type(forecaster).from_pretrained(model_dir, device=device)
    result.forecaster.source = model_dir  # so that it can be fine-tuned again
    return result


def _save_zero_shot(forecaster: Any, pretrained: str | Path, out: Path) -> None:
    """The model that was scored zero-shot, as it was loaded: its own config (not the fine-tuning run's, whose
    horizon follows ``prediction_length``), and the corpus summary of its training data when it has one."""
    src = Path(pretrained).expanduser()
    reduced = any(p.dtype != torch.float32 for p in forecaster.model.parameters())
    if reduced and (src / CONFIG_NAME).is_file() and (src / WEIGHTS_NAME).is_file():
        out.mkdir(parents=True, exist_ok=True)  # loaded in lower precision: the checkpoint's own weights
        for f in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copy2(src / f, out / f)
    else:
        type(forecaster).converter().save_pretrained(forecaster.model, out)
    for name in METADATA_FILES:  # its corpus and how it was trained travel with it
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)


def _save_recipe(pretrained: str | Path, out: Path, finetuned: dict[str, Any]) -> None:
    """The fine-tuned weights' ``training_recipe.json``: the pretraining recipe (so that fine-tuning them again
    starts from the same rate) with this run under ``finetuned``; none when the checkpoint had none."""
    src = Path(pretrained).expanduser()
    recipe = read_recipe(src) if src.is_dir() else None
    if recipe is not None:
        (out / RECIPE_NAME).write_text(json.dumps({**recipe, "finetuned": finetuned}, indent=2, default=str))


def _write_report(result: FinetuneResult, zero_shot: SuiteResult, tuned: SuiteResult, plot: bool) -> dict[str, Path]:
    files = {"table": result.out_dir / "comparison.csv", "report": result.out_dir / "finetune_report.json"}
    result.table.to_csv(files["table"])
    files["report"].write_text(json.dumps({
        "improved": result.improved, "exported": result.exported, "model_dir": str(result.model_dir),
        "message": result.message, "best_step": result.best_step, "steps": result.steps,
        "seconds": round(result.seconds, 2), "lr": result.lr, "lr_source": result.lr_source,
        "holdout": result.holdout,
        "table": {k: {m: (None if pd.isna(v) else float(v)) for m, v in row.items()}
                  for k, row in result.table.to_dict(orient="index").items()},
    }, indent=2))  # fmt: skip
    if plot:
        png = plot_comparison(zero_shot, tuned, result.out_dir / "forecasts.png", DEFAULT_QUANTILES)
        if png is not None:
            files["plot"] = png
    return files
