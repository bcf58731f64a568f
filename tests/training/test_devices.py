"""Accelerator and precision checks that run before anything is built (tsfm.training.devices)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tsfm.training import devices
from tsfm.training.devices import (
    DeviceUnavailableError,
    check_accelerator,
    check_trainer_device,
    resolve_precision,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def fake_gpu(monkeypatch):
    """A visible CUDA device without bf16 (a V100/T4 stand-in)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "GPU"])
def test_gpu_without_cuda_names_trainer_cpu(no_cuda, accelerator):
    with pytest.raises(DeviceUnavailableError, match=r"needs a CUDA GPU.*use trainer=cpu"):
        check_accelerator(accelerator)


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_cpu_and_auto_pass_without_cuda(no_cuda, accelerator):
    check_accelerator(accelerator, devices=2)
    assert resolve_precision("bf16-mixed", accelerator) == "bf16-mixed"


def test_more_devices_than_visible(fake_gpu):
    check_accelerator("gpu", devices=1)
    with pytest.raises(DeviceUnavailableError, match=r"trainer.devices=8 but only 1 CUDA device"):
        check_accelerator("gpu", devices=8)
    check_accelerator("gpu", devices=8, num_nodes=8)  # multi-node: each node checks its own


def test_bf16_mixed_falls_back_to_fp16_with_loss_scaling(fake_gpu, caplog):
    with caplog.at_level(logging.WARNING, logger=devices.__name__):
        assert resolve_precision("bf16-mixed", "gpu") == "16-mixed"
    assert "no bf16 support" in caplog.text and "dynamic loss scaling" in caplog.text
    assert resolve_precision("32", "gpu") == "32"
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"


def test_bf16_true_without_bf16_is_an_error(fake_gpu):
    with pytest.raises(DeviceUnavailableError, match=r"bf16-true.*V100.*16-mixed"):
        resolve_precision("bf16-true", "gpu")


def test_bf16_kept_where_supported(fake_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"


def test_trainer_config_node(fake_gpu):
    cfg = OmegaConf.create({"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"})
    assert check_trainer_device(cfg) == "16-mixed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_train_entry_point_fails_early_with_trainer_gpu(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "tsfm.train", f"hydra.run.dir={tmp_path}/r", "trainer=gpu"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode != 0
    assert "use trainer=cpu" in out.stderr and "trainer.accelerator=gpu" in out.stderr
    assert not (tmp_path / "data").exists()  # failed before the corpus was generated


@pytest.mark.parametrize("precision, refused", [("32-true", False), ("32", False), ("64-true", False),
                                                ("bf16-mixed", False), ("bf16-true", True), ("16-true", True)])
def test_only_half_precision_weights_need_family_support(precision, refused):
    from tsfm.training.build import check_precision

    class Module:  # a family without half-precision weights (supports_half_weights unset)
        family = "chronos2"

    cfg = OmegaConf.create({"trainer": {"precision": precision}})
    if refused:
        with pytest.raises(ValueError, match=f"trainer.precision={precision} .* not supported by the chronos2"):
            check_precision(cfg, Module())
    else:
        check_precision(cfg, Module())


def test_the_training_module_releases_the_process_group_before_the_interpreter_exits(tmp_path):
    """Lightning never destroys the process group; a gloo group left to interpreter teardown can abort
    a rank that finished (SIGABRT). The module's setup registers its release at exit, once."""
    script = f"""
import atexit, torch.distributed as dist
from tsfm.training.module import TSFMModule
dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
atexit.register(lambda: print("initialised at exit:", dist.is_initialized(), flush=True))  # runs last
module = TSFMModule(optim={{"lr": 1e-3}})
module.setup("fit"); module.setup("fit")
import tsfm.training.devices as d
print("registered:", d._RELEASE_REGISTERED, flush=True)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["registered:", "True", "initialised", "at", "exit:", "False"]
