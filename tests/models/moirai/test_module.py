"""MoiraiModule: training with Lightning, checkpoints, fine-tuning patterns, optimizer groups."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tsfm.data.types import Series
from tsfm.forecast import load_forecaster
from tsfm.models.moirai.module import MoiraiModule
from tsfm.models.moirai.task import MoiraiTask
from tsfm.training.optim import build_optimizer, param_groups

TINY = {"d_model": 64, "num_layers": 2}


def _batches(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    task = MoiraiTask(max_seq_len=128, concat_univariate=False)
    t = np.arange(600)
    series = [Series((5 + np.sin(t / 6 + i)).astype(np.float32)[None] * (1 + i % 3), "h", dataset="sine") for i in range(16)]
    out = []
    for _ in range(n):
        b = task.collate([task(series[i], rng) for i in rng.integers(0, 16, 8)])
        out.append({k: v[:2] for k, v in b.items()})
    return out


def test_fit_lowers_loss_and_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    module = MoiraiModule(config=TINY, optim={"lr": 3e-3, "warmup_steps": 2, "max_steps": 30})
    batches = _batches(4)
    with torch.no_grad():
        before = float(np.mean([module.compute_loss(b).item() for b in batches]))
    trainer = L.Trainer(
        max_steps=30, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, default_root_dir=tmp_path, enable_checkpointing=False,
    )
    trainer.fit(module, DataLoader(batches, batch_size=None), DataLoader(batches[:1], batch_size=None))
    with torch.no_grad():
        after = float(np.mean([module.compute_loss(b).item() for b in batches]))
    assert after < before - 0.3, (before, after)
    assert "val/loss" in trainer.callback_metrics
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # plain hparams only
    assert ckpt["hyper_parameters"]["family"] == "moirai" and ckpt["hyper_parameters"]["config"]["d_model"] == 64
    f = load_forecaster(path)
    # a tsfm .ckpt also initialises a fine-tuning run, with identical weights
    ft = MoiraiModule(mode="finetune", finetune="head_only", pretrained=str(path))
    assert all(torch.equal(a, b) for a, b in zip(ft.model.state_dict().values(), module.model.state_dict().values()))
    q = f.predict_quantiles([np.sin(np.arange(200) / 6).astype(np.float32) + 5], 24, freq="h", num_samples=50)
    assert q.shape == (1, 24, 9) and np.isfinite(q).all()
    # the exported directory is the official layout and loads back to the same forecasts
    out = module.save_pretrained(tmp_path / "export")
    g = load_forecaster(out)
    x = [np.sin(np.arange(100) / 6).astype(np.float32) + 5]
    np.testing.assert_allclose(
        f.predict_quantiles(x, 8, patch_size=32, seed=0, num_samples=20), g.predict_quantiles(x, 8, patch_size=32, seed=0, num_samples=20)
    )


@pytest.mark.parametrize("pattern", ["full", "freeze_ffn", "head_only"])
def test_finetune_patterns_from_official_dir(fixtures_dir, pattern):
    m = MoiraiModule(mode="finetune", finetune=pattern, pretrained=str(fixtures_dir / "moirai_tiny" / "checkpoint"))
    trainable = {n for n, p in m.model.named_parameters() if p.requires_grad}
    if pattern == "full":
        assert len(trainable) == len(list(m.model.parameters()))
    elif pattern == "freeze_ffn":
        assert trainable and not any(".ffn." in n for n in trainable) and "encoder.layers.0.self_attn.q_proj.weight" in trainable
    else:
        assert trainable and all(n.startswith("param_proj.") for n in trainable)
    groups = build_optimizer(m.trainable_module(), m.optim_cfg)["optimizer"].param_groups
    assert sum(len(g["params"]) for g in groups) == len(trainable)


def test_finetune_needs_pretrained_and_valid_options():
    with pytest.raises(ValueError, match="needs `pretrained`"):
        MoiraiModule(config=TINY, mode="finetune")
    with pytest.raises(ValueError, match="freeze_ffn"):
        MoiraiModule(config=TINY, finetune="partial")
    with pytest.raises(ValueError, match="mode='finetune'"):
        MoiraiModule(config=TINY, finetune="lora")
    with pytest.raises(ValueError, match="unknown Moirai config keys"):
        MoiraiModule(config={**TINY, "n_layer": 3})


def test_weight_decay_excludes_norms_biases_embeddings():
    m = MoiraiModule(config=TINY)
    decay, no_decay = param_groups(m.model, 0.1, ["bias", "norm", "embed", "mask_token"])
    names = {id(p): n for n, p in m.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "mask_encoding.weight" in not_decayed and "encoder.layers.0.self_attn.var_attn_bias.emb.weight" in not_decayed
    assert {"in_proj.bias", "encoder.norm.weight", "encoder.layers.1.self_attn.q_norm.weight"} <= not_decayed
    assert {"in_proj.weight", "encoder.layers.0.ffn.fc1.weight", "param_proj.proj.weights_logits.weight"} <= decayed
    assert not any("bias" in n or "norm" in n for n in decayed)


_FSDP_SCRIPT = """
import json, sys
import lightning as L, torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader
sys.path.insert(0, {here!r})
from test_module import TINY, _batches
from tsfm.models.moirai.module import MoiraiModule
from tsfm.training.parallelize import is_sharded

torch.manual_seed(0)
module = MoiraiModule(config=TINY, gradient_checkpointing=True, optim={{"lr": 1e-3, "max_steps": 3}})
trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=2, strategy=ModelParallelStrategy(), logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir={root!r})
trainer.fit(module, DataLoader(_batches(3), batch_size=None))
with open(f"{root}/rank{{trainer.global_rank}}.json", "w") as f:  # not stdout: the ranks' lines interleave
    json.dump({{"rank": trainer.global_rank, "sharded": is_sharded(module.model),
               "loss": float(trainer.callback_metrics["train/loss"])}}, f)
"""


@pytest.mark.dist
def test_fsdp2_on_cpu_trains_moirai(tmp_path):
    """trainer=fsdp path: configure_model shards every encoder layer over 2 gloo ranks and trains."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "fsdp_moirai.py"
    script.write_text(_FSDP_SCRIPT.format(here=str(Path(__file__).parent), root=str(tmp_path)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sharded"] and np.isfinite(r["loss"]) for r in results)
