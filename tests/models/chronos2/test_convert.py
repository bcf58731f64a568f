"""Official checkpoint layout: load, export, round trip, and refusal of bad directories."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.models.chronos2.conftest import tiny_config
from tsfm.forecast import detect_family, load_forecaster
from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.convert import load_model, read_config, save_pretrained
from tsfm.models.chronos2.forecast import Chronos2Forecaster
from tsfm.models.chronos2.model import Chronos2Model


def test_read_official_config(c2_dir):
    cfg = read_config(c2_dir / "checkpoint")
    assert (cfg.d_model, cfg.d_kv, cfg.d_ff, cfg.num_layers, cfg.num_heads) == (64, 16, 128, 2, 4)
    assert (cfg.context_length, cfg.patch_size, cfg.max_output_patches, cfg.time_encoding_scale) == (256, 16, 4, 256)
    assert cfg.num_quantiles == 21 and cfg.quantiles[0] == 0.01 and cfg.quantiles[-1] == 0.99


def test_export_round_trip_matches_official_layout(c2_dir, c2_model, tmp_path):
    out = save_pretrained(c2_model, tmp_path / "exported")
    official = json.loads((c2_dir / "checkpoint" / "config.json").read_text())
    ours = json.loads((out / "config.json").read_text())
    for key in ("chronos_config", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "architectures",
                "chronos_pipeline_class", "feed_forward_proj", "rope_theta", "vocab_size"):  # fmt: skip
        assert ours[key] == official[key], key
    ref_w = load_file(str(c2_dir / "checkpoint" / "model.safetensors"))
    our_w = load_file(str(out / "model.safetensors"))
    assert set(ref_w) == set(our_w)
    assert all(torch.equal(ref_w[k], our_w[k]) for k in ref_w)
    assert detect_family(ours) == "chronos2"
    assert isinstance(load_forecaster(out), Chronos2Forecaster)


def test_overrides_keep_time_encoding_scale(c2_dir):
    m = load_model(c2_dir / "checkpoint", overrides={"context_length": 1024})
    assert m.config.context_length == 1024 and m.config.time_encoding_scale == 256


def test_missing_and_misshaped_weights_are_named(c2_dir, tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(c2_dir / "checkpoint", d)
    w = load_file(str(d / "model.safetensors"))
    w.pop("encoder.final_layer_norm.weight")
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['encoder.final_layer_norm.weight'\]"):
        load_model(d)
    w = load_file(str(c2_dir / "checkpoint" / "model.safetensors"))
    w["shared.weight"] = torch.zeros(3, 64)
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match=r"shared.weight: checkpoint \(3, 64\) vs model \(2, 64\)"):
        load_model(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_model(d)


def test_config_sizes_checked_before_allocation(c2_dir, tmp_path):
    d = tmp_path / "huge"
    d.mkdir()
    cfg = json.loads((c2_dir / "checkpoint" / "config.json").read_text())
    cfg["d_model"] = 10**9
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="d_model=1000000000 must be an integer"):
        load_model(d)
    cfg["d_model"], cfg["num_layers"], cfg["d_ff"] = 16384, 500, 65536
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="refusing to allocate"):
        load_model(d)
    cfg = json.loads((c2_dir / "checkpoint" / "config.json").read_text())
    cfg["chronos_config"]["input_patch_stride"] = 8
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="non-overlapping"):
        load_model(d)


def test_config_dict_round_trip_and_unknown_fields():
    cfg = tiny_config(context_length=128)
    assert Chronos2Config.from_dict(cfg.to_dict()) == cfg
    assert Chronos2Config.from_hf_dict(cfg.to_hf_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown fields \['d_modle'\]"):
        Chronos2Config.from_dict({"d_modle": 3})
    assert sum(p.numel() for p in Chronos2Model(cfg).parameters()) == cfg.num_parameters()


@pytest.mark.parametrize("name,layers,d_model,expected_m", [("small", 6, 512, 28), ("base", 12, 768, 120)])
def test_size_parameter_counts(name, layers, d_model, expected_m):
    heads = d_model // 64
    cfg = Chronos2Config(d_model=d_model, d_ff=4 * d_model, num_heads=heads, d_kv=64, num_layers=layers)
    assert abs(cfg.num_parameters() / 1e6 - expected_m) / expected_m < 0.05, cfg.num_parameters()
