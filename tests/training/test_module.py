"""TSFMModule: non-finite guard, optimizer wiring, FSDP2 sharding under ModelParallelStrategy."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from tsfm.training.module import NonFiniteLossError, TSFMModule


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Toy(TSFMModule):
    family = "toy"

    def __init__(self, optim=None, max_nonfinite=10):
        super().__init__(optim=optim, max_nonfinite=max_nonfinite)
        self.model = Blocks()

    def compute_loss(self, batch):
        return (self.model(batch["x"]) ** 2).mean()


def _loader(batches):
    return DataLoader(batches, batch_size=None)


def _trainer(tmp_path, steps, **kw):
    return L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw,
    )


def test_nan_batch_skips_update_and_is_reported(tmp_path, caplog):
    torch.manual_seed(0)
    module = Toy(optim={"lr": 0.1, "max_steps": 10})
    before = [p.detach().clone() for p in module.parameters()]
    bad = {"x": torch.full((3, 4), float("nan"))}
    with caplog.at_level("ERROR"):
        _trainer(tmp_path, 1).fit(module, _loader([bad]))
    assert module.nonfinite_batches == 1
    assert "non-finite loss" in caplog.text and "x" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_good_batch_updates_weights(tmp_path):
    module = Toy(optim={"lr": 0.1, "max_steps": 10})
    before = [p.detach().clone() for p in module.parameters()]
    _trainer(tmp_path, 1).fit(module, _loader([{"x": torch.randn(3, 4)}]))
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


class InfGrad(Toy):
    def compute_loss(self, batch):
        w = self.model.layers[0].weight
        return (self.model(batch["x"]) ** 2).mean() + torch.sqrt(w[0, 0] * 0)  # finite loss, NaN grad


def test_nonfinite_gradients_skip_the_update(tmp_path):
    module = InfGrad(optim={"lr": 0.1, "max_steps": 10})
    before = [p.detach().clone() for p in module.parameters()]
    _trainer(tmp_path, 1).fit(module, _loader([{"x": torch.randn(3, 4)}]))
    assert module.nonfinite_batches == 1
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_too_many_nonfinite_batches_raise(tmp_path):
    module = Toy(optim={"lr": 0.1, "max_steps": 10}, max_nonfinite=2)
    bad = {"x": torch.full((3, 4), float("inf"))}
    with pytest.raises(NonFiniteLossError, match="consecutive batches"):
        _trainer(tmp_path, 5).fit(module, _loader([bad] * 5))


def test_configure_optimizers_follows_trainer_max_steps(tmp_path):
    module = Toy(optim={"lr": 0.1, "max_steps": 10, "warmup_steps": 0})
    _trainer(tmp_path, 3).fit(module, _loader([{"x": torch.randn(2, 4)}] * 3))
    assert module.optim_cfg.max_steps == 3


_FSDP_SCRIPT = """
import json, sys
import lightning as L, torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader
sys.path.insert(0, {tests!r})
from training.test_module import Toy
from tsfm.training.parallelize import is_sharded

module = Toy(optim={{"lr": 0.1, "max_steps": 2}})
trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=2, strategy=ModelParallelStrategy(), logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir={root!r})
trainer.fit(module, DataLoader([{{"x": torch.randn(4, 4)}}] * 2, batch_size=None))
with open(f"{root}/rank{{trainer.global_rank}}.json", "w") as f:  # not stdout: the ranks' lines interleave
    json.dump({{"rank": trainer.global_rank, "world": trainer.world_size, "sharded": is_sharded(module.model)}}, f)
"""


@pytest.mark.dist
def test_fsdp2_on_cpu_shards_blocks(tmp_path):
    """Lightning's ModelParallelStrategy + our configure_model shard the blocks over 2 gloo ranks."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "fsdp_toy.py"
    script.write_text(_FSDP_SCRIPT.format(tests=str(Path(__file__).parents[1]), root=str(tmp_path)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["sharded"] for r in results)


_NAN_ON_ONE_RANK = """
import json, sys
import lightning as L, torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader
sys.path.insert(0, {tests!r})
from training.test_module import Toy

class Rank1NaN(Toy):
    def compute_loss(self, batch):
        loss = super().compute_loss(batch)
        if self.global_step == 1 and self.global_rank == 1:
            return loss * float("nan")
        return loss

class Snap(L.Callback):
    def __init__(self):
        self.norms = []
    def on_train_batch_end(self, trainer, module, *args):
        self.norms.append(sum(float((p.full_tensor() if hasattr(p, "full_tensor") else p).detach().norm()) for p in module.parameters()))

torch.manual_seed(0)
module = Rank1NaN(optim={{"lr": 0.1, "max_steps": 3, "warmup_steps": 0}})
snap = Snap()
strategy = ModelParallelStrategy() if sys.argv[1] == "fsdp" else "ddp"
trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=2, strategy=strategy, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir={root!r}, callbacks=[snap])
trainer.fit(module, DataLoader([{{"x": torch.randn(4, 4)}} for _ in range(3)], batch_size=None))
with open(f"{root}/rank{{trainer.global_rank}}.json", "w") as f:  # not stdout: the ranks' lines interleave
    json.dump({{"rank": trainer.global_rank, "norms": snap.norms, "skipped": module.nonfinite_batches}}, f)
"""


@pytest.mark.dist
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_nan_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path, strategy):
    """Rank 1's loss is NaN at step 1: both ranks run backward, drop the gradients, keep the weights, go on."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "nan_rank.py"
    script.write_text(_NAN_ON_ONE_RANK.format(tests=str(Path(__file__).parents[1]), root=str(tmp_path)))
    out = subprocess.run([sys.executable, str(script), strategy], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in results:
        n = r["norms"]
        assert len(n) == 3 and n[1] == n[0] and n[2] != n[1]  # step 1 left the weights alone, step 2 trained
        assert r["skipped"] == 1
    assert results[0]["norms"] == results[1]["norms"]


def test_the_cpu_gemm_choice_is_stored_in_checkpoints_and_reused_on_resume(monkeypatch, caplog):
    import logging

    from tsfm.models.layers import linear as linear_module
    from tsfm.training.module import TSFMModule

    m = TSFMModule()
    m.cpu_gemm_mode = "auto"
    monkeypatch.setattr(linear_module, "_choice", False)  # this run: aten
    ckpt: dict = {}
    m.on_save_checkpoint(ckpt)
    assert ckpt["tsfm_cpu_gemm"] == "aten"
    if linear_module.onednn_available():  # a checkpoint trained on oneDNN resumes on oneDNN
        m.on_load_checkpoint({"tsfm_cpu_gemm": "onednn"})
        assert linear_module.cpu_gemm() == "onednn"
    monkeypatch.setattr(linear_module, "_choice", False)
    monkeypatch.setattr(linear_module, "onednn_available", lambda: False)
    monkeypatch.setattr("tsfm.training.module.onednn_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        m.on_load_checkpoint({"tsfm_cpu_gemm": "onednn"})  # unavailable here: warn, keep aten
    assert linear_module.cpu_gemm() == "aten" and "onednn, which this machine lacks; continuing on aten" in caplog.text
    m.cpu_gemm_mode = "aten"  # chosen explicitly: the stored kernel does not override it
    m.on_load_checkpoint({"tsfm_cpu_gemm": "onednn"})
    assert linear_module.cpu_gemm() == "aten"
    with pytest.raises(ValueError, match="cpu_gemm='fast': use auto, onednn, aten"):
        linear_module.set_cpu_gemm("fast")


def test_the_console_line_reports_best_memory_and_gradient_norm(caplog):
    import logging
    from types import SimpleNamespace

    from tsfm.training.callbacks import TrainingMonitor

    mon = TrainingMonitor(print_every_n_steps=2)
    opt = SimpleNamespace(param_groups=[{"lr": 3e-3}])
    trainer = SimpleNamespace(global_step=0, max_steps=10, is_global_zero=True, optimizers=[opt],
                              callback_metrics={"benchmark/avg_wql": torch.tensor(0.9),
                                                "benchmark/zero_shot_avg_wql": torch.tensor(0.5)})
    mon._gnorm = torch.tensor(1.25)
    with caplog.at_level(logging.INFO, logger="tsfm.training.callbacks"):
        for step in (1, 2):
            trainer.global_step = step
            mon._console(trainer, {"loss": torch.tensor(2.0)}, samples=8)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 2/10")]
    for part in ("loss 2.0000", "ema 2.0000", "best 0.9000", "lr 3.00e-03", "GiB", "samples/s", "eta 0:00:", "gnorm 1.25"):
        assert part in line, (part, line)
