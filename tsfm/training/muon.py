"""Muon with the Newton-Schulz iterations batched over matrices of one shape.

The update is ``torch.optim.Muon``'s (Jordan et al. 2024; the tests compare the two step by step):

    B ← μ·B + (1 − μ)·g            (the momentum buffer, as a lerp)
    U ← lerp(g, B, μ)              (Nesterov) or B
    O ← NS_k(U)                    (k Newton-Schulz iterations in bf16: U's nearest semi-orthogonal matrix)
    θ ← θ·(1 − lr·λ) − lr·s(A, B)·O

with ``s = 0.2·sqrt(max(A, B))`` (``match_rms_adamw``, Moonshot's "Muon is Scalable for LLM Training": the update's
RMS matches AdamW's, so AdamW's learning rate and weight decay carry over) or ``sqrt(max(1, A/B))`` (``original``).

torch's implementation orthogonalises one matrix at a time. A Transformer's hidden matrices come in a few shapes
(d×d attention projections, d×4d and 4d×d feed-forward weights), so here the matrices of one shape (a tall matrix
counts as its transpose) are stacked and go through the iterations as one batched matmul: for the quickstart model's
40 matrices a step takes 16.7 ms instead of 30.0 ms on 2 CPU threads, with bitwise the same result
(``experiments/benchmarks/muon_speed.py``).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # Jordan et al.'s quintic: fast convergence of small singular values


def newton_schulz(g: torch.Tensor, steps: int, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  eps: float = 1e-7) -> torch.Tensor:
    """The (approximately) semi-orthogonal factor of each matrix of ``g`` ([..., m, n]), in bf16."""
    a, b, c = coefficients
    x = g.bfloat16()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(int(steps)):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a) if x.ndim == 3 else \
            torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def lr_ratio(shape: torch.Size, adjust_lr_fn: str) -> float:
    a, b = shape[:2]
    return 0.2 * math.sqrt(max(a, b)) if adjust_lr_fn == "match_rms_adamw" else math.sqrt(max(1.0, a / b))


class BatchedMuon(torch.optim.Optimizer):
    """Muon for 2-D parameters (module docstring); the state is torch's (``momentum_buffer`` per parameter)."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,  # noqa: ANN001
                 nesterov: bool = True, ns_steps: int = 5, eps: float = 1e-7,
                 adjust_lr_fn: str = "match_rms_adamw") -> None:
        if not lr >= 0 or not weight_decay >= 0 or not 0 <= momentum < 1 or int(ns_steps) < 1:
            raise ValueError(
                f"Muon needs lr >= 0, weight_decay >= 0, momentum in [0, 1) and ns_steps >= 1; got lr={lr}, "
                f"weight_decay={weight_decay}, momentum={momentum}, ns_steps={ns_steps}"
            )
        if adjust_lr_fn not in ("match_rms_adamw", "original"):
            raise ValueError(f"adjust_lr_fn must be 'match_rms_adamw' or 'original', got {adjust_lr_fn!r}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_steps=int(ns_steps), eps=eps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon optimises 2-D weight matrices only; got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError("Muon does not support sparse gradients")
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            mu = group["momentum"]
            torch._foreach_lerp_(bufs, grads, 1 - mu)
            updates = [g.lerp(b, mu) for g, b in zip(grads, bufs)] if group["nesterov"] else bufs
            by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)  # a tall matrix joins its transpose
            for i, u in enumerate(updates):
                m, n = u.shape
                by_shape[(min(m, n), max(m, n), u.device)].append(i)  # type: ignore[index]
            ortho: list[torch.Tensor | None] = [None] * len(params)
            for idx in by_shape.values():
                wide = torch.stack([updates[i] if updates[i].size(0) <= updates[i].size(1) else updates[i].T
                                    for i in idx])
                out = newton_schulz(wide, group["ns_steps"], eps=group["eps"])
                for k, i in enumerate(idx):
                    ortho[i] = out[k] if updates[i].size(0) <= updates[i].size(1) else out[k].T
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            for p, o in zip(params, ortho):
                p.add_(o, alpha=-lr * lr_ratio(p.shape, group["adjust_lr_fn"]))
        return loss
