"""Exponential moving averages of the weights over one training run, exported beside its own export: a paired
test of weight averaging (the same run, the same data stream; only the averaging differs).

A diagnostic for experiments/recipes/README.md, not a tsfm feature. Add it to any training run:

    PYTHONPATH=experiments/recipes python -m tsfm.train seed=42 ckpt_path=null \
        +callbacks.ema_probe._target_=ema_probe.EMAProbe "+callbacks.ema_probe.decays=[0.998,0.999,0.9995]" '+callbacks.ema_probe.out_dir=${paths.output_dir}'

At the end of training it writes ``<run dir>/export_ema<decay>/`` for each decay (the run's ``export/`` keeps the
final weights), each loadable by ``load_forecaster`` and ``python -m tsfm.evaluate model=<dir> eval=dev``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class EMAProbe(L.Callback):
    def __init__(self, decays: list[float], start_step: int = 0, out_dir: str | None = None) -> None:
        self.out_dir = out_dir
        self.decays = [float(d) for d in decays]
        self.start_step = int(start_step)
        self.avg: dict[float, list[torch.Tensor]] = {}

    def _params(self, pl_module: L.LightningModule) -> list[torch.Tensor]:
        return [p.detach() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.start_step:
            return
        params = self._params(pl_module)
        for d in self.decays:
            if d not in self.avg:
                self.avg[d] = [p.float().clone() for p in params]
            else:
                torch._foreach_lerp_(self.avg[d], [p.float() for p in params], 1.0 - d)

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        out = Path(self.out_dir or trainer.default_root_dir)
        raw = [p.detach().clone() for p in pl_module.parameters()]
        for d, avg in self.avg.items():
            with torch.no_grad():
                for p, a in zip(pl_module.parameters(), avg):
                    p.copy_(a.to(p.dtype))
            target = out / f"export_ema{d:g}"
            pl_module.save_pretrained(target)
            if hasattr(trainer.datamodule, "save_training_data"):
                trainer.datamodule.save_training_data(target)
        with torch.no_grad():
            for p, r in zip(pl_module.parameters(), raw):
                p.copy_(r)
