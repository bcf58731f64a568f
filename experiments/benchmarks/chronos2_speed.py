"""Chronos-2 speed: tsfm vs the reference chronos-forecasting 2.3.2, same weights, one run.

A random model of the ``chronos2_small`` shape (6 layers, d_model 512) is exported with our
exporter and loaded by both sides (the reference through ``Chronos2Pipeline.from_pretrained``
in the anchors venv, run as a subprocess). Scenarios:

* forecast throughput: 256 univariate series, horizon 64, context 512 and 2048, fp32;
* training step (forward + backward + AdamW) at batch 32, context 512, horizon 64, fp32 and
  bf16 autocast;
* group-attention cost curve: model forward for B = 64, 256, 1024 series (context 128) with
  singleton groups and groups of 4 rows.

Times are the minimum over repeats (wall clock) plus process CPU seconds; the machine is
shared, so run it under ``flock /tmp/tsfm-bench.lock`` and read ratios, not absolutes::

    flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/chronos2_speed.py
    ... --quick      # fewer repeats, skips B=1024 and context 2048
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from flop_count import count_flops

import tsfm.models.layers.linear as linear_module
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.convert import load_model, save_pretrained
from tsfm.models.chronos2.forecast import Chronos2Forecaster
from tsfm.models.chronos2.model import Chronos2Model

WORKER = Path(__file__).with_name("chronos2_reference_worker.py")
ANCHOR_PY = "/tmp/tsfm-anchors/bin/python"


def run_reference(spec: dict) -> dict | None:
    try:
        r = subprocess.run([ANCHOR_PY, str(WORKER), json.dumps(spec)], capture_output=True, text=True, check=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"reference run failed for {spec['kind']}: {getattr(e, 'stderr', e)!s:.500}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_ours(spec: dict) -> dict:
    """``{"times": seconds per repeat, "gflop": counted GFLOP of one call}``."""
    torch.manual_seed(0)
    linear_module._choice = False if spec.get("linear") == "aten" else None  # aten: the reference's GEMM library
    rng = np.random.default_rng(spec.get("seed", 0))
    b, t, h = spec["batch"], spec["context"], spec["horizon"]
    x = rng.standard_normal((b, t + h)).astype(np.float32).cumsum(-1)
    model = load_model(spec["model_dir"])
    n = -(-h // 16)
    times, flops = [], 0
    if spec["kind"] == "forecast":
        f = Chronos2Forecaster(model)
        inputs = list(x[:, :t])
        f.predict_quantiles(inputs[:8], h)
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            f.predict_quantiles(inputs, h, batch_size=spec.get("batch_size", 256))
            times.append(time.perf_counter() - t0)
        flops = count_flops(lambda: f.predict_quantiles(inputs, h, batch_size=spec.get("batch_size", 256)))
    elif spec["kind"] == "forward":
        ctx, gids = torch.from_numpy(x[:, :t]), torch.arange(b) // spec["group_size"]
        with torch.no_grad():
            model(ctx[:8], group_ids=gids[:8], num_output_patches=n)
            for _ in range(spec["repeats"]):
                t0 = time.perf_counter()
                model(ctx, group_ids=gids, num_output_patches=n)
                times.append(time.perf_counter() - t0)
            flops = count_flops(lambda: model(ctx, group_ids=gids, num_output_patches=n))
    elif spec["kind"] == "train":
        model.train()
        ctx, fut, gids = torch.from_numpy(x[:, :t]), torch.from_numpy(x[:, t:]), torch.arange(b)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        dtype = getattr(torch, spec.get("autocast") or "float32")
        def step() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = model(ctx, group_ids=gids, num_output_patches=n, future_target=fut).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for i in range(spec["repeats"] + 1):
            t0 = time.perf_counter()
            step()
            if i:
                times.append(time.perf_counter() - t0)
        flops = count_flops(step)
    return {"times": times, "gflop": flops / 1e9}


def _wall(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats; skip B=1024 and context 2048")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides (default 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of scenario groups: forecast,train,groups")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = 2 if args.quick else args.repeats
    only = set(args.only.split(",")) if args.only else {"forecast", "train", "groups"}

    tmp = Path(tempfile.mkdtemp(prefix="chronos2_bench_"))
    torch.manual_seed(0)
    cfg = Chronos2Config(d_model=512, d_kv=64, d_ff=2048, num_heads=8, num_layers=6, context_length=8192,
                         max_output_patches=64, initializer_factor=0.25)  # fmt: skip
    model_dir = save_pretrained(Chronos2Model(cfg), tmp / "small")
    base = {"model_dir": str(model_dir), "threads": args.threads, "repeats": reps}

    scenarios: list[tuple[str, dict, int]] = []  # (label, spec, items per call)
    if "forecast" in only:
        for ctx in (512,) if args.quick else (512, 2048):
            scenarios.append((f"forecast B=256 ctx={ctx} H=64 fp32", {"kind": "forecast", "batch": 256, "context": ctx, "horizon": 64}, 256))
        scenarios.append(("  same ctx=512, aten GEMMs [1]", {"kind": "forecast", "batch": 256, "context": 512, "horizon": 64, "linear": "aten"}, 256))
    if "train" in only:
        for dt in ("float32", "bfloat16"):
            scenarios.append((f"train step B=32 ctx=512 H=64 {dt}", {"kind": "train", "batch": 32, "context": 512, "horizon": 64, "autocast": dt}, 32))
        scenarios.append(("  same float32, aten GEMMs [1]", {"kind": "train", "batch": 32, "context": 512, "horizon": 64, "autocast": "float32", "linear": "aten"}, 32))
    if "groups" in only:
        for b in (64, 256) if args.quick else (64, 256, 1024):
            for g in (1, 4):
                scenarios.append((f"forward B={b} ctx=128 groups of {g}", {"kind": "forward", "batch": b, "context": 128, "horizon": 64, "group_size": g}, b))

    rows, ref_cache = [], {}
    for label, spec, items in scenarios:
        spec = base | spec
        key = json.dumps({k: v for k, v in spec.items() if k != "linear"}, sort_keys=True)  # same reference run
        ref = ref_cache[key] if key in ref_cache else ref_cache.setdefault(key, run_reference(spec))
        ours = run_ours(spec)
        r_best = min(ref["times"]) if ref else float("nan")
        o_best = min(ours["times"])
        r_gflop = ref["gflop"] if ref else float("nan")
        rows.append({"scenario": label, "ref_s": r_best, "ours_s": o_best, "ref_items_per_s": items / r_best,
                     "ours_items_per_s": items / o_best, "speedup": r_best / o_best,
                     "ref_gflop": r_gflop, "ours_gflop": ours["gflop"]})  # fmt: skip
        print(f"{label:<40} ref {r_best:8.3f}s  ours {o_best:8.3f}s  speed-up {r_best / o_best:5.2f}x", flush=True)

    linear_module._choice = None
    a, w = torch.randn(9472, 512), torch.randn(2048, 512)  # an FFN-shaped fp32 GEMM: the ceiling now
    rates = {}
    for name, fn in (("tsfm", lambda: linear_module.linear(a, w)), ("aten", lambda: a @ w.T)):
        fn()
        rates[name] = 2 * a.shape[0] * 512 * 2048 / 1e9 / min(_wall(fn) for _ in range(10))
    gemm = rates["tsfm"]
    print(f"\nChronos-2 small shape, {args.threads} threads, min over {reps} repeats (shared machine)")
    print("GFLOP: matmuls + attention counted by torch.utils.flop_counter per call; fp32 GEMM now "
          f"{gemm:.0f} GFLOP/s on tsfm's path ({'oneDNN' if linear_module.use_onednn() else 'aten'}), "
          f"{rates['aten']:.0f} on aten::mm; ceiling = the speed-up if our GFLOP ran at the former (fp32 rows)")
    print("[1] our side with torch's own fp32 GEMMs (aten::mm, MKL here) as the reference runs "
          "(TSFM_CPU_LINEAR=aten; see tsfm.models.layers.linear)")
    print(f"{'scenario':<40} {'reference/s':>12} {'tsfm/s':>10} {'speed-up':>9} {'GFLOP ref':>10} {'tsfm':>8}"
          f" {'GFLOP/s ref':>12} {'tsfm':>6} {'ceiling':>8}")
    for r in rows:
        rate = rates["aten"] if "aten" in r["scenario"] else gemm
        ceiling = f"{r['ref_s'] / (r['ours_gflop'] / rate):7.2f}x" if "bfloat16" not in r["scenario"] else "     n/a"
        print(f"{r['scenario']:<40} {r['ref_items_per_s']:12.1f} {r['ours_items_per_s']:10.1f} {r['speedup']:8.2f}x"
              f" {r['ref_gflop']:10.1f} {r['ours_gflop']:8.1f} {r['ref_gflop'] / r['ref_s']:12.0f}"
              f" {r['ours_gflop'] / r['ours_s']:6.0f} {ceiling}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
