"""Zero-shot evaluation of a finished run's export: the quickstart's last step.

After ``python -m tsfm.train`` exports its weights, ``final_eval=<suite>`` (``conf/eval/<suite>.yaml``,
``dev`` by default in the quickstart) evaluates the export against the suite's statistical
baselines (Seasonal Naive, AutoETS, AutoTheta; their scores are shipped, see
:mod:`tsfm.eval.precomputed`) and prints the table with scores relative to Seasonal Naive.
Reports go to ``<run dir>/final_eval/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def suite_config(name: str, paths: DictConfig) -> dict:
    """``conf/eval/<name>.yaml`` resolved against the run's ``paths`` (a plain dict)."""
    file = CONF_DIR / "eval" / f"{name}.yaml"
    if not file.is_file():
        choices = sorted(p.stem for p in (CONF_DIR / "eval").glob("*.yaml"))
        raise ValueError(f"final_eval={name!r}: no conf/eval/{name}.yaml; use one of {choices} or null")
    node = OmegaConf.merge({"paths": OmegaConf.to_container(paths, resolve=True)}, {"suite": OmegaConf.load(file)})
    return OmegaConf.to_container(node.suite, resolve=True)  # type: ignore[return-value]


def evaluate_export(export_dir: Path, suite_name: str, paths: DictConfig, out_dir: Path,
                    forecast_kwargs: dict | None = None) -> dict:
    """Evaluate ``export_dir`` on the suite; print the table; return the model's aggregate."""
    from rich.console import Console

    from tsfm.eval.leakage import load_training_data
    from tsfm.eval.report import print_table, write_reports
    from tsfm.eval.runner import evaluate_suite
    from tsfm.forecast import load_forecaster

    suite = suite_config(suite_name, paths)
    cache = Path(str(paths.root_dir)) / ".cache" / "tsfm" / "baselines"
    forecaster = load_forecaster(str(export_dir))
    log.info("zero-shot evaluation of %s on the %s suite (%d datasets)", export_dir, suite_name, len(suite["datasets"]))
    res = evaluate_suite(forecaster, suite, model_name="this run", cache_dir=cache,
                         forecast_kwargs=forecast_kwargs or {}, plot_series=3,
                         training_data=load_training_data(export_dir))
    written = write_reports(res, out_dir, [float(q) for q in suite["quantile_levels"]])
    console = Console() if sys.stdout.isatty() else Console(width=200)
    print_table(res, console)
    agg = res.aggregates.get("this run", {})
    console.print(
        f"zero-shot on {suite_name}: WQL {agg.get('rel_wql', float('nan')):.3f}, MASE {agg.get('rel_mase', float('nan')):.3f} "
        f"relative to Seasonal Naive (lower is better)\nmodel: {export_dir}  (tsfm.forecast.load_forecaster)\n"
        f"report: {written.get('markdown') or written.get('json')}"
    )
    return agg
