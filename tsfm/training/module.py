"""Base LightningModule shared by the families: optimizer recipe, non-finite guard, logging.

A family subclasses :class:`TSFMModule`, builds its single-device ``nn.Module`` in
``__init__`` (stored as ``self.model``) and implements :meth:`compute_loss`. Hyperparameters
are plain dicts/values so a checkpoint loads with ``torch.load(weights_only=True)``.

``configure_model`` (called by Lightning before the model moves to its device) applies, in
torchtitan's order, activation checkpointing (``gradient_checkpointing``), ``torch.compile``
(``compile``: ``model.compile=true`` in the configs) and FSDP2 under ``ModelParallelStrategy`` to
the family's blocks (:func:`tsfm.training.parallelize.parallelize`); model files hold none of it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import save_file

from tsfm.models.layers.linear import cpu_gemm, onednn_available, set_cpu_gemm
from tsfm.training.devices import release_process_group_at_exit
from tsfm.training.lora import PRESETS, apply_lora, freeze_except, lora_options, merge_lora
from tsfm.training.optim import OptimConfig, build_optimizer
from tsfm.training.parallelize import (
    full_state_dict,
    is_sharded,
    meta_copy,
    parallelize,
    total_grad_norm,
    transformer_blocks,
)

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive batches with a NaN/inf loss."""


class TSFMModule(L.LightningModule):
    """Common training logic; subclasses set ``family`` and ``self.model``."""

    family: str = ""
    supports_half_weights: bool = False  # trainer.precision=bf16-true / 16-true (checked by tsfm.train)
    fsdp_forward_methods: tuple[str, ...] = ()  # model methods compute_loss calls instead of forward
    head_modules: tuple[str, ...] = ()  # submodules of self.model that finetune=head trains (the rest is frozen)
    lora_targets: tuple[str, ...] = ()  # linear layers (name suffixes) that finetune=lora gives adapters

    def __init__(
        self, optim: dict | OptimConfig | None = None, max_nonfinite: int = 10, compile: bool | str = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.compile_backend = compile_backend(compile)
        self.gradient_checkpointing = bool(gradient_checkpointing)  # applied to the blocks in configure_model
        if isinstance(optim, OptimConfig):
            optim = dict(vars(optim))
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.max_nonfinite = max_nonfinite
        self._nonfinite_streak = 0
        self.nonfinite_batches = 0
        self._skip_update = False  # set by a distributed step whose loss is non-finite on some rank

    # -- to implement ---------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of a collated batch (each family implements it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss(batch)")

    def forecaster(self):
        """A :class:`tsfm.forecast.Forecaster` over the current weights (for in-training benchmarks)."""
        raise NotImplementedError(f"{type(self).__name__} does not provide a forecaster")

    def save_pretrained(self, path: str | Path) -> Path:
        """Export the current weights as a checkpoint directory (config.json + model.safetensors)
        in the family's official layout, loadable by ``load_forecaster``."""
        raise NotImplementedError(f"{type(self).__name__} does not export checkpoint directories")

    def apply_finetune(self, preset: str = "full", lora: dict[str, Any] | None = None) -> None:
        """Apply a fine-tuning preset to ``self.model`` (call at the end of ``__init__``):
        ``full`` trains everything, ``head`` only :attr:`head_modules`, ``lora`` LoRA adapters on
        :attr:`lora_targets` (``lora``: peft options, e.g. ``{"r": 16}``). The effective choice is
        recorded in the hyperparameters, so checkpoints rebuild (and fold) it."""
        if preset not in PRESETS:
            raise ValueError(f"finetune={preset!r}: use one of {', '.join(PRESETS)}")
        if lora and preset != "lora":
            raise ValueError("lora options given but finetune is not 'lora'; set finetune: lora")
        opts = None
        if preset == "head":
            n = freeze_except(self.model, self.head_modules)
            log.info("finetune=head: %d trainable parameters (%s)", n, ", ".join(self.head_modules))
        elif preset == "lora":
            opts = lora_options(lora, self.lora_targets)
            apply_lora(self.model, opts)
            n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            log.info("finetune=lora: %d trainable parameters (r=%s on %s)", n, opts["r"], opts["target_modules"])
        self.hparams["finetune"] = preset
        self.hparams["lora"] = opts

    def merged_model(self) -> torch.nn.Module:
        """The model to forecast with or export: ``self.model`` itself, or with ``finetune=lora`` a
        copy with the adapters folded into plain weights."""
        if self.hparams.get("finetune") != "lora":
            return self.model
        return merge_lora(copy.deepcopy(self.model))

    def trainable_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer sees (override to freeze parts)."""
        return self

    def parallel_blocks(self) -> list[torch.nn.Module]:
        """The repeated blocks that are compiled and sharded one by one (override if the
        model's outermost ``nn.ModuleList`` is not its stack of blocks)."""
        return transformer_blocks(self.model)

    def compile_targets(self) -> list[torch.nn.Module]:
        """The modules ``model.compile`` compiles one by one: the blocks, unless a family keeps
        data-dependent parts (whose structure changes from batch to batch) out of the graphs."""
        return self.parallel_blocks()

    # -- Lightning hooks ------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self.compute_loss(batch)
        finite = bool(torch.isfinite(loss.detach()).all())
        if self._world_size() > 1:
            # A rank cannot skip alone (every rank takes part in the gradient reduction, and
            # Lightning forbids returning None): one flag is reduced, every rank runs backward on a
            # zero-weighted loss, and on_before_optimizer_step drops the gradients everywhere.
            if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
                self._report_nonfinite(batch, batch_idx, loss, local=not finite)
                self._skip_update = True
                return torch.where(torch.isfinite(loss), loss, 0.0) * 0.0
        elif not finite:
            self._report_nonfinite(batch, batch_idx, loss)
            return None  # Lightning skips backward and the optimizer step
        self._nonfinite_streak = 0
        # the mean over ranks (one scalar all-reduce), so every strategy logs the same number
        self.log("train/loss", loss, prog_bar=True, batch_size=self._batch_size(batch), sync_dist=self._world_size() > 1)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=self._batch_size(batch))
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # A finite loss can still give non-finite gradients (overflow in backward): drop them
        # so AdamW leaves the weights untouched for this step.
        # one fused reduction (a NaN/inf anywhere makes the total norm non-finite), one host sync;
        # under FSDP2 the shards' norms are reduced, so every rank takes the same decision
        total = total_grad_norm(p for g in optimizer.param_groups for p in g["params"])
        skip, self._skip_update = self._skip_update, False
        if skip or (total is not None and not torch.isfinite(total)):
            if not skip:
                log.warning("step %d: non-finite gradients, skipping the update", self.global_step)
                self.nonfinite_batches += 1
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = None

    def setup(self, stage: str) -> None:
        release_process_group_at_exit()  # a clean exit for every rank once the run is over

    def configure_model(self) -> None:
        """Activation checkpointing (``gradient_checkpointing``), ``torch.compile`` (``compile``) and,
        under ``ModelParallelStrategy`` (trainer=fsdp), FSDP2 on the family's blocks, through
        :func:`~tsfm.training.parallelize.parallelize`. Idempotent: Lightning may call it more than once."""
        mesh = getattr(self, "_device_mesh", None)
        dp_mesh = None
        if mesh is not None and not is_sharded(self.model):
            dp_mesh = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names else mesh
        blocks = self.parallel_blocks()
        if dp_mesh is not None:
            # the plain architecture, for unsharded(); kept out of the module tree (a registered
            # submodule with meta parameters would be materialised and optimised by Lightning)
            self.__dict__["_skeleton"] = meta_copy(self.model)
        done = parallelize(self.model, blocks, activation_checkpointing=self.gradient_checkpointing,
                           compile_targets=self.compile_targets(), compile_backend=self.compile_backend, mesh=dp_mesh,
                           forward_methods=self.fsdp_forward_methods)  # fmt: skip
        if any(done.values()):
            log.info("parallelize: %s", done)

    @contextlib.contextmanager
    def unsharded(self) -> Iterator[TSFMModule | None]:
        """This module with its model's full weights, for work done on rank 0 alone (the lite
        benchmark, the export).

        Not sharded (one process, DDP): yields the module itself on every rank. Under FSDP2 it is
        collective (every rank must enter): the shards are gathered and, on rank 0, loaded into a
        plain copy of the architecture that stands in for ``self.model`` until the block ends;
        other ranks get None. Forward passes of the sharded model on rank 0 alone would wait
        forever for the other ranks' all-gathers.
        """
        if not is_sharded(self.model):
            yield self
            return
        state = full_state_dict(self.model)
        if self.global_rank != 0:
            yield None
            return
        plain = copy.deepcopy(self._skeleton)
        plain.load_state_dict(state, assign=True)
        sharded = self.model
        self.model = plain.to(self.device)
        try:
            yield self
        finally:
            self.model = sharded

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tsfm_cpu_gemm"] = cpu_gemm()  # the float32 CPU GEMM kernel: a resumed run reuses it

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("tsfm_cpu_gemm")
        if stored is None or getattr(self, "cpu_gemm_mode", "auto") != "auto" or stored == cpu_gemm():
            return  # nothing stored, a kernel chosen explicitly (trainer.cpu_gemm), or the same one
        if stored == "onednn" and not onednn_available():
            log.warning("the checkpoint was trained with float32 CPU GEMMs on onednn, which this machine lacks; "
                        "continuing on aten (rounding-level differences)")
            return
        log.info("resuming with the checkpoint's float32 CPU GEMM kernel: %s (auto picked %s)", stored, cpu_gemm())
        set_cpu_gemm(stored)

    def configure_optimizers(self) -> dict:
        if self.trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            self.optim_cfg.max_steps = self.trainer.max_steps
        return build_optimizer(self.trainable_module(), self.optim_cfg)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Model randomness (dropout, in-model augmentation) is drawn from a stream keyed by
        # (seed, global step, rank), like the data stream: a resumed run repeats it exactly,
        # whatever else consumed the global RNG (dataloader iterators, validation).
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed((base * 1_000_003 + self.global_step * 9_176 + self.global_rank) % 2**63)

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _batch_size(batch: dict[str, Any]) -> int:
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                return int(v.shape[0])
        return 1

    def _world_size(self) -> int:
        return int(self.trainer.world_size) if self._trainer is not None else 1

    def _report_nonfinite(self, batch: dict[str, Any], batch_idx: int, loss: torch.Tensor, local: bool = True) -> None:
        """Count a skipped batch; log (and save) it on the rank(s) where the loss is non-finite.
        The streak counts skipped steps, so every rank raises together."""
        self.nonfinite_batches += 1
        self._nonfinite_streak += 1
        if not local:
            if self._nonfinite_streak >= self.max_nonfinite:
                raise NonFiniteLossError(
                    f"{self._nonfinite_streak} consecutive steps had a non-finite loss on some rank (last at step "
                    f"{self.global_step}); lower optim.lr, enable gradient clipping, or inspect that rank's log"
                )
            return
        summary = {
            k: f"shape={tuple(v.shape)} nan={int(torch.isnan(v).sum()) if v.is_floating_point() else 0} "
            f"inf={int(torch.isinf(v).sum()) if v.is_floating_point() else 0}"
            for k, v in batch.items()
            if isinstance(v, torch.Tensor)
        }
        dump = None
        log_dir = None
        if self._trainer is not None:  # not trainer.log_dir: it broadcasts, and only this rank is here
            logger = self.trainer.logger
            log_dir = getattr(logger, "log_dir", None) or self.trainer.default_root_dir
        if log_dir:
            rank = f"_rank{self.global_rank}" if self._world_size() > 1 else ""
            dump = Path(log_dir) / f"nonfinite_batch_step{self.global_step}_idx{batch_idx}{rank}.safetensors"
            dump.parent.mkdir(parents=True, exist_ok=True)
            tensors = {k: v.detach().cpu().contiguous() for k, v in batch.items() if isinstance(v, torch.Tensor)}
            save_file(tensors, str(dump))
        log.error(
            "non-finite loss %s at step %d (batch %d); update skipped. batch: %s%s",
            loss.item() if loss.numel() == 1 else "tensor",
            self.global_step,
            batch_idx,
            summary,
            f"; saved to {dump}" if dump else "",
        )
        if self._nonfinite_streak >= self.max_nonfinite:
            raise NonFiniteLossError(
                f"{self._nonfinite_streak} consecutive batches had a non-finite loss (last at step "
                f"{self.global_step}); lower optim.lr, enable gradient clipping, or inspect {dump or 'the batch'}"
            )


def compile_backend(compile: bool | str | None) -> str | None:
    """``model.compile``: false/null (eager), true (inductor), auto (inductor where a C++ compiler is found,
    else eager with a warning: for configs that must run anywhere) or a ``torch.compile`` backend name."""
    if compile is None or compile is False or (isinstance(compile, str) and compile.lower() in ("", "false")):
        return None
    if isinstance(compile, str) and compile.lower() == "auto":
        if missing := _missing_cxx_compiler():
            log.warning("model.compile=auto found no C++ compiler for inductor (%s), so it trains eager (the quickstart "
                        "model compiled runs ~1.24x the steps/s on CPU); install g++ or clang++ (or point $CXX at one) "
                        "to compile", missing)
            return None
        return "inductor"
    if compile is True or (isinstance(compile, str) and compile.lower() in ("true", "inductor")):
        if missing := _missing_cxx_compiler():
            raise ValueError(
                f"model.compile=true compiles with inductor, which needs a C++ compiler, and none was found "
                f"({missing}). Install one (g++ or clang++; or point $CXX at it), or set model.compile=false (eager), "
                "model.compile=auto (inductor where a compiler is found, else eager) or model.compile=aot_eager "
                "(traces without generating code)"
            )
        return "inductor"
    if not isinstance(compile, str):
        raise ValueError(f"model.compile={compile!r}: use true, false, auto or a torch.compile backend name")
    import torch._dynamo

    if compile not in torch._dynamo.list_backends(exclude_tags=()):
        raise ValueError(
            f"model.compile={compile!r} is not a torch.compile backend; use true (inductor), false, auto, "
            f"or one of {sorted(torch._dynamo.list_backends(exclude_tags=()))}"
        )
    return compile


def _missing_cxx_compiler() -> str | None:
    """Why inductor cannot build here (it writes and builds C++, and Triton's launchers need a C compiler), or
    None. Checked up front: without a compiler, training would fail at its first step deep inside torch."""
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as err:  # noqa: BLE001 - torch raises its own InvalidCxxCompiler (or OSError) here
        return str(err) or type(err).__name__
    return None


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def human_count(n: int) -> str:
    if n <= 0:
        return "0"
    k = int(math.log10(n) // 3)
    return f"{n / 10 ** (3 * k):.1f}{['', 'K', 'M', 'B', 'T'][k]}"
