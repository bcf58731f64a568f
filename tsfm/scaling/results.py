"""Read a Hydra multirun sweep (baseline, Chronos-2 or Moirai models) into scaling-law points.

Each job directory of ``logs/<task>/multiruns/<time>/`` holds ``.hydra/config.yaml`` (the
composed config: architecture, model shape, batch size, devices) and Lightning CSVLogger files
``csv/version_*/metrics.csv`` (``val/loss`` at every validation, by ``step``). From them:

* ``N``: non-embedding parameters of the model: for the baseline
  :meth:`BaselineConfig.non_embedding_params`; for the other families the parameters of the
  model's ``encoder`` (its blocks and final norm; built on the meta device, nothing allocated), which
  leaves out the patch embeddings and output heads as the baseline's count does;
* ``D`` at a validation: tokens (patches) seen = optimizer steps x global batch x tokens/sample,
  where tokens/sample are the observed patches of a training sample: the baseline's full windows
  (context + horizon patches); for Chronos-2 the expected observed context patches of a window cut
  uniformly in the series (the task's draw) plus the horizon patches; for Moirai (a fixed
  ``task.patch_size``) the expected crop of ``U(min_time_patches, max patches)`` patches. The last
  two need the corpus's series length (``data.corpus[*].length``, the study's KernelSynth corpus);
* ``C = 6 N D`` (Kaplan et al. 2020);
* out-of-distribution scores, when the job ran ``final_eval=<suite>``: the aggregate of
  ``final_eval/results.json`` (``rel_wql``, ``rel_mase``: relative to Seasonal Naive), or
  ``final_eval/*`` columns of ``metrics.csv``; stored as ``Run.final_eval`` (empty when absent).

Configs are read as YAML data and never instantiated; only the ``model`` and a few trainer/data
values are resolved, so nothing of the sweep's Python is imported or run.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from tsfm.models.baseline.config import BaselineConfig
from tsfm.utils.config import register_resolvers

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One finished (or partial) training job of a sweep."""

    job: str
    architecture: str
    objective: str  # training target: encoder "horizon" | "random" (Moirai-style), decoder "all" | "horizon"
    params: int  # N: non-embedding parameters
    tokens_per_step: int  # global batch x patches per window
    overrides: list[str] = field(default_factory=list)
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # optimizer steps done at each validation
    val_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    family: str = "baseline"  # model family (conf/model/*.yaml ``family``)
    final_eval: dict[str, float] = field(default_factory=dict)  # e.g. {"rel_wql": .., "rel_mase": ..} (OOD)

    @property
    def label(self) -> str:
        """Group name in fits and plots: the architecture, plus the objective if not the default;
        other families than ``baseline`` are prefixed with their name (e.g. ``moirai-encoder``)."""
        default = "all" if self.architecture == "decoder" else "horizon"
        name = self.architecture if self.objective == default else f"{self.architecture}-{self.objective}"
        return name if self.family == "baseline" else f"{self.family}-{name}"

    @property
    def tokens(self) -> np.ndarray:
        """``D`` at each validation."""
        return self.steps * self.tokens_per_step

    @property
    def compute(self) -> np.ndarray:
        """``C = 6 N D`` at each validation."""
        return 6.0 * self.params * self.tokens

    @property
    def final_loss(self) -> float:
        return float(self.val_loss[-1]) if len(self.val_loss) else float("nan")

    @property
    def final_tokens(self) -> float:
        return float(self.tokens[-1]) if len(self.steps) else 0.0


def _val_curve(job_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps done, val/loss)`` from every ``metrics.csv`` of a job (later versions win)."""
    frames = []
    for path in sorted(
        job_dir.glob("**/csv/version_*/metrics.csv"), key=lambda p: (p.parent.parent, _version(p))
    ):
        df = pd.read_csv(path)
        if "val/loss" in df.columns:
            frames.append(df.loc[df["val/loss"].notna(), ["step", "val/loss"]])
    if not frames:
        return np.zeros(0), np.zeros(0)
    df = pd.concat(frames).drop_duplicates("step", keep="last").sort_values("step")
    # Lightning logs validation at global_step - 1 (the index of the last training batch)
    return df["step"].to_numpy(dtype=float) + 1.0, df["val/loss"].to_numpy(dtype=float)


def _final_eval(job_dir: Path) -> dict[str, float]:
    """Aggregate zero-shot scores of the job's export: ``final_eval/results.json`` (written by
    ``final_eval=<suite>``), else the last ``final_eval/*`` values of ``metrics.csv``; ``{}`` if none."""
    path = job_dir / "final_eval" / "results.json"
    if path.is_file():
        try:
            res = json.loads(path.read_text())
            agg = res["aggregate"][res.get("model", "this run")]
            return {k: float(v) for k, v in agg.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "num_datasets"}  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            log.warning("%s: unreadable final evaluation (%s); no out-of-distribution scores", path, e)
    out: dict[str, float] = {}
    for csv in sorted(
        job_dir.glob("**/csv/version_*/metrics.csv"), key=lambda p: (p.parent.parent, _version(p))
    ):
        df = pd.read_csv(csv)
        for col in df.columns:
            if col.startswith("final_eval/") and df[col].notna().any():
                out[col.removeprefix("final_eval/")] = float(df[col].dropna().iloc[-1])
    return out


def _version(path: Path) -> int:
    try:
        return int(path.parent.name.removeprefix("version_"))
    except ValueError:
        return -1


def read_run(job_dir: str | Path) -> Run | None:
    """A :class:`Run` from one job directory, or ``None`` (logged) if its family has no reader."""
    job_dir = Path(job_dir)
    cfg_path = job_dir / ".hydra" / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{job_dir}: no .hydra/config.yaml; is this a Hydra job directory?")
    register_resolvers()
    cfg = OmegaConf.load(cfg_path)
    family = OmegaConf.select(cfg, "model.family")
    if family not in READERS:
        log.info("%s: family %r is not one of %s; skipped", job_dir, family, sorted(READERS))
        return None
    model = OmegaConf.to_container(cfg.model, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True) if OmegaConf.select(cfg, "data") is not None else {}
    architecture, objective, params, patches = READERS[family](model, data, f"{job_dir}")
    world = 1
    for key in ("trainer.devices", "trainer.num_nodes", "trainer.accumulate_grad_batches"):
        value = OmegaConf.select(cfg, key)
        world *= value if isinstance(value, int) and value > 0 else 1
    batch = int(OmegaConf.select(cfg, "data.batch_size"))
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_path)] if overrides_path.exists() else []
    steps, val = _val_curve(job_dir)
    return Run(
        job=str(job_dir), architecture=architecture, params=params, objective=objective,
        tokens_per_step=round(batch * world * patches), overrides=overrides, steps=steps, val_loss=val,
        family=str(family), final_eval=_final_eval(job_dir),
    )  # fmt: skip


def _baseline(model: dict[str, Any], data: dict[str, Any], job: str) -> tuple[str, str, int, float]:
    config = BaselineConfig.from_dict(model["module"]["config"], source=job)
    task = model["task"]
    patches = (int(task["context_length"]) + int(task["prediction_length"])) // int(task["patch_size"])
    objective = model["module"].get("decoder_loss" if config.architecture == "decoder" else "encoder_mask")
    objective = str(objective or ("all" if config.architecture == "decoder" else "horizon"))
    return config.architecture, objective, config.non_embedding_params(), patches


def encoder_params(family: str, config: dict[str, Any]) -> int:
    """Parameters of a ``family`` model's ``encoder`` (blocks + final norm), built on the meta device."""
    import torch

    import tsfm.models  # noqa: F401  (registers the families)
    from tsfm.models.spec import get

    spec = get(family)
    with torch.device("meta"):
        model = spec.load("model")(spec.load("config").from_dict(config))
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"family {family!r}: its model has no `encoder` submodule to count N from")
    return sum(p.numel() for p in encoder.parameters())


def _series_length(data: dict[str, Any], job: str) -> int:
    lengths = {entry.get("length") for entry in data.get("corpus") or []}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            f"{job}: D needs one series length for the whole corpus (data.corpus[*].length), got {sorted(map(str, lengths))};"
            " run the sweep on a generated corpus of fixed length (conf/data/synthetic.yaml)"
        )
    return int(lengths.pop())


def _chronos2(model: dict[str, Any], data: dict[str, Any], job: str) -> tuple[str, str, int, float]:
    cfg, task = model["module"]["config"], model["task"]
    t, p, ctx, h = (
        _series_length(data, job),
        int(task["patch_size"]),
        int(task["context_length"]),
        int(task["prediction_length"]),
    )
    cuts = np.arange(int(task["min_past"]), t - int(task["min_future"]) + 1)  # the task's uniform cut
    observed = np.ceil(np.minimum(cuts, ctx) / p).mean() + math.ceil(min(h, int(task["min_future"])) / p)
    return "encoder", "horizon", encoder_params("chronos2", cfg), float(observed)


def _moirai(model: dict[str, Any], data: dict[str, Any], job: str) -> tuple[str, str, int, float]:
    cfg, task = model["module"]["config"], model["task"]
    if task.get("patch_size") is None:
        raise ValueError(
            f"{job}: D for Moirai needs a fixed model.task.patch_size (the scaling_moirai experiment sets 32)"
        )
    if task.get("concat_univariate"):
        raise ValueError(
            f"{job}: D for Moirai is counted for single-series crops; set model.task.concat_univariate=false"
        )
    p, low = int(task["patch_size"]), int(task["min_time_patches"])
    high = min(int(task["max_seq_len"]), _series_length(data, job) // p)  # univariate crops: n ~ U(low, high)
    return "encoder", "horizon", encoder_params("moirai", cfg), (low + high) / 2


READERS = {"baseline": _baseline, "chronos2": _chronos2, "moirai": _moirai}


def job_dirs(multirun_dir: str | Path) -> list[Path]:
    """The Hydra job directories (those holding ``.hydra/config.yaml``) under a multirun directory."""
    root = Path(multirun_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; pass logs/<task>/multiruns/<time>")
    jobs = sorted({p.parent.parent for p in root.glob("**/.hydra/config.yaml")})
    if not jobs:
        raise FileNotFoundError(
            f"{root}: no job directories (no */.hydra/config.yaml); is this a multirun dir?"
        )
    return jobs


def read_sweep(multirun_dir: str | Path) -> list[Run]:
    """Every job of a known family with at least one validation under ``multirun_dir`` (sorted by group, N)."""
    jobs = job_dirs(multirun_dir)
    runs = []
    for job in jobs:
        run = read_run(job)
        if run is None:
            continue
        if not len(run.val_loss):
            log.warning("%s: no val/loss logged yet (job unfinished or val disabled); skipped", job)
            continue
        runs.append(run)
    return sorted(runs, key=lambda r: (r.label, r.params, r.job))


def best_per_size(runs: list[Run]) -> list[Run]:
    """Per (label, N) the run with the lowest final loss (e.g. the best learning rate)."""
    best: dict[tuple[str, int], Run] = {}
    for r in runs:
        key = (r.label, r.params)
        if key not in best or r.final_loss < best[key].final_loss:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r.label, r.params))


def compute_frontier(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Lower envelope of (C, val loss) over every validation of ``runs``: points no cheaper
    point beats, the compute-efficient frontier that ``L(C)`` is fitted to."""
    c = np.concatenate([r.compute for r in runs])
    loss = np.concatenate([r.val_loss for r in runs])
    order = np.lexsort((loss, c))  # by C, ties by loss
    keep, best = [], np.inf
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return c[keep], loss[keep]
