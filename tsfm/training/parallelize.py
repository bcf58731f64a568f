"""Parallelism applied from outside the model (torchtitan's split): activation checkpointing,
``torch.compile`` and FSDP2 (``fully_shard``), in that order, on the blocks a family declares.

Models stay plain single-device ``nn.Module``s with no checkpointing or sharding code; the
LightningModule's one ``configure_model`` calls :func:`parallelize` with its blocks
(``parallel_blocks``), its compile targets and the device mesh Lightning's
``ModelParallelStrategy`` provides (none on one device or under DDP).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to wrap: children of the outermost ``nn.ModuleList``s of ``model``.

    Lists nested inside a block (T5's ``block[i].layer``) belong to that block and are not
    returned, so a block is never wrapped after one of its own children's parents.
    """
    blocks: list[nn.Module] = []
    inside: set[int] = set()  # ids of modules that live in an already-collected block
    for m in model.modules():  # pre-order: a block is visited before its descendants
        if id(m) in inside or not isinstance(m, nn.ModuleList):
            continue
        for child in m:
            blocks.append(child)
            inside.update(id(d) for d in child.modules())
    return blocks


_CHECKPOINTED: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    """``cls`` with a forward that recomputes itself in backward (one subclass per block class)."""
    if cls not in _CHECKPOINTED:
        def forward(self, *args, **kwargs):  # noqa: ANN001, ANN202
            inner = super(sub, self).forward
            if self.training and torch.is_grad_enabled():
                # non-reentrant: kwargs, and the RNG state restored (the same dropout masks on recompute)
                return checkpoint(inner, *args, use_reentrant=False, **kwargs)
            return inner(*args, **kwargs)

        sub = type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "_tsfm_checkpointed": True})
        _CHECKPOINTED[cls] = sub
    return _CHECKPOINTED[cls]


def apply_activation_checkpointing(blocks: Iterable[nn.Module]) -> int:
    """Recompute each block's activations in backward (less memory, ~1.3x step time), torchtitan-style:
    from outside the model, so no model file carries checkpointing code.

    The block's class is swapped for a subclass whose ``forward`` runs under
    ``torch.utils.checkpoint`` while training (as ``fully_shard`` swaps in its FSDP class):
    parameter names, state dicts and copies (``copy.deepcopy``) are unchanged. Idempotent;
    returns the number of blocks newly wrapped.
    """
    n = 0
    for block in blocks:
        if getattr(block, "_tsfm_checkpointed", False):
            continue
        block.__class__ = _checkpointed_class(type(block))
        n += 1
    return n


def is_checkpointed(block: nn.Module) -> bool:
    return bool(getattr(block, "_tsfm_checkpointed", False))


def apply_compile(blocks: Iterable[nn.Module], backend: str = "inductor") -> int:
    """``torch.compile`` each block in place (``nn.Module.compile``), torchtitan-style.

    Per-block compilation keeps the parameter names (state dicts and checkpoints are
    unchanged), leaves the data-dependent glue between blocks (packing, masks, sampling) in
    eager mode and compiles one graph that every identical block reuses. Returns the number of
    blocks compiled.
    """
    n = 0
    for block in blocks:
        block.compile(backend=backend)
        n += 1
    return n


def apply_fsdp2(
    model: nn.Module,
    mesh,
    blocks: Iterable[nn.Module] | None = None,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = torch.float32,
    forward_methods: Iterable[str] = (),
) -> nn.Module:
    """Shard each block, then the root, over the (data-parallel) ``mesh``.

    ``forward_methods``: methods of ``model`` that the training loss calls instead of
    ``forward`` (e.g. ``nll``); FSDP2 gathers the root's parameters around them too.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for block in blocks if blocks is not None else transformer_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    for name in forward_methods:
        register_fsdp_forward_method(model, name)
    # FSDP2 regathers weights into buffers whose version counter is preserved and whose address may repeat:
    # inference caches keyed on (version, address) could serve a stale product after an update (a module
    # with such caches says so with a ``cache_weights`` attribute)
    for m in model.modules():
        if hasattr(m, "cache_weights"):
            m.cache_weights = False
    return model


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters live on the meta device (no memory); buffers are
    copied. With :func:`full_state_dict` and ``load_state_dict(assign=True)`` it becomes a plain,
    unsharded model again (:meth:`TSFMModule.unsharded`)."""
    import copy

    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}  # fmt: skip
    return copy.deepcopy(model, memo)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of an FSDP2 model, on CPU, on rank 0 (empty elsewhere).
    Collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def total_grad_norm(params: Iterable[torch.nn.Parameter], norm_type: float = 2.0) -> torch.Tensor | None:
    """The norm of all gradients of ``params`` as one plain tensor, the same on every rank.

    Works for plain tensors (one process, DDP: gradients are already all-reduced) and for FSDP2's
    sharded DTensor gradients, whose local norms are reduced across the mesh (``full_tensor``),
    torchtitan-style. Collective under FSDP2: every rank must call it. None without gradients.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    from torch.distributed.tensor import DTensor

    total = torch.nn.utils.get_total_norm(grads, norm_type=norm_type)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    return total


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def parallelize(
    model: nn.Module,
    blocks: list[nn.Module],
    *,
    activation_checkpointing: bool = False,
    compile_targets: list[nn.Module] | None = None,
    compile_backend: str | None = None,
    mesh=None,  # noqa: ANN001 - a DeviceMesh (data-parallel dimension) or None
    forward_methods: tuple[str, ...] = (),
) -> dict[str, int]:
    """Activation checkpointing on ``blocks``, then ``torch.compile`` on ``compile_targets`` (default:
    the blocks), then FSDP2 over ``mesh``; each step only when asked for, and each idempotent.
    Returns how many modules each step touched."""
    done = {"checkpointed": 0, "compiled": 0, "sharded": 0}
    if activation_checkpointing:
        done["checkpointed"] = apply_activation_checkpointing(blocks)
    if compile_backend:
        targets = [m for m in (compile_targets if compile_targets is not None else blocks)
                   if not getattr(m, "_tsfm_compiled", False)]  # fmt: skip
        done["compiled"] = apply_compile(targets, backend=compile_backend)
        for m in targets:
            m._tsfm_compiled = True
    if mesh is not None and not is_sharded(model):
        apply_fsdp2(model, mesh, blocks=blocks, forward_methods=forward_methods)
        done["sharded"] = len(blocks)
    return done
