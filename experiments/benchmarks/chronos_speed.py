"""Chronos-T5 forecast throughput: tsfm vs chronos-forecasting 2.3.2, same weights, one run.

A random model of the requested size is exported with tsfm's exporter; the reference
``ChronosPipeline.from_pretrained`` loads that directory in its own venv (a subprocess with
``--ref-python``), so both sides run the same weights, tokenizer and sampling settings. Timed:

* ``reference``: ``ChronosPipeline.predict`` (transformers ``generate``, ``num_return_sequences``);
* ``tsfm``: ``ChronosForecaster.predict_samples`` (encoder once, KV-cached decoder over
  series x samples, cross-attention keys/values shared by the samples of a series);
* ``tsfm+generate``: our T5 driven by transformers ``generate`` (what the reference does).

With the same seed, tsfm's sampler consumes the RNG exactly as ``generate`` does, so the
fraction of identical sampled values against the reference is also reported (1.0 means the
per-step probabilities matched bit for bit; anything else is float rounding at the top-k edge).

Run under the shared lock:  flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/chronos_speed.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig

from tsfm.forecast import load_forecaster
from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.convert import save_pretrained
from tsfm.models.chronos.model import ChronosModel

REF_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from chronos import ChronosPipeline
d, threads, h, s, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
pipe = ChronosPipeline.from_pretrained(d, torch_dtype=torch.float32)
ctx = [torch.tensor(x) for x in np.load(d + "/bench_context.npy")]
pipe.predict(ctx[:1], prediction_length=4, num_samples=2)  # warm-up
torch.manual_seed(seed)
t = time.perf_counter()
out = pipe.predict(ctx, prediction_length=h, num_samples=s)
sec = time.perf_counter() - t
np.save(d + "/bench_reference.npy", out.numpy())
print(json.dumps({"seconds": sec}))
"""


def run_reference(ref_python: str, model_dir: Path, args: argparse.Namespace) -> float:
    cmd = [
        ref_python,
        "-c",
        REF_SCRIPT,
        str(model_dir),
        str(args.threads),
        str(args.horizon),
        str(args.samples),
        "0",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help="paper size: tiny, mini, small, base, large")
    p.add_argument("--series", type=int, default=32)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both sides")
    p.add_argument(
        "--ref-python", default="/tmp/tsfm-anchors/bin/python", help="python of the reference venv"
    )
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument(
        "--skip-generate", action="store_true", help="skip tsfm+generate (needs ~S x the KV memory)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    context = (rng.normal(size=(args.series, args.context)).cumsum(-1) + 50).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_pretrained(
            ChronosModel(ChronosConfig.from_name(args.size, initializer_factor=1.0)), Path(tmp)
        )
        np.save(model_dir / "bench_context.npy", context)
        rows = []
        ref_s = None
        if not args.skip_reference:
            ref_s = run_reference(args.ref_python, model_dir, args)
            rows.append(("reference (chronos-forecasting 2.3.2)", ref_s))

        f = load_forecaster(model_dir)
        f.predict_samples(list(context[:1]), prediction_length=4, num_samples=2)  # warm-up
        torch.manual_seed(0)
        t = time.perf_counter()
        ours = f.predict_samples(list(context), prediction_length=args.horizon, num_samples=args.samples)
        rows.append(("tsfm (KV cache, shared cross-attn K/V)", time.perf_counter() - t))

        if not args.skip_generate:
            m = f.model
            ids, mask, _ = m.tokenizer.context_input_transform(torch.from_numpy(context))
            gen = GenerationConfig(min_new_tokens=args.horizon, max_new_tokens=args.horizon, do_sample=True,
                                   num_return_sequences=args.samples, eos_token_id=1, pad_token_id=0, top_k=50)  # fmt: skip
            t = time.perf_counter()
            with torch.no_grad():
                m.t5.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
            rows.append(("tsfm model + transformers generate", time.perf_counter() - t))

        base = ref_s or rows[0][1]
        print(f"\nChronos-T5 {args.size}: {args.series} series, context {args.context}, horizon {args.horizon}, "
              f"{args.samples} samples, fp32, {args.threads} thread(s), CPU (shared machine)")  # fmt: skip
        print(f"{'implementation':<42}{'seconds':>10}{'series/s':>11}{'speed-up':>10}")
        for name, sec in rows:
            print(f"{name:<42}{sec:>10.2f}{args.series / sec:>11.3f}{base / sec:>9.2f}x")
        if ref_s is not None:
            ref = np.load(model_dir / "bench_reference.npy")
            same = float((ref == ours).mean())
            print(f"\nsame seed: {same:.4f} of sampled values identical to the reference; "
                  f"median |diff| of per-step medians {np.abs(np.median(ref, 1) - np.median(ours, 1)).mean():.4g}")  # fmt: skip


if __name__ == "__main__":
    main()
