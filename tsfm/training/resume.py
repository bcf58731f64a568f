"""Resuming runs: which checkpoint to resume from, and whether it fits the composed config.

``ckpt_path`` (conf/train.yaml) is ``null`` (fresh run), a ``.ckpt`` path, ``last`` (this run
dir's ``checkpoints/last.ckpt``, with ``hydra.run.dir=<earlier run>``) or ``auto`` (the default):
when the newest earlier run under the same runs folder was started with the *same overrides*
and never finished (no ``export/``: interrupted by Ctrl-C, a crash or a time limit), continue it
from its newest checkpoint (``last.ckpt`` or the ``on_exception.ckpt`` written on Ctrl-C).
Rerunning an interrupted command therefore resumes it; ``ckpt_path=null`` starts afresh.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RESUMABLE = ("last.ckpt", "on_exception.ckpt")


def interrupted_checkpoint(run_dir: Path, runs_root: Path, overrides: list[str]) -> Path | None:
    """Newest checkpoint of the newest unfinished sibling run with the same overrides, or None."""
    if not runs_root.is_dir():
        return None
    for run in sorted((p for p in runs_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True):
        if run.resolve() == run_dir.resolve():
            continue
        saved = run / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            continue
        try:
            theirs = [str(o) for o in OmegaConf.load(saved)]
        except Exception:  # an unreadable overrides file is not a run to resume
            continue
        if sorted(theirs) != sorted(overrides):
            continue
        if (run / "export" / "config.json").exists():
            return None  # the newest run of this command finished: start a new one
        ckpts = [run / "checkpoints" / n for n in RESUMABLE if (run / "checkpoints" / n).is_file()]
        if ckpts:
            return max(ckpts, key=lambda p: p.stat().st_mtime)
        # no checkpoint yet (stopped before the first save, or failed at start-up): look further back
    return None


def _current_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):  # not inside a Hydra app
        return None
    if str(hc.mode) != "RunMode.RUN":
        return None  # sweeps: every job is its own run
    return [str(o) for o in hc.overrides.task]


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    if cfg.ckpt_path in (None, ""):
        return None
    if cfg.ckpt_path == "auto":
        overrides = _current_overrides()
        if overrides is None:
            return None
        out = Path(cfg.paths.output_dir)
        found = interrupted_checkpoint(out, out.parent, overrides)
        if found is not None:
            log.info("ckpt_path=auto: resuming the interrupted run %s from %s (same overrides); pass "
                     "ckpt_path=null to start afresh", found.parents[1], found.name)
            return str(found)
        return None
    if cfg.ckpt_path == "last":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not last.exists():
            raise FileNotFoundError(
                f"ckpt_path=last but {last} does not exist; resume with hydra.run.dir=<the earlier run dir> "
                "or pass ckpt_path=<path to a .ckpt>"
            )
        return str(last)
    path = Path(cfg.ckpt_path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no such file")
    return str(path)


def check_resumable(module: L.LightningModule, ckpt_path: str) -> None:
    """Fail before ``fit`` when ``ckpt_path`` holds another model than the composed config builds.

    Resuming re-composes the config from the command line, so a run started with overrides
    (``model=moirai_tiny``) must be resumed with the same ones: the error lists the run's own
    ``.hydra/overrides.yaml`` when it is found beside the checkpoint.
    """
    import torch

    if not Path(ckpt_path).is_file():  # a distributed (sharded) checkpoint directory: Lightning checks it
        return
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    theirs = {k: tuple(v.shape) for k, v in ckpt.get("state_dict", {}).items()}
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if theirs == ours:
        return
    hp = ckpt.get("hyper_parameters", {})
    diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    detail = ", ".join(f"{k}: checkpoint {theirs.get(k, 'absent')} vs config {ours.get(k, 'absent')}" for k in diff[:3])
    overrides = Path(ckpt_path).resolve().parents[1] / ".hydra" / "overrides.yaml"
    hint = (f"that run's overrides were {OmegaConf.load(overrides)} ({overrides})" if overrides.exists()
            else "pass the overrides the run was started with")
    raise ValueError(
        f"ckpt_path={ckpt_path} holds a {hp.get('family', '?')} model that does not match the composed config "
        f"({len(diff)} tensors differ, e.g. {detail}). Resume with the same model/optim overrides: {hint}"
    )


