"""A two-dimensional RealNVP flow (Dinh et al. 2017): the learned residual density of RLE (Li et al. 2021).

RLE (`cpm.targets.losses.rle_nll`) models where the truth falls around a regressed joint, in units of the
joint's predicted scale: x̄ = (target - μ) / σ, a 2-vector. The flow gives the paper's residual density G over x̄
(what a unit Laplace density Q misses) by an invertible map f from x̄ to a latent z with a standard normal density::

    log G(x̄) = log N(f(x̄); 0, I) + log |det ∂f/∂x̄|

f is ``layers`` affine coupling layers. Layer i keeps the coordinate its mask marks (x, then y, alternately) and
moves the other one by a scale and a shift that the kept coordinate decides, each a small MLP
(2 -> hidden -> hidden -> 2, leaky ReLU; the scale ends in a tanh, so it stays within e^±1 per layer)::

    z = m * x + (1 - m) * (x - t(m * x)) * exp(-s(m * x)),      log |det| = -sum((1 - m) * s(m * x))

as mmpose's ``RealNVP`` (six layers of width 64), which is what the official RLE code uses. The last layer of every
MLP starts at zero, so an untrained flow is the identity and G the standard normal density.

The flow is part of the model (trained with it, saved in its checkpoints) but only the loss reads it: inference
and the ONNX graph use the head's μ and σ alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["RealNVP"]


def _mlp(hidden: int, *, bounded: bool) -> nn.Sequential:
    """2 -> hidden -> hidden -> 2 with leaky ReLUs; ``bounded``: a tanh on the output (the scale network)."""
    layers = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 2)]
    nn.init.zeros_(layers[-1].weight)  # the layer's output is 0 at first: s = t = 0, an identity coupling
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers, *([nn.Tanh()] if bounded else []))


class RealNVP(nn.Module):
    """``log_prob(x)``: the flow's log-density of 2-vectors x (..., 2) -> (...)."""

    def __init__(self, layers: int = 6, hidden: int = 64) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"layers and hidden must be >= 1, got {layers}, {hidden}")
        masks = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(layers, 1)[:layers]  # x kept, then y, ...
        self.register_buffer("masks", masks, persistent=False)  # a constant of the architecture, not a weight
        self.scale = nn.ModuleList(_mlp(hidden, bounded=True) for _ in range(layers))
        self.shift = nn.ModuleList(_mlp(hidden, bounded=False) for _ in range(layers))

    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, 2) -> z = f(x) (N, 2) and log |det ∂f/∂x| (N,)."""
        z, log_det = x, x.new_zeros(x.shape[0])
        for mask, scale, shift in zip(self.masks, self.scale, self.shift, strict=True):
            kept, moved = mask * z, 1 - mask
            s, t = scale(kept) * moved, shift(kept) * moved
            z = kept + moved * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=-1)
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., 2) -> log G(x) (...), a density over the plane (it integrates to 1)."""
        z, log_det = self.to_latent(x.reshape(-1, 2))
        log_normal = -0.5 * z.square().sum(dim=-1) - math.log(2 * math.pi)  # standard normal in two dimensions
        return (log_normal + log_det).reshape(x.shape[:-1])
