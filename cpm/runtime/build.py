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
from cpm.skeleton import get_skeleton, map_keypoints
from cpm.targets.codecs import HeatmapCodec, InputResolutionCenterCodec, RegressionCodec
from cpm.targets.losses import stage_weights_for, staged_loss


def build_network(config: Config) -> torch.nn.Module:
    """The network of ``config``: `cpm.models.build_model` of its ``[model]`` section, K from its skeleton (and L,
    its limbs, for the paf head), and the background channel and centre-map pooling of its ``[targets]``."""
    skeleton = get_skeleton(config.data.skeleton)
    limbs = {"num_limbs": len(skeleton.limbs)} if config.model.head == "paf" else {}
    return build_model(config.model, skeleton.num_joints, background=config.targets.background,
                       center_pool=config.targets.center_pool, **limbs)


def build_codec(config: Config, input_size: int | None = None) -> HeatmapCodec | RegressionCodec:
    """`HeatmapCodec` for the heatmap head; `RegressionCodec` for heads that output coordinates, with the
    heatmap codec making their centre maps; `cpm.targets.paf.PafCodec` for the paf head (confidence maps and the
    skeleton's limbs' fields); for inputs of ``input_size`` (default ``data.input_size``)."""
    size = input_size or config.data.input_size
    t = config.targets
    if config.model.head == "paf":
        from cpm.targets.paf import PafCodec

        skeleton = get_skeleton(config.data.skeleton)
        return PafCodec(input_size=(size, size), stride=config.model.stride, sigma=t.sigma, limbs=skeleton.limbs,
                        num_joints=skeleton.num_joints, limb_width=t.limb_width, background=t.background)
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
    (`cpm.data.synthetic.sources.drop_missing_pose_files`), once. A paf model's are whole images
    (`build_bottom_up_datasets`)."""
    data = config.data
    if config.model.head == "paf":
        return build_bottom_up_datasets(config)
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
        SyntheticPoses(seed=data.seed, size=data.train_samples * config.train.epochs, views=tuple(data.train_views),
                       cues=data.body_cues, **poses), **common,
        **augmentation, length=data.train_samples, resample_each_epoch=True, reuse_epochs=data.render_epochs,
    )
    # a mixture's held-out split: held-out mocap subjects and the bank's test split; else the training source
    val_source = held_out_pose_source(data, pose_source)
    val_poses = {} if val_source is None else {"pose_source": val_source}
    val_set = PoseDataset(SyntheticPoses(seed=data.val_seed, size=data.val_samples, views=tuple(data.val_views),
                                         cues=data.body_cues, **val_poses), **common)
    return train_set, val_set


def coco_people(coco, skeleton: str, images: range | None = None) -> dict:
    """The images of a `cpm.data.datasets.coco_files.CocoFile` (those at ``images``, default all) as
    `cpm.data.bottomup.BottomUpDataset` takes them: their files (which must exist), ids and people (N, K, 3) in the
    joints of ``skeleton`` (mapped by name from the file's), crowds and people without a labeled joint left out."""
    from cpm.data.datasets.samples import resolve_image

    paths, people, ids = [], [], []
    for i in range(len(coco.images)) if images is None else images:
        image = coco.images[i]
        keep = ~image.iscrowd & (image.keypoints[:, :, 2] > 0).any(axis=1)
        people.append(map_keypoints(image.keypoints[keep], coco.skeleton, skeleton).astype(np.float32))
        paths.append(resolve_image(coco.image_root, image.file_name, f"{coco.where}: image {image.id!r}"))
        ids.append(image.id)
    return {"images": paths, "people": people, "image_ids": ids}


def build_bottom_up_datasets(config: Config):
    """A paf model's training and held-out `cpm.data.bottomup.BottomUpDataset`: the images of ``data.annotations``
    and of ``data.val_annotations`` (COCO keypoints files under ``data.root``; without held-out annotations, the
    last ``data.val_samples`` images of the training file), training ones augmented, up to ``data.train_samples``
    of them an epoch (images without a labeled person are not trained on)."""
    from pathlib import Path

    from cpm.data.bottomup import BottomUpDataset
    from cpm.data.datasets.coco_files import read_coco_file
    from cpm.data.datasets.readers import coco_image_folder
    from cpm.data.datasets.samples import load_image
    from cpm.data.depth import DepthSpec
    from cpm.errors import ConfigError

    data = config.data
    root = Path(data.root)
    if not root.is_dir():
        raise ConfigError(f"data.root: {root}: no such folder")
    files = {}
    for key, name in (("data.annotations", data.annotations), ("data.val_annotations", data.val_annotations)):
        if name and not (root / name).is_file():
            raise ConfigError(f"{key}: {root / name}: no such file")
        if name:
            files[key] = read_coco_file(root / name, skeleton=data.skeleton, strict=False,
                                        image_root=coco_image_folder(root, name))
    skeleton = get_skeleton(data.skeleton)
    common = {"input_size": data.input_size, "flip_permutation": skeleton.flip_permutation,
              "channels": config.model.in_channels, "input_scale": data.input_scale, "pad_value": data.pad_value,
              "read_image": functools.partial(load_image, depth=DepthSpec.of(data.depth))}
    augmentation = {"augment": True, "scale_range": tuple(data.scale_range), "rotation": data.rotation,
                    "flip": data.flip, "shift": data.shift, "occlusion": data.occlusion, "seed": data.seed,
                    "epoch_input_sizes": tuple(data.epoch_input_sizes), "length": data.train_samples,
                    "people_only": True}
    train_file = files["data.annotations"]
    val_file = files.get("data.val_annotations", train_file)
    train_images = val_images = None
    if val_file is train_file:  # the last data.val_samples images held out
        count = len(train_file.images)
        if not 0 < data.val_samples < count:
            raise ConfigError(f"data.val_samples: {data.val_samples} held out of {count} images in "
                              f"{train_file.where}; leave some to train on (or name data.val_annotations)")
        train_images, val_images = range(count - data.val_samples), range(count - data.val_samples, count)
    for coco in {id(f): f for f in (train_file, val_file)}.values():
        try:
            map_keypoints(np.zeros((0, coco.num_joints, 3)), coco.skeleton, skeleton.name)
        except ValueError:
            raise ConfigError(f"data.skeleton: {coco.where} holds {coco.skeleton} keypoints, with no mapping to "
                              f"{skeleton.name!r}") from None
    return (BottomUpDataset(**coco_people(train_file, skeleton.name, train_images), **common, **augmentation),
            BottomUpDataset(**coco_people(val_file, skeleton.name, val_images), **common))


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for user code that draws from the global generator
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
