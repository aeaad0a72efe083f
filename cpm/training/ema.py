"""``train.ema``: an exponential moving average of the weights, the model that evaluations score.

After optimiser step n (n = 1, 2, ...) every floating-point parameter and buffer of the average moves towards the
trained model's::

    average <- d * average + (1 - d) * weights,    d = min(train.ema, (1 + n) / (10 + n))

so the first averages follow the weights closely (d = 2/11 after the first step) and the decay reaches
``train.ema`` after a few hundred steps (0.99 at n = 890 for ``train.ema`` >= 0.99). Integer buffers are copied.
"""

from __future__ import annotations

import copy

import torch


def ema_decay(decay: float, step: int) -> float:
    """The decay applied after optimiser step ``step`` (1-based)."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """The average of ``model``'s weights (a copy of ``model``, ``average``), updated by `update` after each step.
    ``model`` keeps its tensors for the whole run (an in-place ``load_state_dict`` is fine)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.average = copy.deepcopy(model)
        self.average.requires_grad_(False)
        sources = model.state_dict(keep_vars=True)
        targets = self.average.state_dict(keep_vars=True)
        pairs = [(targets[name].detach(), tensor.detach()) for name, tensor in sources.items()]
        self._floats = [(a, w) for a, w in pairs if a.is_floating_point()]
        self._others = [(a, w) for a, w in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the model's weights after optimiser step ``step`` (1-based)."""
        weight = 1.0 - ema_decay(self.decay, step)
        if self._floats:
            averages, weights = zip(*self._floats, strict=True)
            torch._foreach_lerp_(list(averages), list(weights), weight)
        for average, value in self._others:
            average.copy_(value)
