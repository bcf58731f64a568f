"""Builders from frames, files, HF datasets and GluonTS datasets; timestamp checks."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from tsfm.data import builders
from tsfm.data.corpus import SubDataset
from tsfm.data.format import DataError, write_dataset
from tsfm.data.types import Series


def long_frame() -> pd.DataFrame:
    ts = pd.date_range("2022-01-01", periods=6, freq="D")
    return pd.DataFrame(
        {
            "item_id": ["a"] * 6 + ["b"] * 4,
            "timestamp": list(ts) + list(ts[:4]),
            "target": np.arange(10, dtype=float),
            "temp": np.linspace(0, 1, 10),
        }
    )


def test_long_frame_with_covariates_and_inferred_freq() -> None:
    out = builders.from_long_frame(long_frame(), covariate_cols=["temp"])
    assert [s.item_id for s in out] == ["a", "b"]
    assert out[0].freq == "D" and out[0].start == np.datetime64("2022-01-01T00:00:00")
    np.testing.assert_array_equal(out[1].target, [[6, 7, 8, 9]])
    assert out[1].past_feat_dynamic_real.shape == (1, 4)


def test_long_frame_multivariate_target() -> None:
    df = long_frame().assign(second=lambda d: d.target * 10)
    out = builders.from_long_frame(df, target_cols=["target", "second"])
    assert out[0].target.shape == (2, 6) and out[0].target[1, 2] == 20


def test_gap_becomes_nan_and_off_grid_stamp_is_an_error() -> None:
    df = long_frame().drop(index=2)
    s = builders.from_long_frame(df, freq="D")[0]
    assert s.length == 6 and np.isnan(s.target[0, 2])
    df2 = long_frame()
    df2.loc[1, "timestamp"] = pd.Timestamp("2022-01-02 12:00")
    with pytest.raises(DataError, match=r"item 'a': timestamp 2022-01-02 12:00:00 is not on the 'D' grid"):
        builders.from_long_frame(df2, freq="D")


def test_unsorted_and_duplicate_timestamps_are_errors() -> None:
    df = long_frame()
    df.loc[[1, 2], "timestamp"] = df.loc[[2, 1], "timestamp"].to_numpy()
    with pytest.raises(DataError, match=r"item 'a': timestamps are not increasing .*sort the rows by time"):
        builders.from_long_frame(df)
    df = long_frame()
    df.loc[1, "timestamp"] = df.loc[0, "timestamp"]
    with pytest.raises(DataError, match=r"item 'a': duplicate timestamp 2022-01-01"):
        builders.from_long_frame(df)


def test_wrong_dtype_and_unknown_freq_and_missing_column() -> None:
    df = long_frame().astype({"target": object})
    df.loc[3, "target"] = "n/a"
    with pytest.raises(DataError, match=r"item 'a': target has non-numeric values"):
        builders.from_long_frame(df)
    with pytest.raises(DataError, match=r"item 'a': unknown frequency 'daily-ish'"):
        builders.from_long_frame(long_frame(), freq="daily-ish")
    with pytest.raises(DataError, match=r"columns \['sales'\] not in the frame"):
        builders.from_long_frame(long_frame(), target_cols="sales")
    irregular = pd.DataFrame(
        {"timestamp": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05"]), "target": [1.0, 2, 3]}
    )
    with pytest.raises(DataError, match="cannot infer the frequency"):
        builders.from_long_frame(irregular, id_col=None)


def test_wide_frame_and_files(tmp_path: Path) -> None:
    wide = pd.DataFrame(
        {"x": [1.0, 2, 3], "y": [4.0, np.nan, 6]}, index=pd.date_range("2020", periods=3, freq="h")
    )
    out = builders.from_wide_frame(wide)
    assert [s.item_id for s in out] == ["x", "y"] and out[0].freq == "h" and np.isnan(out[1].target[0, 1])
    wide.rename_axis("time").reset_index().to_csv(tmp_path / "w.csv", index=False)
    assert len(builders.from_file(tmp_path / "w.csv", layout="wide", timestamp_col="time")) == 2
    long_frame().to_parquet(tmp_path / "l.parquet")
    files = builders.from_file(tmp_path / "l.parquet")
    assert [s.length for s in files] == [6, 4] and files[0].dataset == "l"
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        (tmp_path / "a.xlsx").write_text("")
        builders.from_file(tmp_path / "a.xlsx")


def test_hf_dataset_and_gluonts_dataset(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {
            "item_id": ["p", "q"],
            "start": ["2020-01-01", "2020-02-01"],
            "freq": ["D", "D"],
            "target": [[1.0, 2.0, 3.0], [4.0, 5.0]],
        }
    )
    out = list(builders.from_hf_dataset(ds))
    assert out[1].target.tolist() == [[4.0, 5.0]] and out[1].start == np.datetime64("2020-02-01T00:00:00")
    from gluonts.dataset.common import ListDataset

    gds = ListDataset([{"start": "2021-01-01", "target": [1.0, 2.0, 3.0, 4.0], "item_id": "g"}], freq="W")
    g = list(builders.from_gluonts(gds))
    assert g[0].freq == "W-SUN" and g[0].item_id == "g" and g[0].length == 4
    write_dataset(g, tmp_path / "g")
    assert list(builders.from_lotsa_dir(tmp_path / "g"))[0].target.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert SubDataset(tmp_path / "g").freqs == ["W-SUN"]


def test_csv_ids_stay_text_and_rows_without_an_id_are_an_error(tmp_path: Path) -> None:
    zero = tmp_path / "zero.csv"
    zero.write_text("item_id,timestamp,target\n001,2024-01-01,1\n001,2024-01-02,2\n01,2024-01-01,3\n01,2024-01-02,4\n")
    items = builders.from_file(zero, freq="D")
    assert sorted(s.item_id for s in items) == ["001", "01"]
    missing = tmp_path / "missing.csv"
    missing.write_text("item_id,timestamp,target\na,2024-01-01,1\n,2024-01-02,2\n")
    with pytest.raises(DataError, match=r"1 row\(s\) have no 'item_id' \(first at row 1\)"):
        builders.from_file(missing, freq="D")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        builders.from_file(empty)


def test_hf_rows_with_timestamp_starts_rebuild(tmp_path: Path) -> None:
    """A LOTSA-format dataset (``start`` is an Arrow timestamp) read back through ``from_hf_dataset``."""
    write_dataset([Series(np.arange(5, dtype=np.float32)[None], "D", "a", start=np.datetime64("2020-01-01"))],
                  tmp_path / "src")
    (s,) = list(builders.from_hf_dataset(datasets.load_from_disk(str(tmp_path / "src"))))
    assert s.item_id == "a" and s.start == np.datetime64("2020-01-01T00:00:00")
    np.testing.assert_array_equal(s.target[0], np.arange(5))
