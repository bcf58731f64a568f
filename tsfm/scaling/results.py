"""Read a Hydra multirun sweep of baseline models into scaling-law points.

Each job directory of ``logs/<task>/multiruns/<time>/`` holds ``.hydra/config.yaml`` (the
composed config: architecture, model shape, batch size, devices) and Lightning CSVLogger files
``csv/version_*/metrics.csv`` (``val/loss`` at every validation, by ``step``). From them:

* ``N``: non-embedding parameters of the model (:meth:`BaselineConfig.non_embedding_params`);
* ``D`` at a validation: tokens (patches) seen = optimizer steps x global batch x tokens/sample;
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
from dataclasses import dataclass, field
from pathlib import Path

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
    """A :class:`Run` from one job directory, or ``None`` (logged) if it is not a baseline job."""
    job_dir = Path(job_dir)
    cfg_path = job_dir / ".hydra" / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{job_dir}: no .hydra/config.yaml; is this a Hydra job directory?")
    register_resolvers()
    cfg = OmegaConf.load(cfg_path)
    family = OmegaConf.select(cfg, "model.family")
    if family != "baseline":
        log.info("%s: family %r is not 'baseline'; skipped", job_dir, family)
        return None
    model = OmegaConf.to_container(cfg.model, resolve=True)
    config = BaselineConfig.from_dict(model["module"]["config"], source=str(cfg_path))
    task = model["task"]
    patches = (int(task["context_length"]) + int(task["prediction_length"])) // int(task["patch_size"])
    world = 1
    for key in ("trainer.devices", "trainer.num_nodes", "trainer.accumulate_grad_batches"):
        value = OmegaConf.select(cfg, key)
        world *= value if isinstance(value, int) and value > 0 else 1
    batch = int(OmegaConf.select(cfg, "data.batch_size"))
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_path)] if overrides_path.exists() else []
    steps, val = _val_curve(job_dir)
    return Run(
        job=str(job_dir), architecture=config.architecture, params=config.non_embedding_params(),
        objective=str(model["module"].get("decoder_loss" if config.architecture == "decoder" else "encoder_mask")
                      or ("all" if config.architecture == "decoder" else "horizon")),
        tokens_per_step=batch * world * patches, overrides=overrides, steps=steps, val_loss=val,
        family=str(family), final_eval=_final_eval(job_dir),
    )  # fmt: skip


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
    """Every baseline job with at least one validation under ``multirun_dir`` (sorted by arch, N)."""
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
