"""Chronos2Module: training steps, LoRA fine-tuning, two-stage context extension, export."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from tsfm.data.types import Series
from tsfm.forecast import load_forecaster
from tsfm.models.chronos2.module import Chronos2Module
from tsfm.models.chronos2.task import Chronos2Task

TINY = dict(d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2, context_length=64, max_output_patches=1,
            dropout_rate=0.0)  # fmt: skip


def _batches(task: Chronos2Task, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(400, dtype=np.float32)
    out = []
    for _ in range(n):
        samples = []
        for _ in range(4):
            phase = rng.uniform(0, 6)
            target = np.stack([np.sin(t / 8 + phase), np.cos(t / 8 + phase)]).astype(np.float32)
            s = Series(target, "H", past_feat_dynamic_real=np.sin(t / 4 + phase)[None].astype(np.float32))
            samples.append(task(s, rng))
        out.append(task.collate(samples))
    return out


def _fit(module, batches, steps):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return trainer


def test_training_reduces_loss_and_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    task = Chronos2Task(context_length=64, prediction_length=16, min_past=32)
    batches = _batches(task, 30)
    module = Chronos2Module(config=TINY, optim={"lr": 3e-3, "scheduler": "constant"}, prediction_length=16)
    with torch.no_grad():
        before = np.mean([module.compute_loss(b).item() for b in batches[:5]])
    trainer = _fit(module, batches, 30)
    with torch.no_grad():
        after = np.mean([module.compute_loss(b).item() for b in batches[:5]])
    assert after < 0.8 * before
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = torch.load(ckpt, weights_only=True)
    assert loaded["hyper_parameters"]["family"] == "chronos2"
    f = load_forecaster(ckpt)
    ctx = batches[0]["context"][:1].numpy()[0]
    q = f.predict_quantiles([ctx[~np.isnan(ctx)]], 16, quantile_levels=(0.5,))
    ref = module.forecaster().predict_quantiles([ctx[~np.isnan(ctx)]], 16, quantile_levels=(0.5,))
    np.testing.assert_allclose(q, ref, rtol=1e-5, atol=1e-5)


def test_lora_trains_only_adapters_and_exports(tmp_path, c2_dir):
    module = Chronos2Module(config={"context_length": 256}, pretrained=str(c2_dir / "checkpoint"), finetune="lora",
                            lora={"r": 4}, optim={"lr": 1e-2}, prediction_length=16)  # fmt: skip
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    task = Chronos2Task(context_length=256, prediction_length=16)
    trainer = _fit(module, _batches(task, 3), 3)
    assert all(torch.equal(p, frozen[n]) for n, p in module.named_parameters() if n in frozen)
    out = module.save_pretrained(tmp_path / "lora_export")
    f = load_forecaster(out)
    ctx = [np.sin(np.arange(100) / 5).astype(np.float32)]
    np.testing.assert_allclose(f.predict_quantiles(ctx, 16), module.forecaster().predict_quantiles(ctx, 16), rtol=1e-5, atol=1e-5)
    ckpt = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(ckpt)
    np.testing.assert_allclose(load_forecaster(ckpt).predict_quantiles(ctx, 16), f.predict_quantiles(ctx, 16), rtol=1e-5, atol=1e-5)


def test_context_extension_two_stages(tmp_path):
    torch.manual_seed(0)
    stage1 = Chronos2Module(config=TINY, optim={"lr": 1e-3}, prediction_length=16)
    task1 = Chronos2Task(context_length=64, prediction_length=16, min_past=300)
    trainer = _fit(stage1, _batches(task1, 2), 2)
    ckpt = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(ckpt)
    long_batch = _batches(Chronos2Task(context_length=256, prediction_length=16, min_past=300), 1)[0]
    assert long_batch["context"].shape[-1] > 64
    with pytest.raises(ValueError, match="exceeds the model's context_length 64"):
        stage1.compute_loss(long_batch)
    stage2 = Chronos2Module(config=TINY | {"context_length": 256}, pretrained=str(ckpt), prediction_length=16)
    assert stage2.config.context_length == 256 and stage2.config.time_encoding_scale == 64
    for (n1, p1), (n2, p2) in zip(stage1.model.state_dict().items(), stage2.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    loss = stage2.compute_loss(long_batch)  # the full 256-step context is used, not truncated
    assert torch.isfinite(loss)
    ctx = long_batch["context"]
    with torch.no_grad():
        full = stage2.model(ctx, group_ids=long_batch["group_ids"]).quantile_preds
        cut = stage2.model(ctx[:, -64:], group_ids=long_batch["group_ids"]).quantile_preds
    assert not torch.allclose(full, cut)


def test_module_option_errors(c2_dir):
    with pytest.raises(ValueError, match="finetune='partial'"):
        Chronos2Module(config=TINY, finetune="partial")
    with pytest.raises(ValueError, match="set finetune: lora"):
        Chronos2Module(config=TINY, lora={"r": 2})
    with pytest.raises(ValueError, match="matched no layer"):
        Chronos2Module(config=TINY, finetune="lora", lora={"target_modules": ["nope"]})
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        Chronos2Module(config=TINY, pretrained="/nonexistent/dir")


def test_loss_horizon_observed_weighs_short_futures_like_long_ones():
    torch.manual_seed(0)
    task = Chronos2Task(context_length=64, prediction_length=16, min_past=8, min_future=1)
    rng = np.random.default_rng(0)
    short = [task(Series(rng.standard_normal((1, 14)).astype(np.float32), "YS"), rng) for _ in range(4)]
    batch = task.collate(short)
    observed = (~torch.isnan(batch["future_target"])).float().sum(-1)
    assert (observed < 16).all()  # every future is partly padding
    full = Chronos2Module(config=TINY, prediction_length=16)
    obs = Chronos2Module(config=TINY, prediction_length=16, loss_horizon="observed")
    obs.load_state_dict(full.state_dict())
    with torch.no_grad():
        out = full.model(batch["context"], group_ids=batch.get("group_ids"), num_output_patches=1,
                         future_target=batch["future_target"], loss_horizon="observed")
        assert obs.compute_loss(batch).item() == pytest.approx(out.loss.item(), rel=1e-6)
        assert obs.compute_loss(batch).item() > full.compute_loss(batch).item() * 1.5
    assert obs.hparams["loss_horizon"] == "observed"
    with pytest.raises(ValueError, match="model.module.loss_horizon must be 'full' or 'observed', got 'sum'"):
        Chronos2Module(config=TINY, loss_horizon="sum")
