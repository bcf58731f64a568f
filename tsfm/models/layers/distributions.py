"""Mixture-of-Student-t output distribution: a projection head and the distribution on plain tensors.

A token's hidden state is mapped to ``width`` output positions (e.g. the time steps of a patch),
each with a ``K``-component Student-t mixture: ``df = 2 + softplus``, ``scale = softplus + eps``,
free ``loc`` and mixture logits (the parametrisation Moirai uses for its Student-t component, so
the variance always exists). :class:`StudentTMixture` evaluates log-densities (for an NLL loss),
moments and draws vectorised samples; it holds tensors only, so it works under autocast and on
any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_HALF_LOG_PI = 0.5 * math.log(math.pi)


@dataclass
class StudentTMixture:
    """``K``-component Student-t mixture per element; every field is ``[..., K]``."""

    df: torch.Tensor  # > 2
    loc: torch.Tensor
    scale: torch.Tensor  # > 0
    logits: torch.Tensor  # unnormalised mixture weights

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of ``x`` ``[...]`` (computed in float32) -> ``[...]``."""
        df, loc, scale = self.df.float(), self.loc.float(), self.scale.float()
        y = (x.float().unsqueeze(-1) - loc) / scale  # [..., K]
        comp = (
            torch.lgamma(0.5 * (df + 1.0))
            - torch.lgamma(0.5 * df)
            - 0.5 * torch.log(df)
            - _HALF_LOG_PI
            - torch.log(scale)
            - 0.5 * (df + 1.0) * torch.log1p(y * y / df)
        )
        return torch.logsumexp(F.log_softmax(self.logits.float(), dim=-1) + comp, dim=-1)

    def mean(self) -> torch.Tensor:
        """Mixture mean ``[...]``."""
        return (torch.softmax(self.logits.float(), -1) * self.loc.float()).sum(-1)

    def variance(self) -> torch.Tensor:
        """Mixture variance ``[...]`` (finite because ``df > 2``)."""
        w = torch.softmax(self.logits.float(), -1)
        loc, df = self.loc.float(), self.df.float()
        second = self.scale.float() ** 2 * df / (df - 2.0) + loc**2
        mean = (w * loc).sum(-1)
        return (w * second).sum(-1) - mean**2

    @torch.no_grad()
    def sample(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draws ``[S, ...]`` (or ``[...]`` when ``num_samples`` is None), all elements at once.

        A component is picked per draw (Gumbel-max on the logits), then ``loc + scale * T`` with
        ``T = N / sqrt(G / (df/2))``, ``G ~ Gamma(df/2, 1)``. ``generator`` seeds the normal and
        uniform draws; the gamma draws use the global RNG (torch has no seeded gamma sampler), so
        seed with ``torch.manual_seed`` for fully reproducible paths.
        """
        shape = (1 if num_samples is None else num_samples, *self.logits.shape)  # [S, ..., K]
        logits = self.logits.float().expand(shape)
        u = torch.rand(shape, generator=generator, device=logits.device).clamp_(1e-10, 1.0 - 1e-7)
        k = torch.argmax(logits - torch.log(-torch.log(u)), dim=-1, keepdim=True)  # [S, ..., 1]

        def pick(t: torch.Tensor) -> torch.Tensor:
            return torch.gather(t.float().expand(shape), -1, k).squeeze(-1)  # [S, ...]

        df, loc, scale = pick(self.df), pick(self.loc), pick(self.scale)
        z = torch.randn(df.shape, generator=generator, device=df.device)
        g = torch.distributions.Gamma(0.5 * df, torch.ones_like(df)).sample()  # Gamma(df/2, 1)
        t = z * torch.rsqrt((g / (0.5 * df)).clamp_min(1e-12))
        out = loc + scale * t
        return out[0] if num_samples is None else out


class StudentTMixtureHead(nn.Module):
    """``[..., d_model] -> StudentTMixture`` over ``[..., width]`` output positions.

    One linear layer produces ``4 * K`` raw values per position (df, loc, scale, logit per
    component); :meth:`forward` applies the domain maps.
    """

    def __init__(self, d_model: int, width: int, num_components: int, eps: float = 1e-6) -> None:
        super().__init__()
        if width <= 0 or num_components <= 0:
            raise ValueError(f"width={width} and num_components={num_components} must be positive")
        self.width, self.num_components, self.eps = width, num_components, eps
        self.proj = nn.Linear(d_model, width * 4 * num_components)

    def forward(self, h: torch.Tensor) -> StudentTMixture:
        raw = self.proj(h).float().unflatten(-1, (self.width, 4, self.num_components))  # [..., W, 4, K]
        return StudentTMixture(
            df=2.0 + F.softplus(raw[..., 0, :]),
            loc=raw[..., 1, :],
            scale=F.softplus(raw[..., 2, :]) + self.eps,
            logits=raw[..., 3, :],
        )
