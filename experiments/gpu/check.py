"""The GPU path, proven in one run: equivalence, training, FSDP2, compile, references side by side.

    python experiments/gpu/check.py                  # on a CUDA machine (make gpu-check); <= 8 minutes on one GPU
    python experiments/gpu/check.py --dry-run        # the same script end to end on the CPU at tiny sizes (CI)
    python experiments/gpu/check.py --out DIR        # where gpu_check.json / gpu_check.md go (default $OUT or .)

Sections (each independent: one failing section, or one family's out-of-memory error, does not
stop the others; a failure is reported with its reason):

* equivalence: every family's golden-fixture cases in float32 (TF32 off) on the device, compared
  with the fixture and with the CPU results at the fixture README's float32 tolerances;
* train: each family's small size, 50 steps with ``trainer=gpu`` (bf16-mixed), then with
  ``model.module.gradient_checkpointing=true``: step time, tokens/s, peak memory, MFU;
* fsdp: ``trainer=fsdp_64gpu`` shrunk to a 1-GPU mesh (same ``ModelParallelStrategy`` path)
  trains, exports, and the export reloads on the CPU with identical outputs;
* reference: uni2ts / chronos-forecasting on the same GPU in subprocesses (anchors venv), ratios;
* compile: ``model.compile=true`` trains and forecasts; speed-up over eager, or the reason.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent / "benchmarks"), str(ROOT)]  # siblings, flop_count, tsfm

import torch  # noqa: E402
from common import free_memory, write_report  # noqa: E402

SECTIONS = ("equivalence", "train", "fsdp", "reference", "compile")  # compile last: the longest and least predictable
FAMILIES = ("moirai", "chronos", "chronos2", "baseline")
# Dense bf16 tensor-core peaks (no sparsity) from the vendors' data sheets, matched in order
# against torch.cuda.get_device_name(); --peak-tflops overrides.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0),
    ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L4", 121.0), ("A10G", 70.0), ("RTX 4090", 165.0), ("A6000", 155.0),
)  # fmt: skip
CPU_BF16_PEAK_TFLOPS = 0.4  # docs/architecture.md: this 2-core CPU, bf16 matmul through oneDNN (~400 GFLOP/s)


@dataclass
class Settings:
    """Sizes of one run: the real check on a GPU, or the tiny CPU dry run."""

    dry_run: bool
    device: str
    out: Path
    families: list[str]
    sections: list[str]
    steps: int = 50
    warmup: int = 5  # timed steps start after these (and after the FLOP-counted step)
    compile_warmup: int = 15  # compile runs: first steps compile / recompile
    # the generated corpus at this fraction of its series (data.series_scale): the check times steps, not data, and
    # building the full default corpus took ~55 s of the CPU dry run's ~95 s
    series_scale: float = 0.05
    num_workers: int = 4
    compile_backend: str = "inductor"
    peak_tflops: float | None = None
    peak_source: str = ""
    anchors: Path = Path(os.environ.get("TSFM_ANCHORS", "/tmp/tsfm-anchors"))
    budget_s: float = 420.0
    models: dict[str, str] = field(default_factory=dict)
    batch: dict[str, int] = field(default_factory=dict)
    overrides: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    shared: dict = field(default_factory=dict)  # results one section hands to another (eager step times)

    def time_left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)


def make_settings(args: argparse.Namespace) -> Settings:
    fams = [f for f in args.families.split(",") if f]
    bad = sorted(set(fams) - set(FAMILIES)) + sorted(set(args.sections.split(",")) - set(SECTIONS))
    if bad:
        raise SystemExit(f"unknown families/sections {bad}; families: {FAMILIES}, sections: {SECTIONS}")
    common = dict(out=args.out, families=fams, sections=args.sections.split(","), anchors=args.anchors)
    if args.dry_run:
        s = Settings(dry_run=True, device="cpu", steps=4, warmup=1, compile_warmup=2, series_scale=0.01, num_workers=0,
                     compile_backend="aot_eager", budget_s=float("inf"), **common)  # fmt: skip
        s.models = {"moirai": "moirai_tiny", "chronos": "chronos_tiny", "chronos2": "chronos2_tiny",
                    "baseline": "baseline_enc_tiny"}  # fmt: skip
        s.batch = dict.fromkeys(FAMILIES, 4)
        s.overrides = {
            "moirai": ["model.max_seq_len=128"],
            "chronos": ["model.context_length=64", "model.prediction_length=16", "model.module.config.num_layers=1",
                        "model.module.config.num_decoder_layers=1", "model.module.config.d_model=64"],
            "chronos2": ["model.context_length=128", "model.prediction_length=16"],
            "baseline": ["model.context_length=128", "model.prediction_length=32"],
        }  # fmt: skip
        s.peak_tflops, s.peak_source = CPU_BF16_PEAK_TFLOPS, "CPU bf16 oneDNN peak ~0.4 TFLOP/s (docs/architecture.md)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or use --dry-run to check the script on the CPU")
        s = Settings(dry_run=False, device="cuda", budget_s=args.budget_s, **common)
        s.models = {"moirai": "moirai_small", "chronos": "chronos_small", "chronos2": "chronos2_small",
                    "baseline": "baseline_enc_small"}  # fmt: skip
        s.batch = {"moirai": 128, "chronos": 64, "chronos2": 64, "baseline": 256}
        s.overrides = dict.fromkeys(FAMILIES, [])
        name = torch.cuda.get_device_name()
        match = next(((k, v) for k, v in BF16_PEAK_TFLOPS if k.lower() in name.lower()), None)
        if match:
            s.peak_tflops, s.peak_source = match[1], f"{name}: {match[1]:g} TFLOP/s dense bf16 ({match[0]} data sheet)"
        else:
            s.peak_source = f"{name}: not in the table of known peaks; pass --peak-tflops for MFU"
    if args.batch_size:
        s.batch = dict.fromkeys(FAMILIES, args.batch_size)
    if args.steps:
        s.steps = args.steps
    if args.peak_tflops:
        s.peak_tflops, s.peak_source = args.peak_tflops, f"--peak-tflops {args.peak_tflops:g}"
    return s


def run_section(name: str, fn: Callable[[Settings], dict], s: Settings) -> dict:
    """Run one section; any exception becomes an ``error`` entry with its reason."""
    t0 = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        result = fn(s)
    except Exception as e:  # noqa: BLE001 - a section must never stop the others
        result = {"status": "error", "error": f"{type(e).__name__}: {e}"[:800],
                  "traceback": traceback.format_exc()[-3000:], "rows": []}  # fmt: skip
    free_memory()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"   {name}: {result.get('status')} in {result['seconds']} s", flush=True)
    return result


def environment(s: Settings) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": s.device, "dry_run": s.dry_run, "peak_tflops": s.peak_tflops, "peak_source": s.peak_source,
           "compile_backend": s.compile_backend, "steps": s.steps, "families": s.families}  # fmt: skip
    if s.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported()}  # fmt: skip
    else:
        env |= {"gpu": None, "cpu_threads": torch.get_num_threads(),
                "note": "dry run: CPU, tiny sizes; CUDA-only checks are marked 'skipped (needs CUDA)'"}  # fmt: skip
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_path", nargs="?", type=Path, help="output folder (same as --out)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: $OUT, else the current folder)")
    ap.add_argument("--dry-run", action="store_true", help="run everything on the CPU at tiny sizes (checks the script)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: all four)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--steps", type=int, default=0, help="training steps per run (default 50; dry run 4)")
    ap.add_argument("--batch-size", type=int, default=0, help="one batch size for every family (default: per family)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="device bf16 peak for MFU (default: known table)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="GPU: skip remaining runs past this many seconds")
    ap.add_argument("--anchors", type=Path, default=Path(os.environ.get("TSFM_ANCHORS", "/tmp/tsfm-anchors")),
                    help="reference venv made by ../shared/anchors/setup_anchors.sh")  # fmt: skip
    args = ap.parse_args(argv)
    args.out = args.out or args.out_path or Path(os.environ.get("OUT") or ".")
    s = make_settings(args)
    s.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROJECT_ROOT", str(s.out / "work"))  # corpus cache + run dirs under the output folder

    import equivalence
    import fsdp
    import references
    import training

    fns = {"equivalence": equivalence.run, "train": training.run_train, "fsdp": fsdp.run,
           "compile": training.run_compile, "reference": references.run}  # fmt: skip
    report = {"environment": environment(s), "settings": {k: str(v) for k, v in asdict(s).items()}, "sections": {}}
    for name in SECTIONS:
        if name in s.sections:
            report["sections"][name] = run_section(name, fns[name], s)
            write_report(report, s.out)  # partial results survive a later crash or timeout
    report["total_seconds"] = round(time.monotonic() - s.started, 1)
    json_path, md_path = write_report(report, s.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
