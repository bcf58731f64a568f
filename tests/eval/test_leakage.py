"""Leakage marking: training corpus fingerprints vs evaluated datasets, zero-shot aggregates, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tsfm.data.manifest import corpus_summary, series_fingerprint, write_training_data
from tsfm.data.sources import TSMIXUP_DEFAULT_SOURCES, materialize, resolve
from tsfm.data.types import Series
from tsfm.eval.leakage import NONE, OVERLAP, UNKNOWN, TrainingData, dataset_overlap, load_training_data
from tsfm.eval.protocol import geometric_mean
from tsfm.eval.report import print_table, to_markdown, write_reports
from tsfm.eval.runner import evaluate_suite

from .conftest import LastValueForecaster, tiny_suite

CONF = Path(__file__).resolve().parents[2] / "conf"


def summary_of(tmp_path: Path, *entries: dict) -> dict:
    resolved = resolve(list(entries), tmp_path / "cache")
    for e in resolved:
        materialize(e)
    return corpus_summary(resolved, "explicit")


def s(values, name: str = "x") -> Series:
    return Series(np.atleast_2d(np.asarray(values, np.float32)), "h", name)


def test_overlap_counts_matching_series_and_variates() -> None:
    a, b, c = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]
    summary = {"sub_datasets": [
        {"name": "mix", "provenance": "manifest", "synthetic": False,
         "sources": {"real": [series_fingerprint(a), series_fingerprint(c)]}},
        {"name": "ks", "provenance": "manifest", "synthetic": True, "sources": {}},
    ]}
    t = TrainingData.from_summary(summary, "test")
    o = dataset_overlap([s(a), s(b), s([np.nan, np.nan]), s([b, c])], t)  # the 2-variate item matches by a variate
    assert (o.status, o.num_series, o.num_overlapping, o.sources) == (OVERLAP, 3, 2, ["mix/real"])
    assert o.trained_on and o.fraction == pytest.approx(2 / 3) and o.label() == "yes (67%)"
    clean = dataset_overlap([s(b)], t)
    assert (clean.status, clean.trained_on, clean.fraction, clean.label()) == (NONE, False, 0.0, "no")
    # a sub-dataset of unknown provenance: no match is not proof of none
    t2 = TrainingData.from_summary({"sub_datasets": [*summary["sub_datasets"], {"name": "mine", "provenance": "unknown",
                                                                                 "sources": {}}]}, "test")
    assert dataset_overlap([s(b)], t2).status == UNKNOWN and dataset_overlap([s(a)], t2).status == OVERLAP
    # nothing recorded (official checkpoint, baseline): unknown, not trained on
    for t3 in (None, TrainingData.unknown("official")):
        o = dataset_overlap([s(a)], t3)
        assert (o.status, o.trained_on, o.fraction, o.label()) == (UNKNOWN, False, None, "unknown")


def test_training_data_from_export_dir_ckpt_baseline_and_official(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, {"name": "ks", "generator": "kernelsynth", "num_series": 3, "length": 32},
                         {"packaged": "m3_other"})
    write_training_data(summary, tmp_path / "export")
    torch.save({"state_dict": {}, "TSDataModule": {"consumed": 3, "training_data": summary}}, tmp_path / "a.ckpt")
    torch.save({"state_dict": {}, "TSDataModule": {"consumed": 3}}, tmp_path / "old.ckpt")
    (tmp_path / "official").mkdir()
    for where in (tmp_path / "export", tmp_path / "a.ckpt"):
        t = load_training_data(where)
        assert t.known and t.sub_datasets == ["ks", "m3_other"] and len(t.index) == 174
        assert t.to_dict()["status"] == "known" and str(where) in t.where
    for model, why in ((tmp_path / "old.ckpt", "older tsfm"), (tmp_path / "official", "training_data.json"),
                       ("seasonal_naive", "baseline")):
        t = load_training_data(model)
        assert not t.known and why in t.where
    (tmp_path / "export" / "training_data.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a valid training_data.json"):
        load_training_data(tmp_path / "export")


def test_packaged_training_data_marks_that_dataset_and_aggregates_zero_shot_apart(tmp_path: Path, capsys) -> None:
    summary = summary_of(tmp_path, {"packaged": "m3_yearly"})
    training = TrainingData.from_summary(summary, "test")
    suite = tiny_suite(datasets=[*tiny_suite()["datasets"],
                                 {"name": "m3_other", "source": "packaged", "freq": "QS", "prediction_length": 8}])
    res = evaluate_suite(LastValueForecaster(), suite, model_name="fake", cache_dir=tmp_path, training_data=training)
    ov = {n: d.overlap for n, d in res.datasets.items()}
    assert ov["m3_yearly"].trained_on and ov["m3_yearly"].fraction == 1.0 and ov["m3_yearly"].num_series == 645
    assert not ov["us_gasoline"].trained_on and ov["us_gasoline"].status == NONE
    assert res.zero_shot_datasets == ["us_gasoline", "m3_other"]
    agg, zs = res.aggregates["fake"], res.zero_shot_aggregates["fake"]
    assert agg["num_datasets"] == 3 and zs["num_datasets"] == 2
    rel = [res.datasets[n].relative("fake", "seasonal_naive")["wql"] for n in ("us_gasoline", "m3_other")]
    assert zs["rel_wql"] == pytest.approx(geometric_mean(rel)) and zs["rel_wql"] != pytest.approx(agg["rel_wql"])
    out = write_reports(res, tmp_path / "out", suite["quantile_levels"], plot=False)
    data = json.loads(out["json"].read_text())
    assert data["datasets"]["m3_yearly"]["trained_on_this_dataset"] is True
    assert data["datasets"]["m3_yearly"]["overlap_fraction"] == 1.0
    assert data["datasets"]["m3_yearly"]["overlap_sources"] == ["m3_yearly"]
    assert data["datasets"]["us_gasoline"]["trained_on_this_dataset"] is False
    assert data["zero_shot_datasets"] == ["us_gasoline", "m3_other"]
    assert data["aggregate_zero_shot"]["fake"]["num_datasets"] == 2 and data["training_data"]["status"] == "known"
    csv = pd.read_csv(out["csv"])
    assert dict(zip(csv.dataset, csv.trained_on_this_dataset)) == {"m3_yearly": True, "us_gasoline": False,
                                                                  "m3_other": False}
    md = out["markdown"].read_text()
    assert "| m3_yearly | 6 | 0 | yes (100%) |" in md and "| aggregate (zero-shot 2) |" in md
    assert "fake was trained on: m3_yearly (645 of 645 series, via m3_yearly)" in md
    from rich.console import Console

    print_table(res, Console(width=250))
    printed = capsys.readouterr().out
    assert "yes (100%)" in printed and "zero-shot 2" in printed


def test_unknown_training_data_is_said_and_zero_shot_covers_all(tmp_path: Path) -> None:
    res = evaluate_suite(LastValueForecaster(), tiny_suite(), model_name="fake", cache_dir=tmp_path)
    assert res.zero_shot_datasets == ["m3_yearly", "us_gasoline"]
    assert res.zero_shot_aggregates["fake"] == res.aggregates["fake"]
    md = to_markdown(res)
    assert "| m3_yearly | 6 | 0 | unknown |" in md and "fake: training data unknown" in md


def test_chronos_mix_corpus_overlaps_the_dev_suite_end_to_end(tmp_path: Path, monkeypatch) -> None:
    """data=chronos_mix (TSMixup over packaged M1/M3/fpp3, at tiny size) through the real builders and
    the datamodule -> training_data.json -> the dev suite marks the datasets it mixed."""
    from functools import cache

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import tsfm.data.packaged
    from tsfm.data.tasks import FixedWindowTask

    # each packaged set is parsed once in this test (builder, suite and the check below read them all)
    cached = cache(tsfm.data.packaged.load_packaged)
    monkeypatch.setattr(tsfm.data.packaged, "load_packaged", lambda name, **kw: list(cached(name, **kw)))

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["data=chronos_mix", f"paths.data_dir={tmp_path / 'data'}",
                                          "data.corpus.0.num_series=12", "data.corpus.0.min_length=16",
                                          "data.corpus.0.max_length=48", "data.corpus.1.num_series=4",
                                          "data.corpus.1.length=48", "data.val_batches=0"])
    dm = instantiate(cfg.data, task=FixedWindowTask(8, 4), _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    dm.save_training_data(tmp_path / "export")
    subs = {d["name"]: d for d in json.loads((tmp_path / "export" / "training_data.json").read_text())["sub_datasets"]}
    assert subs["kernelsynth"]["synthetic"] is True and subs["kernelsynth"]["sources"] == {}
    mixed = subs["tsmixup"]["sources"]
    assert subs["tsmixup"]["synthetic"] is False and mixed and set(mixed) <= set(TSMIXUP_DEFAULT_SOURCES)

    suite = yaml.safe_load((CONF / "eval" / "dev.yaml").read_text())
    suite.update(max_series=2, baselines=[], data_dir=None)
    training = load_training_data(tmp_path / "export")
    res = evaluate_suite(LastValueForecaster(), suite, model_name="mix", cache_dir=tmp_path, plot_series=0,
                         training_data=training)
    drawn = {fp for fps in mixed.values() for fp in fps}
    trained = set()
    for name, d in res.datasets.items():
        packaged = d.spec.options.get("dataset", name)
        series = [x for x in tsfm.data.packaged.load_packaged(packaged) if np.isfinite(x.target).any()]
        hits = sum(series_fingerprint(x.target) in drawn for x in series)
        assert d.overlap.trained_on == (hits > 0) and d.overlap.fraction == pytest.approx(hits / len(series)), name
        if hits:
            trained.add(name)
            assert d.overlap.sources and all(src.startswith("tsmixup/") for src in d.overlap.sources)
    assert trained and trained <= set(mixed) and len(trained) < len(res.datasets)  # some, not all, overlap
    assert set(res.zero_shot_datasets) == set(res.datasets) - trained
    assert res.zero_shot_aggregates["mix"]["num_datasets"] == res.aggregates["mix"]["num_datasets"] - len(trained)


def test_benchmark_callback_logs_the_zero_shot_average(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tsfm.eval.callback import BenchmarkCallback

    from .test_callback import TinyModule

    summary = summary_of(tmp_path, {"packaged": "m3_yearly"})
    module = TinyModule()
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(corpus_summary=lambda: summary))
    out = BenchmarkCallback(tiny_suite(max_series=3), cache_dir=str(tmp_path)).compute(module)
    res = evaluate_suite(module.forecaster(), tiny_suite(max_series=3), cache_dir=tmp_path)
    gas = res.datasets["us_gasoline"].relative("model", "seasonal_naive")
    assert out["benchmark/zero_shot_avg_wql"] == pytest.approx(gas["wql"])  # m3_yearly was trained on
    assert out["benchmark/avg_wql"] == pytest.approx(res.aggregates["model"]["rel_wql"])
    assert out["benchmark/avg_wql"] != pytest.approx(out["benchmark/zero_shot_avg_wql"])
