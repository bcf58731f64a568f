"""Results in the layouts other benchmarks read: GIFT-Eval and fev.

- **GIFT-Eval** (Aksu et al., 2024; its leaderboard's submission layout): ``all_results.csv`` with one
  row per dataset configuration and the columns below (metrics tsfm did not compute are empty), and
  ``config.json`` with the model type and the test-data-leakage flag.
- **fev** (Shchur et al., 2025): one row per task with the task fields, the metrics, the inference
  time, the dataset fingerprint and ``trained_on_this_dataset``, as ``fev_results.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tsfm.eval.runner import SuiteResult

GIFT_EVAL_COLUMNS = [
    "dataset", "model", "eval_metrics/MSE[mean]", "eval_metrics/MSE[0.5]", "eval_metrics/MAE[0.5]",
    "eval_metrics/MASE[0.5]", "eval_metrics/MAPE[0.5]", "eval_metrics/sMAPE[0.5]", "eval_metrics/MSIS",
    "eval_metrics/RMSE[mean]", "eval_metrics/NRMSE[mean]", "eval_metrics/ND[0.5]",
    "eval_metrics/mean_weighted_sum_quantile_loss", "domain", "num_variates",
]  # fmt: skip
# tsfm metric -> GIFT-Eval column (tsfm's point forecast is the median; WQL is the mean weighted
# quantile loss over the suite's levels, GIFT-Eval's CRPS proxy)
_GIFT_METRIC = {"mse": "eval_metrics/MSE[0.5]", "mae": "eval_metrics/MAE[0.5]", "mase": "eval_metrics/MASE[0.5]",
                "mape": "eval_metrics/MAPE[0.5]", "smape": "eval_metrics/sMAPE[0.5]", "msis": "eval_metrics/MSIS",
                "wql": "eval_metrics/mean_weighted_sum_quantile_loss"}  # fmt: skip


def _gift_name(name: str, d: Any) -> str:
    term = d.spec.options.get("term")
    return f"{d.spec.options.get('dataset', name)}/{d.spec.freq}/{term}" if term else name


def gift_eval_results(res: SuiteResult, model: str | None = None) -> pd.DataFrame:
    """``all_results.csv`` rows of forecaster ``model`` (default: the evaluated model)."""
    model = model or res.model
    rows = []
    for name, d in res.datasets.items():
        s = d.scores.get(model)
        row: dict[str, Any] = {c: None for c in GIFT_EVAL_COLUMNS}
        row |= {"dataset": _gift_name(name, d), "model": model, "domain": d.spec.options.get("domain"),
                "num_variates": d.num_variates}  # fmt: skip
        if s is not None and s.ok:
            for m, col in _GIFT_METRIC.items():
                if m in s.metrics:
                    row[col] = s.metrics[m]
        rows.append(row)
    return pd.DataFrame(rows, columns=GIFT_EVAL_COLUMNS)


def gift_eval_config(res: SuiteResult, model_type: str = "pretrained") -> dict[str, Any]:
    """``config.json``: model type and whether any evaluated dataset is in the training data."""
    status = {d.overlap.status for d in res.datasets.values()}
    leak = "Yes" if any(d.overlap.trained_on for d in res.datasets.values()) else "No" if status <= {"none"} else "Unknown"
    return {"model": res.model, "model_type": model_type, "model_dtype": "float32", "testdata_leakage": leak,
            "replication_code_available": "Yes", "code_link": "", "org": ""}  # fmt: skip


def fev_rows(res: SuiteResult, model: str | None = None) -> pd.DataFrame:
    """fev-style summaries: one row per dataset (task) for forecaster ``model``."""
    model = model or res.model
    rows = []
    for name, d in res.datasets.items():
        s = d.scores.get(model)
        metrics = s.metrics if s is not None and s.ok else {}
        rel = d.relative(model, res.reference) if res.reference else {}
        rows.append({
            "model_name": model, "dataset_name": name, "horizon": d.spec.prediction_length,
            "num_windows": d.spec.num_windows, "window_step_size": d.spec.stride or d.spec.prediction_length,
            "seasonality": d.spec.seasonality, "freq": d.spec.freq, "quantile_levels": json.dumps(res.quantile_levels),
            "eval_metric": "WQL", "extra_metrics": json.dumps([m.upper() for m in res.metrics if m != "wql"]),
            "test_error": metrics.get("wql"), **{m.upper(): metrics.get(m) for m in res.metrics},
            **{f"{m.upper()}_rel_{res.reference}": v for m, v in rel.items()},
            "inference_time_s": round(s.seconds, 3) if s is not None else None, "training_time_s": None,
            "num_forecasts": d.num_windows, "dataset_fingerprint": d.fingerprint,
            "trained_on_this_dataset": d.overlap.trained_on, "leakage": d.overlap.status, "suite": res.suite,
        })  # fmt: skip
    return pd.DataFrame(rows)


def write_exports(res: SuiteResult, out_dir: str | Path, model_type: str = "pretrained") -> dict[str, Path]:
    """Write ``gift_eval/all_results.csv``, ``gift_eval/config.json`` and ``fev_results.csv``."""
    out = Path(out_dir)
    (out / "gift_eval").mkdir(parents=True, exist_ok=True)
    paths = {"gift_eval": out / "gift_eval" / "all_results.csv", "gift_eval_config": out / "gift_eval" / "config.json",
             "fev": out / "fev_results.csv"}  # fmt: skip
    gift_eval_results(res).to_csv(paths["gift_eval"], index=False)
    paths["gift_eval_config"].write_text(json.dumps(gift_eval_config(res, model_type), indent=2))
    fev_rows(res).to_csv(paths["fev"], index=False)
    return paths
