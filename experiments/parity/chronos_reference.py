"""Trains Chronos (T5) with the reference training script (chronos-forecasting ``scripts/training/train.py``).

Run by ``chronos.py`` beside this file through the anchors venv's python; never imported by tsfm.
The script is not in the pip wheel: ``chronos.py`` passes its path (a copy under /tmp, e.g.
``git show HEAD:scripts/training/train.py`` of github.com/amazon-science/chronos-forecasting), and
it is run **unchanged, as a script**, through its own command line (``--config <yaml>``, the format
of its ``configs/chronos-t5-*.yaml``). It needs ``typer``, ``typer-config`` and, because it reports
to TensorBoard, ``tensorboardX`` (or ``tensorboard``) in the anchors venv.

argv[1] is a JSON spec (script path, init directory, corpus ``.npz``, output directory, recipe).
This worker

* writes the corpus as a GluonTS Arrow file (``ArrowWriter``, hourly ``start``), the format the
  script's ``FileDataset`` reads;
* writes the script's YAML config: ``model_id`` = the init directory with ``random_init: false``
  (``AutoModelForSeq2SeqLM.from_pretrained`` of tsfm's random init, so both sides start from the
  same weights), fp32 (``tf32``/``torch_compile`` off), ``optim: adamw_torch``, no gradient
  accumulation, data loading in the main process (``dataloader_num_workers: 0``);
* passes ``seed`` on to the Hugging Face ``TrainingArguments`` (the one change to the script's
  behaviour): the script seeds with ``transformers.set_seed(seed)`` but builds ``TrainingArguments``
  without ``seed``, and ``Trainer.__init__`` re-seeds every RNG with the default 42, so without
  this every seed would draw the same windows, drop masks and dropout masks.

The Trainer writes ``run-0/checkpoint-<step>/`` every ``save_every`` steps (config.json with the
script's ``chronos_config`` + model.safetensors), which ``chronos.py`` scores with the same code as
tsfm's checkpoints. Prints one JSON line: wall seconds, steps and the Trainer's logged losses.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

# this directory holds chronos.py, which would shadow the reference package `chronos`
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def write_arrow(npz: str, path: Path) -> None:
    from gluonts.dataset.arrow import ArrowWriter

    with np.load(npz) as z:
        series = [z[k] for k in sorted(z.files, key=int)]
    start = np.datetime64("2000-01-01 00:00", "s")
    ArrowWriter(compression="lz4").write_to_file([{"start": start, "target": y} for y in series], path=path)


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    arrow = out / "corpus.arrow"
    if not arrow.is_file():
        write_arrow(spec["corpus"], arrow)
    config = {
        "training_data_paths": [str(arrow)],
        "probability": [1.0],
        "context_length": spec["context"],
        "prediction_length": spec["horizon"],
        "min_past": spec["min_past"],
        "max_steps": spec["steps"],
        "save_steps": spec["save_every"],
        "log_steps": spec["save_every"],
        "per_device_train_batch_size": spec["batch"],
        "learning_rate": spec["lr"],
        "optim": "adamw_torch",
        "shuffle_buffer_length": spec["shuffle_buffer"],
        "gradient_accumulation_steps": 1,
        "model_id": spec["init_dir"],
        "model_type": "seq2seq",
        "random_init": False,
        "tie_embeddings": True,
        "output_dir": str(out),
        "tf32": False,
        "torch_compile": False,
        "tokenizer_class": "MeanScaleUniformBins",
        "tokenizer_kwargs": {"low_limit": -15.0, "high_limit": 15.0},
        "n_tokens": 4096,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.0,
        "dataloader_num_workers": 0,
        "max_missing_prop": 0.9,
        "use_eos_token": True,
        "seed": spec["seed"],
    }
    import yaml

    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))

    import transformers

    hf_args = transformers.TrainingArguments
    transformers.TrainingArguments = lambda **kw: hf_args(**kw, seed=spec["seed"])  # read by the script's import

    sys.argv = [spec["script"], "--config", str(cfg_path)]
    t0 = time.perf_counter()
    try:
        runpy.run_path(spec["script"], run_name="__main__")
    except SystemExit as e:  # typer's standalone mode exits after the command
        if e.code not in (None, 0):
            raise
    wall = time.perf_counter() - t0
    run = out / "run-0"
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    state = json.loads(states[-1].read_text())
    losses = {int(e["step"]): float(e["loss"]) for e in state["log_history"] if "loss" in e}
    print(json.dumps({"wall_s": wall, "steps": spec["steps"], "train_loss": losses}))


if __name__ == "__main__":
    main()
