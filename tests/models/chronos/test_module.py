"""ChronosModule: CE training with Lightning, plain-hparam checkpoints, fine-tuning, Hydra configs."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tsfm.data.types import Series
from tsfm.forecast import load_forecaster
from tsfm.models.chronos.convert import load_model
from tsfm.models.chronos.forecast import ChronosForecaster
from tsfm.models.chronos.module import ChronosModule
from tsfm.models.chronos.task import ChronosTask

TINY = dict(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1, n_tokens=256,
            context_length=32, prediction_length=8, dropout_rate=0.0)  # fmt: skip
CONF = Path(__file__).resolve().parents[3] / "conf"


def _batches(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    task = ChronosTask(context_length=32, prediction_length=8, min_past=8, tokenizer={"n_tokens": 256})
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        series = [
            Series(np.sin(np.arange(80, dtype=np.float32) / 3 + rng.uniform(0, 6))[None] + 2, "h")
            for _ in range(8)
        ]
        out.append(task.collate([task(s, rng) for s in series]))
    return out


def test_compute_loss_is_token_cross_entropy():
    module = ChronosModule(config=TINY)
    batch = _batches(1)[0]
    module.eval()
    loss = module.compute_loss(batch)
    logits = module.model.logits(batch["input_ids"], batch["attention_mask"], batch["labels"])
    ref = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100
    )
    torch.testing.assert_close(loss, ref)
    assert loss.item() == pytest.approx(np.log(256), rel=0.05)  # ~uniform at init (initializer 0.05)


def test_fit_lowers_loss_and_checkpoint_loads_with_weights_only(tmp_path):
    L.seed_everything(0)
    module = ChronosModule(
        config=TINY, optim={"lr": 2e-2, "weight_decay": 0.01, "scheduler": "linear", "max_steps": 60}
    )
    train, val = _batches(60), _batches(2, seed=1)
    module.eval()
    with torch.no_grad():
        before = float(np.mean([module.compute_loss(b).item() for b in val]))
    module.train()
    trainer = L.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None))
    module.eval()
    with torch.no_grad():
        after = float(np.mean([module.compute_loss(b).item() for b in val]))
    assert after < before - 1.0, (before, after)
    assert trainer.callback_metrics["val/loss"].item() == pytest.approx(after, rel=1e-4)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["family"] == "chronos"
    f = load_forecaster(ckpt)
    assert isinstance(f, ChronosForecaster)
    state = module.model.t5.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in f.model.t5.state_dict().items())
    q = f.predict_quantiles([np.sin(np.arange(40) / 3) + 2], prediction_length=8, num_samples=4, seed=0)
    assert q.shape == (1, 8, 9) and np.isfinite(q).all()
    again = ChronosModule.load_from_checkpoint(ckpt, weights_only=True)
    assert again.config == module.config


def test_finetune_from_official_dir_and_export(fixtures_dir, tmp_path, caplog):
    ckpt = fixtures_dir / "chronos_t5" / "checkpoint"
    module = ChronosModule(pretrained=str(ckpt), config={"dropout_rate": 0.0, "prediction_length": 64})
    ref = load_model(ckpt)
    assert all(torch.equal(v, ref.t5.state_dict()[k]) for k, v in module.model.t5.state_dict().items())
    assert module.hparams["initialized_from"] == str(ckpt)
    out = module.save_pretrained(tmp_path / "exp")
    assert isinstance(load_forecaster(out), ChronosForecaster)
    # the shared override policy (docs/architecture.md): the architecture comes from the checkpoint,
    # a differing non-editable key is ignored with a warning, an unknown key is an error
    with caplog.at_level("WARNING", logger="tsfm.checkpoint"):
        ignored = ChronosModule(pretrained=str(ckpt), config={"d_model": 128, "dropout_rate": 0.2})
    assert ignored.config.d_model == 64 and ignored.config.dropout_rate == 0.2
    assert [r.getMessage() for r in caplog.records if "d_model: checkpoint 64, requested 128" in r.getMessage()]
    with pytest.raises(ValueError, match=r"unknown config keys \['d_modle'\]"):
        ChronosModule(pretrained=str(ckpt), config={"d_modle": 128})
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        ChronosModule(pretrained="amazon/chronos-t5-small")


def test_every_chronos_config_composes():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    sizes = {
        "chronos_tiny": 256,
        "chronos_mini": 384,
        "chronos_small": 512,
        "chronos_base": 768,
        "chronos_large": 1024,
    }
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name, d_model in sizes.items():
            cfg = compose("train", overrides=[f"model={name}"])
            assert cfg.model.module.config.d_model == d_model
            assert cfg.model.task.context_length == cfg.model.module.config.context_length == 512
            assert cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 0.01 and cfg.optim.scheduler == "linear"
            task = instantiate(cfg.model.task, _convert_="all")
            assert task.prediction_length == 64
        cfg = compose("train", overrides=["model=chronos_tiny", "model.context_length=64"])
        plain = OmegaConf.to_container(cfg.optim, resolve=True)
        module = instantiate(cfg.model.module, optim=plain, _convert_="all")
        assert module.config.context_length == 64 and module.optim_cfg.scheduler == "linear"
        assert sum(p.numel() for p in module.parameters()) == pytest.approx(8.4e6, rel=0.02)
