"""``registry=mlflow``: register a finished training run's model (called by :mod:`tsfm.train` on rank 0).

Which weights (``registry.checkpoint``):

* ``best``: the best top-K checkpoint by the monitored metric (the lite benchmark's
  ``benchmark/avg_wql`` with the default callbacks), exported to ``<run dir>/export_best``; when the
  best is the final step, or no checkpoint callback monitors a metric, the run's ``export/``;
* ``export``: the run's ``export/`` (the final weights).

Metrics: the final zero-shot evaluation (``final_eval/*`` and ``<suite>/rel_wql``, ``<suite>/rel_mase``, of
the final weights; a best checkpoint is scored on the same suite into ``<run dir>/export_best_eval``
and gets the ``<suite>/*`` scores) and the lite benchmark; lineage: the Hydra config, the corpus
fingerprints, the git commit, the parent checkpoint (``model.module.pretrained``) and, for a best
checkpoint, its path and step.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tsfm.checkpoint import METADATA_FILES

log = logging.getLogger(__name__)

BEST_DIR = "export_best"
CHOICES = ("best", "export")


def _monitored_best(trainer: Any) -> tuple[Any, Path] | None:
    """The checkpoint callback that keeps top-K by a metric, and its best checkpoint file."""
    for cb in getattr(trainer, "checkpoint_callbacks", []):
        path = getattr(cb, "best_model_path", "")
        if getattr(cb, "monitor", None) and path and Path(path).is_file():
            return cb, Path(path)
    return None


def _run_metrics(metrics: dict[str, float]) -> dict[str, float]:
    keep = ("final_eval/", "benchmark/avg_", "benchmark/zero_shot_avg_", "val/loss", "train/loss")
    return {k: float(v) for k, v in metrics.items() if k.startswith(keep)}


def choose(cfg: DictConfig, run_dir: Path, metrics: dict[str, float], module: Any, trainer: Any
           ) -> tuple[Path, dict[str, float], dict[str, Any], bool]:
    """The directory to register, its metrics and extra lineage, and whether it holds the final weights."""
    which = str(cfg.registry.get("checkpoint", "best"))
    if which not in CHOICES:
        raise ValueError(f"registry.checkpoint={which!r}: use one of {CHOICES}")
    export = run_dir / "export"
    best = _monitored_best(trainer) if which == "best" else None
    if best is None:
        return export, _run_metrics(metrics), {"weights": "final"}, True
    cb, path = best
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    step = int(ckpt.get("global_step", -1))
    score = getattr(cb, "best_model_score", None)
    lineage = {"checkpoint": str(path), "checkpoint_step": step, "checkpoint_monitor": cb.monitor}
    if step == int(trainer.global_step):  # the best is the final weights: the export (and its evaluation)
        return export, _run_metrics(metrics), {**lineage, "weights": "final"}, True
    module.load_state_dict(ckpt["state_dict"])  # training is over: the module may take the best weights
    out = run_dir / BEST_DIR
    module.save_pretrained(out)
    for name in METADATA_FILES:  # the corpus and the recipe describe these weights too
        if (export / name).is_file():
            shutil.copy2(export / name, out / name)
    best_metrics = {cb.monitor: float(score)} if score is not None else {}
    log.info("registering the best checkpoint %s (step %d, %s=%s) exported to %s", path, step, cb.monitor,
             f"{float(score):.4g}" if score is not None else "?", out)
    if cfg.get("final_eval"):  # the run's final evaluation scored the final weights: score these too
        from tsfm.registry.lineage import suite_metrics
        from tsfm.training.final_eval import evaluate_export

        suite = str(cfg.final_eval)
        agg = evaluate_export(out, suite, cfg.paths, run_dir / f"{BEST_DIR}_eval")
        best_metrics |= suite_metrics(suite, agg)
        lineage["final_eval_results"] = str(run_dir / f"{BEST_DIR}_eval" / "results.json")
    return out, best_metrics, {**lineage, "weights": "best"}, False


def register_run(cfg: DictConfig, run_dir: Path, metrics: dict[str, float], module: Any, trainer: Any) -> int | None:
    """Register the run's model as ``cfg.registry`` says (no-op unless ``registry=mlflow``); the version."""
    rc = cfg.get("registry")
    if not rc or rc.get("backend") != "mlflow":
        return None
    from tsfm.registry.mlflow_registry import register

    directory, found, extra, final = choose(cfg, run_dir, metrics, module, trainer)
    lineage = dict(extra)
    if cfg.get("model") is not None and OmegaConf.select(cfg, "model.module.pretrained", default=None):
        lineage["parent_checkpoint"] = str(cfg.model.module.pretrained)
    name = str(rc.name)
    try:
        version = register(directory, name, metrics=found, lineage=lineage, alias=rc.get("alias"),
                           description=rc.get("description"), uri=rc.get("uri"), run_dir=run_dir,
                           discover_metrics=final, experiment=str(rc.get("experiment") or "tsfm-registry"))
    except Exception:
        log.error("the run finished and %s holds its weights, but registering them failed; register them later "
                  "with: python -m tsfm.registry register %s --name %s", directory, directory, name)
        raise
    alias = f" (alias {rc.alias}: models:/{name}@{rc.alias})" if rc.get("alias") else ""
    log.info("registered %s as %s version %d: load_forecaster(\"models:/%s/%d\")%s", directory, name, version, name,
             version, alias)
    return version
