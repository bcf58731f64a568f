"""Every config composes; tiny models instantiate from config; the train entry point runs end to end."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.compose import CONF, compose_config
from tsfm.models import families
from tsfm.utils.config import register_resolvers

register_resolvers()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def _compose(overrides: list[str]):  # with the hydra node: sweeps, launchers, ${hydra:...}
    return compose_config(overrides, hydra_config=True)


def _resolve(cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}


@pytest.mark.parametrize("model", _options("model"))
def test_every_model_config_composes(model):
    cfg = _resolve(_compose([f"model={model}"]))
    spec = families()[cfg["model"]["family"]]  # the family's spec names the classes the config builds
    assert cfg["model"]["module"]["_target_"] == spec.module.replace(":", ".")
    assert cfg["model"]["task"]["_target_"] == spec.task.replace(":", ".")


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_every_trainer_config_composes(trainer):
    cfg = _resolve(_compose([f"trainer={trainer}"]))
    assert cfg["trainer"]["_target_"] == "lightning.pytorch.Trainer"
    assert cfg["optim"]["max_steps"] == cfg["trainer"]["max_steps"]


def test_fsdp_64gpu_is_8_nodes_of_8():
    t = _resolve(_compose(["trainer=fsdp_64gpu"]))["trainer"]
    assert (t["num_nodes"], t["devices"], t["accelerator"]) == (8, 8, "gpu")
    assert t["strategy"]["_target_"].endswith("ModelParallelStrategy")
    assert t["strategy"]["data_parallel_size"] == 64


def test_the_slurm_launcher_starts_one_task_per_device_of_the_trainer():
    cfg = _compose(["hydra/launcher=slurm", "trainer=fsdp_64gpu"])
    _resolve(cfg)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (8, 8, 8)


# values an option declares mandatory (???) and a user must pass
_REQUIRED = {"chronos2_context_extension_stage2": ["stage1_ckpt=/ckpts/stage1.ckpt"]}


@pytest.mark.parametrize("group", ["data", "optim", "callbacks", "logger", "experiment", "hparams_search", "registry"])
def test_every_option_of_other_groups_composes(group):
    for option in _options(group):
        _resolve(_compose([f"{group}={option}", *_REQUIRED.get(option, [])]))


def test_removing_the_benchmark_keeps_every_n_step_checkpoints():
    cfg = _resolve(_compose(["~callbacks.benchmark", "callbacks.model_checkpoint.monitor=null",
                             "callbacks.model_checkpoint.save_top_k=-1", "trainer.val_check_interval=50"]))
    assert "benchmark" not in cfg["callbacks"]
    ckpt = cfg["callbacks"]["model_checkpoint"]
    assert (ckpt["monitor"], ckpt["save_top_k"], ckpt["every_n_train_steps"]) == (None, -1, 50)
    with_bench = _resolve(_compose(["callbacks.benchmark.every_n_steps=30"]))["callbacks"]["model_checkpoint"]
    assert (with_bench["monitor"], with_bench["every_n_train_steps"]) == ("benchmark/avg_wql", 30)
    assert with_bench["save_top_k"] == 3
    # removing the benchmark alone (either spelling) must not leave a monitor on a metric nobody logs
    for removal in ("~callbacks.benchmark", "callbacks.benchmark=null"):
        ckpt = _resolve(_compose([removal, "trainer.val_check_interval=40"]))["callbacks"]["model_checkpoint"]
        assert (ckpt["monitor"], ckpt["save_top_k"], ckpt["every_n_train_steps"]) == (None, -1, 40), removal


def test_mandatory_value_missing_is_reported():
    from omegaconf.errors import InterpolationToMissingValueError

    with pytest.raises(InterpolationToMissingValueError, match="stage1_ckpt"):
        _resolve(_compose(["experiment=chronos2_context_extension_stage2"]))


def test_family_base_selects_paper_optimizer_and_cli_wins():
    assert _resolve(_compose(["model=moirai_small"]))["optim"]["betas"] == [0.9, 0.98]
    assert _resolve(_compose(["model=moirai_small", "optim=adamw", "optim.lr=0.5"]))["optim"]["lr"] == 0.5


def test_the_quickstart_recipe_is_the_measured_one():
    # experiments/recipes/README.md, sessions 19-20: these are the settings its dev-suite seeds ran with
    cfg = _resolve(_compose([]))
    assert cfg["model"]["module"]["loss_horizon"] == "observed"
    assert cfg["model"]["task"]["min_future"] == 1
    c = cfg["model"]["module"]["config"]
    assert (c["d_model"], c["d_kv"], c["d_ff"], c["num_layers"], cfg["model"]["context_length"]) == (128, 32, 512, 4, 256)
    # session 30: Muon on the hidden matrices, 8,000 steps (the AdamW recipe's 10,000 took the same minutes)
    assert (cfg["optim"]["lr"], cfg["optim"]["scheduler"], cfg["trainer"]["max_steps"]) == (3e-3, "wsd", 8000)
    assert (cfg["optim"]["optimizer"], cfg["optim"]["muon_ns_steps"], cfg["optim"]["muon_momentum"]) == ("muon", 5, 0.95)
    assert cfg["trainer"]["val_check_interval"] == 2000 and cfg["data"]["batch_size"] == 64
    # session 29: compiled where a compiler is found, with the fused AdamW (3 seeds at 2 threads)
    assert (cfg["model"]["compile"], cfg["model"]["module"]["compile"], cfg["optim"]["fused"]) == ("auto", "auto", True)
    # experiment=cpu_1h (session 25): the quickstart's model and schedule for 30,000 steps, on the default corpus
    # with rough seasonal patterns on its seasonal and trend_seasonal entries, and nothing else changed but the
    # execution its figures were measured with (eager, the plain AdamW, no Muon)
    cpu_1h = _resolve(_compose(["experiment=cpu_1h"]))
    assert (cpu_1h["model"]["compile"], cpu_1h["model"]["module"]["compile"], cpu_1h["optim"]["fused"]) == (False, False, False)
    eager = {**cfg["model"], "compile": False, "module": {**cfg["model"]["module"], "compile": False}}
    assert cpu_1h["model"] == eager
    assert {**cpu_1h["optim"], "max_steps": 0} == {**cfg["optim"], "max_steps": 0, "fused": False, "optimizer": "adamw"}  # the schedule spans the 30,000
    assert cpu_1h["optim"]["max_steps"] == 30000
    assert (cpu_1h["trainer"]["max_steps"], cpu_1h["trainer"]["val_check_interval"]) == (30000, 5000)
    rough = [e.pop("season_rough", 0.0) for e in cpu_1h["data"]["corpus"]]
    assert rough == [0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert cpu_1h["data"]["corpus"] == cfg["data"]["corpus"]
    assert _resolve(_compose(["optim=adamw"]))["optim"]["scheduler"] != "wsd"  # the command line still picks optim
    assert _resolve(_compose(["model=chronos2_small"]))["model"]["module"]["loss_horizon"] == "full"  # the reference


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_the_optuna_search_composes_with_each_launcher(launcher):
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name="finetune", return_hydra_config=True,
                      overrides=["ckpt=m", "dataset=d.csv", "prediction_length=12", "hparams_search=optuna",
                                 f"hydra/launcher={launcher}"])
    HydraConfig.instance().set_config(cfg)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["_target_"] == "hydra_plugins.tsfm_optuna.TsfmOptunaSweeper" and sweeper["n_trials"] == 8
    assert set(sweeper["params"]) == {"finetune", "finetune.lr"} and sweeper["storage"].endswith("finetune/optuna.db")
    launcher_cfg = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if launcher == "local":
        assert launcher_cfg["n_jobs"] == 2 and "JoblibLauncher" in launcher_cfg["_target_"]
    else:  # a fine-tuning job has no trainer group: one node, one task
        assert launcher_cfg["nodes"] == 1 and launcher_cfg["tasks_per_node"] == 1
