"""``model.compile``: per-block torch.compile from ``configure_model``, same numbers, same state dict.

The default run compiles with the ``aot_eager`` backend (traces and partitions forward and
backward like inductor, without generating C++: seconds instead of ~25 s on 2 CPU cores); the
``slow`` test runs inductor itself (``model.compile=true``).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.models.baseline.test_module import TINY, _batches
from tests.models.moirai.test_module import TINY as MOIRAI_TINY
from tests.models.moirai.test_module import _batches as moirai_batches
from tsfm.models.baseline.module import BaselineModule
from tsfm.models.moirai.module import MoiraiModule
from tsfm.training.module import compile_backend


def _fit(module: BaselineModule, batches: list, tmp_path) -> None:
    trainer = L.Trainer(max_steps=len(batches), accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, DataLoader(batches, batch_size=None))


def _trained(compile, tmp_path) -> BaselineModule:  # noqa: ANN001
    torch.manual_seed(0)
    module = BaselineModule(config=TINY, compile=compile, optim={"lr": 1e-3, "warmup_steps": 0})
    _fit(module, _batches(3), tmp_path)
    return module


def _forecast(module: BaselineModule) -> np.ndarray:
    ctx = [np.sin(np.arange(64, dtype=np.float32) / 3) + 2]
    torch.manual_seed(0)  # the baseline forecaster samples
    return module.forecaster().predict_quantiles(ctx, prediction_length=16)


@pytest.mark.parametrize("value,expected", [(False, None), (None, None), ("false", None), (True, "inductor"),
                                            ("true", "inductor"), ("aot_eager", "aot_eager"),
                                            ("auto", "inductor")])  # fmt: skip (this machine has g++)
def test_compile_setting_values(value, expected):
    assert compile_backend(value) == expected


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="model.compile='inductr' is not a torch.compile backend"):
        BaselineModule(config=TINY, compile="inductr")


def test_inductor_without_a_cxx_compiler_says_what_to_change(monkeypatch):
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    def missing() -> str:
        raise InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler.*model.compile=false"):
        BaselineModule(config=TINY, compile=True)
    assert compile_backend("aot_eager") == "aot_eager"  # backends that generate no code still work
    assert compile_backend(False) is None


def test_auto_trains_eager_without_a_cxx_compiler_and_says_so(monkeypatch, caplog):
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    def missing() -> str:
        raise InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    with caplog.at_level("WARNING", logger="tsfm.training.module"):
        module = BaselineModule(config=TINY, compile="auto")
    assert module.compile_backend is None
    assert "found no C++ compiler" in caplog.text and "install g++ or clang++" in caplog.text


def test_compiled_blocks_train_and_forecast_like_eager(tmp_path):
    eager = _trained(False, tmp_path / "eager")
    compiled = _trained("aot_eager", tmp_path / "compiled")
    assert all(b._compiled_call_impl is not None for b in compiled.compile_targets())
    assert all(b._compiled_call_impl is None for b in eager.compile_targets())
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # no _orig_mod. prefixes
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # same 3 updates
    np.testing.assert_allclose(_forecast(compiled), _forecast(eager), rtol=1e-4, atol=1e-4)


def test_compile_is_applied_once(tmp_path):
    module = BaselineModule(config=TINY, compile="aot_eager")
    module.configure_model()
    first = [b._compiled_call_impl for b in module.compile_targets()]
    module.configure_model()
    assert [b._compiled_call_impl for b in module.compile_targets()] == first


def test_moirai_compiles_norms_and_ffn_without_recompiling_per_batch():
    """Packed batches differ in their per-sample bucketing; the compiled parts must not care."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    eager = MoiraiModule(config=MOIRAI_TINY)
    compiled = MoiraiModule(config=MOIRAI_TINY, compile="aot_eager")
    compiled.load_state_dict(eager.state_dict())
    compiled.configure_model()
    assert {type(m).__name__ for m in compiled.compile_targets()} == {"RMSNorm", "GLUFeedForward"}
    for batch in moirai_batches(3):
        a, b = eager.compute_loss(batch), compiled.compute_loss(batch)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        b.backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 6  # norm + FFN, static then dynamic shapes


@pytest.mark.slow
def test_inductor_compile_trains_and_forecasts(tmp_path):
    """model.compile=true (inductor, C++ codegen on the CPU): ~25 s on 2 cores."""
    compiled = _trained(True, tmp_path)
    assert compiled.compile_backend == "inductor"
    q = _forecast(compiled)
    assert q.shape == (1, 16, 9) and np.isfinite(q).all()
