"""Apply ``torch.compile`` and FSDP2 (``fully_shard``) to a single-device model.

Kept apart from model code (torchtitan's split): models stay plain ``nn.Module``s and the
LightningModule calls :func:`apply_compile` (``model.compile=true``) and then
:func:`apply_fsdp2` (when Lightning's ``ModelParallelStrategy`` provides a device mesh) from
``configure_model``. Activation checkpointing is a flag of each model (its blocks are wrapped
where they are called), so it composes with both.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


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
