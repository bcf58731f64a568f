"""Checkpoint directories: official layout in and out, and clear errors for anything else."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tsfm.forecast import load_forecaster
from tsfm.models.chronos.config import CHRONOS_KEYS, ChronosConfig
from tsfm.models.chronos.convert import load_model, read_config, save_pretrained
from tsfm.models.chronos.forecast import ChronosForecaster
from tsfm.models.chronos.model import ChronosModel


@pytest.fixture(scope="module")
def ckpt_dir(fixtures_dir):
    return fixtures_dir / "chronos_t5" / "checkpoint"


def _tiny() -> ChronosConfig:
    return ChronosConfig(
        d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1, n_tokens=64
    )


def test_reads_official_config(ckpt_dir):
    cfg = read_config(ckpt_dir)
    assert (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.num_layers, cfg.n_tokens) == (64, 128, 4, 2, 4096)
    assert (cfg.context_length, cfg.prediction_length, cfg.top_k, cfg.num_samples) == (512, 64, 50, 20)


def test_export_roundtrip_official_layout(tmp_path, ckpt_dir):
    model = load_model(ckpt_dir)
    out = save_pretrained(model, tmp_path / "exp")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    cfg = json.loads((out / "config.json").read_text())
    official = json.loads((ckpt_dir / "config.json").read_text())
    assert set(cfg["chronos_config"]) == set(CHRONOS_KEYS) == set(official["chronos_config"])
    assert "tie_word_embeddings" not in cfg and cfg["architectures"] == ["T5ForConditionalGeneration"]
    for key in ("d_model", "d_ff", "d_kv", "num_heads", "num_layers", "vocab_size", "decoder_start_token_id"):
        assert cfg[key] == official[key]
    ours, ref = load_file(str(out / "model.safetensors")), load_file(str(ckpt_dir / "model.safetensors"))
    assert set(ours) == set(ref)  # shared.weight once, no lm_head / embed_tokens duplicates
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    again = load_model(out)
    ids = torch.randint(3, 4096, (2, 9))
    with torch.no_grad():
        a = model.t5(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
        b = again.t5(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
    assert torch.equal(a, b)


def test_accepts_duplicated_tied_weights(tmp_path, ckpt_dir):
    d = tmp_path / "dup"
    shutil.copytree(ckpt_dir, d)
    state = load_file(str(d / "model.safetensors"))
    state["lm_head.weight"] = state["shared.weight"].clone()
    state["encoder.embed_tokens.weight"] = state["shared.weight"].clone()
    save_file(state, str(d / "model.safetensors"))
    model = load_model(d)
    assert model.t5.lm_head.weight.data_ptr() == model.t5.shared.weight.data_ptr()
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="lm_head.weight differs from shared.weight"):
        load_model(d)


def test_non_chronos_directories_are_named(fixtures_dir, tmp_path):
    with pytest.raises(ValueError, match="not a Chronos \\(T5\\) checkpoint.*found"):
        load_model(fixtures_dir / "moirai_tiny" / "checkpoint")
    with pytest.raises(ValueError, match="Chronos2Model"):
        load_model(fixtures_dir / "chronos2_tiny" / "checkpoint")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="not a Chronos"):
        ChronosForecaster.from_pretrained(fixtures_dir / "moirai_tiny" / "checkpoint")


def test_shape_mismatch_and_missing_weights(tmp_path, ckpt_dir):
    d = tmp_path / "bad"
    shutil.copytree(ckpt_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["d_ff"] = 256
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"wrong shapes \[.*DenseReluDense.wi.weight: checkpoint \(128, 64\) vs model \(256, 64\)"):
        load_model(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_model(d)


def test_load_forecaster_detects_official_and_exported(tmp_path, ckpt_dir):
    f = load_forecaster(ckpt_dir)
    assert isinstance(f, ChronosForecaster) and f.config.d_model == 64
    save_pretrained(ChronosModel(_tiny()), tmp_path / "tiny")
    g = load_forecaster(tmp_path / "tiny")
    assert isinstance(g, ChronosForecaster) and g.config.n_tokens == 64
