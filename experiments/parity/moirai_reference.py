"""Pretrains Moirai with the reference library (uni2ts 2.0.0, ``MoiraiPretrain`` + its data pipeline).

Run by ``moirai.py`` beside this file through the anchors venv's python; never imported by tsfm.
argv[1] is a JSON spec (init directory, corpus directory, output directory, schedule). The model
starts from the official-layout directory tsfm wrote (``MoiraiModule.from_pretrained``) and trains
the way uni2ts' ``cli/train.py`` wires ``cli/conf/pretrain``: ``MoiraiPretrain`` (its
``train_transform_map``, ``configure_optimizers`` and ``training_step``), a ``TimeSeriesDataset``
over a ``HuggingFaceDatasetIndexer`` of the corpus (``sample_time_series=none``, shuffled, as the
LOTSA builders load it), uni2ts' ``DataLoader`` with ``PackCollate`` (``batch_size`` packed rows per
step, ``batch_size * batch_size_factor`` samples per collate call) and a Lightning ``Trainer``
(gradient clipping 1.0 by norm, float32). Every ``save_every`` steps a ``ModelCheckpoint`` saves the
weights; after training each is written as an official-layout directory ``step-<k>/``
(``MoiraiModule.save_pretrained``), which ``moirai.py`` scores with the same code as tsfm's
checkpoints. Prints one JSON line: wall seconds, steps, mean training loss per ``save_every`` steps
and what a step held (packed rows, samples, real tokens).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "shared" / "anchors"))
import jaxtyping_shim  # noqa: E402,F401  (before uni2ts: its jaxtyping annotations need the shim)

# uni2ts' patch-size rule (DefaultPatchSizeConstraints.DEFAULT_RANGES) is keyed by pandas' old offset names
# ("H", "T", "S", "M", "Q", "A"), but it looks up ``to_offset(freq).name``, which pandas >= 2.2 spells the new
# way ("h", "min", "s", "ME", "QE-DEC", "YE-DEC") whatever the input: with the anchors' pandas 2.3 only D/B/W
# resolve and "H" raises KeyError('h'). The same ranges under the new names (nothing else changes).
NEW_NAMES = {"h": "H", "min": "T", "s": "S", "ME": "M", "QE": "Q", "YE": "Y"}


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    import lightning as L
    from datasets import load_from_disk
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from uni2ts.data.dataset import SampleTimeSeriesType, TimeSeriesDataset
    from uni2ts.data.indexer import HuggingFaceDatasetIndexer
    from uni2ts.data.loader import DataLoader, PackCollate
    from uni2ts.loss.packed import PackedNLLLoss
    from uni2ts.model.moirai import MoiraiModule, MoiraiPretrain
    from uni2ts.transform import DefaultPatchSizeConstraints

    ranges = DefaultPatchSizeConstraints.DEFAULT_RANGES
    ranges.update({new: ranges[old] for new, old in NEW_NAMES.items()})

    class Meter(Callback):
        """What each step held and its loss (the quantities both sides are matched on)."""

        def __init__(self) -> None:
            self.rows, self.samples, self.tokens, self.loss = [], [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sid = batch["sample_id"]
            self.rows.append(int(sid.shape[0]))
            self.samples.append(int(sid.max(dim=1).values.sum()))
            self.tokens.append(int((sid > 0).sum()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.loss.append(float(loss))

    L.seed_everything(spec["seed"], workers=True)  # uni2ts' transforms draw from numpy's global RNG
    out = Path(spec["out_dir"])
    module = MoiraiModule.from_pretrained(spec["init_dir"])
    model = MoiraiPretrain(
        module=module,
        min_patches=spec["min_patches"],
        min_mask_ratio=spec["mask_ratio"][0],
        max_mask_ratio=spec["mask_ratio"][1],
        max_dim=spec["max_dim"],
        num_training_steps=spec["steps"],
        num_warmup_steps=spec["warmup"],
        loss_func=PackedNLLLoss(),
        lr=spec["lr"],
        weight_decay=spec["weight_decay"],
        beta1=spec["betas"][0],
        beta2=spec["betas"][1],
    )
    t0 = time.perf_counter()
    dataset = TimeSeriesDataset(
        HuggingFaceDatasetIndexer(load_from_disk(spec["corpus"])),
        transform=model.train_transform_map["parity"](),
        sample_time_series=SampleTimeSeriesType.NONE,
    )
    loader = DataLoader(
        dataset,
        batch_size=spec["rows"],
        batch_size_factor=spec["batch_size_factor"],
        cycle=True,
        num_batches_per_epoch=spec["save_every"],
        shuffle=True,
        num_workers=0,
        collate_fn=PackCollate(max_length=module.max_seq_len, seq_fields=MoiraiPretrain.seq_fields,
                               pad_func_map=MoiraiPretrain.pad_func_map),
        drop_last=True,
        fill_last=False,
    )
    meter = Meter()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=32,
        max_steps=spec["steps"],
        max_epochs=-1,
        gradient_clip_val=1.0,
        gradient_clip_algorithm="norm",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter, ModelCheckpoint(dirpath=out / "lightning", filename="{step}", every_n_train_steps=spec["save_every"],
                                          save_top_k=-1, save_weights_only=True)],
    )
    trainer.fit(model, train_dataloaders=loader)
    fit_s = time.perf_counter() - t0
    saved = {}
    for ck in sorted((out / "lightning").glob("step=*.ckpt")):
        step = int(ck.stem.split("=")[1].split("-")[0])
        state = torch.load(ck, map_location="cpu", weights_only=False)["state_dict"]  # our own file (hparams hold the loss object)
        module.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        module.save_pretrained(out / f"step-{step}")
        saved[step] = str(out / f"step-{step}")
    every = spec["save_every"]
    loss = {(i + 1) * every: float(np.mean(meter.loss[i * every:(i + 1) * every])) for i in range(len(meter.loss) // every)}
    print(json.dumps({"wall_s": fit_s, "steps": spec["steps"], "train_loss": loss, "checkpoints": saved,
                      "rows_per_step": float(np.mean(meter.rows)), "samples_per_step": float(np.mean(meter.samples)),
                      "tokens_per_step": float(np.mean(meter.tokens))}))


if __name__ == "__main__":
    main()
