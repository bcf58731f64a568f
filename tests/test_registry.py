import shutil

import pytest

from tsfm.forecast import load_forecaster
from tsfm.registry import MODELS, resolve


def test_registry_families_are_loadable_families():
    assert {m.family for m in MODELS} == {"moirai", "chronos", "chronos2"}
    assert len({m.name for m in MODELS}) == len(MODELS)


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


def test_load_forecaster_accepts_a_registered_short_name(tmp_path, monkeypatch, fixtures_dir):
    monkeypatch.setenv("TSFM_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(fixtures_dir / "moirai_tiny" / "checkpoint", tmp_path / "moirai-1.1-R-small")
    assert load_forecaster("moirai-1.1-R-small").family == "moirai"
