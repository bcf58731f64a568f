"""Suite configs -> datasets: packaged loaders, GIFT-Eval protocol, missing local data."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir

from tsfm.eval.suites import MissingDataError, gift_eval_protocol, load_dataset, parse_suite, zscore

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("suite", sorted(p.stem for p in (CONF / "eval").glob("*.yaml")))
def test_every_suite_config_composes_and_parses(suite: str) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"eval={suite}", "ckpt=naive"], return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    HydraConfig.instance().set_config(cfg)
    plain = OmegaConf.to_container(cfg.eval, resolve=True)
    specs = parse_suite(plain)
    assert specs and len({s.name for s in specs}) == len(specs)
    assert set(plain["metrics"]) <= {"wql", "mase", "crps", "msis", "mae", "mse", "rmse", "smape", "mape", "nll"}


def test_dev_suite_matches_the_issue() -> None:
    specs = {s.name: s for s in parse_suite(yaml.safe_load((CONF / "eval" / "dev.yaml").read_text()))}
    want = {"m1_monthly": (18, 1, 12), "m1_quarterly": (8, 1, 4), "m1_yearly": (6, 1, 1), "m3_monthly": (18, 1, 12),
            "m3_quarterly": (8, 1, 4), "m3_yearly": (6, 1, 1), "m3_other": (8, 1, 1), "vic_elec": (48, 20, 48),
            "pedestrian": (24, 20, 24), "epf_fr_be": (24, 20, 24), "us_gasoline": (13, 20, 1),
            "us_employment": (12, 2, 12), "aus_livestock": (12, 1, 12), "prison": (8, 1, 4),
            "global_economy_gdp": (6, 1, 1)}
    assert {n: (s.prediction_length, s.num_windows, s.seasonality) for n, s in specs.items()} == want


def test_packaged_loaders() -> None:
    specs = {s.name: s for s in parse_suite(yaml.safe_load((CONF / "eval" / "dev.yaml").read_text()))}
    m3 = load_dataset(specs["m3_yearly"])
    assert len(m3) == 645 and m3[0].target.shape[0] == 1 and m3[0].target.dtype == np.float32
    assert {s.dataset for s in m3} == {"m3_yearly"}
    gdp = load_dataset(specs["global_economy_gdp"])  # the data layer's `global_economy`, all-missing items kept
    assert len(gdp) == 263 and sum(not np.isfinite(s.target).any() for s in gdp) > 0
    ped = load_dataset(specs["pedestrian"])
    # 4 sensors on a regular hourly grid; gaps in the table become NaN, not dropped rows
    assert len(ped) == 4
    assert max(s.length for s in ped) == 17544 and sum(int(np.isnan(s.target).sum()) for s in ped) > 0
    gas = load_dataset(specs["us_gasoline"])
    assert gas[0].length == 1355 and not np.isnan(gas[0].target).any()


def test_missing_local_data_says_where_and_how(tmp_path) -> None:
    suite = {"name": "chronos_bench_ii", "datasets": [
        {"name": "m4_yearly", "source": "hf", "path": "chronos_datasets/m4_yearly", "prediction_length": 6}]}
    spec = parse_suite(suite)[0]
    with pytest.raises(MissingDataError) as e:
        load_dataset(spec, tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "chronos_datasets" / "m4_yearly") in msg
    assert "python -m tsfm.eval.download --suite chronos_bench_ii" in msg


def test_missing_suite_data_fails_before_any_work(tmp_path) -> None:
    from tsfm.eval.runner import evaluate_suite

    from .conftest import LastValueForecaster

    suite = yaml.safe_load((CONF / "eval" / "chronos_bench_ii.yaml").read_text())
    suite["data_dir"] = str(tmp_path)
    f = LastValueForecaster()
    with pytest.raises(MissingDataError) as e:
        evaluate_suite(f, suite, cache_dir=tmp_path)
    msg = str(e.value)
    assert "27 of 27 datasets of suite 'chronos_bench_ii' are not on disk" in msg
    assert str(tmp_path / "chronos_datasets_extra" / "ETTh") in msg and f.calls == 0


def test_bad_suite_entries() -> None:
    with pytest.raises(ValueError, match="lists no datasets"):
        parse_suite({"name": "x", "datasets": []})
    with pytest.raises(ValueError, match=r"lacks \['prediction_length'\]"):
        parse_suite({"datasets": [{"name": "a", "source": "hf"}]})
    with pytest.raises(ValueError, match="no packaged set 'm5'"):
        load_dataset(parse_suite({"datasets": [{"name": "m5", "source": "packaged", "prediction_length": 1}]})[0])
    with pytest.raises(ValueError, match="unknown source 'ftp'"):
        load_dataset(parse_suite({"datasets": [{"name": "a", "source": "ftp", "prediction_length": 1}]})[0])
    with pytest.raises(ValueError, match=r"dataset 'a': unknown key\(s\) \['num_window'\]; dataset entries take .*'num_windows'"):
        parse_suite({"name": "x", "datasets": [{"name": "a", "source": "packaged", "prediction_length": 1, "num_window": 3}]})


def test_local_hf_and_arrow_sources(tmp_path) -> None:
    ts = np.arange("2020-01-01", "2020-01-31", dtype="datetime64[D]")
    datasets.Dataset.from_dict({"id": ["a", "b"], "timestamp": [ts, ts],
                                "target": [np.arange(30.0), np.ones(30)]}).save_to_disk(str(tmp_path / "hfset"))
    datasets.Dataset.from_dict({"item_id": ["x"], "start": ["2020-01-01"], "freq": ["h"],
                                "target": [[np.arange(40.0).tolist(), np.zeros(40).tolist()]]}).save_to_disk(
        str(tmp_path / "arrowset"))
    hf = load_dataset(parse_suite({"datasets": [
        {"name": "hfset", "source": "hf", "prediction_length": 7}]})[0], tmp_path)
    assert [s.item_id for s in hf] == ["a", "b"] and hf[0].freq == "D" and hf[0].length == 30
    spec = parse_suite({"datasets": [{"name": "arrowset", "source": "arrow", "univariate": True, "term": "short",
                                      "prediction_length": None, "num_windows": None}]})[0]
    ar = load_dataset(spec, tmp_path)
    assert len(ar) == 2 and ar[0].freq == "h"
    assert (spec.prediction_length, spec.num_windows) == (48, 1)  # GIFT-Eval: hourly H 48, ceil(0.1*40/48)=1
    datasets.Dataset.from_dict({"item_id": ["x"], "start": ["2020-01-01"], "target": [np.arange(40.0).tolist()]}).save_to_disk(
        str(tmp_path / "nofreq"))  # no freq column: the entry's freq, or an error (never a guessed "D")
    entry = {"name": "nofreq", "source": "arrow", "prediction_length": 4}
    assert load_dataset(parse_suite({"datasets": [{**entry, "freq": "W"}]})[0], tmp_path)[0].freq == "W"
    with pytest.raises(ValueError, match="no `freq` column; set `freq:` in the suite entry"):
        load_dataset(parse_suite({"datasets": [entry]})[0], tmp_path)


def test_gift_eval_windows_and_zscore() -> None:
    from tsfm.data.types import Series

    spec = parse_suite({"datasets": [{"name": "sales", "source": "arrow", "freq": "D", "term": "medium",
                                      "prediction_length": None, "num_windows": None}]})[0]
    gift_eval_protocol(spec, [Series(np.zeros((1, 9000), np.float32), "D")])
    assert (spec.prediction_length, spec.num_windows) == (300, 3)  # 10 x 30; ceil(900 / 300)
    z = zscore([Series(np.array([[1.0, 3.0, 100.0]], np.float32), "D")], test_length=1)[0].target
    np.testing.assert_allclose(z[0, :2], [-1.0, 1.0])  # statistics from the part before the test window


def test_zscore_with_rolling_windows_normalises_by_the_part_before_them() -> None:
    """stride 1: the windows cover (num_windows - 1) * stride + H points, not H * num_windows."""
    entry = {"name": "us_gasoline", "source": "packaged", "freq": "W-MON", "prediction_length": 13,
             "num_windows": 100, "stride": 1}
    raw = load_dataset(parse_suite({"name": "t", "datasets": [entry]})[0])
    z = load_dataset(parse_suite({"name": "t", "datasets": [{**entry, "normalize": "zscore"}]})[0])
    y = raw[0].target[0].astype(np.float64)
    train = y[: y.shape[-1] - 112]
    np.testing.assert_allclose(z[0].target[0], (y - train.mean()) / train.std(), rtol=1e-4, atol=1e-4)
