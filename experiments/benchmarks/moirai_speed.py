"""Moirai speed, tsfm vs the reference (uni2ts 2.0.0), side by side on identical inputs.

Measures, with the same weights (Moirai small, random init saved as an official checkpoint
directory that both load) and 2 threads:

* training step (forward + packed NLL + backward + AdamW) on one packed batch of 8 rows x 512
  tokens, patch 32: tokens/s in fp32 for both, and bf16 autocast for tsfm;
* forecasting 64 series, context 512, horizon 48, 100 samples, patch 32: series/s;
* task builder + packing in one process on the same synthetic corpus: samples/s, packed rows/s
  and padding fraction (reference: uni2ts' train transform chain + PackCollate).

The reference runs in a subprocess with the anchors' venv (see ../shared/anchors/README.md);
tsfm never imports it. Run under the benchmark lock on the shared machine:

    flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/moirai_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from flop_count import count_flops
from safetensors.torch import save_file

import tsfm.models.layers.linear as linear_module
from tsfm.data.types import Series
from tsfm.forecast import load_forecaster
from tsfm.models.layers.linear import linear
from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.convert import load_model, save_pretrained
from tsfm.models.moirai.model import MoiraiModel
from tsfm.models.moirai.task import MoiraiTask

ANCHOR_PY = Path(os.environ.get("TSFM_ANCHORS", "/tmp/tsfm-anchors")) / "bin" / "python"
SHIM_DIR = Path(__file__).resolve().parents[3] / "shared" / "anchors"
FREQS = ["h", "D", "W", "ME"]
OLD_FREQS = {"h": "H", "D": "D", "W": "W", "ME": "M"}  # uni2ts knows only the old aliases


def make_batch(rows: int = 8, length: int = 512, ps: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A packed batch in the reference layout (width 128): per row 4 samples of 128 tokens
    (1, 2 or 4 variates), last ~30% of each variate predicted, 3% missing values."""
    g = np.random.default_rng(seed)
    target = np.zeros((rows, length, 128), np.float32)
    obs = np.zeros((rows, length, 128), bool)
    ids = {k: np.zeros((rows, length), np.int64) for k in ("sample_id", "time_id", "variate_id", "patch_size")}
    pred = np.zeros((rows, length), bool)
    for r in range(rows):
        o = 0
        for s, nv in enumerate([1, 2, 4, 2][: 4], 1):
            n = 128 // nv
            vals = (g.normal(size=(nv, n * ps)).cumsum(-1) + g.normal(0, 10, (nv, 1))).astype(np.float32)
            m = g.random((nv, n * ps)) > 0.03
            target[r, o : o + nv * n, :ps] = np.where(m, vals, 0).reshape(nv * n, ps)
            obs[r, o : o + nv * n, :ps] = m.reshape(nv * n, ps)
            ids["sample_id"][r, o : o + nv * n] = s
            ids["time_id"][r, o : o + nv * n] = np.tile(np.arange(n), nv)
            ids["variate_id"][r, o : o + nv * n] = np.repeat(np.arange(nv), n)
            ids["patch_size"][r, o : o + nv * n] = ps
            pred[r, o : o + nv * n] = np.tile(np.arange(n) >= int(n * 0.7), nv)
            o += nv * n
    out = {"target": target, "observed_mask": obs, "prediction_mask": pred, **ids}
    return {k: torch.from_numpy(v) for k, v in out.items()}


def make_task_batch(corpus: list[Series], rows: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """``rows`` packed rows as our task builder makes them in pretraining (evenly spread over the
    packed rows, from few long to many short samples per row; patch sizes by frequency), widened
    to the reference's 128 columns."""
    task, rng = MoiraiTask(), np.random.default_rng(seed)
    b = task.collate([task(s, rng) for s in corpus])
    pick = torch.linspace(0, b["sample_id"].shape[0] - 1, rows).round().long()  # FFD fills rows longest first
    b = {k: v[pick] for k, v in b.items()}
    for k in ("target", "observed_mask"):
        b[k] = torch.nn.functional.pad(b[k], (0, 128 - b[k].shape[-1]))
    return b


def make_corpus(n: int = 2000, seed: int = 0) -> list[Series]:
    g = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = 1 if i % 4 else int(g.integers(2, 6))
        t = int(g.integers(100, 2000))
        x = g.normal(size=(v, t)).astype(np.float32).cumsum(-1)
        out.append(Series(x, FREQS[i % 4], dataset=f"ds{i % 8}"))
    return out


def timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_ours(ckpt: Path, batch: dict[str, torch.Tensor], real: dict[str, torch.Tensor], corpus: list[Series], args) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    res: dict[str, float] = {}
    narrow = {k: (v[..., :32] if v.ndim == 3 else v) for k, v in batch.items()}  # width = active patch
    width = int(real["patch_size"].max())
    real = {k: (v[..., :width] if v.ndim == 3 else v) for k, v in real.items()}
    model = load_model(ckpt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step_real():
        model(real).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    res["train_real_fp32_tokens_s"] = real["sample_id"].numel() / timed(step_real, args.repeats)
    for dtype in ("fp32", "bf16", "fp32_aten"):
        linear_module._choice = None if dtype != "fp32_aten" else False  # aten: the GEMM library the reference uses
        model = load_model(ckpt).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt, dtype=dtype):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                loss = model(narrow)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = timed(step, args.repeats)
        res[f"train_{dtype}_tokens_s"] = narrow["sample_id"].numel() / t
        if dtype == "fp32":
            res["train_fp32_gflop"] = count_flops(step) / 1e9
            res["train_fp32_gflop_s"] = res["train_fp32_gflop"] / t
    linear_module._choice = None  # back to the default choice (auto)
    a, w = torch.randn(4096, 384), torch.randn(2048, 384)  # an FFN-shaped fp32 GEMM: this machine's ceiling now
    res["gemm_gflop_s"] = 2 * 4096 * 384 * 2048 / 1e9 / timed(lambda: linear(a, w), 10)  # the path tsfm uses
    res["gemm_aten_gflop_s"] = 2 * 4096 * 384 * 2048 / 1e9 / timed(lambda: a @ w.T, 10)  # aten::mm (MKL)
    res["onednn"] = float(linear_module.use_onednn())
    f = load_forecaster(ckpt)
    g = np.random.default_rng(1)
    ctx = [(g.normal(size=512).cumsum() + 50).astype(np.float32) for _ in range(args.series)]
    res["forecast_series_s"] = args.series / timed(
        lambda: f.predict_samples(ctx, 48, num_samples=100, patch_size=32, batch_size=args.series), args.repeats
    )
    task, rng = MoiraiTask(), np.random.default_rng(0)

    def build():
        task.collate([task(corpus[i], rng) for i in range(len(corpus))])

    t = timed(build, args.repeats)
    task.stats.clear()
    build()
    res["task_samples_s"] = len(corpus) / t
    res["task_rows_s"] = task.stats["rows"] / t
    res["task_padding"] = task.padding_fraction
    return res


REF_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import jaxtyping_shim  # noqa: F401  (stands in for jaxtyping.PyTree)
from flop_count import count_flops
from safetensors.torch import load_file
from uni2ts.model.moirai import MoiraiModule, MoiraiForecast, MoiraiPretrain
from uni2ts.loss.packed import PackedNLLLoss
from uni2ts.data.loader import PackCollate
from uni2ts.transform.patch import DefaultPatchSizeConstraints

# pandas >= 2.2 renamed 'H' -> 'h', 'M' -> 'ME', 'T' -> 'min'; uni2ts' table only knows the old
# names, so give it the new ones too (reference process only).
DefaultPatchSizeConstraints.DEFAULT_RANGES.update({"h": (32, 64), "ME": (8, 32), "min": (32, 128), "s": (64, 128)})

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])

def timed(fn, repeats):
    fn(); best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best

res = {}
module = MoiraiModule.from_pretrained(args["ckpt"]).train()
b = load_file(args["batch"])
opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
loss_fn = PackedNLLLoss()
def step():
    distr = module(b["target"], b["observed_mask"], b["sample_id"], b["time_id"], b["variate_id"], b["prediction_mask"], b["patch_size"])
    loss = loss_fn(pred=distr, target=b["target"], prediction_mask=b["prediction_mask"], observed_mask=b["observed_mask"],
                   sample_id=b["sample_id"], variate_id=b["variate_id"])
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
t = timed(step, args["repeats"])
res["train_fp32_tokens_s"] = b["sample_id"].numel() / t
res["train_fp32_gflop"] = count_flops(step) / 1e9
res["train_fp32_gflop_s"] = res["train_fp32_gflop"] / t
r = load_file(args["batch_real"])
def step_real():
    distr = module(r["target"], r["observed_mask"], r["sample_id"], r["time_id"], r["variate_id"], r["prediction_mask"], r["patch_size"])
    loss = loss_fn(pred=distr, target=r["target"], prediction_mask=r["prediction_mask"], observed_mask=r["observed_mask"],
                   sample_id=r["sample_id"], variate_id=r["variate_id"])
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
res["train_real_fp32_tokens_s"] = r["sample_id"].numel() / timed(step_real, args["repeats"])

module.eval()
n = args["series"]
g = np.random.default_rng(1)
ctx = torch.tensor(np.stack([(g.normal(size=512).cumsum() + 50).astype(np.float32) for _ in range(n)]))[..., None]
fc = MoiraiForecast(module=module, prediction_length=48, context_length=512, patch_size=32, num_samples=100,
                    target_dim=1, feat_dynamic_real_dim=0, past_feat_dynamic_real_dim=0)
def forecast():
    with torch.no_grad():
        fc(past_target=ctx, past_observed_target=torch.ones_like(ctx, dtype=torch.bool),
           past_is_pad=torch.zeros(ctx.shape[:2], dtype=torch.bool))
res["forecast_series_s"] = n / timed(forecast, args["repeats"])

corpus = np.load(args["corpus"])
freqs = json.loads(open(args["freqs"]).read())
entries = [{"target": corpus[f"s{i}"], "freq": freqs[i]} for i in range(len(freqs))]
pre = MoiraiPretrain(min_patches=2, min_mask_ratio=0.15, max_mask_ratio=0.5, max_dim=128, num_training_steps=10,
                     num_warmup_steps=0, module=module)
transform = pre.train_transform_map[None]()
collate = PackCollate(max_length=512, seq_fields=MoiraiPretrain.seq_fields, pad_func_map=MoiraiPretrain.pad_func_map)
np.random.seed(0)
stats = {}
def build():
    out = collate([transform({**e}) for e in entries])
    stats["rows"] = out["target"].shape[0]
    stats["padding"] = float((out["sample_id"] == 0).float().mean())
t = timed(build, args["repeats"])
res["task_samples_s"] = len(entries) / t
res["task_rows_s"] = stats["rows"] / t
res["task_padding"] = stats["padding"]
print("RESULT " + json.dumps(res))
"""


def bench_reference(ckpt: Path, batch_file: Path, real_file: Path, corpus: list[Series], tmp: Path, args) -> dict[str, float] | None:
    if not ANCHOR_PY.exists():
        print(f"reference venv not found at {ANCHOR_PY}; skipping the reference (see ../shared/anchors/README.md)")
        return None
    np.savez(tmp / "corpus.npz", **{f"s{i}": s.target for i, s in enumerate(corpus)})
    (tmp / "freqs.json").write_text(json.dumps([OLD_FREQS[s.freq] for s in corpus]))
    (tmp / "ref.py").write_text(REF_SCRIPT)
    cfg = {"ckpt": str(ckpt), "batch": str(batch_file), "batch_real": str(real_file), "corpus": str(tmp / "corpus.npz"), "freqs": str(tmp / "freqs.json"),
           "threads": args.threads, "repeats": args.repeats, "series": args.series}
    env = {**os.environ, "PYTHONPATH": f"{SHIM_DIR}{os.pathsep}{Path(__file__).parent}", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run([str(ANCHOR_PY), str(tmp / "ref.py"), json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=3600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print("reference run failed:\n" + out.stderr[-3000:])
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both sides (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up; best is kept")
    ap.add_argument("--series", type=int, default=64, help="series per forecast call (default 64)")
    ap.add_argument("--corpus", type=int, default=2000, help="series in the task-builder corpus (default 2000)")
    ap.add_argument("--skip-reference", action="store_true", help="measure tsfm only")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = save_pretrained(MoiraiModel(MoiraiConfig(d_model=384, num_layers=6)), tmp / "moirai_small")
        batch = make_batch()
        save_file({k: v.contiguous() for k, v in batch.items()}, str(tmp / "batch.safetensors"))
        corpus = make_corpus(args.corpus)
        real = make_task_batch(corpus)
        save_file({k: v.contiguous() for k, v in real.items() if k != "series_id"}, str(tmp / "real.safetensors"))
        ref = None if args.skip_reference else bench_reference(ckpt, tmp / "batch.safetensors", tmp / "real.safetensors", corpus, tmp, args)
        ours = bench_ours(ckpt, batch, real, corpus, args)
    rows = [
        ("train step fp32 (tokens/s)", "train_fp32_tokens_s", "train_fp32_tokens_s", ">= 2x"),
        ("  counted GFLOP per fp32 step (matmul+attention)", "train_fp32_gflop", "train_fp32_gflop", ""),
        ("  achieved GFLOP/s in the fp32 step", "train_fp32_gflop_s", "train_fp32_gflop_s", ""),
        ("  same, aten GEMMs (TSFM_CPU_LINEAR=aten) [2]", "train_fp32_aten_tokens_s", "train_fp32_tokens_s", ""),
        ("train step bf16 autocast (tokens/s)", "train_bf16_tokens_s", "train_fp32_tokens_s", ">= 1.6x our fp32"),
        ("train step fp32, task-built rows (tokens/s) [1]", "train_real_fp32_tokens_s", "train_real_fp32_tokens_s", ""),
        ("forecast 64x(512->48), 100 samples (series/s)", "forecast_series_s", "forecast_series_s", ">= 2x"),
        ("task builder + packing (samples/s)", "task_samples_s", "task_samples_s", ">= 10x"),
        ("task builder + packing (rows of 512/s)", "task_rows_s", "task_rows_s", ""),
        ("padding fraction", "task_padding", "task_padding", "< 2%"),
    ]
    print(f"\nMoirai small, {args.threads} threads, shared machine (numbers vary with load)\n")
    print(f"{'measure':48s} {'tsfm':>12s} {'reference':>12s} {'ratio':>8s}  target")
    for name, ok, rk, target in rows:
        mine = ours[ok]
        other = ours["train_fp32_tokens_s"] if ok == "train_bf16_tokens_s" else (ref or {}).get(rk)
        fmt = (lambda x: f"{100 * x:.2f}%") if "padding" in ok else (lambda x: f"{x:,.1f}")
        ratio = f"{mine / other:.2f}x" if other and "padding" not in ok else ""
        ref_s = "(ours fp32)" if ok == "train_bf16_tokens_s" else (fmt(other) if other is not None else "n/a")
        print(f"{name:48s} {fmt(mine):>12s} {ref_s:>12s} {ratio:>8s}  {target}")
    n_samples = [len(set(r.tolist()) - {0}) for r in real["sample_id"]]
    print(f"[1] 8 rows of 512 from our task builder on the synthetic corpus: {sum(n_samples) / len(n_samples):.0f} samples "
          f"per row, patch sizes {sorted(set(real['patch_size'].unique().tolist()) - {0})}; informational, the target "
          "is set on the batch above")
    print(f"[2] our step with torch's own fp32 GEMMs (aten::mm, MKL here), as the reference runs; the default row uses "
          f"{'oneDNN' if ours['onednn'] else 'aten'} GEMMs (tsfm.models.layers.linear)")
    tokens = batch["sample_id"].numel()
    ceiling = tokens * ours["gemm_gflop_s"] / ours["train_fp32_gflop"]
    print(f"\nfp32 GEMM on this machine now: {ours['gemm_gflop_s']:.0f} GFLOP/s on tsfm's path, "
          f"{ours['gemm_aten_gflop_s']:.0f} GFLOP/s on aten::mm; at the former our counted step can reach at most "
          f"~{ceiling:,.0f} tokens/s" + (f" ({ceiling / ref['train_fp32_tokens_s']:.2f}x the reference)" if ref else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
