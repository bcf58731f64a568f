"""python -m tsfm.data: build, synth, inspect, help and error exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from tsfm.data.__main__ import main


def test_build_packaged_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["build", "packaged", "m3_other", "prison", "--out", str(tmp_path / "pk")]) == 0
    out = capsys.readouterr().out
    assert "wrote 174 series" in out and "wrote 64 series" in out
    assert main(["inspect", str(tmp_path / "pk")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["prison"]["num_series"] == 64 and info["prison"]["freq"] == ["QS-JAN"]
    assert info["m3_other"]["length"]["min"] == 71 and info["m3_other"]["missing_pct"] == 0.0
    assert info["prison"]["schema"]["target"] == "list<item: float>"


def test_build_csv_with_skips_and_synth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    df = pd.DataFrame(
        {
            "item_id": ["a"] * 5 + ["b"] * 2,
            "timestamp": list(pd.date_range("2020", periods=5, freq="D")) * 1
            + list(pd.date_range("2020", periods=2, freq="D")),
            "target": range(7),
        }
    )
    df.to_csv(tmp_path / "x.csv", index=False)
    assert (
        main(
            [
                "build",
                "csv",
                str(tmp_path / "x.csv"),
                "--min-length",
                "3",
                "--freq",
                "D",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 0
    )
    assert "skipped 1 series (shorter than 3): b" in capsys.readouterr().out
    assert datasets.load_from_disk(str(tmp_path / "x")).num_rows == 1
    assert (
        main(["synth", "kernelsynth", "--num-series", "3", "--length", "64", "--out", str(tmp_path / "ks")])
        == 0
    )
    assert datasets.load_from_disk(str(tmp_path / "ks")).num_rows == 3


def test_bad_input_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pd.DataFrame({"item_id": ["a", "a"], "timestamp": ["2020-01-02", "2020-01-01"], "target": [1, 2]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    assert main(["build", "csv", str(tmp_path / "bad.csv"), "--freq", "D", "--out", str(tmp_path / "o")]) == 2
    assert "error: item 'a': timestamps are not increasing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "header.csv").write_text("item_id,timestamp,target\n")
    assert main(["build", "csv", str(tmp_path / "header.csv"), "--freq", "D", "--out", str(tmp_path / "o")]) == 2
    assert "no series to write (the input had no series); nothing was written" in capsys.readouterr().err
    assert main(["synth", "kernelsynth", "--num-series", "3", "--seed", "-1", "--out", str(tmp_path / "ks")]) == 2
    assert capsys.readouterr().err.startswith("error: ")  # a message, not a traceback
    assert not (tmp_path / "o").exists() and not (tmp_path / "ks").exists()


def test_help_is_useful() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tsfm.data", "build", "--help"], capture_output=True, text=True, check=True
    )
    assert "--out" in res.stdout and "packaged" in res.stdout and "--min-length" in res.stdout


def test_inspect_counts_observed_values_like_the_build_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    import numpy as np

    from tsfm.data.format import write_dataset
    from tsfm.data.types import Series

    a = np.arange(30, dtype=np.float32)
    a[:10] = np.nan  # 20 observed of 30
    b = np.arange(15, dtype=np.float32)  # 15 observed of 15
    report = write_dataset([Series(a[None], "D", "a"), Series(b[None], "D", "b")], tmp_path / "d")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "d")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_values"] == 45 and info["num_observations"] == report.num_observations == 35
    assert info["missing_pct"] == round(100 * 10 / 45, 3)  # share of all values, not a mean of per-series shares
