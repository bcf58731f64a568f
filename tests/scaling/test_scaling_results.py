"""Reading a multirun sweep (config.yaml + CSVLogger metrics) and the ``tsfm.scaling fit`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.compose import CONF, compose_config
from tsfm.models.baseline.config import BaselineConfig
from tsfm.scaling.__main__ import main
from tsfm.scaling.results import best_per_size, compute_frontier, read_sweep

SIZES = ("tiny", "mini", "small", "base")
ALPHA = {"enc": 0.25, "dec": 0.15}


def _law(arch: str, n: float, steps: float) -> float:
    return 40.0 * n ** -ALPHA[arch] + 5.0 / steps + 0.3


def _write_job(root: Path, idx: int, model: str, overrides: list[str], loss_offset: float = 0.0) -> int:
    cfg = compose_config([f"model={model}", "data=synthetic", "trainer.max_steps=400", *overrides])
    job = root / str(idx)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create([f"model={model}", *overrides]), job / ".hydra" / "overrides.yaml")
    n = BaselineConfig.from_dict(
        OmegaConf.to_container(cfg.model.module.config, resolve=True)
    ).non_embedding_params()
    rows = []
    for step in (99, 199, 299, 399):  # Lightning logs validation at global_step - 1
        rows.append({"epoch": 0, "step": step, "train/loss": 1.0, "val/loss": np.nan})
        rows.append(
            {
                "epoch": 0,
                "step": step,
                "train/loss": np.nan,
                "val/loss": _law(model.split("_")[1], n, step + 1) + loss_offset,
            }
        )
    csv = job / "csv" / "version_0"
    csv.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(csv / "metrics.csv", index=False)
    return n


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multirun")
    i = 0
    for size in SIZES:
        for arch in ("enc", "dec"):
            _write_job(root, i, f"baseline_{arch}_{size}", [])
            i += 1
    # a worse learning rate for one size: the fit must keep the best run per size
    _write_job(root, i, "baseline_enc_tiny", ["optim.lr=0.01"], loss_offset=0.5)
    # another training objective is its own group, never "the best run" of the encoder
    _write_job(root, i + 1, "baseline_enc_tiny", ["model.module.encoder_mask=random"], loss_offset=-0.5)
    (root / "multirun.yaml").write_text("{}")
    return root


def test_read_sweep_gets_n_d_and_curves(sweep):
    runs = read_sweep(sweep)
    assert len(runs) == 10 and {r.label for r in runs} == {"encoder", "decoder", "encoder-random"}
    r = next(r for r in runs if r.architecture == "decoder" and r.params == max(x.params for x in runs))
    assert r.tokens_per_step == 32 * (512 + 64) // 32  # batch x patches per window
    np.testing.assert_array_equal(r.steps, [100, 200, 300, 400])
    assert r.final_tokens == 400 * 32 * 18
    np.testing.assert_allclose(r.compute, 6.0 * r.params * r.tokens)
    best = best_per_size(runs)
    assert len(best) == 9
    assert all("optim.lr=0.01" not in b.overrides for b in best)
    assert [b.objective for b in best if b.label == "encoder-random"] == ["random"]


def test_compute_frontier_is_the_lower_envelope(sweep):
    c, loss = compute_frontier([r for r in read_sweep(sweep) if r.label == "encoder"])
    assert np.all(np.diff(c) > 0) and np.all(np.diff(loss) < 0)


def test_cli_fits_the_planted_exponents(sweep, tmp_path, capsys):
    fast_joint = ["--joint-grid", "small", "--joint-top-k", "20"]
    assert main(["fit", str(sweep), "--out", str(tmp_path), "--bootstrap", "10", *fast_joint]) == 0
    out = capsys.readouterr().out
    assert "encoder          L(N)" in out and "decoder          L(N)" in out
    result = json.loads((tmp_path / "scaling_fit.json").read_text())
    assert (tmp_path / "scaling_fit.png").stat().st_size > 10_000
    for arch, key in (("encoder", "enc"), ("decoder", "dec")):
        fit = result["fits"][arch]["L(N)"]["fit"]
        assert fit["alpha"] == pytest.approx(ALPHA[key], rel=1e-3)  # losses are exactly A N^-a + const
        assert fit["E"] == pytest.approx(0.3 + 5.0 / 400, rel=1e-3)
        assert len(result["fits"][arch]["L(D)"]["x"]) == 4
    assert len(result["runs"]) == 9
    assert "need at least 3 distinct x" in result["fits"]["encoder-random"]["L(N)"]["error"]
    assert f"(runs: {sweep}/" in result["fits"]["encoder-random"]["L(N)"]["error"]  # names the runs
    # the joint fit: val/loss = 40 N^-alpha + (5 * 576) D^-1 + 0.3, D = steps x 32 x 18 patches
    assert "| encoder | val/loss | 16 (4 x 4) |" in out and "Compute-optimal allocation" in out
    for arch, key in (("encoder", "enc"), ("decoder", "dec")):
        fit = result["joint"]["groups"][arch]["metrics"]["val/loss"]["fit"]
        assert (fit["alpha"], fit["beta"]) == (
            pytest.approx(ALPHA[key], abs=1e-3),
            pytest.approx(1.0, abs=1e-3),
        )
        assert fit["E"] == pytest.approx(0.3, rel=1e-2)
    assert "no out-of-distribution scores" in result["joint"]["notes"][0]
    assert "Joint fits" in (tmp_path / "scaling_fit.md").read_text()
    assert (tmp_path / "scaling_joint.png").stat().st_size > 10_000


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["fit", str(tmp_path)]) == 2
    assert "no job directories" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path), "--form", "cubic"])
    assert main(["fit", str(tmp_path), "--no-joint", "--joint-min-tokens-per-param", "10"]) == 2
    assert "drop --no-joint" in capsys.readouterr().err


def test_cli_pools_several_sweeps(sweep, tmp_path):
    assert (
        main(
            [
                "fit",
                str(sweep),
                str(sweep),
                "--out",
                str(tmp_path),
                "--bootstrap",
                "0",
                "--no-plot",
                "--no-joint",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "scaling_fit.json").read_text())
    assert result["multirun_dirs"] == [str(sweep)] * 2 and len(result["runs"]) == 9  # duplicates collapse
    assert not (tmp_path / "scaling_fit.png").exists()
    assert "joint" not in json.loads((tmp_path / "scaling_fit.json").read_text())


OOD_ALPHA = {"enc": 0.05, "dec": 0.10}


def test_cli_fits_out_of_distribution_scores_beside_val_loss(tmp_path, capsys):
    """Jobs that ran final_eval=<suite> carry dev-suite scores: L(N) is fitted on them too, with the
    paired-bootstrap CI of alpha(OOD) - alpha(ID); a job without them is named, the rest fitted."""
    root = tmp_path / "multirun"
    i = 0
    for size in SIZES:
        for arch in ("enc", "dec"):
            n = _write_job(root, i, f"baseline_{arch}_{size}", [])
            rel = 3.0 * n ** -OOD_ALPHA[arch] + 0.5
            if not (arch == "dec" and size == "mini"):
                (root / str(i) / "final_eval").mkdir()
                (root / str(i) / "final_eval" / "results.json").write_text(
                    json.dumps(
                        {
                            "model": "this run",
                            "aggregate": {"this run": {"rel_wql": rel, "rel_mase": rel + 0.1}},
                        }
                    )
                )
            i += 1
    out_dir = tmp_path / "out"
    assert main(["fit", str(root), "--out", str(out_dir), "--bootstrap", "50", "--no-joint"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out_dir / "scaling_fit.json").read_text())
    enc = result["fits"]["encoder"]["L(N) OOD rel_wql"]
    assert enc["fit"]["alpha"] == pytest.approx(OOD_ALPHA["enc"], rel=1e-3)
    diff = enc["ood_minus_id_alpha"]
    assert diff["estimate"] == pytest.approx(OOD_ALPHA["enc"] - ALPHA["enc"], abs=1e-3)
    assert diff["ci"][0] <= diff["estimate"] <= diff["ci"][1]
    dec = result["fits"]["decoder"]["L(N) OOD rel_mase"]
    assert len(dec["x"]) == 3 and len(dec["missing"]) == 1 and dec["missing"][0].endswith("/3")
    assert "alpha OOD - ID" in printed and "runs without it" in printed
    assert "L(N) OOD rel_wql (alpha OOD - ID" in (out_dir / "scaling_fit.md").read_text()
    assert (out_dir / "scaling_fit.png").stat().st_size > 10_000


def _compose_job(root: Path, name: str, overrides: list[str]) -> Path:
    cfg = compose_config(overrides)
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    csv = job / "csv" / "version_0"
    csv.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 0], "step": [149, 299], "val/loss": [2.0, 1.5]}).to_csv(
        csv / "metrics.csv", index=False
    )
    return job


@pytest.mark.parametrize("family", ["chronos2", "moirai"])
def test_family_sweeps_read_the_study_sizes(tmp_path, family):
    """experiment=scaling_<family>: six study sizes of that family; N counts the encoder only, D the
    expected observed patches of a sample, and the sizes grow as the baseline's do."""
    from tsfm.scaling.results import encoder_params, read_run
    from tsfm.scaling.sizes import SIZES, size

    runs = [read_run(_compose_job(tmp_path, s, [f"experiment=scaling_{family}", f"size={s}"])) for s in SIZES]
    assert {r.label for r in runs} == {f"{family}-encoder"} and all(r.family == family for r in runs)
    params = [r.params for r in runs]
    assert params == sorted(params) and len(set(params)) == 6
    cfg = OmegaConf.load(tmp_path / "small" / ".hydra" / "config.yaml")
    assert cfg.model.module.config.d_model == size("small")["d_model"] == 192
    assert cfg.model.module.config.num_layers == 4
    # the whole model is larger than N: the patch embedding and output head are left out
    import torch

    import tsfm.models  # noqa: F401
    from tsfm.models.spec import get

    spec = get(family)
    config = OmegaConf.to_container(cfg.model.module.config, resolve=True)
    with torch.device("meta"):
        whole = sum(p.numel() for p in spec.load("model")(spec.load("config").from_dict(config)).parameters())
    assert runs[4].params == encoder_params(family, config) < whole
    if family == "moirai":
        assert (
            runs[0].tokens_per_step == 32 * 17
        )  # crops of U(2, 1024 // 32) patches of 32 steps: 17 on average
    else:
        # cuts uniform in [min_past, 1024 - 32]: contexts of min(cut, 512) steps in patches of 16, + 2 horizon patches
        cuts = np.arange(16, 1024 - 32 + 1)
        assert runs[0].tokens_per_step == round(32 * (np.ceil(np.minimum(cuts, 512) / 16).mean() + 2))
    np.testing.assert_array_equal(runs[0].steps, [150, 300])


def test_family_sweep_on_a_corpus_without_one_length_is_refused(tmp_path):
    from tsfm.scaling.results import read_run

    job = _compose_job(tmp_path, "j", ["experiment=scaling_chronos2", "size=nano", "data=structural"])
    with pytest.raises(ValueError, match=r"data.corpus\[\*\].length"):
        read_run(job)


def test_study_size_resolver_names_its_choices():
    from tsfm.scaling.sizes import resolve

    assert resolve("head_dim", "base") == 32 and resolve("d_ff", "tiny") == 256
    with pytest.raises(ValueError, match="nano, micro, tiny, mini, small, base"):
        resolve("d_model", "huge")
    with pytest.raises(ValueError, match="unknown field"):
        resolve("width", "tiny")


def test_moirai_sweep_without_a_fixed_patch_size_is_refused(tmp_path):
    from tsfm.scaling.results import read_run

    job = _compose_job(
        tmp_path, "j", ["experiment=scaling_moirai", "size=nano", "model.task.patch_size=null"]
    )
    with pytest.raises(ValueError, match="fixed model.task.patch_size"):
        read_run(job)


def test_study_sizes_are_the_baseline_model_files_shapes():
    """The family sweeps' table (tsfm/scaling/sizes.py) and conf/model/baseline_*_<size>.yaml must not drift apart."""
    from tsfm.scaling.sizes import SIZES

    for name, (d, layers, heads) in SIZES.items():  # the decoder files extend the encoder files
        cfg = OmegaConf.load(CONF / "model" / f"baseline_enc_{name}.yaml").module.config
        assert (cfg.d_model, cfg.num_layers, cfg.num_heads) == (d, layers, heads), f"baseline_enc_{name}"
        assert (
            OmegaConf.load(CONF / "model" / f"baseline_dec_{name}.yaml").defaults[0] == f"baseline_enc_{name}"
        )
