"""Every family's converter (``spec.converter``) has the same contract: ``read_config``, ``load_model``
(directory or ``.ckpt``, with the shared override policy), ``model_from_checkpoint``,
``save_pretrained`` (deterministic bytes) and ``EDITABLE``; weights load through the shared
checked loader (docs/architecture.md, "The converter contract")."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tsfm.checkpoint import WEIGHTS_NAME, load_state_checked, resolve_finetune_config
from tsfm.models import families

FAMILIES = sorted(families())
CONTRACT = ("read_config", "load_model", "model_from_checkpoint", "save_pretrained")
OLD_NAMES = ("load_official", "save_official", "export_pretrained", "load_pretrained", "model_from_state_dict",
             "load_state", "load_state_dict_checked", "load_state_dict")
DROPOUT = {"moirai": "dropout_p", "chronos": "dropout_rate", "chronos2": "dropout_rate", "baseline": "dropout"}


def _converter(family: str):
    return families()[family].load("converter")


def _cfg(model: torch.nn.Module):
    cfg = getattr(model, "config", None)
    return cfg if cfg is not None else model.cfg  # Moirai keeps its config as ``cfg``


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_converter_exposes_the_same_contract(family):
    conv = _converter(family)
    for name in CONTRACT:
        assert callable(getattr(conv, name, None)), f"{conv.__name__} lacks {name}"
        assert getattr(conv, name).__module__ == conv.__name__, name
    assert not [n for n in OLD_NAMES if hasattr(conv, n)], "old converter names are gone"
    keys = families()[family].load("config")().to_dict()
    assert conv.EDITABLE and set(conv.EDITABLE) <= set(keys), sorted(set(conv.EDITABLE) - set(keys))
    assert DROPOUT[family] in conv.EDITABLE


@pytest.mark.parametrize("family_ckpt", FAMILIES, indirect=True)
def test_directory_round_trip_is_deterministic(family_ckpt, request, tmp_path):
    family = request.node.callspec.params["family_ckpt"]
    conv = _converter(family)
    assert isinstance(conv.read_config(family_ckpt), families()[family].load("config"))
    model = conv.load_model(family_ckpt)
    assert isinstance(model, families()[family].load("model")) and not model.training
    first, second = conv.save_pretrained(model, tmp_path / "a"), conv.save_pretrained(model, tmp_path / "b")
    assert first == tmp_path / "a"
    assert _files(first) == _files(second)  # same bytes, file by file
    again = conv.load_model(first)
    assert _cfg(again) == _cfg(model) and _same_state(again, model)
    assert _files(conv.save_pretrained(again, tmp_path / "c")) == _files(first)


@pytest.mark.parametrize("family_ckpt", FAMILIES, indirect=True)
def test_a_ckpt_of_the_family_loads(family_ckpt, request, tmp_path):
    family = request.node.callspec.params["family_ckpt"]
    conv = _converter(family)
    model = conv.load_model(family_ckpt)
    path = tmp_path / "run.ckpt"  # what Lightning writes: the module's state (``model.`` prefix) + hparams
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"family": family, "config": _cfg(model).to_dict()}}, path)
    loaded = conv.load_model(path)
    assert _cfg(loaded) == _cfg(model) and _same_state(loaded, model)
    with pytest.raises(ValueError, match=rf"checkpoint of family {family!r}, expected"):
        other = next(f for f in FAMILIES if f != family)
        _converter(other).load_model(path)


@pytest.mark.parametrize("family_ckpt", FAMILIES, indirect=True)
def test_overrides_follow_the_shared_policy(family_ckpt, request, caplog):
    family = request.node.callspec.params["family_ckpt"]
    conv = _converter(family)
    ref = conv.load_model(family_ckpt)
    key = DROPOUT[family]
    # an editable key takes effect: the model is built from it (dropout modules read p at construction)
    tuned = conv.load_model(family_ckpt, overrides={key: 0.25})
    assert getattr(_cfg(tuned), key) == 0.25
    rates = {m.p for m in tuned.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.25}, rates
    assert _same_state(tuned, ref)
    # a non-editable key that differs is ignored, with one warning naming it and both values
    d_model = _cfg(ref).d_model
    with caplog.at_level(logging.WARNING, logger="tsfm.checkpoint"):
        kept = conv.load_model(family_ckpt, overrides={"d_model": 2 * d_model, key: getattr(_cfg(ref), key)})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"d_model: checkpoint {d_model}, requested {2 * d_model}" in warnings[0]
    assert _cfg(kept) == _cfg(ref) and _same_state(kept, ref)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tsfm.checkpoint"):
        conv.load_model(family_ckpt, overrides={"d_model": d_model})  # the checkpoint's own value: no warning
    assert not caplog.records
    with pytest.raises(ValueError, match=r"unknown config keys \['d_modle'\]"):
        conv.load_model(family_ckpt, overrides={"d_modle": 1})


@pytest.mark.parametrize("family_ckpt", FAMILIES, indirect=True)
def test_missing_or_misshaped_tensors_are_named(family_ckpt, request, tmp_path):
    family = request.node.callspec.params["family_ckpt"]
    conv = _converter(family)
    d = tmp_path / "broken"
    shutil.copytree(family_ckpt, d)
    weights = load_file(str(d / WEIGHTS_NAME))
    name = next(k for k in sorted(weights) if not any(t in k for t in ("shared", "embed_tokens", "lm_head")))
    save_file({k: v for k, v in weights.items() if k != name}, str(d / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=re.escape(str(d)) + ".*" + re.escape(f"missing ['{name}']")):
        conv.load_model(d)
    bad = weights[name].reshape(-1)[:-1].clone() if weights[name].numel() > 1 else torch.zeros(2)
    save_file(weights | {name: bad}, str(d / WEIGHTS_NAME))
    shape = tuple(weights[name].shape)
    with pytest.raises(ValueError, match=re.escape(f"{name}: checkpoint ({bad.numel()},) vs model {shape}")):
        conv.load_model(d)


def test_load_state_checked_casts_and_names_problems():
    model = torch.nn.Linear(3, 2)
    state = {"weight": torch.ones(2, 3, dtype=torch.float64), "bias": torch.zeros(2, dtype=torch.float64)}
    load_state_checked(model, state, "src")
    assert model.weight.dtype == torch.float32 and torch.equal(model.weight, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"src: .*missing \['bias'\].*unexpected \['extra'\]"):
        load_state_checked(model, {"weight": state["weight"], "extra": state["bias"]}, "src")
    with pytest.raises(ValueError, match=r"wrong shapes \['weight: checkpoint \(3, 2\) vs model \(2, 3\)'\]"):
        load_state_checked(model, {"weight": torch.ones(3, 2), "bias": state["bias"]}, "src")
    with torch.device("meta"):
        meta = torch.nn.Linear(3, 2)
    load_state_checked(meta, state, "src", assign=True)
    assert meta.weight.device.type == "cpu" and meta.weight.dtype == torch.float32


def test_resolve_finetune_config_policy(caplog):
    ckpt = {"d_model": 64, "dropout": 0.1, "sizes": [1, 2]}
    with caplog.at_level(logging.WARNING, logger="tsfm.checkpoint"):
        out = resolve_finetune_config(ckpt, {"dropout": 0.0, "sizes": (1, 2)}, {"dropout"}, "src")
    assert out == {"d_model": 64, "dropout": 0.0, "sizes": [1, 2]} and not caplog.records  # a tuple equals a list
    with caplog.at_level(logging.WARNING, logger="tsfm.checkpoint"):
        out = resolve_finetune_config(ckpt, {"d_model": 128, "sizes": [4]}, {"dropout"}, "src")
    assert out == ckpt
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "d_model: checkpoint 64, requested 128" in msg and "sizes: checkpoint [1, 2], requested [4]" in msg
    with pytest.raises(ValueError, match=r"src: unknown config keys \['nope'\]"):
        resolve_finetune_config(ckpt, {"nope": 1}, {"dropout"}, "src")
