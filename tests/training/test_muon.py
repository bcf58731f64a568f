"""BatchedMuon: torch's Muon update, with the Newton-Schulz iterations batched over matrices of one shape."""

from __future__ import annotations

import pytest
import torch

from tsfm.training.muon import BatchedMuon, newton_schulz


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
def test_batched_muon_takes_torchs_muon_steps(nesterov, adjust):
    shapes = [(16, 16), (16, 16), (16, 48), (48, 16), (48, 16), (8, 24), (16, 16)]  # square, wide, tall, mixed
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, ns_steps=5, adjust_lr_fn=adjust)
    a, b = BatchedMuon(ours, **kw), torch.optim.Muon(ref, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        for p, q in zip(ours, ref):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    assert min((p - p0).abs().max().item() for p, p0 in zip(ours, start)) > 0.01  # every matrix moved
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    for p, q in zip(ours, ref):  # the same state, under the same key: checkpoints move between the two
        torch.testing.assert_close(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"], rtol=0, atol=0)


def test_newton_schulz_orthogonalises():
    torch.manual_seed(0)
    g = torch.randn(3, 32, 96)
    o = newton_schulz(g, steps=10).float()
    # singular values of the quintic iteration settle in roughly [0.7, 1.2], not exactly 1 (Jordan et al.)
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.5 and s.max() < 1.3
    assert newton_schulz(g.mT, steps=10).shape == (3, 96, 32)  # tall matrices come back tall


def test_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        BatchedMuon([torch.nn.Parameter(torch.zeros(4))])
    with pytest.raises(ValueError, match="momentum in"):
        BatchedMuon([torch.nn.Parameter(torch.zeros(4, 4))], momentum=1.0)
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        BatchedMuon([torch.nn.Parameter(torch.zeros(4, 4))], adjust_lr_fn="other")
