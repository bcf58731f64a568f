"""Reading and checking the user's data, and holding out the last windows of each series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsfm.data.format import DataError, write_dataset
from tsfm.finetune.data import hold_out, load_series


def test_a_frame_a_csv_a_parquet_and_a_lotsa_dir_give_the_same_series(frame, tmp_path):
    a = load_series(frame)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    write_dataset(a, tmp_path / "lotsa")
    for other in (load_series(tmp_path / "d.csv"), load_series(str(tmp_path / "d.parquet")), load_series(tmp_path / "lotsa")):
        assert [s.item_id for s in other] == [s.item_id for s in a]
        for x, y in zip(a, other):
            np.testing.assert_allclose(x.target, y.target, rtol=1e-6)
            assert x.freq == y.freq == "MS"


def test_duplicate_timestamps_name_the_item_and_the_fix(frame):
    bad = pd.concat([frame, frame[frame.item_id == "s3"].head(1)]).sort_values(["item_id", "timestamp"], kind="stable")
    with pytest.raises(DataError, match=r"item 's3': duplicate timestamp .*aggregate or drop duplicate rows"):
        load_series(bad)


def test_mixed_frequencies_name_an_odd_item(frame):
    daily = pd.DataFrame({"item_id": "daily", "timestamp": pd.date_range("2020-01-01", periods=40, freq="D"),
                          "target": np.arange(40.0)})
    with pytest.raises(DataError, match=r"mixed frequencies .*item 'daily' is 'D'.*one frequency at a time"):
        load_series(pd.concat([frame, daily]))


def test_a_non_numeric_target_names_the_item_and_the_fix(frame):
    bad = frame.astype({"target": object})
    bad.loc[bad.index[80], "target"] = "n/a"
    with pytest.raises(DataError, match=r"target column 'target' is not numeric .*item 's1': 'n/a'.*to_numeric"):
        load_series(bad)


def test_unknown_input_types_say_what_is_accepted():
    with pytest.raises(TypeError, match="long DataFrame"):
        load_series(42)


def test_hold_out_cuts_the_windows_off_the_training_part_and_counts_short_series(frame):
    short = pd.DataFrame({"item_id": "short", "timestamp": pd.date_range("2020-01-01", periods=20, freq="MS"),
                          "target": np.arange(20.0)})
    series = load_series(pd.concat([frame, short]))
    h = hold_out(series, prediction_length=12, num_windows=2, min_context=8)
    assert h.excluded == ["short"]  # 20 < 8 + 2 * 12: neither trained on nor validated
    assert [s.item_id for s in h.train] == [s.item_id for s in h.full] == [f"s{i}" for i in range(6)]
    for tr, full in zip(h.train, h.full):
        assert tr.length == full.length - 24
        np.testing.assert_array_equal(tr.target, full.target[:, :-24])  # nothing from the held-out windows
    assert h.summary()["excluded_too_short"] == 1 and h.summary()["series"] == 6


def test_no_long_enough_series_is_an_error_with_the_numbers(frame):
    with pytest.raises(DataError, match=r"needs 80 points and the longest series has 72; lower num_windows"):
        hold_out(load_series(frame), prediction_length=36, num_windows=2, min_context=8)
