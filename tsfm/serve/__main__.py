"""``python -m tsfm.serve model=<checkpoint | models:/NAME@ALIAS> [port=8000] [key=value ...]`` (Hydra app,
``conf/serve.yaml``). Several models: ``'models={a: dir1, b: models:/name@production}'``."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from tsfm.utils.config import to_plain

log = logging.getLogger("tsfm.serve")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def model_sources(cfg: DictConfig) -> dict[str, str]:
    """name -> what to load, from ``ckpt`` (alias ``model``) and/or ``models``."""
    sources: dict[str, str] = {}
    if cfg.get("ckpt") is not None:
        sources[str(cfg.get("name") or "default")] = str(cfg.ckpt)
    extra = to_plain(cfg.get("models")) or {}
    if not isinstance(extra, dict):
        raise ValueError(f"models must be a mapping name -> checkpoint, e.g. 'models={{a: dir1, b: dir2}}'; got {extra!r}")
    for name, src in extra.items():
        if str(name) in sources:
            raise ValueError(f"model name {name!r} is given twice (name= and models=)")
        sources[str(name)] = str(src)
    if not sources:
        raise ValueError("nothing to serve: give model=<checkpoint dir | .ckpt | models:/NAME@ALIAS> "
                         "or 'models={name: path, ...}'")
    return sources


def serve(cfg: DictConfig) -> None:
    import torch
    import uvicorn

    from tsfm.forecast import load_forecaster
    from tsfm.serve.app import create_app, settings

    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    sources = model_sources(cfg)
    forecasters = {}
    for name, src in sources.items():
        forecasters[name] = load_forecaster(src, device=str(cfg.device))
        log.info("loaded %r: %s (%s family) from %s", name, src, forecasters[name].family, forecasters[name].source)
    config = settings(to_plain(cfg)) | settings(to_plain(cfg.limits))
    app = create_app(forecasters, uris=sources, **config)
    # Everything alive now (torch, the models, the schemas: ~10^5 objects) lives as long as the server;
    # frozen, it is left out of the garbage collector's full passes, which otherwise stall the event
    # loop (and the model) for ~100 ms now and then.
    gc.collect()
    gc.freeze()
    log.info("serving %s on http://%s:%d  (POST /v1/forecast, GET /v1/models, /health, /metrics, /docs)",
             ", ".join(sources), cfg.host, int(cfg.port))
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level),
                access_log=bool(cfg.access_log), backlog=2048, log_config=None)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="serve")
def _app(cfg: DictConfig) -> None:
    serve(cfg)


def _rewrite_argv(argv: list[str]) -> list[str]:
    """The documented ``model=X`` -> ``ckpt=X`` (Hydra would read ``model=`` as the training config group)."""
    return [("ckpt=" + a[len("model="):]) if a.startswith("model=") else a for a in argv]


def main() -> None:
    sys.argv = _rewrite_argv(sys.argv)
    _app()


if __name__ == "__main__":
    main()
