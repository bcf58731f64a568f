import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tsfm.catalog import MODELS, lookup, resolve
from tsfm.forecast import load_forecaster


def test_catalog_families_are_loadable_families():
    assert {m.family for m in MODELS} == {"moirai", "chronos", "chronos2"}
    assert len({m.name for m in MODELS}) == len(MODELS)
    assert lookup("amazon/chronos-2") is lookup("chronos-2") is not None
    assert lookup("gpt-5") is None


def test_resolve_finds_local_copy_and_loads(tmp_path, monkeypatch, fixtures_dir):
    monkeypatch.setenv("TSFM_MODELS", str(tmp_path))
    shutil.copytree(fixtures_dir / "chronos2_tiny" / "checkpoint", tmp_path / "chronos-2")
    path = resolve("amazon/chronos-2")
    assert path == tmp_path / "chronos-2"
    assert load_forecaster(path).family == "chronos2"


def test_resolve_missing_and_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("TSFM_MODELS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download Salesforce/moirai-1.1-R-small"):
        resolve("moirai-1.1-R-small")
    with pytest.raises(KeyError, match="unknown model"):
        resolve("gpt-5")


def test_load_forecaster_accepts_a_catalogued_short_name(tmp_path, monkeypatch, fixtures_dir):
    monkeypatch.setenv("TSFM_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(fixtures_dir / "moirai_tiny" / "checkpoint", tmp_path / "moirai-1.1-R-small")
    assert load_forecaster("moirai-1.1-R-small").family == "moirai"


def test_the_catalogue_lists_the_official_checkpoints(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tsfm.catalog"], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TSFM_MODELS": str(tmp_path), "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "chronos-2" in out.stdout and "Salesforce/moirai-1.1-R-small" in out.stdout
