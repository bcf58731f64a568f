"""Trains Chronos-2 with the reference library (chronos-forecasting 2.3.2, ``Chronos2Pipeline.fit``).

Run by ``chronos2.py`` beside this file through the anchors venv's python; never imported by tsfm.
argv[1] is a JSON spec (init directory, corpus ``.npz``, output directory, schedule); every
``save_every`` steps the Hugging Face Trainer writes ``checkpoint-<step>/`` (config.json +
model.safetensors), which ``chronos2.py`` scores with the same code as tsfm's checkpoints. Prints
one JSON line: wall seconds, steps and the Trainer's logged training losses.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    from chronos.chronos2 import Chronos2Pipeline

    pipe = Chronos2Pipeline.from_pretrained(spec["init_dir"])
    with np.load(spec["corpus"]) as z:
        series = [z[k] for k in sorted(z.files, key=int)]
    t0 = time.perf_counter()
    pipe.fit(
        series,
        prediction_length=spec["horizon"],
        context_length=spec["context"],
        learning_rate=spec["lr"],
        num_steps=spec["steps"],
        batch_size=spec["batch"],
        min_past=spec["min_past"],
        output_dir=spec["out_dir"],
        # the Trainer's own settings, spelled out so that both sides visibly match
        seed=spec["seed"],
        weight_decay=0.0,
        max_grad_norm=1.0,
        save_strategy="steps",
        save_steps=spec["save_every"],
        save_total_limit=None,
        logging_steps=spec["save_every"],
        disable_tqdm=True,
    )
    wall = time.perf_counter() - t0
    states = sorted(Path(spec["out_dir"]).glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[1]))
    state = json.loads(states[-1].read_text())
    losses = {int(e["step"]): float(e["loss"]) for e in state["log_history"] if "loss" in e}
    print(json.dumps({"wall_s": wall, "steps": spec["steps"], "train_loss": losses}))


if __name__ == "__main__":
    main()
