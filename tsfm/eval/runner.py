"""Run a forecaster (model or baseline) and the suite's baselines over an evaluation suite.

Models and baselines are treated alike: anything with ``predict_quantiles(context,
prediction_length, quantile_levels, **kw)`` is a forecaster. Baseline forecasts are cached on
disk per dataset (:func:`tsfm.eval.baselines.cached_predict`); model forecasts never are (the
weights change during training).

With the model's training data (:mod:`tsfm.eval.leakage`), every dataset is marked
``trained_on_this_dataset`` when its series are in the training corpus, and each forecaster's
aggregate is also given over the zero-shot subset (the datasets not trained on).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.eval import precomputed
from tsfm.eval.baselines import MAX_CONTEXT, StatsBaseline, cache_digest, cached_predict, fingerprint
from tsfm.eval.leakage import Overlap, TrainingData, dataset_overlap
from tsfm.eval.protocol import EvalWindows, Score, aggregate, make_windows, relative_scores, score_forecasts
from tsfm.eval.suites import DatasetSpec, check_available, parse_suite, prepare_dataset, read_dataset

log = logging.getLogger(__name__)

MODEL = "model"


@dataclass
class DatasetResult:
    """Everything the report needs about one dataset."""

    spec: DatasetSpec
    num_series: int
    num_windows: int
    skipped: int
    skipped_unobserved: int
    scores: dict[str, Score] = field(default_factory=dict)  # forecaster name -> score
    plot: dict[str, Any] = field(default_factory=dict)  # a few contexts/labels/forecasts for fan charts
    overlap: Overlap = field(default_factory=Overlap)  # the model's training data vs this dataset
    fingerprint: str = ""  # content hash of the evaluated series (sha1 of their float32 values)
    num_variates: int = 1

    def relative(self, name: str, reference: str) -> dict[str, float]:
        s, r = self.scores.get(name), self.scores.get(reference)
        if s is None or r is None or not s.ok or not r.ok:
            return {m: float("nan") for m in (s.metrics if s else {})}
        return relative_scores(s.metrics, r.metrics)


@dataclass
class SuiteResult:
    suite: str
    model: str
    metrics: list[str]
    reference: str | None
    datasets: dict[str, DatasetResult]
    aggregates: dict[str, dict] = field(default_factory=dict)  # forecaster name -> aggregate
    # suite baselines' scores by precomputed.score_key (what `save_baseline_scores` ships)
    baseline_scores: dict[str, dict] = field(default_factory=dict)
    training: TrainingData | None = None  # the model's training corpus (None: unknown)
    zero_shot_aggregates: dict[str, dict] = field(default_factory=dict)  # same, datasets not trained on
    quantile_levels: list[float] = field(default_factory=list)

    @property
    def zero_shot_datasets(self) -> list[str]:
        """Datasets the model was not trained on (all of them when its training data is unknown)."""
        return [d for d, r in self.datasets.items() if not r.overlap.trained_on]

    def summarize(self) -> None:
        """Aggregate every forecaster over all datasets and over the zero-shot subset."""
        names = {n for d in self.datasets.values() for n in d.scores}
        zero_shot = set(self.zero_shot_datasets)
        for n in sorted(names):
            per = {d: r.scores[n] for d, r in self.datasets.items() if n in r.scores}
            ref = None
            if self.reference:
                ref = {d: r.scores[self.reference] for d, r in self.datasets.items() if self.reference in r.scores}
            self.aggregates[n] = aggregate(per, ref, self.metrics)
            self.zero_shot_aggregates[n] = aggregate({d: s for d, s in per.items() if d in zero_shot}, ref, self.metrics)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _uses_covariates(forecaster: Any) -> bool:
    """A model of a family that takes covariates (its FamilySpec says so); baselines do not."""
    family = getattr(forecaster, "family", None)
    if not family:
        return False
    import tsfm.models  # noqa: F401 - registers every family's spec
    from tsfm.models.spec import get

    try:
        return bool(get(family).covariates)
    except (KeyError, ValueError):
        return False


def predict_windows(
    forecaster: Any,
    windows: EvalWindows,
    levels: Sequence[float],
    spec: DatasetSpec,
    batch_size: int = 256,
    forecast_kwargs: dict | None = None,
    pass_freq: bool | None = None,
) -> np.ndarray:
    """Forecasts ``[N, V, H, Q]`` of a model for every window (batched ``predict_quantiles``).

    The dataset's ``freq`` is passed as a keyword when ``pass_freq`` is true, or, when it is
    ``None``, when the forecaster declares it (an ``accepts_freq = True`` attribute or a ``freq``
    parameter of ``_quantiles``), so frequency-aware models (Moirai patch sizes) get it.
    ``season_length`` is passed when ``_quantiles``/``predict_quantiles`` names it (baselines).
    Sampling forecasters get ``seed`` (``forecast_kwargs["seed"]``, default 0, plus the batch
    offset), so evaluations are reproducible.
    """
    kw = dict(forecast_kwargs or {})
    target = getattr(forecaster, "_quantiles", forecaster.predict_quantiles)
    if pass_freq is None:
        pass_freq = bool(getattr(forecaster, "accepts_freq", False)) or _accepts(target, "freq")
    if spec.freq and pass_freq:
        kw.setdefault("freq", spec.freq)
    if _accepts(target, "season_length"):
        kw.setdefault("season_length", spec.seasonality)
    # sampling families: a seed per batch (default 0) so a rerun reproduces the scores exactly
    seed = kw.pop("seed", 0) if getattr(forecaster, "samples", False) else None
    n, v, h = windows.labels.shape
    out = np.empty((n, v, h, len(levels)), np.float32)
    covs = windows.past_covariates if _uses_covariates(forecaster) else None
    for i in range(0, n, batch_size):
        ctx = windows.contexts[i:i + batch_size]  # each [V, T]
        extra = {} if seed is None else {"seed": int(seed) + i}
        if covs is not None:  # past-only: each window's covariate rows over its context
            extra["past_covariates"] = [{f"covariate_{j}": row for j, row in enumerate(c)}
                                        for c in covs[i:i + batch_size]]
        q = forecaster.predict_quantiles(ctx, h, levels, **kw, **extra)
        q = np.stack(list(q)) if q.dtype == object else np.asarray(q)
        if q.ndim == 3:  # [B, H, Q] -> [B, 1, H, Q]
            q = q[:, None]
        if q.shape != (len(ctx), v, h, len(levels)):
            raise ValueError(
                f"{type(forecaster).__name__}.predict_quantiles returned shape {q.shape}, expected "
                f"{(len(ctx), v, h, len(levels))} = [batch, variates, horizon, quantiles]"
            )
        out[i:i + len(ctx)] = q
    return out


def _plot_data(windows: EvalWindows, q: np.ndarray, k: int, tail: int) -> dict[str, Any]:
    """The last window of the first ``k`` series: context tail, labels and forecast quantiles (variate 0)."""
    picks, seen = [], set()
    for i in range(windows.num_windows - 1, -1, -1):
        if windows.item_ids[i] not in seen:
            seen.add(windows.item_ids[i])
            picks.append(i)
        if len(picks) >= k:
            break
    return {
        "item_ids": [windows.item_ids[i] for i in picks],
        "contexts": [windows.contexts[i][0, -tail:].tolist() for i in picks],
        "labels": [windows.labels[i, 0].tolist() for i in picks],
        "quantiles": [q[i, 0].tolist() for i in picks],
    }


def evaluate_suite(
    forecaster: Any,
    suite: dict,
    model_name: str = MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    forecast_kwargs: dict | None = None,
    plot_series: int = 3,
    on_dataset: Callable[[str, int, int], None] | None = None,
    pass_freq: bool | None = None,
    training_data: TrainingData | None = None,
) -> SuiteResult:
    """Evaluate ``forecaster`` and the suite's baselines on every dataset of ``suite`` (a plain dict).

    Baselines listed in ``suite["baselines"]`` run through the disk cache. When
    ``forecaster`` is itself a :class:`StatsBaseline`, it is cached too. ``on_dataset(name,
    i, n)`` is called before each dataset (progress bars). ``pass_freq``: see :func:`predict_windows`.
    ``training_data`` (:func:`tsfm.eval.leakage.load_training_data`): the model's training
    corpus; each dataset's series (all of them, also beyond ``max_series``) are compared with it.
    """
    specs = parse_suite(suite)
    check_available(specs, suite.get("data_dir"))
    levels = [float(q) for q in suite.get("quantile_levels", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))]
    metrics = list(suite.get("metrics", ("wql", "mase")))
    max_ctx = int(suite.get("max_context", MAX_CONTEXT))
    baseline_names = list(suite.get("baselines") or [])
    reference = suite.get("reference") or None
    if reference and reference not in baseline_names:
        baseline_names.insert(0, reference)
    jobs = int(suite.get("baseline_jobs", 1) or 1)
    baselines = {b: StatsBaseline(b, max_context=max_ctx, n_jobs=jobs) for b in baseline_names}
    result = SuiteResult(str(suite.get("name", "suite")), model_name, metrics, reference, {}, training=training_data,
                         quantile_levels=levels)
    # shipped baseline scores (tsfm/eval/precomputed/<suite>.json), used only on an exact key match
    table = precomputed.load(result.suite) if suite.get("use_precomputed", True) else {}
    for i, spec in enumerate(specs):
        if on_dataset is not None:
            on_dataset(spec.name, i, len(specs))
        raw = read_dataset(spec, suite.get("data_dir"))
        overlap = dataset_overlap(raw, training_data)
        series = prepare_dataset(spec, raw, suite.get("max_series"))
        w = make_windows(series, spec.prediction_length, spec.num_windows, spec.seasonality, spec.min_context,
                         stride=spec.stride, offset=spec.offset)
        dr = DatasetResult(spec, w.num_series, w.num_windows, w.skipped, w.skipped_unobserved, overlap=overlap,
                           fingerprint=fingerprint([s.target for s in series]),
                           num_variates=series[0].num_variates if series else 1)
        if overlap.trained_on:
            log.warning("%s: the model was trained on %d of its %d series (via %s); not zero-shot", spec.name,
                        overlap.num_overlapping, overlap.num_series, ", ".join(overlap.sources))
        if w.skipped:
            log.warning("%s: skipped %d of %d series, shorter than %d window(s) of %d", spec.name, w.skipped,
                        len(series), spec.num_windows, spec.prediction_length)
        if w.skipped_unobserved:
            log.warning("%s: skipped %d window(s) whose context has no observed value", spec.name, w.skipped_unobserved)
        runs: list[tuple[str, Any]] = [(b, baselines[b]) for b in baseline_names]
        if model_name not in baselines:
            runs.append((model_name, forecaster))
        model_q = None
        for name, f in runs:
            t0 = time.perf_counter()
            if w.num_windows == 0:
                dr.scores[name] = Score(metrics={})
                continue
            fallbacks = 0
            if isinstance(f, StatsBaseline) and name != model_name:
                key = f"{spec.name}__{f.name}__{cache_digest(f, w.contexts, spec.prediction_length, levels, spec.seasonality)}"
                score_metrics = [m for m in metrics if m != "nll"]
                shipped = precomputed.lookup(table, key, score_metrics)
                if shipped is not None:  # exact same windows and settings: the shipped score
                    dr.scores[name] = shipped
                    result.baseline_scores[precomputed.score_key(key, score_metrics)] = {
                        "dataset": spec.name, "baseline": name, "metrics": shipped.metrics, "fallbacks": shipped.fallbacks}
                    continue
            if isinstance(f, StatsBaseline):
                q, _, fallbacks = cached_predict(f, w.contexts, spec.prediction_length, levels, spec.seasonality,
                                                 cache_dir, spec.name)
            else:
                q = predict_windows(f, w, levels, spec, batch_size, forecast_kwargs, pass_freq)
            score = score_forecasts(w, q, levels, [m for m in metrics if m != "nll"])
            if "nll" in metrics and score.ok and hasattr(f, "mean_nll"):
                # families with a predictive distribution (Moirai): NLL of the observed labels
                nll_kw = {k: v for k, v in (forecast_kwargs or {}).items() if k in {"patch_size", "context_length"}}
                if spec.freq and (pass_freq or getattr(f, "accepts_freq", False)):
                    nll_kw["freq"] = spec.freq
                per_window = f.mean_nll(list(w.contexts), list(w.labels), **nll_kw)
                if np.isfinite(per_window).any():
                    score.metrics["nll"] = float(np.nanmean(np.where(np.isfinite(per_window), per_window, np.nan)))
            score.fallbacks = fallbacks
            score.seconds = time.perf_counter() - t0
            dr.scores[name] = score
            if isinstance(f, StatsBaseline) and score.ok:  # also the reference when it is the evaluated model
                key = f"{spec.name}__{f.name}__{cache_digest(f, w.contexts, spec.prediction_length, levels, spec.seasonality)}"
                result.baseline_scores[precomputed.score_key(key, [m for m in metrics if m != "nll"])] = {
                    "dataset": spec.name, "baseline": name, "metrics": score.metrics, "fallbacks": fallbacks}
            if name == model_name or (model_q is None and name == reference):
                model_q = q
            if score.failed:
                log.error("%s: %s produced NaN/inf forecasts for %d of %d windows; dataset marked failed",
                          spec.name, name, score.failed, w.num_windows)
        if plot_series and model_q is not None and w.num_windows:
            dr.plot = _plot_data(w, model_q, plot_series, tail=4 * spec.prediction_length)
        result.datasets[spec.name] = dr
    result.summarize()
    return result
