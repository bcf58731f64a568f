"""What a checkpoint directory and the run that made it say about a model: family and size,
metrics, lineage. Pure file reading (no MLflow), so it is testable on its own.

A training run directory (``python -m tsfm.train``) holds:

* ``export/``: the checkpoint directory (``config.json`` + ``model.safetensors`` +
  ``training_data.json``, the corpus summary with the source-series fingerprints);
* ``final_eval/results.json``: the zero-shot evaluation of the export (``final_eval=<suite>``),
  aggregate WQL / MASE relative to Seasonal Naive;
* ``csv/version_*/metrics.csv``: the logged metrics, the lite benchmark (``benchmark/avg_wql``)
  among them;
* ``.hydra/config.yaml`` and ``overrides.yaml``: the composed config and the command's overrides.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import struct
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TRAINING_DATA = "training_data.json"
REPO_ROOT = Path(__file__).resolve().parents[2]


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory that ``path`` names: itself, or ``<run dir>/export``; a clear error if
    it is not one that ``load_forecaster`` reads (config.json + model.safetensors)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such directory (register a checkpoint directory or a training run directory)")
    if p.is_dir() and not (p / CONFIG).exists() and (p / "export" / CONFIG).exists():
        p = p / "export"
    if not p.is_dir():
        raise ValueError(f"{p}: not a directory; register a checkpoint directory (config.json + {WEIGHTS}), e.g. a "
                         "training run's export/ (a Lightning .ckpt must be exported first)")
    missing = [f for f in (CONFIG, WEIGHTS) if not (p / f).is_file()]
    if missing:
        raise ValueError(f"{p}: not a checkpoint directory, {' and '.join(missing)} missing (expected config.json + "
                         f"{WEIGHTS}, as python -m tsfm.train writes to <run dir>/export)")
    return p.resolve()


def run_dir_of(ckpt_dir: Path) -> Path | None:
    """The training run directory an export lives in (``<run>/export`` with ``<run>/.hydra``), if any."""
    parent = ckpt_dir.parent
    return parent if (parent / ".hydra").is_dir() else None


def family_of(ckpt_dir: Path) -> str:
    from tsfm.checkpoint import read_json
    from tsfm.models import describe, detect

    family = detect(read_json(ckpt_dir / CONFIG))
    if family is None:
        raise ValueError(f"{ckpt_dir / CONFIG}: no tsfm model family recognises this checkpoint, so it could not be "
                         f"loaded from the registry. What each family looks for: {describe()}")
    return family


def parameter_count(weights: Path) -> int:
    """Number of parameters in a safetensors file, from its header alone (no tensor is read)."""
    with open(weights, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit (and whether tracked files differ from it) of the tsfm source tree, if it is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)} if status is not None else {"git_commit": commit}


def suite_metrics(suite: str, aggregate: dict[str, Any]) -> dict[str, float]:
    """A model's scores on an eval suite under the names every registration uses, ``<suite>/rel_wql`` and
    ``<suite>/rel_mase`` (relative to Seasonal Naive): what the pipeline compares versions by."""
    return {f"{suite}/{k}": float(aggregate[k]) for k in ("rel_wql", "rel_mase")
            if isinstance(aggregate.get(k), (int, float)) and not isinstance(aggregate.get(k), bool)}


def suite_score(metrics: dict[str, float], lineage: dict[str, Any], suite: str, stat: str = "rel_wql") -> float | None:
    """A registered version's score on ``suite``: ``<suite>/<stat>``, else the older names (``<suite>_<stat>``,
    or ``final_eval/<stat>`` when its lineage says the final evaluation ran on ``suite``); None if unscored."""
    for key in (f"{suite}/{stat}", f"{suite}_{stat}"):
        if key in metrics:
            return float(metrics[key])
    if lineage.get("final_eval_suite") == suite and f"final_eval/{stat}" in metrics:
        return float(metrics[f"final_eval/{stat}"])
    return None


def _final_eval(run_dir: Path, ckpt_dir: Path | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Aggregate scores (relative to Seasonal Naive) of the weights in ``ckpt_dir``: ``final_eval/results.json``
    scores the run's ``export/``, ``export_best_eval/results.json`` its best top-K checkpoint
    (``export_best/``, :mod:`tsfm.registry.training`); other directories have none."""
    sub = "final_eval"
    if ckpt_dir is not None:
        kind = {"export": "final_eval", "export_best": "export_best_eval"}.get(ckpt_dir.name)
        if kind is None or ckpt_dir.resolve().parent != run_dir.resolve():
            return {}, {}
        sub = kind
    path = run_dir / sub / "results.json"
    if not path.is_file():
        return {}, {}
    try:
        res = json.loads(path.read_text())
        agg = res["aggregate"][res.get("model", "this run")]
    except (ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable final evaluation (%s); no metrics taken from it", path, e)
        return {}, {}
    metrics = {f"final_eval/{k}": float(v) for k, v in agg.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "num_datasets"}
    if res.get("suite"):
        metrics |= suite_metrics(str(res["suite"]), agg)
    return metrics, {"final_eval_suite": res.get("suite"), "final_eval_results": str(path)}


def _benchmark(run_dir: Path) -> dict[str, float]:
    """The last lite-benchmark averages logged during training (CSV logger's ``metrics.csv``)."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    last: dict[str, float] = {}
    try:
        with open(files[-1], newline="") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k and k.startswith(("benchmark/avg_", "benchmark/zero_shot_avg_")) and v not in ("", None):
                        last[k] = float(v)
    except (OSError, ValueError, csv.Error) as e:
        log.warning("%s: unreadable metrics (%s)", files[-1], e)
        return {}
    return last


def _hydra(run_dir: Path) -> dict[str, Any]:
    """Task, model config, overrides and parent checkpoint from the run's ``.hydra`` files."""
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if cfg_path.is_file():
        out["hydra_config"] = str(cfg_path)
        out["config_sha256"] = sha256(cfg_path)
        try:
            cfg = OmegaConf.load(cfg_path)
            out["task_name"] = OmegaConf.select(cfg, "task_name", default=None)
            pretrained = OmegaConf.select(cfg, "model.module.pretrained", default=None, throw_on_resolution_failure=False)
            if pretrained:
                out["parent_checkpoint"] = str(pretrained)
        except Exception as e:  # noqa: BLE001 - lineage is best effort; the model itself is what counts
            log.warning("%s: unreadable config (%s)", cfg_path, e)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        try:
            items = OmegaConf.to_container(OmegaConf.load(overrides))
            out["overrides"] = " ".join(map(str, items)) if isinstance(items, list) else str(items)
        except Exception:  # noqa: BLE001
            pass
    hydra = run_dir / ".hydra" / "hydra.yaml"
    if hydra.is_file():
        try:
            choice = OmegaConf.select(OmegaConf.load(hydra), "hydra.runtime.choices.model", default=None,
                                      throw_on_resolution_failure=False)
            if choice:
                out["model_config"] = str(choice)
        except Exception:  # noqa: BLE001
            pass
    return out


def corpus(ckpt_dir: Path) -> dict[str, Any]:
    """The training corpus of a checkpoint (its ``training_data.json``): per sub-dataset its weight,
    build spec, the sha256 of its built files (from the sub-dataset's manifest, if still on disk) and
    its source-series fingerprints; plus one digest over all of it."""
    path = ckpt_dir / TRAINING_DATA
    if not path.is_file():
        return {}
    from tsfm.data.manifest import read_manifest

    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return {}
    subs = []
    for sub in summary.get("sub_datasets", []):
        entry = {k: sub.get(k) for k in ("name", "path", "weight", "synthetic", "provenance", "spec")}
        entry["sources"] = {ds: sorted(fp) for ds, fp in (sub.get("sources") or {}).items()}
        manifest = read_manifest(sub["path"]) if sub.get("path") and Path(sub["path"]).is_dir() else None
        if manifest is not None:
            files = json.dumps(manifest.get("files", {}), sort_keys=True).encode()
            entry["files_sha256"] = hashlib.sha256(files).hexdigest()
        subs.append(entry)
    digest = hashlib.sha256(json.dumps([{k: v for k, v in s.items() if k != "path"} for s in subs],
                                       sort_keys=True, default=str).encode()).hexdigest()
    return {"corpus": ",".join(s["name"] for s in subs if s.get("name")), "corpus_digest": digest,
            "corpus_sub_datasets": subs}


def collect(ckpt_dir: Path, run_dir: Path | None = None, *, metrics: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and lineage of a checkpoint directory, read from it and from its run directory (if any)."""
    lineage: dict[str, Any] = {**git_state(), **corpus(ckpt_dir)}
    found: dict[str, float] = {}
    if run_dir is not None:
        lineage["run_dir"] = str(run_dir)
        lineage.update(_hydra(run_dir))
        if metrics:
            found.update(_benchmark(run_dir))
            evaluated, info = _final_eval(run_dir, ckpt_dir)
            found.update(evaluated)
            lineage.update(info)
    return found, {k: v for k, v in lineage.items() if v is not None}
