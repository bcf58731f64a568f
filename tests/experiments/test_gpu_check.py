"""``experiments/gpu/check.py --dry-run``: the GPU check runs end to end on the CPU (tiny sizes)
and writes its JSON and Markdown reports with every section and family (~50 s here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ["moirai", "chronos", "chronos2", "baseline"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OUT": str(out), "TSFM_ANCHORS": str(out / "no-anchors")}  # references absent on purpose
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu" / "check.py"), "--dry-run"],
                         cwd=out, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def _rows(report: dict, section: str) -> list[dict]:
    return report["sections"][section]["rows"]


def test_every_section_ran_and_is_in_both_files(report):
    data, md = report
    assert list(data["sections"]) == ["equivalence", "train", "fsdp", "reference", "compile"]
    assert data["environment"]["dry_run"] is True and data["environment"]["device"] == "cpu"
    for name in data["sections"]:
        assert f"## {name}:" in md
        assert "error" not in data["sections"][name], data["sections"][name].get("traceback")


def test_equivalence_cpu_matches_fixtures_and_device_columns_are_skipped(report):
    data, md = report
    rows = _rows(data, "equivalence")
    assert {r["family"] for r in rows} == set(FAMILIES)
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert all(r["note"] == "skipped (needs CUDA)" and r["device_vs_cpu"] is None for r in rows)
    assert "skipped (needs CUDA)" in md


def test_training_rows_have_speed_memory_and_mfu(report):
    rows = _rows(report[0], "train")
    assert [(r["family"], r["run"]) for r in rows] == [(f, run) for f in FAMILIES for run in ("bf16", "bf16+AC")]
    for r in rows:
        assert r["status"] == "ok", r
        assert r["step_ms"] > 0 and r["tokens_per_s"] > 0 and 0 < r["mfu_pct"] < 100
        assert "peak_mem_gib" in r  # None on the CPU
    assert all("vs_eager" in r for r in rows if r["run"] == "bf16+AC")


def test_fsdp2_export_reloads_identically(report):
    rows = _rows(report[0], "fsdp")
    assert [r["family"] for r in rows] == FAMILIES
    for r in rows:
        assert r["status"] == "ok" and r["sharded"] and r["weights_changed"], r
        assert r["reload_identical"] and r["loss_rel_diff"] < 1e-4


def test_compile_trains_and_forecasts(report):
    rows = _rows(report[0], "compile")
    assert [r["family"] for r in rows] == FAMILIES
    for r in rows:
        assert r["status"] == "ok" and r["backend"] == "aot_eager", r
        assert r["forecast_ok"] and r["train_speedup"] > 0 and r["forecast_speedup"] > 0


def test_references_absent_are_reported_not_fatal(report):
    data, md = report
    rows = _rows(data, "reference")
    assert len(rows) == 5 and all(r["status"] == "ok" and r["tsfm_rate"] > 0 for r in rows)
    assert all("reference not installed" in r["reference"] for r in rows)
    assert "reference not installed" in md


ANCHORS = Path(os.environ.get("TSFM_ANCHORS", "/tmp/tsfm-anchors"))


@pytest.mark.slow
@pytest.mark.skipif(not (ANCHORS / "bin" / "python").exists(), reason="anchors venv not installed (setup_anchors.sh)")
def test_reference_worker_runs_the_references_side_by_side(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu" / "check.py"), "--dry-run", "--sections",
                          "reference", "--anchors", str(ANCHORS), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]["reference"]["rows"]
    assert len(rows) == 5 and all(r["status"] == "ok" and r["speedup"] > 0 for r in rows), rows
