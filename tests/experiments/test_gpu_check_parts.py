"""Parts of the GPU check that its dry run cannot show: out-of-memory rows, failing sections,
the MFU peak table, and the reference section without its venv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

GPU_DIR = Path(__file__).resolve().parents[2] / "experiments" / "gpu"
sys.path.insert(0, str(GPU_DIR))

import check  # noqa: E402
import training  # noqa: E402


def _settings(tmp_path, families=("baseline",), **kw) -> check.Settings:
    args = argparse.Namespace(out=tmp_path, dry_run=True, families=",".join(families), sections="train",
                              anchors=tmp_path / "none", batch_size=0, steps=0, peak_tflops=0.0, budget_s=420.0)  # fmt: skip
    for k, v in kw.items():
        setattr(args, k, v)
    return check.make_settings(args)


def test_out_of_memory_is_a_row_with_the_batch_size_and_the_others_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))  # the synthetic corpus cache
    real_build = training.build

    def build(cfg):
        if cfg.model.family == "chronos2":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_build(cfg)

    monkeypatch.setattr(training, "build", build)
    s = _settings(tmp_path, families=("chronos2", "baseline"), batch_size=3)
    result = training.run_train(s)
    by = {(r["family"], r["run"]): r for r in result["rows"]}
    assert by[("chronos2", "bf16")]["status"] == "oom"
    assert "out of memory at batch size 3" in by[("chronos2", "bf16")]["error"]
    assert by[("baseline", "bf16")]["status"] == "ok" and by[("baseline", "bf16+AC")]["status"] == "ok"
    assert result["status"] == "partial"


def test_a_failing_section_is_reported_not_raised(tmp_path):
    def boom(s):
        raise RuntimeError("driver went away")

    out = check.run_section("train", boom, _settings(tmp_path))
    assert out["status"] == "error" and "RuntimeError: driver went away" in out["error"] and out["rows"] == []


def test_time_budget_skips_runs(tmp_path):
    s = _settings(tmp_path)
    s.budget_s = 0.0
    row = training.fit_run(s, "baseline", "bf16", [])
    assert row["status"] == "skipped" and "time budget" in row["error"]


@pytest.mark.parametrize("name,peak", [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0),
                                       ("NVIDIA H100 PCIe", 756.0), ("NVIDIA A100-SXM4-80GB", 312.0)])  # fmt: skip
def test_known_bf16_peaks(monkeypatch, tmp_path, name, peak):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    s = _settings(tmp_path, dry_run=False)
    assert s.device == "cuda" and s.peak_tflops == peak and name in s.peak_source


def test_unknown_gpu_has_no_mfu_unless_given(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some Future GPU")
    assert _settings(tmp_path, dry_run=False).peak_tflops is None
    assert _settings(tmp_path, dry_run=False, peak_tflops=500.0).peak_tflops == 500.0


def test_unknown_family_or_section_is_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown families/sections"):
        _settings(tmp_path, families=("moirai", "timesfm"))
