"""What a `Config` builds for every entry point (training, evaluation, inference, the benchmarks): the network,
the target codec and loss, the stage weights, the datasets, and the seeds. The optimiser and its learning-rate
schedule, which only training needs, are `cpm.training.optim`."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from cpm.config import Config, output_stages
from cpm.data.dataset import PoseDataset
from cpm.data.synthetic.frames import SyntheticPoses
from cpm.models import COORDINATE_HEADS, build_model
from cpm.skeleton import get_skeleton
from cpm.targets.codecs import HeatmapCodec, InputResolutionCenterCodec, RegressionCodec
from cpm.targets.losses import stage_weights_for, staged_loss


def build_network(config: Config) -> torch.nn.Module:
    """The network of ``config``: `cpm.models.build_model` of its ``[model]`` section, K from its skeleton, and the
    background channel and centre-map pooling of its ``[targets]``."""
    return build_model(config.model, get_skeleton(config.data.skeleton).num_joints,
                       background=config.targets.background, center_pool=config.targets.center_pool)


def build_codec(config: Config, input_size: int | None = None) -> HeatmapCodec | RegressionCodec:
    """`HeatmapCodec` for the heatmap head; `RegressionCodec` for heads that output coordinates, with the
    heatmap codec making their centre maps; for crops of ``input_size`` (default ``data.input_size``)."""
    size = input_size or config.data.input_size
    t = config.targets
    codec = InputResolutionCenterCodec if t.center_pool else HeatmapCodec
    heatmaps = codec(input_size=(size, size), stride=config.model.stride, sigma=t.sigma, background=t.background,
                     center_sigma=t.center_sigma, missing_joints=t.missing_joints, cutoff=t.cutoff,
                     stage1_all_people=t.stage1_all_people)
    if config.model.head in COORDINATE_HEADS:
        return RegressionCodec(input_size=(size, size), center_codec=heatmaps)
    return heatmaps


def build_loss(config: Config, model: torch.nn.Module | None = None):
    """``loss_fn(outputs, targets, weights, stage_weights)`` of `cpm.training.step`: `staged_loss`, which reads
    belief maps or coordinates, with the config's ``model.regression_loss``. ``rle`` trains the flow of ``model``
    (the network `build_network` made, whose parameters the optimiser holds) with it."""
    if config.model.regression_loss != "rle":
        return functools.partial(staged_loss, regression_loss=config.model.regression_loss)
    if getattr(model, "flow", None) is None:
        raise ValueError("model.regression_loss = 'rle': build_loss needs the model, whose flow the loss trains")
    return functools.partial(staged_loss, regression_loss="rle", flow=model.flow)


def build_stage_weights(config: Config) -> list[float]:
    """The loss weight of each output: ``train.stage_weights``, else all ones, or only the last one without
    intermediate supervision."""
    return stage_weights_for(output_stages(config), intermediate_supervision=config.train.intermediate_supervision,
                             stage_weights=config.train.stage_weights)


def dataset_options(config: Config) -> dict:
    """The `PoseDataset` keywords of ``config`` that training and held-out crops share (no augmentation)."""
    data = config.data
    return {"input_size": data.input_size, "flip_permutation": get_skeleton(data.skeleton).flip_permutation,
            "crop_padding": data.crop_padding, "channels": config.model.in_channels,
            **({"input_scale": data.input_scale} if data.input_scale != "unit" else {}),
            **({"pad_value": data.pad_value} if data.pad_value else {})}


def build_datasets(config: Config) -> tuple[PoseDataset, PoseDataset]:
    """The training and held-out datasets of ``config`` as it stands: an entry point that reads a config first
    gives a mixture's missing pose files to the procedural prior
    (`cpm.data.synthetic.sources.drop_missing_pose_files`), once."""
    data = config.data
    common = dataset_options(config)
    augmentation = {"augment": True, "scale_range": tuple(data.scale_range), "rotation": data.rotation,
                    "flip": data.flip, "shift": data.shift, "occlusion": data.occlusion,
                    "seed": data.seed, "epoch_input_sizes": tuple(data.epoch_input_sizes)}
    if data.source != "synthetic":  # a real dataset: all of its training split each epoch, up to train_samples
        from cpm.data.datasets.readers import split_dataset

        train_source, val_source = split_dataset(
            source=data.source, root=data.root, annotations=data.annotations, val_annotations=data.val_annotations,
            val_samples=data.val_samples, skeleton=data.skeleton, exclude=data.exclude, depth=data.depth)
        if data.crop_around != "keypoints":  # crops around the annotated person boxes (a COCO file's)
            train_source.crop_around = val_source.crop_around = data.crop_around
        train_set = PoseDataset(train_source, **common, **augmentation,
                                length=min(data.train_samples, len(train_source)))
        if config.targets.stage1_all_people:  # Caffe's stage-1 targets: the other people of each image too
            from cpm.data.other_people import with_other_people

            train_set = with_other_people(train_set)
        return train_set, PoseDataset(val_source, **common)
    from cpm.data.synthetic.sources import config_pose_source, held_out_pose_source

    pose_source = config_pose_source(data)  # None: the renderer's own procedural prior
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


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for user code that draws from the global generator
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
