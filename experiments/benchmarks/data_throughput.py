"""Data-layer throughput and memory: sampler + reader + FixedWindowTask on a >= 4 GiB corpus.

Builds (once, cached under --root) an on-disk corpus of >= 1M univariate series with lengths
600..1448 (mean 1024, so 512-step windows fit), split into sub-datasets of 50k series, then prints:

* windows/s in one process (sampler + zero-copy reader + task; no collation), and with collation
  to torch tensors;
* windows/s with 2 DataLoader workers (collated batches);
* peak resident memory (ru_maxrss) of the sampling process and of the workers, against the
  corpus size on disk (memory-mapped; pages handed back past the sampler's page budget);
* KernelSynth series/min.

Both item read modes are measured, each in a fresh process: ``mmap`` (zero-copy views; mapped
pages are handed back past ``--page-budget-mb``, and on kernels that map whole large page-cache
folios per fault every random window then costs a fault) and ``auto``, the default (one pread per
drawn item of up to 65,536 values, views above).

    flock /tmp/tsfm-bench.lock .venv/bin/python experiments/benchmarks/data_throughput.py

Numbers from a shared 2-core machine vary with the load of other processes.
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from tsfm.data.corpus import Corpus
from tsfm.data.datamodule import BatchStream
from tsfm.data.format import write_table
from tsfm.data.sampler import WindowSampler
from tsfm.data.synthetic.kernelsynth import kernelsynth_series
from tsfm.data.tasks import FixedWindowTask

SHARD = 50_000


def build(root: Path, num_series: int) -> list[Path]:
    """Vectorised generation: one Arrow table per 50k-series shard, written with save_to_disk."""
    paths = []
    for k, lo in enumerate(range(0, num_series, SHARD)):
        path = root / f"shard_{k:03d}"
        paths.append(path)
        if (path / "state.json").exists():
            continue
        n = min(SHARD, num_series - lo)
        rng = np.random.default_rng(k)
        lengths = rng.integers(600, 1449, size=n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        values = rng.standard_normal(int(offsets[-1]), dtype=np.float32)
        values += np.sin(np.arange(len(values), dtype=np.float32) * np.float32(2 * np.pi / 24))
        table = pa.table(
            {
                "item_id": pa.array([f"bench_{lo + i}" for i in range(n)]),
                "start": pa.array(np.full(n, np.datetime64("2020-01-01T00:00:00", "s"))),
                "freq": pa.array(["h"] * n),
                "target": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
            }
        )
        write_table(table, path)
        print(f"built {path} ({n} series)", flush=True)
    return paths


def rate(fn, seconds: float) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n / (time.perf_counter() - t0), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--root", default="./data/bench", help="where the benchmark corpus is built once and cached"
    )
    p.add_argument("--num-series", type=int, default=1_100_000)
    p.add_argument("--seconds", type=float, default=15.0, help="duration of each measurement")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--page-budget-mb", type=float, default=256.0)
    p.add_argument("--build-only", action="store_true", help="only build (or check) the cached corpus")
    p.add_argument(
        "--io",
        choices=["mmap", "pread", "auto", "both"],
        default="both",
        help="read mode(s) to measure; both = mmap and auto (the default)",
    )
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # internal: the measuring child
    args = p.parse_args()
    torch.set_num_threads(1)

    if not args.measure:  # build here, measure in a fresh process so the build's memory is not counted
        t0 = time.perf_counter()
        paths = build(Path(args.root), args.num_series)
        disk = sum(f.stat().st_size for path in paths for f in path.glob("*.arrow"))
        print(
            f"corpus: {len(paths)} sub-datasets, {disk / 2**30:.2f} GiB of Arrow files "
            f"({time.perf_counter() - t0:.1f} s to build/check)",
            flush=True,
        )
        if not args.build_only:
            for io in ("mmap", "auto") if args.io == "both" else (args.io,):
                print(f"--- io={io} (fresh process) ---", flush=True)
                subprocess.run([sys.executable, __file__, "--measure", *sys.argv[1:], "--io", io], check=True)
            t0 = time.perf_counter()
            n_ks = 0
            while time.perf_counter() - t0 < args.seconds:
                kernelsynth_series(n_ks)
                n_ks += 1
            print(
                f"KernelSynth (length 1024, 1 thread): {n_ks / (time.perf_counter() - t0) * 60:,.0f} series/min"
            )
        return
    paths = build(Path(args.root), args.num_series)  # all cached: only lists the paths
    disk = sum(f.stat().st_size for path in paths for f in path.glob("*.arrow"))

    t0 = time.perf_counter()
    corpus = Corpus.open(paths, io=args.io)
    n_items = sum(len(d) for d in corpus.datasets)
    print(f"opened {n_items} series in {time.perf_counter() - t0:.1f} s; rss after open {rss_now():.0f} MiB")

    task = FixedWindowTask(448, 64)  # 512-step windows
    sampler = WindowSampler(corpus, task, batch_size=args.batch_size, page_budget_mb=args.page_budget_mb)
    step = iter(range(10**9))

    r_raw, n_raw = rate(lambda: len(sampler.sample(next(step))), args.seconds)
    print(f"1 process, sampler+reader+task (no collate): {r_raw:,.0f} windows/s ({n_raw} windows)")
    r_col, _ = rate(lambda: task.collate(sampler.sample(next(step)))["context"].shape[0], args.seconds)
    print(f"1 process, with collate to torch:            {r_col:,.0f} windows/s")
    peak_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS of the sampling process: {peak_main:.0f} MiB (corpus {disk / 2**30:.2f} GiB on disk, memory-mapped)"
    )

    loader = DataLoader(BatchStream(sampler, start=10**6), batch_size=None, num_workers=2, prefetch_factor=4)
    box = [iter(loader)]
    next(box[0])  # worker start-up excluded
    r_w, _ = rate(lambda: next(box[0])["context"].shape[0], args.seconds)
    box.clear()  # shuts the workers down, so their peak RSS is reported below
    gc.collect()
    time.sleep(0.5)
    print(f"2 DataLoader workers, collated batches:      {r_w:,.0f} windows/s")
    peak_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of a worker process: {peak_workers:.0f} MiB")

    target = "OK" if r_raw >= 50_000 and max(peak_main, peak_workers) < 1536 else "BELOW TARGET"
    print(
        f"io={args.io}: targets (>= 50,000 windows/s in 1 process, peak RSS < 1.5 GiB): {target}", flush=True
    )


def rss_now() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
