"""BaselineModule + BaselineForecaster: Lightning training, checkpoints, export, public API, configs."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from tests.compose import CONF, compose_config
from tsfm.data.types import Series
from tsfm.forecast import load_forecaster
from tsfm.models.baseline.forecast import BaselineForecaster
from tsfm.models.baseline.module import BaselineModule
from tsfm.models.baseline.task import BaselineTask
from tsfm.utils.config import to_plain

TINY = dict(d_model=32, num_layers=2, num_heads=4, patch_size=8, context_length=32, prediction_length=16)


def _batches(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    task = BaselineTask(context_length=32, prediction_length=16, patch_size=8)
    rng = np.random.default_rng(seed)
    t = np.arange(120, dtype=np.float32)
    out = []
    for _ in range(n):
        series = [
            Series((np.sin(t / 2.5 + rng.uniform(0, 6)) * 4 + 20)[None].astype(np.float32), "h")
            for _ in range(16)
        ]
        out.append(task.collate([task(s, rng) for s in series]))
    return out


def _val_loss(module: BaselineModule, batches) -> float:
    module.eval()
    with torch.no_grad():
        return float(np.mean([module.compute_loss(b).item() for b in batches]))


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_fit_checkpoint_export_and_forecast(arch, tmp_path):
    L.seed_everything(0)
    module = BaselineModule(
        config={**TINY, "architecture": arch}, optim={"lr": 3e-3, "max_steps": 60, "weight_decay": 0.0}
    )
    train, val = _batches(60), _batches(2, seed=1)
    before = _val_loss(module, val)
    module.train()
    trainer = L.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None))
    after = _val_loss(module, val)
    assert after < before - 0.5, (before, after)
    assert trainer.callback_metrics["val/loss"].item() == pytest.approx(after, rel=1e-4)

    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["family"] == "baseline" and hp["config"]["architecture"] == arch
    again = BaselineModule.load_from_checkpoint(ckpt, weights_only=True)
    assert again.config == module.config and again.encoder_mask == module.encoder_mask
    export = module.save_pretrained(tmp_path / "export")
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors"]

    ctx = [
        np.sin(np.arange(50) / 2.5) * 4 + 20,
        np.sin(np.arange(29) / 2.5 + 1) * 4 + 20,
    ]  # ragged, not patch-aligned
    kw = dict(prediction_length=20, num_samples=50, seed=3)
    expected = module.forecaster().predict_quantiles(ctx, **kw)
    for source in (ckpt, export):
        f = load_forecaster(source)
        assert isinstance(f, BaselineForecaster) and f.model.config == module.config
        np.testing.assert_allclose(f.predict_quantiles(ctx, **kw), expected, rtol=1e-5, atol=1e-5)
    assert expected.shape == (2, 20, 9)
    assert np.all(np.diff(expected, axis=-1) >= 0)  # quantiles are ordered
    # a trained model forecasts the sine's level: the median stays near 20 (amplitude 4)
    assert np.all(np.abs(expected[..., 4] - 20) < 8)


def test_predict_samples_shapes_and_multivariate():
    torch.manual_seed(0)
    f = BaselineModule(config={**TINY, "architecture": "decoder"}).forecaster()
    state = torch.random.get_rng_state()
    s = f.predict_samples([np.arange(40.0), np.arange(10.0)], prediction_length=9, num_samples=6, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # seed= leaves the caller's global RNG alone
    assert s.shape == (2, 6, 9) and np.isfinite(s).all()
    again = f.predict_samples([np.arange(40.0), np.arange(10.0)], prediction_length=9, num_samples=6, seed=0)
    np.testing.assert_array_equal(again, s)
    q = f.predict_quantiles([np.random.rand(2, 40)], prediction_length=8, num_samples=6)
    assert q.shape == (1, 2, 8, 9)


def test_forecast_errors_say_what_to_change(tmp_path):
    f = BaselineModule(config=TINY).forecaster()
    with pytest.raises(ValueError, match="do not use covariates"):
        f.predict_quantiles([np.arange(40.0)], 8, past_covariates=[{"x": np.arange(40.0)}])
    with pytest.raises(TypeError, match=r"unknown baseline forecast option\(s\) \['temperature'\]; the baseline family takes num_samples"):
        f.predict_quantiles([np.arange(40.0)], 8, temperature=2.0)
    with pytest.raises(ValueError, match="not a tsfm baseline checkpoint"):
        BaselineForecaster.from_checkpoint({"hyper_parameters": {"family": "chronos"}, "state_dict": {}})
    (tmp_path / "config.json").write_text('{"tsfm_family": "baseline", "d_model": 32}')
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_forecaster(tmp_path)


def test_module_rejects_bad_options():
    with pytest.raises(ValueError, match="decoder_loss='next'"):
        BaselineModule(config=TINY, decoder_loss="next")
    with pytest.raises(ValueError, match="family='chronos'"):
        BaselineModule(config=TINY, family="chronos")


def test_training_loss_of_decoder_covers_every_next_patch():
    torch.manual_seed(0)
    module = BaselineModule(config={**TINY, "architecture": "decoder"})
    batch = _batches(1)[0]
    module.train()
    train_loss = module.compute_loss(batch)
    module.eval()
    val_loss = module.compute_loss(batch)
    torch.testing.assert_close(train_loss, module.model.nll(batch["past_target"], batch["future_target"]))
    torch.testing.assert_close(
        val_loss, module.model.nll(batch["past_target"], batch["future_target"], horizon_only=True)
    )
    assert module.tokens_in_batch(batch) == 16 * 6


@pytest.mark.parametrize("model", sorted(p.stem for p in CONF.glob("model/baseline_*.yaml")))
def test_every_baseline_config_instantiates(model):
    cfg = compose_config([f"model={model}", "trainer.max_steps=10"])
    task = instantiate(cfg.model.task, _convert_="all")
    module = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
    assert module.config.architecture == ("decoder" if "_dec_" in model else "encoder")
    assert module.config.context_length == task.context_length == cfg.model.context_length
    assert module.config.patch_size == task.patch_size
    OmegaConf.to_container(cfg.model, resolve=True)  # everything resolves


def test_scaling_experiment_sweeps_sizes_times_architectures():
    cfg = compose_config(["experiment=scaling_enc_vs_dec"])
    models = [m.strip() for m in str(cfg.hydra.sweeper.params.model).split(",")] if "hydra" in cfg else None
    if models is None:  # compose() drops the hydra node unless asked: read the file itself
        models = [
            m.strip()
            for m in OmegaConf.load(
                CONF / "experiment/scaling_enc_vs_dec.yaml"
            ).hydra.sweeper.params.model.split(",")
        ]
    sizes = {m.split("_")[-1] for m in models}
    assert len(models) == 2 * len(sizes) and len(sizes) >= 6  # issue 15: >= 6 sizes per architecture
    assert {m.split("_")[1] for m in models} == {"enc", "dec"}
    assert cfg.final_eval == "dev" and cfg.export  # every job is scored in and out of distribution
    assert all((CONF / "model" / f"{m}.yaml").exists() for m in models)


def test_random_encoder_mask_trains_on_a_random_suffix_and_validates_on_the_horizon():
    torch.manual_seed(0)
    module = BaselineModule(
        config=TINY, encoder_mask="random", mask_ratio=[0.3, 0.5]
    )  # 6 patches: m in {2, 3}
    batch = _batches(1)[0]
    window = torch.cat([batch["past_target"], batch["future_target"]], 1)
    module.train()
    torch.manual_seed(1)
    loss = module.compute_loss(batch)
    torch.manual_seed(1)
    m = torch.randint(2, 4, (16,))
    assert set(m.tolist()) == {2, 3}
    torch.testing.assert_close(loss, module.model.masked_nll(window, m))
    module.eval()
    torch.testing.assert_close(
        module.compute_loss(batch), module.model.nll(batch["past_target"], batch["future_target"])
    )
    with pytest.raises(ValueError, match="mask_ratio"):
        BaselineModule(config=TINY, encoder_mask="random", mask_ratio=[0.5, 0.2])
    with pytest.raises(ValueError, match="encoder_mask='suffix'"):
        BaselineModule(config=TINY, encoder_mask="suffix")


def test_encoder_warns_once_beyond_its_trained_horizon(caplog):
    f = BaselineModule(config=TINY).forecaster()  # trained horizon: 2 patches of 8
    with caplog.at_level("WARNING"):
        f.predict_samples([np.arange(40.0)], prediction_length=16, num_samples=2)
        assert not caplog.records
        s = f.predict_samples([np.arange(40.0)], prediction_length=30, num_samples=2)
        f.predict_samples([np.arange(40.0)], prediction_length=30, num_samples=2)
    assert s.shape == (1, 2, 30)
    assert len([r for r in caplog.records if "extrapolated" in r.message]) == 1


def test_fine_tuning_starts_from_an_export_or_a_ckpt(tmp_path):
    L.seed_everything(0)
    source = BaselineModule(config={**TINY, "architecture": "encoder"})
    export = source.save_pretrained(tmp_path / "export")
    exported = {k: v.clone() for k, v in source.model.state_dict().items()}
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(source, DataLoader(_batches(1), batch_size=None))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    trained = source.model.state_dict()
    assert any(not torch.equal(exported[k], trained[k]) for k in exported)  # the step changed the weights
    for path, ref in ((export, exported), (tmp_path / "run.ckpt", trained)):
        tuned = BaselineModule(pretrained=str(path), config={"d_model": 999})  # config ignored: from the checkpoint
        assert tuned.config.d_model == TINY["d_model"] and tuned.hparams["initialized_from"] == str(path)
        for n, a in tuned.model.state_dict().items():
            torch.testing.assert_close(a, ref[n], rtol=0, atol=0, msg=n)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        BaselineModule(pretrained=str(tmp_path / "missing"))
