"""Apply FSDP2 (``fully_shard``) and activation checkpointing to a single-device model.

Kept apart from model code (torchtitan's split): models stay plain ``nn.Module``s and the
LightningModule calls :func:`apply_fsdp2` from ``configure_model`` when Lightning's
``ModelParallelStrategy`` provides a device mesh.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """Every child of every ``nn.ModuleList`` of ``model``: the repeated blocks to wrap."""
    blocks: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, nn.ModuleList):
            blocks.extend(m)
    return blocks


def apply_fsdp2(
    model: nn.Module,
    mesh,
    blocks: Iterable[nn.Module] | None = None,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = torch.float32,
) -> nn.Module:
    """Shard each block, then the root, over the (data-parallel) ``mesh``."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for block in blocks if blocks is not None else transformer_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of an FSDP2 model, on CPU, on rank 0 (empty elsewhere).
    Collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())
