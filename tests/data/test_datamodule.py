"""TSDataModule: generated-on-first-use corpus, Lightning training, exact resume, validation stream."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tsfm.data.datamodule import STEP_KEY, TSDataModule
from tsfm.data.tasks import FixedWindowTask

KS = {"name": "ks", "generator": "kernelsynth", "num_series": 12, "seed": 0, "length": 128}


class Recorder(L.LightningModule):
    """Tiny model that records the batches it trains and validates on."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(24, 6)
        self.seen: list[torch.Tensor] = []
        self.val_seen: list[torch.Tensor] = []

    def training_step(self, batch: dict, idx: int) -> torch.Tensor:
        assert STEP_KEY not in batch  # the data module strips its bookkeeping
        self.seen.append(batch["context"].clone())
        return ((self.lin(batch["context"]) - batch["target"]) ** 2).mean()

    def validation_step(self, batch: dict, idx: int) -> None:
        self.val_seen.append(batch["context"].clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_dm(tmp_path: Path, **kw) -> TSDataModule:
    return TSDataModule(
        [KS], FixedWindowTask(24, 6), batch_size=4, cache_dir=str(tmp_path / "cache"), val_batches=2, **kw
    )


def fit(dm: TSDataModule, steps: int, ckpt: str | None = None, val: bool = False) -> Recorder:
    model = Recorder()
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2 if val else 0,
        val_check_interval=3 if val else None,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    model.trainer_ref = trainer  # type: ignore[attr-defined]
    return model


def test_prepare_data_generates_and_caches_the_corpus(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    dm.prepare_data()
    built = list((tmp_path / "cache").iterdir())
    assert len(built) == 1 and built[0].name.startswith("ks-")
    mtime = built[0].stat().st_mtime_ns
    make_dm(tmp_path).prepare_data()  # cached: not rebuilt
    assert built[0].stat().st_mtime_ns == mtime
    dm.setup("fit")
    assert len(dm.corpus.datasets[0]) == 12
    other = TSDataModule([{**KS, "seed": 1}], FixedWindowTask(24, 6), cache_dir=str(tmp_path / "cache"))
    other.prepare_data()
    assert len(list((tmp_path / "cache").iterdir())) == 2  # different settings -> separate cache entry


def test_resume_from_checkpoint_sees_exactly_the_same_batches(tmp_path: Path) -> None:
    full = fit(make_dm(tmp_path), 8)
    first = fit(make_dm(tmp_path), 5)
    ckpt = tmp_path / "half.ckpt"
    first.trainer_ref.save_checkpoint(ckpt)  # type: ignore[attr-defined]
    state = torch.load(ckpt, weights_only=True)["TSDataModule"]
    assert {k: state[k] for k in ("consumed", "seed", "batch_size")} == {"consumed": 5, "seed": 0, "batch_size": 4}
    assert state["training_data"] == make_dm(tmp_path).corpus_summary()  # the corpus travels with the model
    rest = fit(make_dm(tmp_path), 8, ckpt=str(ckpt))
    assert len(full.seen) == 8 and len(first.seen) == 5 and len(rest.seen) == 3
    for a, b in zip(full.seen, first.seen + rest.seen):
        assert torch.equal(a, b)
    assert not torch.equal(full.seen[0], full.seen[1])


def test_validation_stream_is_fixed(tmp_path: Path) -> None:
    model = fit(make_dm(tmp_path), 6, val=True)
    assert len(model.val_seen) == 4  # two validations x val_batches
    assert torch.equal(model.val_seen[0], model.val_seen[2]) and torch.equal(
        model.val_seen[1], model.val_seen[3]
    )
    assert not any(torch.equal(model.val_seen[0], t) for t in model.seen)


def test_bad_configs_have_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="task must implement TaskBuilder"):
        TSDataModule([KS], task=object())  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"needs exactly one of \('path', 'lotsa_root', 'packaged', 'generator'\)"
    ):
        TSDataModule([{"weight": 1.0}], FixedWindowTask(4, 1))
    with pytest.raises(FileNotFoundError, match=r"LOTSA root .*lotsa_data does not exist"):
        TSDataModule([{"lotsa_root": str(tmp_path / "lotsa_data")}], FixedWindowTask(4, 1))
    with pytest.raises(FileNotFoundError, match=r"sub-dataset 'nope': .*nope does not exist; fix the path"):
        TSDataModule([{"path": str(tmp_path / "nope")}], FixedWindowTask(4, 1))  # at construction
    with pytest.raises(ValueError, match="data.batch_size must be >= 1, got 0"):
        TSDataModule([KS], FixedWindowTask(4, 1), batch_size=0)


def test_packaged_entry_and_hydra_configs_compose(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for name in ("synthetic", "chronos_mix", "lotsa"):
            cfg = compose("train", overrides=[f"data={name}", f"paths.data_dir={tmp_path}"])
            if name == "lotsa":
                with pytest.raises(Exception, match=rf"LOTSA root {tmp_path}/lotsa_data does not exist"):
                    instantiate(cfg.data, task=FixedWindowTask(8, 2), _convert_="all")
                continue
            dm = instantiate(cfg.data, task=FixedWindowTask(8, 2), _convert_="all")
            assert isinstance(dm, TSDataModule) and dm.entries[0].path.parent == tmp_path
    dm = TSDataModule(
        [{"packaged": "m3_other"}],
        FixedWindowTask(16, 8),
        batch_size=3,
        cache_dir=str(tmp_path),
        val_batches=0,
    )
    dm.prepare_data()
    batch = next(iter(dm.train_dataloader()))
    assert batch["context"].shape == (3, 16) and batch["target"].shape == (3, 8)


def test_checkpoint_and_export_carry_the_training_corpus(tmp_path: Path) -> None:
    import json

    dm = TSDataModule([KS, {"packaged": "m3_other", "weight": 0.5}], FixedWindowTask(24, 6), batch_size=4,
                      cache_dir=str(tmp_path / "cache"), val_batches=0)
    first = fit(dm, 2)
    ckpt = tmp_path / "a.ckpt"
    first.trainer_ref.save_checkpoint(ckpt)  # type: ignore[attr-defined]
    saved = torch.load(ckpt, weights_only=True)["TSDataModule"]["training_data"]
    subs = {s["name"]: s for s in saved["sub_datasets"]}
    assert subs["ks"]["synthetic"] is True and subs["ks"]["weight"] == 1.0 and subs["ks"]["sources"] == {}
    assert subs["m3_other"]["synthetic"] is False and subs["m3_other"]["weight"] == 0.5
    assert len(subs["m3_other"]["sources"]["m3_other"]) == 174
    path = dm.save_training_data(tmp_path / "export")
    assert path.name == "training_data.json" and json.loads(path.read_text()) == saved
    # resumed on another corpus: what the checkpoint trained on stays recorded
    other = make_dm(tmp_path)
    fit(other, 3, ckpt=str(ckpt))
    now = {(s["name"], bool(s.get("inherited"))) for s in other.corpus_summary()["sub_datasets"]}
    assert now == {("ks", False), ("m3_other", True)}


def test_early_weights_from_the_corpus_config_drive_the_first_steps(tmp_path):
    corpus = [{"name": "a", "generator": "seasonal", "num_series": 20, "seed": 0, "weight": 0.5, "early_weight": 1.0},
              {"name": "b", "generator": "arima", "num_series": 20, "seed": 0, "weight": 0.5, "early_weight": 0.0}]
    dm = TSDataModule(corpus, FixedWindowTask(8, 2), batch_size=400, cache_dir=str(tmp_path), early_steps=2,
                      weighting="explicit", val_batches=0)
    dm.prepare_data()
    sampler = dm._sampler(0)
    assert {s["dataset"] for s in sampler.sample(1)} == {"a"}  # curriculum: only entry a
    assert {s["dataset"] for s in sampler.sample(2)} == {"a", "b"}
    with pytest.raises(ValueError, match="data.early_steps must be >= 0"):
        TSDataModule(corpus, FixedWindowTask(8, 2), cache_dir=str(tmp_path), early_steps=-1)


def test_length_groups_apply_to_training_batches_of_tasks_that_pad(tmp_path: Path, caplog) -> None:
    from tsfm.models.chronos2.task import Chronos2Task

    task = Chronos2Task(context_length=64, prediction_length=16, patch_size=16, min_past=4, min_future=1)
    dm = TSDataModule([KS], task, batch_size=4, cache_dir=str(tmp_path / "cache"), length_groups=8)
    dm.prepare_data()
    assert dm._sampler(0).length_groups == 8 and dm._sampler(1).length_groups == 1  # validation: never grouped
    with caplog.at_level("INFO", logger="tsfm.data.datamodule"):
        fixed = make_dm(tmp_path, length_groups=8)
    assert fixed.length_groups == 1 and "data.length_groups=8 ignored: FixedWindowTask" in caplog.text


def test_freq_weights_reach_the_training_sampler(tmp_path: Path) -> None:
    structural = {"name": "ts", "generator": "trend_seasonal", "num_series": 300, "seed": 0, "weight": 1.0}
    shares = []
    for fw in (None, {"YS": 4.0}):
        dm = TSDataModule([structural], FixedWindowTask(8, 2), batch_size=4, cache_dir=str(tmp_path / "cache"),
                          item_weighting="uniform", freq_weights=fw)
        dm.prepare_data()
        drawn = dm._sampler(0).draw(np.random.default_rng(0), 4000)
        shares.append(sum(s.freq == "YS-JAN" for s in drawn) / len(drawn))
    assert shares[1] > 2.2 * shares[0] > 0  # x4 on a share near 0.14: about 0.4
    with pytest.raises(ValueError, match=r"data.freq_weights names frequencies no corpus series has: \['YE-DEC'\]"):
        TSDataModule([structural], FixedWindowTask(8, 2), cache_dir=str(tmp_path / "cache"),
                      freq_weights={"Y": 2.0})._sampler(0)
