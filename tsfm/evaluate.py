"""``python -m tsfm.evaluate``: benchmark a model or a baseline on an eval suite (Hydra app).

``model=<tsfm .ckpt | checkpoint directory | baseline name>`` (alias of ``ckpt=``) and
``eval=<suite>`` (``conf/eval/``). Prints the per-dataset table and the aggregate, writes CSV,
JSON, markdown and a PNG of fan charts under the run directory; the last printed line is the
JSON file's path. Datasets the checkpoint was trained on (its recorded training corpus, see
:mod:`tsfm.eval.leakage`) are marked, and aggregated apart as the zero-shot subset.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from tsfm.eval.resolve import model_label, resolve_forecaster
from tsfm.utils.config import to_plain

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> Path:
    """Run the evaluation described by ``cfg`` and return the path of the JSON results."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tsfm.eval.exports import write_exports
    from tsfm.eval.leakage import load_training_data
    from tsfm.eval.report import print_table, write_reports
    from tsfm.eval.runner import evaluate_suite

    suite = to_plain(cfg.eval)
    model = str(cfg.ckpt)
    forecaster = resolve_forecaster(model, device=cfg.device, max_context=suite.get("max_context", 2500),
                                    n_jobs=suite.get("baseline_jobs", 1))
    training = load_training_data(model)
    log.info("training data: %s (%s)", "known" if training.known else "unknown", training.where)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, disable=not cfg.progress) as progress:
        task = progress.add_task(f"{suite.get('name', 'suite')}", total=len(suite["datasets"]))

        def on_dataset(name: str, i: int, n: int) -> None:
            progress.update(task, completed=i, description=f"{suite.get('name')}: {name}")

        res = evaluate_suite(
            forecaster, suite, model_name=model_label(model), cache_dir=cfg.cache_dir,
            batch_size=cfg.batch_size, forecast_kwargs=to_plain(cfg.forecast_kwargs), plot_series=cfg.plot_series,
            on_dataset=on_dataset, pass_freq=cfg.get("pass_freq"), training_data=training,
        )
        progress.update(task, completed=len(suite["datasets"]), description=f"{suite.get('name')}: done")
    if cfg.get("save_baseline_scores"):
        from tsfm.eval import precomputed

        table = precomputed.load(res.suite) | res.baseline_scores
        log.info("wrote %d shipped baseline scores to %s", len(table), precomputed.save(res.suite, table))
    out_dir = Path(cfg.paths.output_dir)
    paths = write_reports(res, out_dir, [float(q) for q in suite["quantile_levels"]], plot=cfg.plot_series > 0)
    paths |= write_exports(res, out_dir, model_type=str(cfg.get("model_type", "pretrained")))  # GIFT-Eval, fev
    print_table(res, Console() if sys.stdout.isatty() else Console(width=220))
    for kind, p in paths.items():
        log.info("wrote %s: %s", kind, p)
    return paths["json"]


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def _app(cfg: DictConfig) -> None:
    json_path = evaluate(cfg)
    print(json_path, flush=True)


def _rewrite_argv(argv: list[str]) -> list[str]:
    """The documented alias ``model=X`` -> ``ckpt=X``: conf/model/ is the training config group, so Hydra
    itself would read ``model=X`` as a choice of that group."""
    return [("ckpt=" + a[len("model="):]) if a.startswith("model=") else a for a in argv]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "compare":  # python -m tsfm.evaluate compare A.json B.json ...
        from tsfm.eval.compare import main as compare_main

        compare_main(sys.argv[2:])
        return
    sys.argv = _rewrite_argv(sys.argv)
    _app()


if __name__ == "__main__":
    main()
