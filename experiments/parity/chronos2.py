"""Training parity, Chronos-2: tsfm's training loop against chronos-forecasting 2.3.2's.

Both sides start from the **same random initialisation** (written by tsfm in the official
``amazon/chronos-2`` layout, which ``Chronos2Pipeline.from_pretrained`` reads) and train on the
**same series** with the same recipe: batch of ``--batch`` series, context ``--context``, horizon
``--horizon``, ``min_past``, AdamW (lr ``--lr``, no weight decay), linear decay to 0 without
warmup, gradient clipping at 1.0, float32 - the reference's ``Chronos2Pipeline.fit`` defaults on a
CPU. Each side samples its own windows from its own RNG (seed ``s`` on both sides), so the curves
agree in distribution, not step by step.

* reference: ``chronos2_reference.py`` in the anchors venv (``bash ../shared/anchors/setup_anchors.sh``),
  a subprocess; the Hugging Face Trainer saves ``checkpoint-<step>/`` every ``--every`` steps;
* tsfm: ``python -m tsfm.train`` on the same series (one Arrow sub-dataset, every series equally
  likely, as the reference samples), saving ``step_<k>.ckpt`` every ``--every`` steps.

Every checkpoint of both sides is then scored by the same code: the mean weighted quantile loss
(WQL, 9 levels) on the last ``--horizon`` points of held-out series from the same generators
(another seed), and the final checkpoints zero-shot on the dev suite (``python -m tsfm.evaluate``,
relative to Seasonal Naive). Prints the curves and scores side by side (mean and spread over the
seeds) and writes ``<out>/parity.json``.

    python experiments/parity/chronos2.py                      # 3 seeds each side, ~30 min on 2 cores
    python experiments/parity/chronos2.py --seeds 0 --steps 200 --every 100 --no-dev   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ANCHOR_PY = os.environ.get("TSFM_ANCHORS_PY", "/tmp/tsfm-anchors/bin/python")
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
GENERATORS = ("seasonal", "trend_seasonal", "ets", "arima", "synth_mix")


def make_series(n: int, seed: int, min_length: int) -> list[np.ndarray]:
    """``n`` structural series (the default corpus' generators in turn), each at least ``min_length`` long."""
    from tsfm.data.synthetic.structural import GENERATORS as GEN

    out, i = [], 0
    while len(out) < n:
        y, _ = GEN[GENERATORS[i % len(GENERATORS)]](i, seed=seed)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if len(y) >= min_length and np.isfinite(y).all():
            out.append(y)
        i += 1
    return out


def write_corpus(out: Path, series: list[np.ndarray]) -> tuple[Path, Path]:
    """The series as one tsfm sub-dataset (Arrow) and as an ``.npz`` for the reference."""
    from tsfm.data.format import write_dataset
    from tsfm.data.types import Series

    arrow, npz = out / "corpus", out / "corpus.npz"
    if not arrow.exists():
        write_dataset((Series(y[None], "h", item_id=str(i), dataset="parity") for i, y in enumerate(series)), arrow)
    if not npz.exists():
        np.savez(npz, **{str(i): y for i, y in enumerate(series)})
    return arrow, npz


def write_init(out: Path, seed: int, context: int, horizon: int) -> Path:
    """A random ``chronos2_tiny``-shaped model in the official layout (the one both sides start from)."""
    import torch
    from hydra import compose, initialize_config_dir

    from tsfm.models.chronos2.config import Chronos2Config
    from tsfm.models.chronos2.convert import save_pretrained
    from tsfm.models.chronos2.model import Chronos2Model
    from tsfm.utils.config import to_plain

    path = out / f"init-s{seed}"
    if (path / "model.safetensors").is_file():
        return path
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=["model=chronos2_tiny", f"model.context_length={context}",
                                          f"model.prediction_length={horizon}"])
    torch.manual_seed(seed)
    save_pretrained(Chronos2Model(Chronos2Config.from_dict(to_plain(cfg.model.module.config))), path)
    return path


def run_reference(a: argparse.Namespace, seed: int, init: Path, npz: Path, out: Path) -> dict:
    run = out / f"ref-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    spec = {"init_dir": str(init), "corpus": str(npz), "out_dir": str(run), "steps": a.steps, "lr": a.lr,
            "batch": a.batch, "context": a.context, "horizon": a.horizon, "min_past": a.min_past,
            "save_every": a.every, "seed": seed, "threads": a.threads}
    log = out / f"ref-s{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run([ANCHOR_PY, str(HERE / "chronos2_reference.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                           stderr=f, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    if r.returncode != 0:
        sys.exit(f"reference run (seed {seed}) failed, rc {r.returncode}; see {log}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["fit_s"], result["wall_s"] = result["wall_s"], time.perf_counter() - t0  # fit() alone; the process
    result["checkpoints"] = {int(p.name.split("-")[1]): str(p) for p in run.glob("checkpoint-*")}
    done.write_text(json.dumps(result))
    return result


def run_tsfm(a: argparse.Namespace, seed: int, init: Path, arrow: Path, out: Path) -> dict:
    run = out / f"tsfm-s{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [
        "model=chronos2_tiny", f"model.module.pretrained={init}", f"model.context_length={a.context}",
        f"model.prediction_length={a.horizon}", f"model.task.min_past={a.min_past}",
        "optim=chronos2_finetune", f"optim.lr={a.lr}", f"trainer.max_steps={a.steps}",
        f"trainer.val_check_interval={a.every}", "trainer.precision=32-true", "data=synthetic",
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
    result = {"wall_s": time.perf_counter() - t0, "steps": a.steps, "checkpoints": ckpts}
    done.write_text(json.dumps(result))
    return result


def wql(forecaster, contexts: list[np.ndarray], futures: np.ndarray) -> float:
    """Mean weighted quantile loss over :data:`LEVELS` (GluonTS' ``mean_weighted_sum_quantile_loss``)."""
    q = forecaster.predict_quantiles(contexts, futures.shape[1], LEVELS)  # [N, H, Q]
    y = futures[..., None]
    lv = np.asarray(LEVELS)
    pinball = np.maximum(lv * (y - q), (lv - 1) * (y - q))
    return float(np.mean(2 * pinball.sum(axis=(0, 1)) / np.abs(futures).sum()))


def dev_suite(path: str, out: Path) -> dict[str, float]:
    """Zero-shot dev-suite WQL / MASE relative to Seasonal Naive (geometric means)."""
    run = out / "dev" / Path(path).as_posix().replace("/", "_")[-80:]
    res = run / "results.json"
    if not res.is_file():
        with open(out / "dev.log", "a") as f:
            subprocess.run([sys.executable, "-m", "tsfm.evaluate", f"model={path}", "eval=dev", f"hydra.run.dir={run}"],
                           cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
        res = next(run.rglob("results.json"))
    agg = json.loads(res.read_text())["aggregate"]
    model = next(k for k in agg if k not in ("seasonal_naive", "auto_ets", "auto_theta"))
    return {"wql": agg[model]["rel_wql"], "mase": agg[model]["rel_mase"]}


def spread(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/tsfm-parity/chronos2"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--min-past", type=int, default=16)
    p.add_argument("--series", type=int, default=3000, help="training series")
    p.add_argument("--val-series", type=int, default=400)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-dev", action="store_true", help="skip the dev-suite scores of the final checkpoints")
    a = p.parse_args()
    if not Path(ANCHOR_PY).is_file():
        sys.exit(f"no reference environment at {ANCHOR_PY}: run `bash ../shared/anchors/setup_anchors.sh` "
                 "(or set TSFM_ANCHORS_PY to its python)")
    import torch

    torch.set_num_threads(a.threads)
    from tsfm.forecast import load_forecaster

    a.out.mkdir(parents=True, exist_ok=True)
    arrow, npz = write_corpus(a.out, make_series(a.series, seed=1000, min_length=a.min_past + a.horizon))
    val = make_series(a.val_series, seed=2000, min_length=a.horizon + 32)
    contexts = [y[:-a.horizon][-a.context:] for y in val]
    futures = np.stack([y[-a.horizon:] for y in val])
    runs: dict[str, dict[int, dict]] = {"reference": {}, "tsfm": {}}
    for seed in a.seeds:
        init = write_init(a.out, seed, a.context, a.horizon)
        runs["reference"][seed] = run_reference(a, seed, init, npz, a.out)
        runs["tsfm"][seed] = run_tsfm(a, seed, init, arrow, a.out)
        for side in runs:
            ck = runs[side][seed]["checkpoints"]
            ck = {int(k): v for k, v in ck.items()}
            runs[side][seed]["curve"] = {0: wql(load_forecaster(init), contexts, futures)} | {
                k: wql(load_forecaster(v), contexts, futures) for k, v in sorted(ck.items())}
            if not a.no_dev:
                runs[side][seed]["dev"] = dev_suite(ck[max(ck)], a.out)
            print(f"seed {seed} {side:9s}: {a.steps} steps in {runs[side][seed]['wall_s']:.0f} s, "
                  f"held-out WQL {runs[side][seed]['curve'][max(ck)]:.4f}"
                  + (f", dev WQL {runs[side][seed]['dev']['wql']:.3f} / MASE {runs[side][seed]['dev']['mase']:.3f}"
                     if "dev" in runs[side][seed] else ""), flush=True)
    steps = sorted(runs["tsfm"][a.seeds[0]]["curve"])
    print(f"\nChronos-2 training parity: chronos2_tiny, {len(a.seeds)} seed(s), batch {a.batch}, context "
          f"{a.context}, horizon {a.horizon}, lr {a.lr} linear to 0, fp32; held-out WQL (mean ± sd over seeds)")
    print(f"{'step':>6} | {'reference':>17} | {'tsfm':>17}")
    for s in steps:
        print(f"{s:>6} | {spread([runs['reference'][k]['curve'][s] for k in a.seeds]):>17} | "
              f"{spread([runs['tsfm'][k]['curve'][s] for k in a.seeds]):>17}")
    for key, label in (("wall_s", "wall s"),):  # each side's whole process: start-up, data, training, saving
        print(f"{label:>6} | {spread([runs['reference'][k][key] for k in a.seeds]):>17} | "
              f"{spread([runs['tsfm'][k][key] for k in a.seeds]):>17}")
    if not a.no_dev:
        for m in ("wql", "mase"):
            print(f"dev {m:>4}| {spread([runs['reference'][k]['dev'][m] for k in a.seeds]):>17} | "
                  f"{spread([runs['tsfm'][k]['dev'][m] for k in a.seeds]):>17}   (zero-shot, rel. Seasonal Naive)")
    (a.out / "parity.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "runs": runs},
                                                  indent=1, default=str))
    print(f"\nwrote {a.out / 'parity.json'}")


if __name__ == "__main__":
    main()
