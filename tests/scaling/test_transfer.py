"""Learning-rate transfer across widths (``tsfm.scaling.transfer``) and the size ladder (``tsfm.scaling.ladder``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.compose import compose_config
from tsfm.models.baseline.config import BaselineConfig
from tsfm.scaling.__main__ import main
from tsfm.scaling.ladder import depth_lr_scale, rung
from tsfm.scaling.transfer import analyze_transfer, read_transfer

LRS = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
WIDTHS = (32, 64, 128, 256)


def _optimum(par: str, width: int) -> float:
    """Synthetic truth: under sp the best lr halves per doubling of width; under mup it stays at 4e-3."""
    return 4e-3 * (32 / width if par == "sp" else 1.0)


def _write_job(
    root: Path, idx: int, par: str, width: int, lr: float, loss: float | None, depth: int = 2
) -> None:
    cfg = compose_config(["experiment=scaling_lr_transfer", f"model.module.config.parametrization={par}",
                    f"model.module.config.d_model={width}", f"optim.lr={lr}",
                    f"model.module.config.num_layers={depth}"])  # fmt: skip
    job = root / str(idx)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    if loss is None:  # a job that crashed before its validation
        return
    csv = job / "csv" / "version_0"
    csv.mkdir(parents=True)
    pd.DataFrame([{"epoch": 0, "step": 299, "val/loss": loss}]).to_csv(csv / "metrics.csv", index=False)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lr_transfer")
    i = 0
    for par in ("sp", "mup"):
        for w in WIDTHS:
            for lr in LRS:
                loss = 1.0 - 0.05 * math.log2(w) + 0.02 * (math.log2(lr) - math.log2(_optimum(par, w))) ** 2
                if par == "sp" and w == 256 and lr == LRS[-1]:
                    loss = float("nan")  # diverged
                _write_job(root, i, par, w, lr, loss)
                i += 1
    _write_job(root, i, "mup", 64, 1e-3, None)
    return root


def test_the_transfer_config_composes_the_ladder_head_rule():
    cfg = compose_config(["experiment=scaling_lr_transfer", "model.module.config.d_model=512"])
    config = BaselineConfig.from_dict(OmegaConf.to_container(cfg.model.module.config, resolve=True))
    assert (config.d_model, config.num_heads, config.head_dim, config.parametrization) == (512, 8, 64, "mup")
    assert config.base_width == 32 and config.num_layers == 2


def test_the_optimum_is_located_per_width_and_its_shift_measured(grid):
    runs, failed = read_transfer(grid)
    assert len(runs) == 2 * len(WIDTHS) * len(LRS)
    assert len(failed) == 1 and "no val/loss" in failed[0]
    res = analyze_transfer(runs, failed)
    mup, sp = res["parametrizations"]["mup"], res["parametrizations"]["sp"]
    for w in WIDTHS:
        assert mup["per_width"][str(w)]["best_lr"] == pytest.approx(4e-3, rel=1e-6)
    assert mup["max_abs_shift_steps"] == pytest.approx(0.0, abs=1e-6) and mup["transfers"]
    # sp: the optimum halves per doubling: 3 grid steps over 8x; the widest one sits at the grid's edge
    assert sp["per_width"]["128"]["shift_steps"] == pytest.approx(-2.0, abs=1e-6)
    assert not sp["transfers"] and sp["max_abs_shift_steps"] == pytest.approx(3.0, abs=1e-6)
    assert sp["grid_factor"] == pytest.approx(2.0)
    assert sp["per_width"]["256"]["losses"][-1] is None  # the diverged run is kept as such


def test_the_cli_writes_table_json_and_plot(grid, tmp_path, capsys):
    assert (
        main(["lr-transfer", str(grid), str(grid), "--out", str(tmp_path)]) == 0
    )  # pooled: duplicates collapse
    out = capsys.readouterr().out
    assert "| mup | 256 | 2 |" in out and "transfers" in out and "not fitted (2)" in out
    data = json.loads((tmp_path / "lr_transfer.json").read_text())
    assert set(data["parametrizations"]) == {"sp", "mup"}
    assert len(data["parametrizations"]["mup"]["per_width"]["32"]["lrs"]) == len(LRS)
    assert (tmp_path / "lr_transfer.png").stat().st_size > 10_000


def test_too_few_learning_rates_name_the_runs(tmp_path):
    for i, lr in enumerate((1e-3, 2e-3)):
        _write_job(tmp_path, i, "mup", 32, lr, 1.0)
        _write_job(tmp_path, 10 + i, "mup", 64, lr, 1.0)
    with pytest.raises(ValueError, match=r"mup, width 32: 2 learning rates .*runs: \["):
        analyze_transfer(*read_transfer(tmp_path))
    assert main(["lr-transfer", str(tmp_path)]) == 2


def test_depth_is_recorded_and_depths_are_not_pooled_into_one_curve(tmp_path):
    for i, lr in enumerate((8e-3, 1.6e-2, 3.2e-2)):
        loss = 1.0 + (math.log2(lr) - math.log2(1.6e-2)) ** 2
        _write_job(tmp_path / "ladder", i, "mup", 32, lr, loss, depth=2)
        _write_job(tmp_path / "ladder", 10 + i, "mup", 64, lr, loss - 0.1, depth=4)
    result = analyze_transfer(*read_transfer(tmp_path / "ladder"))
    per = result["parametrizations"]["mup"]["per_width"]
    assert (per["32"]["depth"], per["64"]["depth"]) == (2, 4)
    assert main(["lr-transfer", str(tmp_path / "ladder"), "--out", str(tmp_path / "out")]) == 0
    assert "| mup | 64 | 4 | 0.016 |" in (tmp_path / "out" / "lr_transfer.md").read_text()
    _write_job(tmp_path / "depth2", 0, "mup", 64, 1.6e-2, 0.5, depth=2)  # a depth-2 sweep at width 64, pooled
    with pytest.raises(ValueError, match=r"mup, width 64: runs of depths \[2, 4\] would be pooled"):
        analyze_transfer(read_transfer(tmp_path / "ladder")[0] + read_transfer(tmp_path / "depth2")[0])
    assert main(["lr-transfer", str(tmp_path / "ladder"), str(tmp_path / "depth2")]) == 2


def test_ladder_rules_and_config():
    r0, r3 = rung(0), rung(3)
    assert (r0["d_model"], r0["num_layers"], r0["num_heads"], r0["batch_size"]) == (32, 2, 1, 32)
    assert (r3["d_model"], r3["num_layers"], r3["head_dim"], r3["batch_size"]) == (256, 8, 32, 256)
    assert rung(7)["params"] > 2.5e9  # the ladder reaches the multi-billion scale
    for k in range(8):
        r = rung(k)
        cfg = BaselineConfig(d_model=r["d_model"], num_layers=r["num_layers"], num_heads=r["num_heads"])
        assert cfg.non_embedding_params() == r["params"]
        assert r["max_steps"] * r["batch_size"] * 17 >= 20 * r["params"]
        assert r["warmup_steps"] == max(10, round(0.05 * r["max_steps"]))
    cfg = compose_config(["experiment=scaling_ladder", "rung=2"])
    config = OmegaConf.to_container(cfg.model.module.config, resolve=True)
    assert (config["d_model"], config["num_layers"], config["num_heads"], config["parametrization"]) == (
        128,
        6,
        4,
        "mup",
    )
    assert cfg.trainer.max_steps == rung(2)["max_steps"] and cfg.data.batch_size == 128
    assert cfg.optim.lr == pytest.approx(cfg.ladder_lr * 4 / 6)  # the depth rule: rung 2 has 6 layers
    assert [rung(k)["lr_scale"] for k in (0, 1, 2, 4, 7)] == pytest.approx([1.0, 1.0, 4 / 6, 0.4, 0.25])
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        depth_lr_scale(0)
    assert config["output_mult"] == cfg.ladder_output_mult == 2.0  # muP's output multiplier, tuned at rung 1
    assert (
        config["base_width"] == 64 and config["d_model"] == 128
    )  # muP's base is rung 1; rung 2 is twice as wide
    with pytest.raises(ValueError, match="ladder rung must be an integer in"):
        rung(8)
    assert np.isclose(rung(1, tokens_per_window=34)["max_steps"] * 2, rung(1)["max_steps"], atol=2)


def test_runs_with_other_mup_multipliers_are_their_own_parametrization(tmp_path):
    from tsfm.scaling.transfer import parametrization_label

    assert (
        parametrization_label(
            {"parametrization": "mup", "output_mult": 1.0, "init_std": 0.02, "attn_mult": 1.0}
        )
        == "mup"
    )
    assert (
        parametrization_label({"parametrization": "mup", "output_mult": 4, "init_std": 0.01})
        == "mup(output_mult=4,init_std=0.01)"
    )
    assert (
        parametrization_label({"parametrization": "sp"}) == "sp"
    )  # configs from before the multipliers existed
    cfg = compose_config(["experiment=scaling_mup_tune", "model.module.config.output_mult=4", "optim.lr=1e-2"])
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    (job / "csv" / "version_0").mkdir(parents=True)
    pd.DataFrame([{"epoch": 0, "step": 299, "val/loss": 0.9}]).to_csv(
        job / "csv" / "version_0" / "metrics.csv", index=False
    )
    (run,), failed = read_transfer(tmp_path)
    assert (run.parametrization, run.width, run.lr, run.loss, failed) == (
        "mup(output_mult=4)",
        32,
        1e-2,
        0.9,
        [],
    )
