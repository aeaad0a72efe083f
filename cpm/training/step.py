"""The training step: the one place where a batch becomes a parameter update.

`Trainer.train_epoch` (`cpm.training.loop`), the Fig. 5 gradient record (`cpm.experiments.figure5`) and the speed
benchmark (`cpm.bench.timing`) all call `train_step`, so they compute the same thing: forward under autocast,
the staged loss with the run's stage weights, backward through the (possibly disabled) `GradScaler`, optional
gradient clipping, the update. Targets are encoded on the training device from the batch's keypoints
(`cpm.runtime.batch.prepare_batch`, one batched call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from cpm.device import autocast
from cpm.errors import CPMError

LossFn = Callable[..., dict[str, torch.Tensor]]


class NonFiniteLossError(CPMError):
    """Training diverged; the message lists the loss terms."""


def train_step(model: torch.nn.Module, image: torch.Tensor, center_map: torch.Tensor, targets: torch.Tensor,
               weights: torch.Tensor, *, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               stage_weights: Sequence[float], device: torch.device, scaler: torch.amp.GradScaler,
               amp_dtype: torch.dtype | None = None, grad_clip: float = 0.0,
               inspect: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """One update of ``model``'s parameters; returns the loss terms (``loss``, ``loss/stage<t>``), not detached.

    ``scaler`` is a `torch.amp.GradScaler`, enabled only for fp16 (a disabled one passes everything through).
    ``inspect()`` runs after the gradients are unscaled and clipped, before the update (the Fig. 5 record)."""
    with autocast(device, amp_dtype):
        outputs = model(image, center_map)
    losses = loss_fn(outputs, targets, weights, stage_weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"]).backward()
    scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if inspect is not None:
        inspect()
    scaler.step(optimizer)
    scaler.update()
    return losses


def read_losses(sums: dict[str, torch.Tensor], steps: int, step: int) -> dict[str, float]:
    """Mean loss terms as floats (one host sync); stop with every term named if any is not finite."""
    values = {name: float(total) / max(steps, 1) for name, total in sums.items()}
    if not all(math.isfinite(v) for v in values.values()):
        terms = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
        raise NonFiniteLossError(f"non-finite loss at step {step}: {terms}")
    return values
