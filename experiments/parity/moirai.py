"""Training parity, Moirai: tsfm's pretraining loop against uni2ts 2.0.0's (``MoiraiPretrain``).

Both sides start from the **same random initialisation** (a ``moirai_tiny``-shaped model written by
tsfm in the official layout, which uni2ts' ``MoiraiModule.from_pretrained`` reads) and train on the
**same series** (one Arrow sub-dataset, hourly, read by tsfm's data layer and by uni2ts'
``HuggingFaceDatasetIndexer``) with the same recipe: AdamW (lr ``--lr``, weight decay 0.1 off
norms/biases/embeddings, betas (0.9, 0.98), eps 1e-6), linear warmup over ``--steps``/10 then cosine
to 0, gradient clipping 1.0, float32, masked prediction with a horizon of U(0.15, 0.5) of the
window, >= 2 patches, patch sizes 32/64 (the hourly rule), rows of 512 tokens.

Batch (the two loaders count differently): tsfm's ``data.batch_size`` is samples per step, packed
first-fit-decreasing into rows of 512 tokens; uni2ts' ``DataLoader`` packs ``batch_size *
batch_size_factor`` samples per collate call and hands out exactly ``batch_size`` rows per step.
Here tsfm gets ``--batch`` samples per step; the rows those pack into are measured with tsfm's task
on the corpus (``R``), and uni2ts gets ``batch_size = round(R)`` rows and ``batch_size_factor =
--batch / round(R)``, so one collate call of ``--batch`` samples feeds one step. Both sides' real
rows / samples / tokens per step are printed.

Univariate concatenation: tsfm's default (``concat_univariate``) stacks independent univariate
series of a sub-dataset into pseudo-multivariate samples; uni2ts does that only for the LOTSA
sub-datasets it loads as ``MultiSampleTimeSeriesDataset`` (aligned series), and a corpus of
unaligned series is a plain ``TimeSeriesDataset``. tsfm runs with ``model.task.concat_univariate=false``
(``--concat`` turns it back on, to measure tsfm's default against the reference).

* reference: ``moirai_reference.py`` in the anchors venv (``bash ../shared/anchors/setup_anchors.sh``),
  a subprocess; saves ``step-<k>/`` (official layout) every ``--every`` steps;
* tsfm: ``python -m tsfm.train model=moirai_tiny`` on the same series, saving ``step_<k>.ckpt``
  every ``--every`` steps.

Every checkpoint of both sides is then scored by the same code: the mean weighted quantile loss
(WQL, 9 levels, 100 sample paths, ``freq="h"`` so both pick among the patch sizes they trained)
on the last ``--horizon`` points of held-out series from the same generators (another seed), and
the final checkpoints zero-shot on the dev suite (``python -m tsfm.evaluate``, relative to
Seasonal Naive). Prints the curves and scores side by side (mean and spread over the seeds) and
writes ``<out>/parity.json``.

    python experiments/parity/moirai.py                      # 3 seeds each side
    python experiments/parity/moirai.py --seeds 0 --steps 200 --every 100 --no-dev   # a quick look
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

FREQ = "h"  # the corpus' frequency: Moirai's patch-size rule allows 32 and 64
MASK_RATIO = (0.15, 0.5)
MIN_PATCHES = 2
MAX_DIM = 128


def write_corpus(out: Path, series: list[np.ndarray]) -> Path:
    """The series as one Arrow sub-dataset (``item_id``, ``start``, ``freq``, ``target``), read by both sides."""
    from tsfm.data.format import write_dataset
    from tsfm.data.types import Series

    arrow = out / "corpus"
    if not arrow.exists():
        write_dataset((Series(y[None], FREQ, item_id=str(i), dataset="parity") for i, y in enumerate(series)), arrow)
    return arrow


def write_init(out: Path, seed: int) -> Path:
    """A random ``moirai_tiny``-shaped model in the official layout (the one both sides start from)."""
    import torch
    from hydra import compose, initialize_config_dir

    from tsfm.models.moirai.config import MoiraiConfig
    from tsfm.models.moirai.convert import save_pretrained
    from tsfm.models.moirai.model import MoiraiModel
    from tsfm.utils.config import to_plain

    path = out / f"init-s{seed}"
    if (path / "model.safetensors").is_file():
        return path
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=["model=moirai_tiny"])
    torch.manual_seed(seed)
    save_pretrained(MoiraiModel(MoiraiConfig.from_dict(to_plain(cfg.model.module.config))), path)
    return path


def packing(series: list[np.ndarray], batch: int, concat: bool, draws: int = 50) -> dict[str, float]:
    """Rows / samples / real tokens per step of tsfm's task for ``batch`` uniformly drawn series
    (what tsfm's data layer does with ``item_weighting=uniform``), averaged over ``draws`` steps."""
    from tsfm.data.types import Series
    from tsfm.models.moirai.task import MoiraiTask

    task = MoiraiTask(mask_ratio=MASK_RATIO, min_time_patches=MIN_PATCHES, max_dim=MAX_DIM, concat_univariate=concat)
    rng = np.random.default_rng(0)
    items = [Series(y[None], FREQ, item_id=str(i), dataset="parity") for i, y in enumerate(series)]
    rows, samples, tokens = [], [], []
    for _ in range(draws):
        b = task.collate([task(items[i], rng) for i in rng.integers(len(items), size=batch)])
        sid = b["sample_id"]
        rows.append(sid.shape[0])
        samples.append(int(sid.max(dim=1).values.sum()))
        tokens.append(int((sid > 0).sum()))
    return {"rows_per_step": float(np.mean(rows)), "samples_per_step": float(np.mean(samples)),
            "tokens_per_step": float(np.mean(tokens))}


def run_reference(a: argparse.Namespace, seed: int, init: Path, arrow: Path, out: Path, rows: int) -> dict:
    run = out / f"ref-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    spec = {"init_dir": str(init), "corpus": str(arrow), "out_dir": str(run), "steps": a.steps, "warmup": a.warmup,
            "lr": a.lr, "weight_decay": 0.1, "betas": [0.9, 0.98], "min_patches": MIN_PATCHES,
            "mask_ratio": list(MASK_RATIO), "max_dim": MAX_DIM, "rows": rows, "batch_size_factor": a.batch / rows,
            "save_every": a.every, "seed": seed, "threads": a.threads}
    log = out / f"ref-s{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run([ANCHOR_PY, str(HERE / "moirai_reference.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                           stderr=f, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    if r.returncode != 0:
        sys.exit(f"reference run (seed {seed}) failed, rc {r.returncode}; see {log}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["fit_s"], result["wall_s"] = result["wall_s"], time.perf_counter() - t0  # fit() alone; the process
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


def run_tsfm(a: argparse.Namespace, seed: int, init: Path, arrow: Path, out: Path) -> dict:
    run = out / f"tsfm-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [
        "model=moirai_tiny", f"model.module.pretrained={init}", f"model.task.concat_univariate={str(a.concat).lower()}",
        f"model.task.mask_ratio=[{MASK_RATIO[0]},{MASK_RATIO[1]}]", f"model.task.min_time_patches={MIN_PATCHES}",
        f"model.task.max_dim={MAX_DIM}", "optim=moirai", f"optim.lr={a.lr}", "optim.weight_decay=0.1",
        "optim.betas=[0.9,0.98]", "optim.eps=1e-6", f"optim.warmup_steps={a.warmup}", "optim.scheduler=cosine",
        "optim.min_lr_ratio=0.0", f"trainer.max_steps={a.steps}", f"trainer.val_check_interval={a.every}",
        "trainer.precision=32-true", "trainer.gradient_clip_val=1.0", "data=synthetic",
        f"data.corpus=[{{path: {arrow}, name: parity}}]", f"data.batch_size={a.batch}", "+data.item_weighting=uniform",
        "data.length_groups=1", "data.early_steps=0", f"seed={seed}", "~callbacks.benchmark",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
        "ckpt_path=null", "export=false", "final_eval=null", f"hydra.run.dir={run}",
    ]
    log = out / f"tsfm-s{seed}.log"
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
    100 sample paths from a fixed seed, patch size chosen among the hourly ones by backtest."""
    q = forecaster.predict_quantiles(contexts, futures.shape[1], LEVELS, freq=FREQ, num_samples=100, seed=0)
    y = futures[..., None]
    lv = np.asarray(LEVELS)
    pinball = np.maximum(lv * (y - q), (lv - 1) * (y - q))
    return float(np.mean(2 * pinball.sum(axis=(0, 1)) / np.abs(futures).sum()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/tsfm-parity/moirai"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--warmup", type=int, default=None, help="linear warmup steps (default: steps / 10, tsfm's optim=moirai)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128, help="samples per step (tsfm data.batch_size)")
    p.add_argument("--context", type=int, default=512, help="held-out scoring: context points")
    p.add_argument("--horizon", type=int, default=64, help="held-out scoring: forecast horizon")
    p.add_argument("--series", type=int, default=2500, help="training series")
    p.add_argument("--val-series", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--concat", action="store_true", help="tsfm with its default univariate concatenation (not the reference's)")
    p.add_argument("--no-dev", action="store_true", help="skip the dev-suite scores of the final checkpoints")
    a = p.parse_args()
    a.warmup = a.steps // 10 if a.warmup is None else a.warmup  # tsfm's optim=moirai: min(10000, max_steps / 10)
    if not Path(ANCHOR_PY).is_file():
        sys.exit(f"no reference environment at {ANCHOR_PY}: run `bash ../shared/anchors/setup_anchors.sh` "
                 "(or set TSFM_ANCHORS_PY to its python)")
    import torch

    torch.set_num_threads(a.threads)
    from tsfm.forecast import load_forecaster

    a.out.mkdir(parents=True, exist_ok=True)
    train = make_series(a.series, seed=1000, min_length=MIN_PATCHES * 32)  # >= 2 patches of the smallest hourly size
    arrow = write_corpus(a.out, train)
    pack = packing(train, a.batch, a.concat)
    rows = max(1, round(pack["rows_per_step"]))
    print(f"tsfm: {a.batch} samples per step pack into {pack['rows_per_step']:.2f} rows of 512 tokens; "
          f"reference: {rows} rows per step, batch_size_factor {a.batch / rows:g}", flush=True)
    val = make_series(a.val_series, seed=2000, min_length=a.horizon + 128)
    contexts = [y[:-a.horizon][-a.context:] for y in val]
    futures = np.stack([y[-a.horizon:] for y in val])
    runs: dict[str, dict[int, dict]] = {"reference": {}, "tsfm": {}}
    for seed in a.seeds:
        init = write_init(a.out, seed)
        runs["reference"][seed] = run_reference(a, seed, init, arrow, a.out, rows)
        runs["tsfm"][seed] = run_tsfm(a, seed, init, arrow, a.out)
        runs["tsfm"][seed] |= {"tsfm_task_" + k: v for k, v in pack.items()}
        for side in runs:
            ck = {int(k): v for k, v in runs[side][seed]["checkpoints"].items()}
            runs[side][seed]["curve"] = {0: wql(load_forecaster(init), contexts, futures)} | {
                k: wql(load_forecaster(v), contexts, futures) for k, v in sorted(ck.items())}
            if not a.no_dev:
                runs[side][seed]["dev"] = dev_suite(ck[max(ck)], a.out)
            print(f"seed {seed} {side:9s}: {a.steps} steps in {runs[side][seed]['wall_s']:.0f} s, "
                  f"held-out WQL {runs[side][seed]['curve'][max(ck)]:.4f}"
                  + (f", dev WQL {runs[side][seed]['dev']['wql']:.3f} / MASE {runs[side][seed]['dev']['mase']:.3f}"
                     if "dev" in runs[side][seed] else ""), flush=True)
    steps = sorted(runs["tsfm"][a.seeds[0]]["curve"])
    ref_pack = {k: np.mean([runs["reference"][s][k] for s in a.seeds]) for k in pack}
    print(f"\nMoirai training parity: moirai_tiny, {len(a.seeds)} seed(s), {a.batch} samples/step (reference: "
          f"{ref_pack['rows_per_step']:g} rows/step), lr {a.lr}, warmup {a.warmup} + cosine, wd 0.1, fp32, concat_univariate "
          f"{'on' if a.concat else 'off'}; held-out WQL, H={a.horizon} (mean ± sd over seeds)")
    print(f"{'step':>6} | {'reference':>17} | {'tsfm':>17}")
    for s in steps:
        print(f"{s:>6} | {spread([runs['reference'][k]['curve'][s] for k in a.seeds]):>17} | "
              f"{spread([runs['tsfm'][k]['curve'][s] for k in a.seeds]):>17}")
    print(f"{'wall s':>6} | {spread([runs['reference'][k]['wall_s'] for k in a.seeds]):>17} | "
          f"{spread([runs['tsfm'][k]['wall_s'] for k in a.seeds]):>17}")  # each side's whole process
    last = max(steps)
    for side_key, label in (("train_loss", "train NLL, last window"),):
        vals = {side: [runs[side][k][side_key].get(str(last), runs[side][k][side_key].get(last, np.nan))
                       for k in a.seeds] for side in runs}
        print(f"{'loss':>6} | {spread(vals['reference']):>17} | {spread(vals['tsfm']):>17}   ({label})")
    print(f"{'batch':>6} | {ref_pack['rows_per_step']:.2f} rows, {ref_pack['samples_per_step']:.0f} samples, "
          f"{ref_pack['tokens_per_step']:.0f} tokens | {pack['rows_per_step']:.2f} rows, {pack['samples_per_step']:.0f} "
          f"samples, {pack['tokens_per_step']:.0f} tokens   (per step; tsfm's from its task on the corpus)")
    if not a.no_dev:
        for m in ("wql", "mase"):
            print(f"dev {m:>4}| {spread([runs['reference'][k]['dev'][m] for k in a.seeds]):>17} | "
                  f"{spread([runs['tsfm'][k]['dev'][m] for k in a.seeds]):>17}   (zero-shot, rel. Seasonal Naive)")
    (a.out / "parity.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "runs": runs},
                                                  indent=1, default=str))
    print(f"\nwrote {a.out / 'parity.json'}")


if __name__ == "__main__":
    main()
