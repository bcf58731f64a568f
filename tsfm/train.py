"""Train a time series foundation model: ``python -m tsfm.train [overrides]``.

Composes conf/train.yaml (model, data, trainer, optim, callbacks, logger, eval, paths) and runs
``Trainer.fit``, exports the weights and (``final_eval``) evaluates them zero-shot. With no
overrides it is the quickstart: a small Chronos-2 (4 x 128, context 256) on the synthetic structural corpus
(generated and cached under ./data on first use), about 11 minutes on 2 CPU cores, ending with the dev-suite table
against Seasonal Naive, AutoETS and AutoTheta. Rerunning an interrupted command resumes it. Examples::

    python -m tsfm.train trainer.max_steps=50
    python -m tsfm.train model=moirai_base trainer=fsdp_64gpu data=lotsa
    python -m tsfm.train -m model=moirai_tiny,moirai_small optim.lr=1e-3,3e-4
    python -m tsfm.train <same overrides> ckpt_path=last hydra.run.dir=<previous run dir>  # resume exactly
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from lightning.pytorch.strategies import ModelParallelStrategy
from omegaconf import DictConfig, OmegaConf

from tsfm.search.pruning import pruning_callback
from tsfm.training.build import build, check_config, check_precision
from tsfm.training.export import export
from tsfm.training.resume import adapt_to_strategy, check_resumable, resolve_ckpt_path
from tsfm.utils.config import register_resolvers

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, export the final weights, return the logged metrics (for sweepers)."""
    check_config(cfg)
    module, datamodule, trainer = build(cfg)
    check_precision(cfg, module)
    pruning = pruning_callback(cfg, str(cfg.get("search_monitor")), int(cfg.trainer.val_check_interval))
    if pruning is not None:  # a trial of hparams_search=optuna
        trainer.callbacks.append(pruning)
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path is not None:
        check_resumable(module, ckpt_path)
        sharded = isinstance(trainer.strategy, ModelParallelStrategy)  # FSDP2 checkpoints are directories
        ckpt_path = adapt_to_strategy(ckpt_path, module, sharded, Path(cfg.paths.output_dir) / "resumed_from")
    if cfg.get("tune_lr"):
        from lightning.pytorch.tuner import Tuner

        finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, num_training=100)
        suggestion = finder.suggestion() if finder is not None else None
        if suggestion:
            log.info("lr finder suggests %.3g (was %.3g)", suggestion, module.optim_cfg.lr)
            module.optim_cfg.lr = float(suggestion)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    out = Path(cfg.paths.output_dir)
    if cfg.get("export"):
        export(cfg, module, trainer, out / "export")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("final_eval") and cfg.get("export") and trainer.is_global_zero:
        from tsfm.training.final_eval import evaluate_export

        agg = evaluate_export(out / "export", str(cfg.final_eval), cfg.paths, out / "final_eval")
        metrics |= {f"final_eval/{k}": float(v) for k, v in agg.items() if isinstance(v, float)}
    if cfg.get("registry") and cfg.get("export") and trainer.is_global_zero:  # registry=mlflow
        from tsfm.registry.training import register_run

        register_run(cfg, out, metrics, module, trainer)
    log.info("final metrics: %s", metrics)
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "best_model_path", ""):
            log.info("best checkpoint: %s", cb.best_model_path)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=False))
    metrics = train(cfg)
    if cfg.get("optuna_trial") is not None:  # the trial's score: the search monitor's last value
        return metrics.get(str(cfg.search_monitor), float("inf"))
    if cfg.get("optimized_metric"):
        if cfg.optimized_metric not in metrics:
            raise KeyError(f"optimized_metric={cfg.optimized_metric!r} was not logged; logged: {sorted(metrics)}")
        return metrics[cfg.optimized_metric]
    return None


register_resolvers()

if __name__ == "__main__":
    main()
