"""Fine-tuning memory: peak RSS of LoRA vs full fine-tuning (and head-only) for chronos2_small and
moirai_small, on the real `tsfm.finetune` path.

    python experiments/benchmarks/finetune_memory.py                       # the table (~5 min on 2 cores)
    python experiments/benchmarks/finetune_memory.py --steps 10 --models chronos2_small

Each (model, preset) runs in its own process: a randomly initialised model of that size is exported
once, then fine-tuned for ``--steps`` steps on packaged aus_livestock (monthly, 54 series, held-out
year), batch 32, bf16-mixed, Seasonal Naive as the only baseline. The process's peak resident set
(``ru_maxrss``) includes Python, torch and the data; the increment over a process that only loads the
model and scores zero-shot (``load``) is what training adds: weights' gradients and AdamW moments
(full), or only the adapters' (LoRA).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def export_random(model: str, out: Path) -> tuple[Path, int]:
    """A randomly initialised ``conf/model/<model>.yaml`` model, exported as a checkpoint directory."""
    from hydra.utils import instantiate

    from tsfm.finetune.run import compose_train
    from tsfm.utils.config import to_plain

    cfg = compose_train([f"model={model}"])
    module = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
    module.save_pretrained(out)
    n = sum(p.numel() for p in module.model.parameters())
    return out, n


def worker(ckpt: str, preset: str, steps: int, out: str) -> None:
    import resource

    from tsfm.data.packaged import packaged_frame
    from tsfm.finetune import finetune
    from tsfm.forecast import load_forecaster

    df = packaged_frame("aus_livestock")
    f = load_forecaster(ckpt)
    if preset == "load":
        from tsfm.finetune.data import hold_out, load_series

        h = hold_out(load_series(df), 12)
        f.predict_quantiles([s.target[0] for s in h.full], 12)
        res = None
    else:
        res = finetune(f, ckpt, df, 12, out, preset=preset, lr=1e-4, max_steps=steps, eval_every=steps,
                       batch_size=32, baselines=("seasonal_naive",), plot=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainable = None
    if res is not None:
        import torch

        ckpts = sorted((Path(out) / "train" / "checkpoints").glob("*.ckpt"))
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)["state_dict"] if ckpts else {}
        trainable = sum(v.numel() for k, v in state.items() if "lora_" in k) if preset == "lora" else None
    print(json.dumps({"peak_mb": peak_mb, "lora_params": trainable}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["chronos2_small", "moirai_small"])
    ap.add_argument("--presets", nargs="+", default=["load", "full", "lora", "head"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--worker", nargs=3, metavar=("CKPT", "PRESET", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.steps, args.worker[2])
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            ckpt, n = export_random(model, Path(tmp) / model)
            base = None
            for preset in args.presets:
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--worker", str(ckpt), preset,
                       str(Path(tmp) / f"{model}-{preset}")]
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ})
                if out.returncode != 0:
                    raise SystemExit(f"{model} {preset} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                base = r["peak_mb"] if preset == "load" else base
                rows.append((model, n, preset, r["peak_mb"], None if base is None else r["peak_mb"] - base))
                print(f"{model:16s} {n / 1e6:6.1f}M params  {preset:5s}  peak RSS {r['peak_mb']:8.0f} MiB"
                      + ("" if base is None or preset == "load" else f"  (+{r['peak_mb'] - base:.0f} MiB over load)"),
                      flush=True)
    print("\n| model | params | preset | peak RSS (MiB) | over load-only (MiB) |\n|---|---|---|---|---|")
    for model, n, preset, peak, extra in rows:
        print(f"| {model} | {n / 1e6:.1f}M | {preset} | {peak:.0f} | {'' if preset == 'load' else f'{extra:.0f}'} |")


if __name__ == "__main__":
    main()
