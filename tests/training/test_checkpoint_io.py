import pytest
import torch

from tsfm.training.checkpoint_io import AtomicCheckpointIO


def test_atomic_save_roundtrip_and_no_tmp(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ck" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "hyper_parameters": {"family": "x"}}, path)
    assert path.exists() and not (tmp_path / "ck" / "a.ckpt.tmp").exists()
    out = io.load_checkpoint(path)
    assert torch.equal(out["state_dict"]["w"], torch.arange(3.0))


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "a.ckpt"
    io.save_checkpoint({"v": torch.tensor(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        io.save_checkpoint({"v": Unpicklable()}, path)
    assert io.load_checkpoint(path)["v"].item() == 1
    assert not (tmp_path / "a.ckpt.tmp").exists()


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"obj": torch.nn.Linear(2, 2)}, path)  # a module needs pickle code to load
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        AtomicCheckpointIO().load_checkpoint(path)
