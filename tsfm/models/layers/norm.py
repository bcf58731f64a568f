"""Normalisation layers shared by the families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """T5-style RMS norm: ``w * x / sqrt(mean(x^2) + eps)``, no bias, no mean subtraction.

    The statistic is computed in float32 whatever the input dtype (as T5, Chronos-2 and Moirai
    do), so bf16 autocast does not lose precision in the variance. Output dtype: float32 for
    float32 weights (the autocast case), the weight's dtype when the module itself is half/bf16.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., D]
        out = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            out = out.to(self.weight.dtype)
        return self.weight * out

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
