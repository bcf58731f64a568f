"""Model registry (tsfm.registry, MLflow on SQLite): register + load-by-alias round trip, and 10
concurrent registrations of one name.

    python experiments/benchmarks/registry_roundtrip.py                       # the tiny Chronos-2 test fixture
    python experiments/benchmarks/registry_roundtrip.py --ckpt logs/train/runs/<time>/export

Everything happens in a fresh registry in a temporary directory (``--keep DIR`` to keep it). Prints:

* first use: the first registration into a new database (MLflow creates its schema then);
* round trip (target < 2 s): ``register`` + ``promote(..., "production")`` +
  ``load_forecaster("models:/NAME@production")`` + one forecast, in a process that has imported
  tsfm and MLflow already (median and max of ``--repeats``), and the same as a fresh
  ``python -c`` process (imports included);
* 10 concurrent registrations of one name by 10 spawned processes (and 10 threads) into a new
  registry: whether the versions are distinct and exactly 1..10, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CKPT = ROOT / "tests" / "fixtures" / "chronos2_tiny" / "checkpoint"
CTX = [np.sin(np.arange(256) / 6.0).astype(np.float32)]


def round_trip(ckpt: Path, uri: str, name: str) -> tuple[float, dict[str, float]]:
    from tsfm.forecast import load_forecaster
    from tsfm.registry import promote, register

    t0 = time.perf_counter()
    version = register(ckpt, name, uri=uri)
    t1 = time.perf_counter()
    promote(name, version, "production", uri=uri)
    t2 = time.perf_counter()
    forecaster = load_forecaster(f"models:/{name}@production", registry_uri=uri)
    t3 = time.perf_counter()
    forecaster.predict_quantiles(CTX, prediction_length=16)
    t4 = time.perf_counter()
    return t4 - t0, {"register": t1 - t0, "promote": t2 - t1, "load": t3 - t2, "forecast": t4 - t3}


def cold_round_trip(ckpt: Path, uri: str, name: str) -> float:
    code = (f"from tsfm.registry import register, promote; from tsfm.forecast import load_forecaster; "
            f"v = register({str(ckpt)!r}, {name!r}, uri={uri!r}); promote({name!r}, v, 'production', uri={uri!r}); "
            f"load_forecaster('models:/{name}@production', registry_uri={uri!r})")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def concurrent(ckpt: Path, uri: str, name: str, n: int, mode: str) -> dict:
    from tsfm.registry import get_model, register

    job = partial(register, str(ckpt), uri=uri)
    t0 = time.perf_counter()
    if mode == "processes":
        with mp.get_context("spawn").Pool(n) as pool:
            versions = pool.map(job, [name] * n)
    else:
        with ThreadPoolExecutor(n) as pool:
            versions = list(pool.map(job, [name] * n))
    wall = time.perf_counter() - t0
    stored = [v.version for v in get_model(name, uri=uri).versions]
    return {"mode": mode, "n": n, "versions": sorted(versions), "distinct": len(set(versions)) == n,
            "exactly_1_to_n": sorted(versions) == list(range(1, n + 1)) == stored, "seconds": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="checkpoint directory to register")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--keep", type=Path, default=None, help="keep the registries in this directory")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    from tsfm.registry import default_uri  # noqa: F401 - imports tsfm before timing

    work = args.keep or Path(tempfile.mkdtemp(prefix="tsfm-registry-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'roundtrip' / 'mlflow.db'}"
    size_mb = (args.ckpt / "model.safetensors").stat().st_size / 2**20
    print(f"checkpoint: {args.ckpt} ({size_mb:.1f} MiB of weights); registries under {work}")

    first, _ = round_trip(args.ckpt, uri, "warmup")
    print(f"first use (creates the database, imports MLflow): {first:.2f} s")
    runs = [round_trip(args.ckpt, uri, "bench") for _ in range(args.repeats)]
    totals = [t for t, _ in runs]
    parts = {k: statistics.median(p[k] for _, p in runs) for k in runs[0][1]}
    med = statistics.median(totals)
    print(f"round trip register + promote + load by alias + forecast: median {med:.3f} s, max {max(totals):.3f} s "
          f"over {args.repeats} (target < 2 s: {'met' if max(totals) < 2 else 'NOT met'})")
    print("  median parts: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts.items()))
    cold = cold_round_trip(args.ckpt, uri, "cold")
    print(f"the same as a fresh python process (imports of torch, tsfm and MLflow included): {cold:.2f} s")

    results = {"checkpoint": str(args.ckpt), "weights_mib": round(size_mb, 2), "first_use_s": round(first, 3),
               "round_trip_median_s": round(med, 3), "round_trip_max_s": round(max(totals), 3),
               "round_trip_parts_s": {k: round(v, 4) for k, v in parts.items()}, "cold_process_s": round(cold, 2)}
    for mode in ("processes", "threads"):
        res = concurrent(args.ckpt, f"sqlite:///{work / mode / 'mlflow.db'}", "concurrent", args.concurrency, mode)
        print(f"{res['n']} concurrent registrations ({mode}, new registry): versions {res['versions']}, distinct: "
              f"{res['distinct']}, exactly 1..{res['n']}: {res['exactly_1_to_n']}, {res['seconds']:.1f} s")
        results[f"concurrent_{mode}"] = res
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
