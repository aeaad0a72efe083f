"""The optimiser and its learning-rate schedule of a training run: parameter groups with the released prototxts'
lr_mult / decay_mult, AdamW or SGD, warm-up then cosine, linear or step decay (Caffe's "step" policy, mmcv's
milestones)."""

from __future__ import annotations

import functools
import math

import torch

from cpm.config import Config


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, step_size: int = 0,
              gamma: float = 0.333, milestones: tuple[int, ...] = ()) -> float:
    """Linear warm-up, then cosine or linear decay to zero, steps of x``gamma`` (at 1/2 and 3/4 of training, every
    ``step_size`` steps as Caffe's "step" policy, or at the given ``milestones`` steps as mmcv's), or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "step" and milestones:
        return gamma ** sum(step >= milestone for milestone in milestones)
    if schedule == "step" and step_size:
        return gamma ** ((step - warmup_steps) // step_size)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if schedule == "linear":
        return 1.0 - min(progress, 1.0)
    if schedule == "step":
        return gamma ** sum(progress >= milestone for milestone in (0.5, 0.75))
    return 1.0


def caffe_loss_scale(model: torch.nn.Module, config: Config) -> float:
    """Caffe's EuclideanLoss (sum / 2N) over our loss (mean over batch, channels and cells): (K+1) * h * w / 2."""
    cells = (config.data.input_size // config.model.stride) ** 2
    return model.out_channels * cells / 2


def build_optimizer(model: torch.nn.Module, config: Config, total_steps: int):
    """Parameter groups with the released prototxts' lr_mult / decay_mult (`parameter_groups` of the model):
    weights at ``lr * <part>_lr_mult`` with weight decay, biases and norms at ``bias_lr_mult`` times that
    without. Groups with equal settings are merged (all multipliers 1: one group with decay, one without).
    With ``caffe_lr``, lr and weight_decay are Caffe's: Caffe's gradients are `caffe_loss_scale` times ours,
    so lr is multiplied and weight decay divided by it, which gives Caffe's updates exactly."""
    t = config.train
    lr, weight_decay = t.lr, t.weight_decay
    if t.caffe_lr:
        scale = caffe_loss_scale(model, config)
        lr, weight_decay = lr * scale, weight_decay / scale
    if hasattr(model, "parameter_groups"):
        named = model.parameter_groups()
    else:
        named = {"stage1.weight": [p for p in model.parameters() if p.ndim > 1],
                 "stage1.bias": [p for p in model.parameters() if p.ndim <= 1]}
    merged: dict[tuple[float, str], dict] = {}
    for name, params in named.items():
        part, kind = name.split(".")
        mult = t.stage1_lr_mult if part == "stage1" else t.refinement_lr_mult
        if kind == "bias":  # biases and normalisation parameters: never decayed
            mult *= t.bias_lr_mult
        group = merged.setdefault((mult, kind), {"params": [], "lr": lr * mult, "name": [],
                                                 "weight_decay": weight_decay if kind == "weight" else 0.0})
        group["params"] += params
        group["name"].append(name)
    groups = [g | {"name": "+".join(g["name"])} for g in merged.values() if g["params"]]
    if t.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=t.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=lr)
    # train.lr_milestones are epochs; the schedule counts steps (total_steps = epochs x steps per epoch)
    milestones = tuple(round(m * total_steps / t.epochs) for m in t.lr_milestones)
    factor = functools.partial(lr_factor, total_steps=total_steps, warmup_steps=t.warmup_steps, schedule=t.schedule,
                               step_size=t.lr_step_size, gamma=t.lr_gamma, milestones=milestones)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
