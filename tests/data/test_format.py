"""The on-disk format: round trips through datasets.load_from_disk, LOTSA replicas, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from tests.data.conftest import make_series
from tsfm.data.corpus import Corpus, SubDataset
from tsfm.data.format import DataError, normalize_freq, write_dataset
from tsfm.data.types import Series

T0 = np.datetime64("2021-03-04T05:00:00", "s")


def test_univariate_round_trip_with_load_from_disk_and_zero_copy_reader(tmp_path: Path) -> None:
    series = make_series(5, lengths=[10, 20, 30, 40, 50])
    series[1].target[0, 3] = np.nan  # NaN = missing, kept
    report = write_dataset(series, tmp_path / "d")
    assert report.num_series == 5 and report.num_skipped == 0
    ds = datasets.load_from_disk(str(tmp_path / "d"))
    assert ds.num_rows == 5 and ds.features["target"].feature.dtype == "float32"
    np.testing.assert_array_equal(np.asarray(ds[1]["target"], np.float32), series[1].target[0])
    sub = SubDataset(tmp_path / "d", io="mmap")
    assert sub.lengths.tolist() == [10, 20, 30, 40, 50] and not sub.multivariate
    s = sub.series(1)
    assert s.target.shape == (1, 20) and np.isnan(s.target[0, 3]) and s.item_id == "s1" and s.freq == "h"
    np.testing.assert_array_equal(s.target, series[1].target)
    assert not s.target.flags.owndata and not s.target.flags.writeable  # a view of the mapped file


def test_multivariate_with_covariates_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    items = [
        Series(
            rng.standard_normal((3, t)).astype(np.float32),
            "D",
            f"m{t}",
            "",
            T0,
            rng.standard_normal((2, t)).astype(np.float32),
        )
        for t in (7, 11)
    ]
    write_dataset(items, tmp_path / "mv")
    ds = datasets.load_from_disk(str(tmp_path / "mv"))
    assert np.asarray(ds[1]["target"]).shape == (3, 11)
    assert np.asarray(ds[0]["past_feat_dynamic_real"]).shape == (2, 7)
    sub = SubDataset(tmp_path / "mv")
    s = sub.series(1)
    assert sub.multivariate and sub.has_covariates and s.start == T0 and s.freq == "D"
    np.testing.assert_array_equal(s.target, items[1].target)
    np.testing.assert_array_equal(s.past_feat_dynamic_real, items[1].past_feat_dynamic_real)


def test_lotsa_replica_opens_unchanged(tmp_path: Path) -> None:
    """A lotsa_data-like root written by datasets itself (not by us) reads in the Corpus."""
    root = tmp_path / "lotsa_data"
    uni = datasets.Dataset.from_dict(
        {
            "item_id": ["a", "b"],
            "start": [T0.astype(object)] * 2,
            "freq": ["H", "H"],
            "target": [[1.0, 2.0, np.nan, 4.0], [5.0] * 6],
        },
        features=datasets.Features(
            {
                "item_id": datasets.Value("string"),
                "start": datasets.Value("timestamp[s]"),
                "freq": datasets.Value("string"),
                "target": datasets.Sequence(datasets.Value("float32")),
            }
        ),
    )
    uni.save_to_disk(str(root / "uni_set"))
    multi = datasets.Dataset.from_dict(
        {
            "item_id": ["x"],
            "start": [T0.astype(object)],
            "freq": ["D"],
            "target": [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]],
            "past_feat_dynamic_real": [[[0.5, 0.5, 0.5]]],
        },
        features=datasets.Features(
            {
                "item_id": datasets.Value("string"),
                "start": datasets.Value("timestamp[s]"),
                "freq": datasets.Value("string"),
                "target": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "past_feat_dynamic_real": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            }
        ),
    )
    multi.save_to_disk(str(root / "multi_set"))
    assert sorted(p.name for p in (root / "uni_set").iterdir()) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "state.json",
    ]
    corpus = Corpus.from_lotsa_root(root)
    names = [d.name for d in corpus.datasets]
    assert names == ["multi_set", "uni_set"]
    u = corpus.datasets[1].series(0)
    assert u.freq == "H" and u.item_id == "a" and np.isnan(u.target[0, 2]) and u.target[0, 3] == 4.0
    m = corpus.datasets[0].series(0)
    np.testing.assert_array_equal(m.target, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(m.past_feat_dynamic_real, [[0.5, 0.5, 0.5]])


def test_missing_lotsa_root_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"LOTSA root .*nowhere does not exist.*lotsa_data"):
        Corpus.from_lotsa_root(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (np.array([1.0, np.inf, 2.0]), r"item 'bad': target contains ±inf \(variate 0, step 1\)"),
        (np.array([1.0, -np.inf]), r"±inf"),
        (np.array(["1", "x"], dtype=object), r"item 'bad': target has non-numeric values"),
        (np.array([True, False]), r"item 'bad': target has dtype bool; expected numbers"),
        ([[1.0, 2.0], [1.0]], r"item 'bad': ragged variates in target \(lengths \[1, 2\]\)"),
    ],
)
def test_bad_values_raise_naming_the_item(tmp_path: Path, target: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        write_dataset([Series(target, "h", "bad")], tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_unknown_freq_is_an_error() -> None:
    with pytest.raises(DataError, match=r"unknown frequency 'fortnightly'; use a pandas offset alias"):
        normalize_freq("fortnightly")
    assert normalize_freq("H") == "h"
    with pytest.raises(DataError, match="frequency '0D' is not a positive step"):
        normalize_freq("0D")


def test_empty_and_short_series_are_skipped_and_counted(tmp_path: Path) -> None:
    items = make_series(3, lengths=[100, 5, 100]) + [
        Series(np.zeros((1, 0), np.float32), "h", "empty"),
        Series(np.full((1, 50), np.nan, np.float32), "h", "allnan"),
    ]
    report = write_dataset(items, tmp_path / "d", min_length=10)
    assert report.num_series == 2
    assert report.skipped == {"shorter than 10": 1, "empty or all-missing": 2}
    assert report.skipped_items["empty or all-missing"] == ["empty", "allnan"]
    assert "skipped 1 series (shorter than 10): s1" in str(report)
    assert datasets.load_from_disk(str(tmp_path / "d")).num_rows == 2


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def stream():
        yield from make_series(5)
        raise RuntimeError("source died mid-build")

    with pytest.raises(RuntimeError, match="mid-build"):
        write_dataset(stream(), tmp_path / "d", chunk_rows=2)  # two chunks were already written
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(uni_dir: Path) -> None:
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_dataset(make_series(2), uni_dir)
    assert write_dataset(make_series(2), uni_dir, overwrite=True).num_series == 2


def test_chunked_build_equals_single_chunk(tmp_path: Path) -> None:
    items = make_series(7)
    write_dataset(items, tmp_path / "a", chunk_rows=3)
    sub = SubDataset(tmp_path / "a")
    assert len(sub) == 7 and datasets.load_from_disk(str(tmp_path / "a")).num_rows == 7
    for i, s in enumerate(items):
        np.testing.assert_array_equal(sub.series(i).target, s.target)


def test_truncated_arrow_file_names_the_file(uni_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(uni_dir, bad)
    arrow = next(bad.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"corrupted or truncated Arrow file {arrow}"):
        SubDataset(bad)


def test_garbage_arrow_file_names_the_file(uni_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(uni_dir, bad)
    arrow = next(bad.glob("*.arrow"))
    arrow.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match=rf"corrupted or truncated Arrow file {arrow}"):
        SubDataset(bad)
    arrow.write_bytes(b"")
    with pytest.raises(DataError, match=rf"corrupted or truncated Arrow file {arrow}"):
        SubDataset(bad)


def test_write_table_checks_values_and_is_opened_by_datasets(tmp_path: Path) -> None:
    import pyarrow as pa

    from tsfm.data.format import write_table

    offsets = pa.array(np.array([0, 2, 5], np.int32))
    good = pa.table(
        {
            "item_id": ["a", "b"],
            "freq": ["h", "h"],
            "target": pa.ListArray.from_arrays(offsets, pa.array(np.arange(5, dtype=np.float32))),
        }
    )
    write_table(good, tmp_path / "t")
    assert datasets.load_from_disk(str(tmp_path / "t")).num_rows == 2
    assert SubDataset(tmp_path / "t").series(1).target.tolist() == [[2.0, 3.0, 4.0]]
    inf = good.set_column(
        2, "target", pa.ListArray.from_arrays(offsets, pa.array(np.array([0, 1, np.inf, 3, 4], np.float32)))
    )
    with pytest.raises(DataError, match="target contains ±inf"):
        write_table(inf, tmp_path / "u")
    f64 = good.set_column(
        2, "target", pa.ListArray.from_arrays(offsets, pa.array(np.arange(5, dtype=np.float64)))
    )
    with pytest.raises(DataError, match="target values are double; cast them to float32"):
        write_table(f64, tmp_path / "v")
    with pytest.raises(DataError, match="values are double, expected float32"):
        f64_dir = tmp_path / "w"
        datasets.Dataset(f64).save_to_disk(str(f64_dir))
        SubDataset(f64_dir)
    assert not (tmp_path / "u").exists() and not (tmp_path / "v").exists()


def test_ragged_multivariate_item_in_a_foreign_dataset_is_an_error_naming_file_and_item(
    tmp_path: Path,
) -> None:
    feats = datasets.Features(
        {
            "item_id": datasets.Value("string"),
            "target": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"item_id": ["ok", "ragged"], "target": [[[1.0, 2.0]], [[1.0, 2.0, 3.0], [1.0]]]}, features=feats
    )
    ds.save_to_disk(str(tmp_path / "r"))
    with pytest.raises(
        DataError,
        match=r"data-00000-of-00001.arrow: item 'ragged': ragged variates in target \(lengths 1..3\)",
    ):
        SubDataset(tmp_path / "r")


def test_pread_mode_reads_the_same_items_as_mapped_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    items = [Series(rng.standard_normal((2, t)).astype(np.float32), "h", f"i{t}") for t in (5, 9, 13)]
    write_dataset(items, tmp_path / "d", chunk_rows=2)
    mapped, copied = SubDataset(tmp_path / "d", io="mmap"), SubDataset(tmp_path / "d", io="pread")
    for i, want in enumerate(items):
        a, b = mapped.series(i), copied.series(i)
        np.testing.assert_array_equal(a.target, want.target)
        np.testing.assert_array_equal(b.target, want.target)
        assert b.target.flags.owndata and b.item_id == a.item_id == want.item_id
    with pytest.raises(ValueError, match="io must be 'mmap'"):
        SubDataset(tmp_path / "d", io="mmapp")


def test_auto_io_copies_short_items_and_views_long_ones(tmp_path: Path) -> None:
    from tsfm.data.corpus import PREAD_MAX_VALUES

    items = [Series(np.arange(t, dtype=np.float32), "h", f"i{t}") for t in (100, PREAD_MAX_VALUES + 1)]
    write_dataset(items, tmp_path / "d")
    sub = SubDataset(tmp_path / "d")  # io="auto"
    short, long = sub.series(0), sub.series(1)
    assert short.target.flags.owndata and not long.target.flags.owndata
    np.testing.assert_array_equal(long.target[0], items[1].target)
    np.testing.assert_array_equal(short.target[0], items[0].target)


def test_a_build_with_nothing_to_write_says_why_and_writes_nothing(tmp_path: Path) -> None:
    from tsfm.data.format import DataError

    with pytest.raises(DataError, match=r"no series to write \(1 shorter than 10\); nothing was written"):
        write_dataset(make_series(1, lengths=[5]), tmp_path / "d", min_length=10)
    with pytest.raises(DataError, match="the input had no series"):
        write_dataset([], tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_duplicate_ids_and_missing_starts_are_written_and_reported(tmp_path: Path) -> None:
    items = [
        Series(np.arange(20, dtype=np.float32)[None], "h", "a", start=T0),
        Series(np.arange(20, dtype=np.float32)[None], "h", "a", start=T0),
        Series(np.arange(20, dtype=np.float32)[None], "h", "b"),
    ]
    report = write_dataset(items, tmp_path / "d")
    assert report.num_series == 3 and report.num_skipped == 0
    dup = "repeat an item id already written (kept: ids need not be unique)"
    nostart = "have no start timestamp (written as 1970-01-01)"
    assert report.notes == {dup: 1, nostart: 1}
    assert report.noted_items == {dup: ["a"], nostart: ["b"]}
    assert f"note: 1 series {nostart}: b" in str(report)
    sub = SubDataset(tmp_path / "d")
    assert [sub.series(i).item_id for i in range(3)] == ["a", "a", "b"]
    assert sub.series(2).start == np.datetime64("1970-01-01", "s")
