"""Two training steps of chronos2_tiny with one fixed global batch per step, split across ranks.

``python strategy_parity_run.py <single|ddp|fsdp> <devices> <out.json>`` writes, from rank 0, the
logged ``train/loss`` and ``grad/norm_total`` of each step (the default TrainingMonitor, default
precision and clipping). Used by test_distributed.py: the figures must not depend on the strategy.

The global batch is the same whatever the number of ranks (rank r takes rows r·B/n … (r+1)·B/n),
which the data module's per-rank streams do not give, so the batches are built here. Dropout is off:
its masks are drawn per rank, so they cannot match across layouts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.strategies import ModelParallelStrategy

from tsfm.training.callbacks import TrainingMonitor
from tsfm.utils.config import register_resolvers, to_plain

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH, CONTEXT, HORIZON, STEPS = 8, 96, 16, 2


def global_batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(CONTEXT + HORIZON, dtype=torch.float32)
    out = []
    for _ in range(STEPS):
        phase = torch.rand(GLOBAL_BATCH, 1, generator=g) * 6.28
        level = torch.randn(GLOBAL_BATCH, 1, generator=g) * 3
        y = level + torch.sin(t / 12 * 6.28 + phase) + 0.1 * torch.randn(GLOBAL_BATCH, len(t), generator=g)
        out.append({"context": y[:, :CONTEXT].contiguous(), "future_target": y[:, CONTEXT:].contiguous()})
    return out


class Slices(L.LightningDataModule):
    def train_dataloader(self):
        n, r = self.trainer.world_size, self.trainer.global_rank
        per = GLOBAL_BATCH // n
        mine = [{k: v[r * per:(r + 1) * per] for k, v in b.items()} for b in global_batches()]
        return torch.utils.data.DataLoader(mine, batch_size=None)


class Record(L.Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        m = trainer.callback_metrics
        self.rows.append({k: float(m[k]) for k in ("train/loss", "grad/norm_total")})


def main(strategy: str, devices: int, out: str) -> None:
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=["model=chronos2_tiny", "model.module.config.dropout_rate=0",
                                          f"model.module.prediction_length={HORIZON}"])
    L.seed_everything(0)
    module = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
    strat = {"single": "auto", "ddp": "ddp",
             "fsdp": ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1)}[strategy]
    record = Record()
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strat, precision=cfg.trainer.precision, max_steps=STEPS,
        gradient_clip_val=cfg.trainer.gradient_clip_val, log_every_n_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, callbacks=[TrainingMonitor(log_every_n_steps=1), record],
    )
    trainer.fit(module, datamodule=Slices())
    if trainer.is_global_zero:
        Path(out).write_text(json.dumps(record.rows))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
