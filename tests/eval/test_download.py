"""The download command plans the right fetches (it cannot run here: no internet)."""

from __future__ import annotations

import pytest

from tsfm.eval.download import _suite, main, plan


def test_plan_for_chronos_and_gift_eval(tmp_path) -> None:
    todo = plan(_suite("chronos_bench_ii"), tmp_path)
    assert ("hf", "autogluon/chronos_datasets", "m4_yearly", tmp_path / "chronos_datasets" / "m4_yearly") in todo
    assert ("hf", "autogluon/chronos_datasets_extra", "ETTh", tmp_path / "chronos_datasets_extra" / "ETTh") in todo
    assert len(todo) == 27
    (tmp_path / "chronos_datasets" / "m4_yearly").mkdir(parents=True)
    assert len(plan(_suite("chronos_bench_ii"), tmp_path)) == 26  # present data is not fetched again
    gift = plan(_suite("gift_eval"), tmp_path)
    assert gift == [("snapshot", "Salesforce/GiftEval", None, tmp_path / "gift_eval")]
    assert plan(_suite("dev"), tmp_path) == []  # packaged: nothing to download


def test_dry_run_and_unknown_suite(tmp_path, caplog) -> None:
    main(["--suite", "monash", "--data-dir", str(tmp_path), "--dry-run"])
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit, match="no suite 'nope'"):
        main(["--suite", "nope"])
