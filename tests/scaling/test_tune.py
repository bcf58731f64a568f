"""muP multiplier x learning-rate tables at the base width (tsfm.scaling.tune, `python -m tsfm.scaling tune`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.compose import compose_config
from tsfm.scaling.__main__ import main
from tsfm.scaling.transfer import read_transfer
from tsfm.scaling.tune import analyze_tuning


def _job(root: Path, idx: int, loss: float | None, lr: float, width: int = 32, **mults: float) -> None:
    overrides = [f"optim.lr={lr}", f"model.module.config.d_model={width}"]
    overrides += [f"model.module.config.{k}={v}" for k, v in mults.items()]
    cfg = compose_config(["experiment=scaling_mup_tune", *overrides])
    job = root / str(idx)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    if loss is None:  # crashed before its validation
        return
    (job / "csv" / "version_0").mkdir(parents=True)
    cell = "" if loss != loss else loss  # CSVLogger writes a NaN loss as an empty cell
    pd.DataFrame([{"epoch": 0, "step": 299, "val/loss": cell}]).to_csv(job / "csv" / "version_0" / "metrics.csv",
                                                                        index=False)  # fmt: skip


@pytest.fixture
def sweeps(tmp_path) -> list[Path]:
    first, second = tmp_path / "tune", tmp_path / "tune2"
    for i, (lr, plain, out4) in enumerate([(8e-3, 0.99, 0.91), (1.6e-2, 0.95, 0.86), (3.2e-2, 0.93, 0.83)]):
        _job(first, i, plain, lr)
        _job(first, 10 + i, out4, lr, output_mult=4)
    _job(first, 20, float("nan"), 6.4e-2, output_mult=16)  # diverged
    _job(first, 21, 1.10, 3.2e-2, output_mult=16)
    _job(first, 22, None, 6.4e-2)  # failed: no val/loss
    # an extension: output 4 with init std 0.01, and output 4 at 3.2e-2 again (the later run counts)
    _job(second, 0, 0.84, 1.6e-2, output_mult=4, init_std=0.01)
    _job(second, 1, 0.85, 3.2e-2, output_mult=4, init_std=0.01)
    _job(second, 2, 0.82, 3.2e-2, output_mult=4)
    return [first, second]


def test_the_grid_is_tabulated_per_setting_with_the_best_marked(sweeps, tmp_path, capsys):
    runs, failed = [], []
    for d in sweeps:
        r, f = read_transfer(d)
        runs, failed = runs + r, failed + f
    res = analyze_tuning(runs, failed)
    assert list(res["settings"]) == ["mup", "mup(output_mult=4)", "mup(output_mult=16)",
                                     "mup(output_mult=4,init_std=0.01)"]  # fmt: skip
    assert res["best"] == "mup(output_mult=4)" and res["width"] == 32 and res["depth"] == 2
    out4 = res["settings"]["mup(output_mult=4)"]
    assert (out4["lrs"], out4["losses"]) == (
        [8e-3, 1.6e-2, 3.2e-2],
        [0.91, 0.86, 0.82],
    )  # the later 3.2e-2 run
    assert out4["jobs"][2].endswith("tune2/2")
    assert [(Path(d["job"]).name, Path(d["by"]).parent.name) for d in res["superseded"]] == [("12", "tune2")]
    assert (out4["best_lr"], out4["best_loss"], out4["best_at_grid_edge"]) == (3.2e-2, 0.82, True)
    assert out4["multipliers"] == {"output_mult": 4.0, "init_std": 0.02, "attn_mult": 1.0}
    o16 = res["settings"]["mup(output_mult=16)"]
    assert (o16["losses"], o16["best_lr"], o16["best_at_grid_edge"]) == ([1.10, None], 3.2e-2, True)
    both = res["settings"]["mup(output_mult=4,init_std=0.01)"]
    assert (both["best_lr"], both["best_at_grid_edge"]) == (1.6e-2, True)
    assert len(failed) == 1 and "tune/22" in failed[0]

    assert main(["tune", *map(str, sweeps), "--out", str(tmp_path / "out")]) == 0
    md = capsys.readouterr().out
    assert "| setting (width 32) | lr 0.008 | lr 0.016 | lr 0.032 | lr 0.064 | best |" in md
    assert "| **mup(output_mult=4)** | 0.910 | 0.860 | **0.820** |  | **0.820** |" in md
    assert "| mup(output_mult=16) |  |  | **1.100** | diverged | 1.100 |" in md
    assert "not tabulated (1)" in md and "the later run counted (1):" in md and "tune/12 (by " in md
    assert "the edge of its row's rates (the optimum may lie outside): mup, mup(output_mult=4)," in md
    data = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert data["best"] == "mup(output_mult=4)" and data["lrs"] == [8e-3, 1.6e-2, 3.2e-2, 6.4e-2]
    assert (tmp_path / "out" / "tune.md").read_text().strip() == md.split("wrote")[0].strip()
    assert (tmp_path / "out" / "tune.png").stat().st_size > 10_000


def test_a_grid_over_several_widths_is_refused_naming_the_runs(tmp_path, capsys):
    _job(tmp_path, 0, 0.9, 1.6e-2)
    _job(tmp_path, 1, 0.8, 1.6e-2, width=64)
    with pytest.raises(
        ValueError, match=r"one width; these runs have widths \[32, 64\].*lr-transfer.*64: \['"
    ):
        analyze_tuning(*read_transfer(tmp_path))
    assert main(["tune", str(tmp_path)]) == 2
    assert "one width" in capsys.readouterr().err


def test_nothing_finite_or_nothing_finished_is_an_error(tmp_path):
    _job(tmp_path / "nan", 0, float("nan"), 1.6e-2)
    with pytest.raises(
        ValueError, match=r"every run diverged: add lower learning rates to the grid; runs: \["
    ):
        analyze_tuning(*read_transfer(tmp_path / "nan"))
    _job(tmp_path / "none", 0, None, 1.6e-2)
    with pytest.raises(ValueError, match=r"no finished runs to tabulate; failed: \[.*no val/loss"):
        analyze_tuning(*read_transfer(tmp_path / "none"))


def test_one_cell_twice_in_one_sweep_or_rates_that_share_a_column_are_refused(tmp_path):
    _job(tmp_path / "dup", 0, 0.9, 1.6e-2, output_mult=4)
    _job(tmp_path / "dup", 1, 0.8, 1.6e-2, output_mult=4)  # e.g. another seed, which the table cannot show
    with pytest.raises(
        ValueError, match=r"mup\(output_mult=4\) at lr 0.016 was run twice in one sweep \(.*dup/0, "
    ):
        analyze_tuning(*read_transfer(tmp_path / "dup"))
    _job(tmp_path / "clash", 0, 0.9, 1e-3)
    _job(tmp_path / "clash", 1, 0.8, 1.0000001e-3)
    with pytest.raises(
        ValueError, match=r"differ only past 6 digits \(\['0.001'\]\).*same optim.lr; runs: \["
    ):
        analyze_tuning(*read_transfer(tmp_path / "clash"))


def test_ties_go_to_the_lower_rate_and_a_one_rate_row_is_flagged(tmp_path):
    _job(tmp_path, 0, 0.85, 2e-2)
    _job(tmp_path, 1, 0.85, 1e-2)
    _job(tmp_path, 2, 0.80, 1e-2, output_mult=2)  # one rate only: it wins, flagged
    res = analyze_tuning(*read_transfer(tmp_path))
    assert res["settings"]["mup"]["best_lr"] == 1e-2
    assert res["best"] == "mup(output_mult=2)" and res["settings"]["mup(output_mult=2)"]["best_at_grid_edge"]
    assert main(["tune", str(tmp_path), "--no-plot"]) == 0  # default --out: the first sweep dir
    assert (tmp_path / "tune.md").exists() and not (tmp_path / "tune.png").exists()
