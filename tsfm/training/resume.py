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
import os
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


def adapt_to_strategy(ckpt_path: str, module: L.LightningModule, sharded: bool, out_dir: Path) -> str:
    """``ckpt_path``, or a copy of it converted for the strategy that resumes it.

    FSDP2 (``trainer=fsdp``: Lightning's ModelParallelStrategy) saves a sharded directory whose
    optimizer state is keyed by parameter name; one process and DDP save one file keyed by each
    parameter's position in the optimizer. Lightning reads neither in the other strategy (a
    directory under DDP is an ``IsADirectoryError``; a file under FSDP is re-keyed in
    ``named_parameters`` order, which is not the order of our decay / no-decay parameter groups).
    The converted checkpoint is written once, atomically, under ``out_dir`` and resumed from.
    Call before ``fit`` with the (unsharded) module the run trains.
    """
    import torch

    from tsfm.training.optim import build_optimizer

    path = Path(ckpt_path)
    if path.is_dir() == sharded:
        return ckpt_path
    by_id = {id(p): n for n, p in module.named_parameters()}
    opt = build_optimizer(module.trainable_module(), module.optim_cfg)["optimizer"]
    names = [by_id[id(p)] for g in opt.param_groups for p in g["params"]]  # optimizer order
    out = Path(out_dir) / f"{path.name.removesuffix('.ckpt')}.{'by_name' if sharded else 'consolidated'}.ckpt"
    if path.is_dir():  # FSDP -> one process / DDP: consolidate the shards, key by position
        from lightning.fabric.utilities.load import _load_distributed_checkpoint

        ckpt = _load_distributed_checkpoint(path)
        states = [ckpt.pop(k) for k in sorted((k for k in ckpt if k.startswith("optimizer_")), key=lambda k: int(k[10:]))]
        ckpt["optimizer_states"] = [_keyed(s, names, by_name=False, source=path) for s in states]
    else:  # one process / DDP -> FSDP: key the optimizer state by name
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        ckpt["optimizer_states"] = [_keyed(s, names, by_name=True, source=path) for s in ckpt.get("optimizer_states", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # every rank may convert: same bytes, atomic rename
    torch.save(ckpt, tmp)
    os.replace(tmp, out)
    log.info("ckpt_path=%s was saved %s; resuming from the converted copy %s",
             ckpt_path, "by one process / DDP" if sharded else "sharded (FSDP)", out)
    return str(out)


def _keyed(state: dict, names: list[str], by_name: bool, source: Path) -> dict:
    """An optimizer state dict keyed by parameter name (``by_name``) or by position."""
    saved = [p for g in state["param_groups"] for p in g["params"]]
    if len(saved) != len(names):
        raise ValueError(
            f"{source}: its optimizer holds {len(saved)} parameters, this run's {len(names)}; resume with the "
            "model and optim overrides the run was started with"
        )
    key = dict(zip(range(len(names)), names, strict=True)) if by_name else {n: i for i, n in enumerate(names)}
    try:
        return {
            "state": {key[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [key[p] for p in g["params"]]} for g in state["param_groups"]],
        }
    except KeyError as e:
        raise ValueError(f"{source}: its optimizer state names parameter {e}, which this run's model does not have; "
                         "resume with the model overrides the run was started with") from None
