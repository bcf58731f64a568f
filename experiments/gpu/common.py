"""Helpers shared by the GPU check's sections, and its JSON / Markdown output
(``gpu_check.json``, ``gpu_check.md``: one table per section, its notes under it)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]


def shared_dir(name: str) -> Path:
    """``../shared/<name>`` beside the checkout (or ``shared/<name>`` inside it, as on a device copy)."""
    for base in (ROOT.parent / "shared", ROOT / "shared"):
        if (base / name).is_dir():
            return base / name
    return ROOT.parent / "shared" / name


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels (timing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def status_of(rows: list[dict]) -> str:
    """``ok`` if every row is, ``error`` if none is, ``partial`` otherwise."""
    states = {r.get("status") for r in rows}
    return "ok" if states <= {"ok"} else ("error" if "ok" not in states else "partial")

# per section: the columns of its Markdown table (missing values print as "")
COLUMNS = {
    "equivalence": ["family", "tensor", "atol", "rtol", "cpu_vs_fixture", "device_vs_fixture", "device_vs_cpu",
                    "status", "note", "error"],
    "train": ["family", "model", "run", "batch_size", "status", "step_ms", "tokens_per_s", "peak_mem_gib",
              "gflop_per_step", "mfu_pct", "vs_eager", "mem_vs_eager", "first_step_s", "error"],
    "fsdp": ["family", "model", "run", "batch_size", "status", "sharded", "weights_changed", "reload_identical",
             "loss_rel_diff", "step_ms", "error"],
    "compile": ["family", "model", "backend", "status", "step_ms", "train_speedup", "first_step_s", "graph_breaks",
                "unique_graphs", "forecast_ok", "forecast_speedup", "forecast_max_abs_diff", "note", "error",
                "forecast_error"],
    "reference": ["scenario", "unit", "status", "tsfm_rate", "reference_rate", "speedup", "reference", "error"],
}  # fmt: skip


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-2 or abs(v) >= 1e5) and v != 0 else f"{v:,.4g}"
    return str(v).replace("|", "/").replace("\n", " ")


def to_markdown(report: dict) -> str:
    env = report["environment"]
    title = "dry run on the CPU" if env.get("dry_run") else f"{env.get('gpu')}"
    lines = [f"# tsfm GPU check: {title}", "",
             f"torch {env['torch']}, CUDA {env.get('cuda')}, device {env['device']}; MFU peak: {env['peak_source']}",
             ""]  # fmt: skip
    if env.get("note"):
        lines += [f"_{env['note']}_", ""]
    for name, sec in report["sections"].items():
        lines += [f"## {name}: {sec.get('status')} ({sec.get('seconds', '?')} s)", ""]
        if sec.get("error"):
            lines += [f"**section failed**: `{_fmt(sec['error'])}`", ""]
        rows = sec.get("rows", [])
        cols = [c for c in COLUMNS.get(name, sorted({k for r in rows for k in r})) if any(c in r for r in rows)]
        if rows and cols:
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
            lines.append("")
        lines += [f"- {n}" for n in sec.get("notes", [])]
        lines.append("")
    if "total_seconds" in report:
        lines.append(f"Total: {report['total_seconds']} s")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out = Path(out)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(to_markdown(report))
    return json_path, md_path
