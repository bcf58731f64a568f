"""The family specs: every family declares all its parts, checkpoints are recognised by the specs'
rules, and unrecognised or corrupt checkpoints are errors that say what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import FAMILY_FIXTURES
from tsfm.forecast import load_forecaster
from tsfm.forecaster import Forecaster
from tsfm.models import detect, families
from tsfm.models.spec import FamilySpec
from tsfm.training.module import TSFMModule

ROOT = Path(__file__).resolve().parents[2]


def test_the_four_families_are_registered():
    assert set(families()) == {"moirai", "chronos", "chronos2", "baseline"}


@pytest.mark.parametrize("name", sorted(families()))
def test_every_part_of_every_spec_loads_and_agrees_on_the_family(name):
    spec = families()[name]
    forecaster, module = spec.load("forecaster"), spec.load("module")
    assert issubclass(forecaster, Forecaster) and forecaster.family == name and forecaster.forecast_options
    assert issubclass(module, TSFMModule) and module.family == name and module.head_modules and module.lora_targets
    for part in ("config", "model", "task"):
        assert isinstance(spec.load(part), type)
    converter = spec.load("converter")
    assert converter.__name__ == spec.converter
    assert (ROOT / "conf" / "model" / f"{spec.model_config}.yaml").is_file()
    assert callable(module.model_settings)


def test_a_spec_with_a_missing_part_fails_at_declaration_naming_the_family():
    with pytest.raises(ValueError, match=r"model family 'timesfm': its FamilySpec lacks \['task'\]"):
        FamilySpec(name="timesfm", config="a:B", model="a:B", module="a:B", task="", forecaster="a:B", converter="a",
                   model_config="timesfm_small", recognizes=lambda c: False, looks_for="x")


@pytest.mark.parametrize("name", sorted(FAMILY_FIXTURES))
def test_official_layouts_are_recognised_by_exactly_one_family(name, fixtures_dir):
    import json

    cfg = json.loads((fixtures_dir / FAMILY_FIXTURES[name] / "config.json").read_text())
    assert detect(cfg) == name
    assert [n for n, s in families().items() if s.recognizes(cfg)] == [name]


def test_an_unrecognised_directory_lists_what_each_family_looks_for(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ValueError) as e:
        load_forecaster(tmp_path)
    for spec in families().values():
        assert f"{spec.name}: {spec.looks_for}" in str(e.value)


@pytest.mark.parametrize("name", sorted(FAMILY_FIXTURES))
def test_a_truncated_weights_file_is_an_error_naming_it(name, fixtures_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(fixtures_dir / FAMILY_FIXTURES[name], ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{weights}: cannot read safetensors weights .*truncated or corrupt"):
        load_forecaster(ckpt)
