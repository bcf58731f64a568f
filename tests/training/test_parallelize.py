"""parallelize(): activation checkpointing, compile and FSDP2 applied from outside the model."""

from __future__ import annotations

import copy

import torch

from tsfm.models.baseline.config import BaselineConfig
from tsfm.models.baseline.model import BaselineModel
from tsfm.training.parallelize import is_checkpointed, parallelize, transformer_blocks

TINY = dict(architecture="decoder", d_model=32, num_layers=2, num_heads=4, patch_size=8, context_length=32,
            prediction_length=16)


def test_checkpointing_keeps_names_copies_and_gradients():
    torch.manual_seed(0)
    model = BaselineModel(BaselineConfig.from_dict(TINY))
    x, y = torch.randn(4, 32), torch.randn(4, 16)
    plain = copy.deepcopy(model)
    keys = list(model.state_dict())
    done = parallelize(model, transformer_blocks(model), activation_checkpointing=True)
    assert done == {"checkpointed": 2, "compiled": 0, "sharded": 0}
    assert parallelize(model, transformer_blocks(model), activation_checkpointing=True)["checkpointed"] == 0  # idempotent
    assert list(model.state_dict()) == keys and all(is_checkpointed(b) for b in model.blocks)
    twin = copy.deepcopy(model)  # a copy computes with its own weights (no closure over the original)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    model.train(), plain.train()
    a, b = model.nll(x, y), plain.nll(x, y)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(twin.nll(x, y), a)
    a.backward(), b.backward()
    for (n, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_nothing_is_applied_unless_asked():
    model = BaselineModel(BaselineConfig.from_dict(TINY))
    assert parallelize(model, transformer_blocks(model)) == {"checkpointed": 0, "compiled": 0, "sharded": 0}
    assert not any(is_checkpointed(b) for b in model.blocks)
