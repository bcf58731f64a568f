"""The CPU dropout keeps elements with probability 1 - p, scales them, and masks the gradient alike."""

from __future__ import annotations

import torch
from torch import nn

from tsfm.models.layers.dropout import Dropout


def test_dropout_distribution_scale_and_gradient():
    torch.manual_seed(0)
    d = Dropout(0.3)
    assert isinstance(d, nn.Dropout) and d.state_dict() == {}
    x = torch.full((200, 500), 2.0, requires_grad=True)
    y = d(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 100k draws: std of the mean ~0.0015
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.7)


def test_dropout_is_identity_in_eval_and_at_p_zero():
    x = torch.randn(4, 5)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert (Dropout(1.0).train()(x) == 0).all()
