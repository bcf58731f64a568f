"""Every family's ``gradient_checkpointing`` option, applied from outside the model by ``parallelize``:
same loss and gradients, blocks recomputed."""

from __future__ import annotations

import pytest
import torch

from tests.models.baseline.test_module import TINY as BASELINE_TINY
from tests.models.baseline.test_module import _batches as baseline_batches
from tests.models.chronos.test_module import TINY as CHRONOS_TINY
from tests.models.chronos.test_module import _batches as chronos_batches
from tests.models.chronos2.test_module import TINY as CHRONOS2_TINY
from tests.models.chronos2.test_module import _batches as chronos2_batches
from tsfm.models.baseline.module import BaselineModule
from tsfm.models.chronos.module import ChronosModule
from tsfm.models.chronos2.module import Chronos2Module
from tsfm.models.chronos2.task import Chronos2Task
from tsfm.training.parallelize import is_checkpointed


def _cases():
    return {
        # dropout on: the recomputation must replay the same dropout masks
        "chronos2": (lambda ckpt: Chronos2Module(config=CHRONOS2_TINY | {"dropout_rate": 0.1}, prediction_length=16,
                                                 gradient_checkpointing=ckpt),
                     lambda: chronos2_batches(Chronos2Task(context_length=64, prediction_length=16, min_past=32), 1)[0]),
        "chronos": (lambda ckpt: ChronosModule(config=CHRONOS_TINY | {"dropout_rate": 0.1}, gradient_checkpointing=ckpt),
                    lambda: chronos_batches(1)[0]),
        "baseline": (lambda ckpt: BaselineModule(config=BASELINE_TINY, gradient_checkpointing=ckpt),
                     lambda: baseline_batches(1)[0]),
    }


@pytest.mark.parametrize("family", ["chronos2", "chronos", "baseline"])
def test_gradient_checkpointing_same_loss_and_gradients(family, monkeypatch):
    make, batch_fn = _cases()[family]
    batch = batch_fn()
    calls = []
    import torch.utils.checkpoint as tuc

    real = tuc.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tuc, "checkpoint", counting)
    monkeypatch.setattr("tsfm.training.parallelize.checkpoint", counting)

    def run(ckpt: bool):
        torch.manual_seed(0)
        module = make(ckpt)
        module.configure_model()  # what Lightning calls first: parallelize() wraps the blocks
        assert all(is_checkpointed(b) for b in module.parallel_blocks()) == ckpt
        module.train()
        torch.manual_seed(1)
        loss = module.compute_loss(batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    plain = run(False)
    assert not calls
    ckpt = run(True)
    assert calls, "no block was checkpointed"
    torch.testing.assert_close(ckpt[0], plain[0])
    assert ckpt[1].keys() == plain[1].keys() and plain[1]
    for n, g in plain[1].items():
        torch.testing.assert_close(ckpt[1][n], g, atol=1e-6, rtol=1e-5, msg=n)
