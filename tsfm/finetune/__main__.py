"""``python -m tsfm.finetune ckpt=<checkpoint> dataset=<data> prediction_length=<H> [overrides]``.

Composes conf/finetune.yaml (the preset group ``finetune=full|head|lora`` under conf/finetune/)
and runs :func:`tsfm.finetune.run.finetune`. Returns the fine-tuned model's held-out WQL relative
to Seasonal Naive to Hydra sweepers (``optimized_metric``).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from tsfm.finetune.run import CONFIG_DIR, finetune
from tsfm.forecast import load_forecaster
from tsfm.search.pruning import pruning_callback
from tsfm.utils.config import register_resolvers, to_plain

log = logging.getLogger(__name__)


def run(cfg: DictConfig):
    """Fine-tune as ``cfg`` says (the composed conf/finetune.yaml); returns the FinetuneResult."""
    forecaster = load_forecaster(str(cfg.ckpt), device=cfg.device)
    ft = to_plain(cfg.finetune)
    pruning = pruning_callback(cfg, str(cfg.search_monitor), int(cfg.eval_every))  # a trial of hparams_search=optuna
    return finetune(
        forecaster, str(cfg.ckpt), str(cfg.dataset), int(cfg.prediction_length), cfg.paths.output_dir,
        preset=ft["preset"], lr=ft.get("lr"), lr_scale=ft.get("lr_scale"),
        default_lr=ft.get("default_lr"), lora=ft.get("lora"), max_steps=cfg.max_steps,
        batch_size=cfg.batch_size, eval_every=cfg.eval_every, patience=cfg.patience, num_windows=cfg.num_windows,
        min_context=cfg.min_context, season_length=cfg.season_length, force=cfg.force, seed=cfg.seed,
        id_column=cfg.id_column, timestamp_column=cfg.timestamp_column, target=to_plain(cfg.target),
        covariates=to_plain(cfg.covariates), freq=cfg.freq, train_overrides=list(cfg.train_overrides),
        cache_dir=cfg.cache_dir, callbacks=[pruning] if pruning is not None else [],
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="finetune")
def main(cfg: DictConfig) -> float | None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=False))
    result = run(cfg)
    return float(result.table.loc["finetuned", "rel_wql"])


register_resolvers()

if __name__ == "__main__":
    main()
