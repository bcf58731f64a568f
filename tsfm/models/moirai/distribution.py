"""Moirai's output head: multi patch-size parameter projections and the mixture distribution.

Parameter names and shapes match the official checkpoints (``param_proj.proj.components.<k>.<p>``
and ``param_proj.proj.weights_logits``: weight ``[num_sizes, dim * max_ps, d_model]``). The
reference computes every projection at all ``max_ps`` output rows and masks rows
``>= dim * patch_size``; we gather only the rows a token of the active patch size needs, for
``width`` output positions (``width = patch_size`` in training and forecasting, ``max_ps`` when
reproducing the reference layout in full). The layout quirk is kept: row ``c * max_ps + o``
holds component ``c`` at position ``o``, so for patch size <= 32 the mixture logits of components
1..3 come from the bias alone.

:class:`Mixture` evaluates ``AffineTransformed(Mixture[...], loc, scale)`` on plain tensors:
log-prob, mean, variance and vectorised sampling (all components sampled at once, then gathered).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# per component: parameter names in official order
COMPONENT_PARAMS = {
    "student_t": ("df", "loc", "scale"),
    "normal_fixed": ("loc",),
    "negative_binomial": ("total_count", "logits"),
    "log_normal": ("loc", "scale"),
}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class MultiOutSizeLinear(nn.Module):
    """One linear map per patch size, ``dim`` values per output position (official layout)."""

    def __init__(self, d_model: int, num_sizes: int, max_ps: int, dim: int = 1) -> None:
        super().__init__()
        self.dim, self.max_ps = dim, max_ps
        self.weight = nn.Parameter(torch.empty(num_sizes, dim * max_ps, d_model))
        self.bias = nn.Parameter(torch.zeros(num_sizes, dim * max_ps))
        bound = 1 / math.sqrt(d_model)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def select(self, size_idx: int, patch_size: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective ``(weight [dim*width, d], bias [dim*width])`` rows, ordered ``(c, o)``."""
        w, b = self.weight[size_idx], self.bias[size_idx]
        if self.dim == 1 and width <= patch_size:  # fast path: a plain slice
            return w[:width], b[:width]
        rows = torch.arange(self.dim, device=w.device)[:, None] * self.max_ps + torch.arange(width, device=w.device)
        rows = rows.flatten()  # [dim*width]
        active = (rows < self.dim * patch_size).to(w.dtype)
        return w[rows] * active[:, None], b[rows]


class MixtureHead(nn.Module):
    """``param_proj`` of the official model: all distribution parameters of every component."""

    def __init__(self, d_model: int, patch_sizes: tuple[int, ...], components: tuple[str, ...]) -> None:
        super().__init__()
        self.patch_sizes = tuple(patch_sizes)
        self.components_names = tuple(components)
        max_ps = max(patch_sizes)
        self.proj = nn.Module()
        self.proj.components = nn.ModuleList()
        for c in components:
            m = nn.Module()
            for p in COMPONENT_PARAMS[c]:
                setattr(m, p, MultiOutSizeLinear(d_model, len(patch_sizes), max_ps))
            self.proj.components.append(m)
        self.proj.weights_logits = MultiOutSizeLinear(d_model, len(patch_sizes), max_ps, dim=len(components))

    def _linears(self) -> list[MultiOutSizeLinear]:
        out = [getattr(m, p) for c, m in zip(self.components_names, self.proj.components) for p in COMPONENT_PARAMS[c]]
        return out + [self.proj.weights_logits]

    def forward(self, h: torch.Tensor, patch_size: int, width: int, normal_scale: float) -> Mixture:
        """``h`` [N, d] tokens of one patch size -> a :class:`Mixture` over ``[N, width]`` positions."""
        size_idx = self.patch_sizes.index(patch_size)
        sel = [lin.select(size_idx, patch_size, width) for lin in self._linears()]
        weight = torch.cat([w for w, _ in sel])  # [R*width, d]
        bias = torch.cat([b for _, b in sel])
        raw = F.linear(h, weight, bias).unflatten(-1, (-1, width))  # [N, R, width] (one matmul)
        params, i = [], 0
        for c in self.components_names:
            n = len(COMPONENT_PARAMS[c])
            params.append(_domain_map(c, raw[:, i : i + n]))
            i += n
        logits = raw[:, i:].transpose(1, 2)  # [N, width, K]
        return Mixture(self.components_names, params, logits, normal_scale)

    def zero_raw(self, n: int, width: int, normal_scale: float, like: torch.Tensor) -> Mixture:
        """Parameters of tokens without a valid patch size (padding): ``domain_map(0)``."""
        r = sum(len(COMPONENT_PARAMS[c]) for c in self.components_names)
        raw = like.new_zeros(n, r + len(self.components_names), width)
        params, i = [], 0
        for c in self.components_names:
            k = len(COMPONENT_PARAMS[c])
            params.append(_domain_map(c, raw[:, i : i + k]))
            i += k
        return Mixture(self.components_names, params, raw[:, i:].transpose(1, 2), normal_scale)


def _domain_map(comp: str, raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map raw projections ``[N, n_params, W]`` to valid parameters ``{name: [N, W]}``."""
    eps = torch.finfo(raw.dtype).eps
    if comp == "student_t":
        return {"df": 2.0 + F.softplus(raw[:, 0]), "loc": raw[:, 1], "scale": F.softplus(raw[:, 2]).clamp_min(eps)}
    if comp == "normal_fixed":
        return {"loc": raw[:, 0]}
    if comp == "negative_binomial":
        return {"total_count": F.softplus(raw[:, 0]), "logits": raw[:, 1]}
    return {"loc": raw[:, 0], "scale": F.softplus(raw[:, 1]).clamp_min(eps)}  # log_normal


@dataclass
class Mixture:
    """Mixture over components in normalised space; ``loc``/``scale`` map it to data space."""

    names: tuple[str, ...]
    params: list[dict[str, torch.Tensor]]  # per component, each [..., W]
    logits: torch.Tensor  # [..., W, K] mixture logits
    normal_scale: float

    def index(self, idx: torch.Tensor) -> Mixture:
        return Mixture(self.names, [{k: v[idx] for k, v in p.items()} for p in self.params], self.logits[idx], self.normal_scale)

    @staticmethod
    def cat(parts: list[Mixture]) -> Mixture:
        p0 = parts[0]
        params = [{k: torch.cat([m.params[i][k] for m in parts]) for k in p0.params[i]} for i in range(len(p0.params))]
        return Mixture(p0.names, params, torch.cat([m.logits for m in parts]), p0.normal_scale)

    # -- densities --------------------------------------------------------------------------
    def _component_log_prob(self, name: str, p: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        if name == "student_t":
            df, y = p["df"], (z - p["loc"]) / p["scale"]
            norm = p["scale"].log() + 0.5 * df.log() + 0.5 * math.log(math.pi) + torch.lgamma(0.5 * df) - torch.lgamma(0.5 * (df + 1.0))
            return -0.5 * (df + 1.0) * torch.log1p(y**2 / df) - norm
        if name == "normal_fixed":
            s = self.normal_scale
            return -((z - p["loc"]) ** 2) / (2 * s * s) - math.log(s) - _HALF_LOG_2PI
        if name == "negative_binomial":
            ok = z >= 0
            zs = torch.where(ok, z, torch.ones_like(z))  # safe value: no NaN gradients
            r, lg = p["total_count"], p["logits"]
            lp = r * F.logsigmoid(-lg) + F.logsigmoid(lg) * zs
            lp = lp - (torch.lgamma(1 + zs) + torch.lgamma(r) - torch.lgamma(1 + zs + r)) - torch.log(r + zs)
            return torch.where(ok, lp, float("-inf"))
        ok = z > 0  # log_normal
        zs = torch.where(ok, z, torch.ones_like(z))
        lz = zs.log()
        lp = -((lz - p["loc"]) ** 2) / (2 * p["scale"] ** 2) - p["scale"].log() - _HALF_LOG_2PI - lz
        return torch.where(ok, lp, float("-inf"))

    def log_prob(self, y: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """log density of data-space ``y`` ([..., W]); ``loc``/``scale`` broadcast to it."""
        z = (y - loc) / scale
        logw = F.log_softmax(self.logits, dim=-1)  # [..., W, K]
        comps = torch.stack([self._component_log_prob(n, p, z) for n, p in zip(self.names, self.params)], dim=-1)
        logw = torch.where(torch.isinf(comps), torch.zeros_like(logw), logw)
        return torch.logsumexp(logw + comps, dim=-1) - scale.log()

    # -- moments ----------------------------------------------------------------------------
    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture mean and second moment in normalised space."""
        means, second = [], []
        for n, p in zip(self.names, self.params):
            if n == "student_t":
                m, v = p["loc"], p["scale"] ** 2 * p["df"] / (p["df"] - 2)
            elif n == "normal_fixed":
                m, v = p["loc"], torch.full_like(p["loc"], self.normal_scale**2)
            elif n == "negative_binomial":
                m = p["total_count"] * torch.exp(p["logits"])
                v = m / torch.sigmoid(-p["logits"])
            else:
                s2 = p["scale"] ** 2
                m, v = torch.exp(p["loc"] + s2 / 2), (torch.exp(s2) - 1) * torch.exp(2 * p["loc"] + s2)
            means.append(m)
            second.append(v + m**2)
        w = torch.softmax(self.logits, dim=-1)
        mean = (w * torch.stack(means, -1)).sum(-1)
        return mean, (w * torch.stack(second, -1)).sum(-1)

    def mean(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self._moments()[0] * scale + loc

    def variance(self, scale: torch.Tensor) -> torch.Tensor:
        mean, second = self._moments()
        return (second - mean**2) * scale**2

    # -- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, loc: torch.Tensor, scale: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[S, ..., W]`` samples in data space, all elements drawn in a few vectorised ops."""
        shape = (num_samples, *self.logits.shape[:-1])

        def normal() -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=self.logits.device, dtype=self.logits.dtype)

        def gamma(conc: torch.Tensor) -> torch.Tensor:
            return torch._standard_gamma(conc.expand(shape).contiguous(), generator=generator)

        draws = []
        for n, p in zip(self.names, self.params):
            if n == "student_t":
                chi2 = 2 * gamma(0.5 * p["df"])
                draws.append(p["loc"] + p["scale"] * normal() * torch.rsqrt(chi2 / p["df"]))
            elif n == "normal_fixed":
                draws.append(p["loc"] + self.normal_scale * normal())
            elif n == "negative_binomial":
                rate = gamma(p["total_count"]) * torch.exp(p["logits"])
                draws.append(torch.poisson(rate, generator=generator))
            else:
                draws.append(torch.exp(p["loc"] + p["scale"] * normal()))
        probs = torch.softmax(self.logits, dim=-1).expand(*shape, -1)
        u = torch.rand(shape, generator=generator, device=probs.device, dtype=probs.dtype)
        k = (probs.cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp_max(len(draws) - 1)  # inverse-CDF categorical
        z = torch.gather(torch.stack(draws, -1), -1, k.unsqueeze(-1)).squeeze(-1)
        return z * scale + loc
