"""The six model sizes of the scaling study, for every family.

The baseline family's sweep (``conf/experiment/scaling_enc_vs_dec.yaml``) names one model file per
size (``conf/model/baseline_{enc,dec}_<size>.yaml``). The other families' sweeps
(``experiment=scaling_chronos2``, ``experiment=scaling_moirai``) take the same widths, depths and
head counts from this table through ``${study_size:<field>,<size>}``, so that one size means one
shape whatever the family:

| size  | d_model | layers | heads | head dim |
|-------|---------|--------|-------|----------|
| nano  | 16      | 1      | 2     | 8        |
| micro | 32      | 1      | 2     | 16       |
| tiny  | 64      | 2      | 4     | 16       |
| mini  | 128     | 3      | 4     | 32       |
| small | 192     | 4      | 6     | 32       |
| base  | 256     | 6      | 8     | 32       |

``d_ff`` is ``4 * d_model`` (Chronos-2's T5 feed-forward; Moirai derives its own).
"""

from __future__ import annotations

from typing import Any

SIZES: dict[str, tuple[int, int, int]] = {  # name: (d_model, num_layers, num_heads)
    "nano": (16, 1, 2),
    "micro": (32, 1, 2),
    "tiny": (64, 2, 4),
    "mini": (128, 3, 4),
    "small": (192, 4, 6),
    "base": (256, 6, 8),
}
FIELDS = ("d_model", "num_layers", "num_heads", "head_dim", "d_ff")


def size(name: str) -> dict[str, int]:
    """The shape of study size ``name`` (see the module docstring)."""
    if name not in SIZES:
        raise ValueError(f"unknown scaling-study size {name!r}; use one of {', '.join(SIZES)}")
    d, layers, heads = SIZES[name]
    return {"d_model": d, "num_layers": layers, "num_heads": heads, "head_dim": d // heads, "d_ff": 4 * d}


def resolve(field: str, name: Any) -> int:
    """The ``${study_size:<field>,<size>}`` resolver."""
    if field not in FIELDS:
        raise ValueError(f"study_size: unknown field {field!r}; use one of {FIELDS}")
    return size(str(name))[field]
