"""What a `Config` builds: the network, target codec and loss, datasets and loaders, the
optimiser with its learning-rate schedule, and the seeds."""

from __future__ import annotations

import functools
import math
import random
import sys

import numpy as np
import torch

from cpm.config import Config, output_stages
from cpm.data.dataset import PoseDataset
from cpm.data.synthetic.render import SyntheticPoses
from cpm.models import COORDINATE_HEADS, build_model
from cpm.skeleton import get_skeleton
from cpm.targets.codecs import HeatmapCodec, InputResolutionCenterCodec, RegressionCodec
from cpm.targets.losses import stage_weights_for, staged_loss


def build_network(config: Config) -> torch.nn.Module:
    """The network of ``config``: `cpm.models.build_model` of its ``[model]`` section, K from its skeleton."""
    return build_model(config.model, get_skeleton(config.data.skeleton).num_joints)


def build_codec(config: Config, input_size: int | None = None) -> HeatmapCodec | RegressionCodec:
    """`HeatmapCodec` for the heatmap head; `RegressionCodec` for heads that output coordinates, with the
    heatmap codec making their centre maps; for crops of ``input_size`` (default ``data.input_size``)."""
    size = input_size or config.data.input_size
    codec = InputResolutionCenterCodec if config.model.center_pool else HeatmapCodec
    t = config.train
    heatmaps = codec(input_size=(size, size), stride=config.model.stride, sigma=config.model.sigma,
                     background=config.model.background, center_sigma=config.model.center_sigma,
                     missing_joints=t.missing_joints, cutoff=t.target_cutoff, stage1_all_people=t.stage1_all_people)
    if config.model.head in COORDINATE_HEADS:
        return RegressionCodec(input_size=(size, size), center_codec=heatmaps)
    return heatmaps


def build_loss(config: Config):
    """``loss_fn(outputs, targets, weights, stage_weights)`` of `cpm.training.step`: `staged_loss`, which reads
    belief maps or coordinates, with the config's ``model.regression_loss``."""
    return functools.partial(staged_loss, regression_loss=config.model.regression_loss)


def build_stage_weights(config: Config) -> list[float]:
    """The loss weight of each output: ``train.stage_weights``, else all ones, or only the last one without
    intermediate supervision."""
    return stage_weights_for(output_stages(config), intermediate_supervision=config.train.intermediate_supervision,
                             stage_weights=config.train.stage_weights)


def build_datasets(config: Config) -> tuple[PoseDataset, PoseDataset]:
    """The training and held-out datasets of ``config``. A mixture with ``data.missing_pose_files = "procedural"``
    draws what is there (`drop_missing_pose_files`, one line on stderr per source gone), as its training run did."""
    if config.data.source == "synthetic":
        from cpm.data.synthetic.sources import drop_missing_pose_files

        config = drop_missing_pose_files(config, lambda line: print(line, file=sys.stderr))
    data = config.data
    skeleton = get_skeleton(data.skeleton)
    common = {"input_size": data.input_size, "flip_permutation": skeleton.flip_permutation,
              "crop_padding": data.crop_padding, "channels": config.model.in_channels,
              **({"input_scale": data.input_scale} if data.input_scale != "unit" else {})}
    augmentation = {"augment": True, "scale_range": tuple(data.scale_range), "rotation": data.rotation,
                    "flip": data.flip, "shift": data.shift, "occlusion": data.occlusion,
                    "seed": data.seed, "epoch_input_sizes": tuple(data.epoch_input_sizes)}
    if data.source != "synthetic":  # a real dataset: all of its training split each epoch, up to train_samples
        from cpm.data.datasets.readers import split_dataset

        train_source, val_source = split_dataset(
            source=data.source, root=data.root, annotations=data.annotations, val_annotations=data.val_annotations,
            val_samples=data.val_samples, skeleton=data.skeleton, exclude=data.exclude, depth=data.depth)
        train_set = PoseDataset(train_source, **common, **augmentation,
                                length=min(data.train_samples, len(train_source)))
        if config.train.stage1_all_people:  # Caffe's stage-1 targets: the other people of each image too
            from cpm.data.other_people import with_other_people

            train_set = with_other_people(train_set)
        return train_set, PoseDataset(val_source, **common)
    from cpm.data.synthetic.sources import config_pose_source, held_out_pose_source

    pose_source = config_pose_source(data)  # None: the procedural prior, the default stream exactly as it was
    poses = {} if pose_source is None else {"pose_source": pose_source}
    train_set = PoseDataset(
        SyntheticPoses(seed=data.seed, size=data.train_samples * config.train.epochs, **poses), **common,
        **augmentation, length=data.train_samples, resample_each_epoch=True, reuse_epochs=data.render_epochs,
    )
    # a mixture's held-out split: held-out mocap subjects and the bank's test split; else the training source
    val_source = held_out_pose_source(data, pose_source)
    val_poses = {} if val_source is None else {"pose_source": val_source}
    val_set = PoseDataset(SyntheticPoses(seed=data.val_seed, size=data.val_samples, **val_poses), **common)
    return train_set, val_set


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


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for user code that draws from the global generator
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
