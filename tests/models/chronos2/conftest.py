"""Shared fixtures for the Chronos-2 tests: the golden tensors and the tiny reference checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tsfm.models.chronos2.config import Chronos2Config
from tsfm.models.chronos2.convert import load_model
from tsfm.models.chronos2.model import Chronos2Model


@pytest.fixture(scope="session")
def c2_dir(fixtures_dir):
    return fixtures_dir / "chronos2_tiny"


@pytest.fixture(scope="session")
def c2_tensors(c2_dir) -> dict[str, torch.Tensor]:
    return load_file(str(c2_dir / "cases.safetensors"))


@pytest.fixture(scope="session")
def c2_meta(c2_dir) -> dict:
    return json.loads((c2_dir / "cases.json").read_text())


@pytest.fixture()
def c2_model(c2_dir) -> Chronos2Model:
    return load_model(c2_dir / "checkpoint")


def tiny_config(**kw) -> Chronos2Config:
    base = dict(d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2, context_length=64,
                max_output_patches=2, dropout_rate=0.0, initializer_factor=0.5)  # fmt: skip
    return Chronos2Config(**(base | kw))


def pipeline_inputs(tensors: dict, meta: dict, case: str):
    """(targets, past covariates, future covariates, call) of a pipe_* fixture case."""
    schema = meta["cases"][case]["inputs_schema"]
    get = lambda key: tensors[f"{case}.{key}"].numpy()  # noqa: E731
    ctx = [get(s["target"]) for s in schema]
    past = [{k: get(v) for k, v in s["past_covariates"].items()} for s in schema]
    fut = [{k: get(v) for k, v in s["future_covariates"].items()} for s in schema]
    return ctx, past, fut, meta["cases"][case]["call"]


def assert_close_scaled(got: np.ndarray, ref: np.ndarray, loc: np.ndarray, scale: np.ndarray, atol: float = 1e-5):
    """Fixture README: compare asinh((pred - loc) / scale) with atol 1e-5 (original-scale outputs)."""
    a = np.arcsinh((got - loc) / scale)
    b = np.arcsinh((ref - loc) / scale)
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)
