"""Training parity, Chronos (T5): tsfm's pretraining loop against chronos-forecasting's training script.

The reference is ``scripts/training/train.py`` of github.com/amazon-science/chronos-forecasting
(not in the pip wheel): ``--train-script`` points at a copy (default ``/tmp/chronos_ref/train.py``;
``git --git-dir=<mirror> show HEAD:scripts/training/train.py > /tmp/chronos_ref/train.py``). It runs
unchanged, through its own command line, in the anchors venv (``chronos_reference.py``; it needs
``typer``, ``typer-config`` and ``tensorboardX`` there).

Both sides start from the **same random initialisation** (a small T5 in the ``chronos_tiny``
family, ``--d-model`` wide, written by tsfm in the official ``amazon/chronos-t5-*`` layout; the
script loads it as its ``model_id`` with ``random_init: false``) and train on the **same series**
(the structural generators, each cut to its last ``--length`` points: with equal lengths the
script's window sampling — one pass over the series after another, ``ExpectedNumInstanceSampler``
(about one window per series per pass, cut point uniform over ``[min_past, T - H]``) then a
pseudo-shuffle buffer of ``--shuffle-buffer`` windows — draws every series equally often, as tsfm's
``data.item_weighting=uniform`` does) with the same recipe: context ``--context``, horizon
``--horizon``, ``min_past``, missing-value augmentation ``drop_prob`` 0.2 (the script's
``ChronosDataset`` default), ``MeanScaleUniformBins`` over [-15, 15] with 4096 tokens and EOS, AdamW
(lr ``--lr``, betas 0.9/0.999, eps 1e-8, **no weight decay** — the script leaves the Trainer's
default 0.0, whereas tsfm's ``optim=chronos`` has 0.01), linear decay to 0 without warmup, gradient
clipping 1.0, float32, dropout 0.1, batch ``--batch``. Each side samples its own windows from its
own RNG (seed ``s`` on both sides), so the curves agree in distribution, not step by step.

* reference: the script's Hugging Face Trainer saves ``checkpoint-<step>/`` every ``--every`` steps;
* tsfm: ``python -m tsfm.train model=chronos_tiny`` on the same series (one Arrow sub-dataset),
  saving ``step_<k>.ckpt`` every ``--every`` steps.

Every checkpoint of both sides is scored by the same code: the mean weighted quantile loss (WQL,
9 levels, quantiles of 20 sample paths drawn with a fixed seed) on the last ``--horizon`` points
of held-out series from the same generators (another seed). ``--dev`` adds the final checkpoints'
zero-shot dev-suite scores (``python -m tsfm.evaluate``, relative to Seasonal Naive; slow with
Chronos sampling on a CPU, so off by default). Prints the curves side by side (mean and spread
over the seeds) and writes ``<out>/parity.json``.

    python experiments/parity/chronos.py                      # 3 seeds each side, ~20 min at 1 thread
    python experiments/parity/chronos.py --seeds 0 --steps 100 --every 50   # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from chronos2 import ANCHOR_PY, LEVELS, ROOT, dev_suite, make_series, spread  # noqa: E402

NUM_SAMPLES = 20  # sample paths per held-out series (the checkpoints' default), drawn with seed 0


def shape(a: argparse.Namespace) -> list[str]:
    """Hydra overrides of the small T5 both sides train (``chronos_tiny`` narrowed to ``--d-model``)."""
    return [f"model.module.config.d_model={a.d_model}", f"model.module.config.d_ff={4 * a.d_model}",
            f"model.module.config.d_kv={a.d_model // 4}", "model.module.config.num_heads=4",
            f"model.module.config.num_layers={a.layers}", f"model.module.config.num_decoder_layers={a.layers}",
            f"model.context_length={a.context}", f"model.prediction_length={a.horizon}"]


def write_corpus(out: Path, series: list[np.ndarray]) -> tuple[Path, Path]:
    """The series as one tsfm sub-dataset (Arrow) and as an ``.npz`` (the worker writes the GluonTS Arrow file)."""
    from tsfm.data.format import write_dataset
    from tsfm.data.types import Series

    arrow, npz = out / "corpus", out / "corpus.npz"
    if not arrow.exists():
        write_dataset((Series(y[None], "h", item_id=str(i), dataset="parity") for i, y in enumerate(series)), arrow)
    if not npz.exists():
        np.savez(npz, **{str(i): y for i, y in enumerate(series)})
    return arrow, npz


def write_init(a: argparse.Namespace, seed: int) -> Path:
    """A random model of :func:`shape` in the official layout (the one both sides start from)."""
    import torch
    from hydra import compose, initialize_config_dir

    from tsfm.models.chronos.config import ChronosConfig
    from tsfm.models.chronos.convert import save_pretrained
    from tsfm.models.chronos.model import ChronosModel
    from tsfm.utils.config import to_plain

    path = a.out / f"init-s{seed}"
    if (path / "model.safetensors").is_file():
        return path
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=["model=chronos_tiny", *shape(a)])
    torch.manual_seed(seed)
    save_pretrained(ChronosModel(ChronosConfig(**to_plain(cfg.model.module.config))), path)
    return path


def run_reference(a: argparse.Namespace, seed: int, init: Path, npz: Path) -> dict:
    run = a.out / f"ref-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    spec = {"script": str(a.train_script), "init_dir": str(init), "corpus": str(npz), "out_dir": str(run),
            "steps": a.steps, "lr": a.lr, "batch": a.batch, "context": a.context, "horizon": a.horizon,
            "min_past": a.min_past, "save_every": a.every, "seed": seed, "threads": a.threads,
            "shuffle_buffer": a.shuffle_buffer}
    log = a.out / f"ref-s{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run([ANCHOR_PY, str(HERE / "chronos_reference.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                           stderr=f, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    if r.returncode != 0:
        sys.exit(f"reference run (seed {seed}) failed, rc {r.returncode}; see {log}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["fit_s"], result["wall_s"] = result["wall_s"], time.perf_counter() - t0  # the script alone; the process
    result["checkpoints"] = {int(p.name.split("-")[1]): str(p) for p in (run / "run-0").glob("checkpoint-*")
                             if p.name.split("-")[1].isdigit()}
    done.write_text(json.dumps(result))
    return result


def train_loss(run: Path, every: int) -> dict[int, float]:
    """Mean ``train/loss`` per ``every`` steps from tsfm's CSV log (logged every ``log_every_n_steps``)."""
    rows = []
    for path in run.rglob("metrics.csv"):
        with open(path) as f:
            rows += [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r.get("train/loss")]
    out: dict[int, list[float]] = {}
    for step, loss in rows:
        out.setdefault((step // every + 1) * every, []).append(loss)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


def run_tsfm(a: argparse.Namespace, seed: int, init: Path, arrow: Path) -> dict:
    run = a.out / f"tsfm-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [
        "model=chronos_tiny", *shape(a), f"model.module.pretrained={init}", f"model.task.min_past={a.min_past}",
        "model.task.drop_prob=0.2", "optim=chronos", f"optim.lr={a.lr}", "optim.weight_decay=0.0",
        "optim.betas=[0.9,0.999]", "optim.eps=1e-8", "optim.warmup_steps=0", "optim.scheduler=linear",
        "optim.min_lr_ratio=0.0", f"trainer.max_steps={a.steps}", f"trainer.val_check_interval={a.every}",
        "trainer.precision=32-true", "trainer.gradient_clip_val=1.0", "data=synthetic",
        f"data.corpus=[{{path: {arrow}, name: parity}}]", f"data.batch_size={a.batch}", "+data.item_weighting=uniform",
        "data.length_groups=1", "data.early_steps=0", f"seed={seed}", "~callbacks.benchmark",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
        "ckpt_path=null", "export=false", "final_eval=null", f"hydra.run.dir={run}",
    ]
    log = a.out / f"tsfm-s{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "tsfm.train", *overrides], cwd=ROOT, stdout=f,
                            stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)}).returncode
    if rc != 0:
        sys.exit(f"tsfm run (seed {seed}) failed, rc {rc}; see {log}")
    ckpts = {int(m.group(1)): str(p) for p in (run / "checkpoints").glob("step_*.ckpt")
             if (m := re.fullmatch(r"step_(\d+)\.ckpt", p.name))}
    result = {"wall_s": time.perf_counter() - t0, "steps": a.steps, "checkpoints": ckpts,
              "train_loss": train_loss(run, a.every)}
    done.write_text(json.dumps(result))
    return result


def wql(forecaster, contexts: list[np.ndarray], futures: np.ndarray) -> float:
    """Mean weighted quantile loss over :data:`LEVELS` (GluonTS' ``mean_weighted_sum_quantile_loss``);
    empirical quantiles of :data:`NUM_SAMPLES` sample paths from a fixed seed."""
    q = forecaster.predict_quantiles(contexts, futures.shape[1], LEVELS, num_samples=NUM_SAMPLES, seed=0)
    y = futures[..., None]
    lv = np.asarray(LEVELS)
    pinball = np.maximum(lv * (y - q), (lv - 1) * (y - q))
    return float(np.mean(2 * pinball.sum(axis=(0, 1)) / np.abs(futures).sum()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/tsfm-parity/chronos"))
    p.add_argument("--train-script", type=Path, default=Path("/tmp/chronos_ref/train.py"),
                   help="chronos-forecasting's scripts/training/train.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--min-past", type=int, default=32)
    p.add_argument("--d-model", type=int, default=64, help="T5 width (d_ff 4x, 4 heads of d_model/4)")
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder layers")
    p.add_argument("--length", type=int, default=256, help="training series are cut to their last LENGTH points")
    p.add_argument("--series", type=int, default=2000, help="training series")
    p.add_argument("--val-series", type=int, default=300)
    p.add_argument("--shuffle-buffer", type=int, default=10_000, help="the script's shuffle_buffer_length")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dev", action="store_true", help="add the dev-suite scores of the final checkpoints (slow)")
    a = p.parse_args()
    if not Path(ANCHOR_PY).is_file():
        sys.exit(f"no reference environment at {ANCHOR_PY}: run `bash ../shared/anchors/setup_anchors.sh` "
                 "(or set TSFM_ANCHORS_PY to its python)")
    if not a.train_script.is_file():
        sys.exit(f"no reference training script at {a.train_script}: save scripts/training/train.py of "
                 "github.com/amazon-science/chronos-forecasting there (or pass --train-script)")
    if a.length < a.min_past + a.horizon:
        sys.exit(f"--length {a.length} leaves no window of min_past {a.min_past} + horizon {a.horizon}")
    import torch

    torch.set_num_threads(a.threads)
    from tsfm.forecast import load_forecaster

    a.out.mkdir(parents=True, exist_ok=True)
    train = [y[-a.length:] for y in make_series(a.series, seed=1000, min_length=a.length)]
    arrow, npz = write_corpus(a.out, train)
    val = make_series(a.val_series, seed=2000, min_length=a.horizon + 32)
    contexts = [y[:-a.horizon][-a.context:] for y in val]
    futures = np.stack([y[-a.horizon:] for y in val])
    runs: dict[str, dict[int, dict]] = {"reference": {}, "tsfm": {}}
    for seed in a.seeds:
        init = write_init(a, seed)
        runs["reference"][seed] = run_reference(a, seed, init, npz)
        runs["tsfm"][seed] = run_tsfm(a, seed, init, arrow)
        init_wql = wql(load_forecaster(init), contexts, futures)
        for side in runs:
            ck = {int(k): v for k, v in runs[side][seed]["checkpoints"].items()}
            runs[side][seed]["curve"] = {0: init_wql} | {
                k: wql(load_forecaster(v), contexts, futures) for k, v in sorted(ck.items())}
            if a.dev:
                runs[side][seed]["dev"] = dev_suite(ck[max(ck)], a.out)
            print(f"seed {seed} {side:9s}: {a.steps} steps in {runs[side][seed]['wall_s']:.0f} s, "
                  f"held-out WQL {runs[side][seed]['curve'][max(ck)]:.4f}"
                  + (f", dev WQL {runs[side][seed]['dev']['wql']:.3f} / MASE {runs[side][seed]['dev']['mase']:.3f}"
                     if "dev" in runs[side][seed] else ""), flush=True)
    steps = sorted(runs["tsfm"][a.seeds[0]]["curve"])
    print(f"\nChronos (T5) training parity: chronos_tiny family at d_model {a.d_model}, {a.layers}+{a.layers} layers, "
          f"{len(a.seeds)} seed(s), batch {a.batch}, context {a.context}, horizon {a.horizon}, min_past {a.min_past}, "
          f"lr {a.lr} linear to 0, no wd, fp32; held-out WQL (mean ± sd over seeds)")
    print(f"{'step':>6} | {'reference':>17} | {'tsfm':>17}")
    for s in steps:
        print(f"{s:>6} | {spread([runs['reference'][k]['curve'][s] for k in a.seeds]):>17} | "
              f"{spread([runs['tsfm'][k]['curve'][s] for k in a.seeds]):>17}")
    print(f"{'wall s':>6} | {spread([runs['reference'][k]['wall_s'] for k in a.seeds]):>17} | "
          f"{spread([runs['tsfm'][k]['wall_s'] for k in a.seeds]):>17}")  # each side's whole process
    last = max(steps)
    vals = {side: [runs[side][k]["train_loss"].get(str(last), runs[side][k]["train_loss"].get(last, np.nan))
                   for k in a.seeds] for side in runs}
    print(f"{'loss':>6} | {spread(vals['reference']):>17} | {spread(vals['tsfm']):>17}   "
          f"(train cross-entropy, steps {last - a.every + 1}-{last})")
    if a.dev:
        for m in ("wql", "mase"):
            print(f"dev {m:>4}| {spread([runs['reference'][k]['dev'][m] for k in a.seeds]):>17} | "
                  f"{spread([runs['tsfm'][k]['dev'][m] for k in a.seeds]):>17}   (zero-shot, rel. Seasonal Naive)")
    (a.out / "parity.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "runs": runs},
                                                  indent=1, default=str))
    print(f"\nwrote {a.out / 'parity.json'}")


if __name__ == "__main__":
    main()
