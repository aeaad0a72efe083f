"""Samples -> tensors: crop around the person, augment, normalise.

A *source* is any sequence of sample dicts ``{"image": (H, W[, C]) uint8, "keypoints": (K, 3),
"center": (2,), "scale": float}`` (the synthetic renderer, a dataset reader). `PoseDataset` turns
sample i of epoch e into::

    image      (C, N, N) float32, `normalize_pixels` with ``input_scale``: (pixel / 255 - 0.5) / 0.5 by
               default; a grayscale frame is replicated to ``channels`` (3 for an RGB model) when that is given
    keypoints  (K, 3) float32, x, y in crop pixels, v as in the source
    center     (2,) float32, the person centre in crop pixels (where the centre map goes)
    matrix     (2, 3) float32, source pixels -> crop pixels (decode maps back with its inverse)
    source_keypoints (K, 3) float32, the keypoints in source pixels, for metrics

Targets are not made here: `cpm.targets.codecs.HeatmapCodec.encode` makes them for the whole batch on the
training device in one call. Every sample is a pure function of (seed, index, epoch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from cpm.config import InputScale, check_names
from cpm.data.transforms import crop_matrix, occlude, sample_augmentation, transform_keypoints, warp_image
from cpm.errors import CPMError

PIXEL_MEAN, PIXEL_STD = 0.5, 0.5
# data.input_scale -> (mean, std) per channel of pixel / 255: ``unit`` this project's (-1..1); ``caffe`` the released
# CPM's (pixel - 128) / 256 (Caffe's data layer and applyModel.m: double(img)/256 - 0.5); ``imagenet`` torchvision's
# and mmpose's ImageNet normalisation (RGB mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225).
INPUT_SCALES = {
    "unit": ((PIXEL_MEAN,), (PIXEL_STD,)),
    "caffe": ((128 / 255,), (256 / 255,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
check_names(INPUT_SCALES, InputScale, "data.input_scale")


def normalize_pixels(pixels: torch.Tensor, input_scale: str = "unit") -> torch.Tensor:
    """uint8-valued pixels (..., C, H, W) -> the model's input: (pixels / 255 - mean) / std of ``input_scale``.

    ``unit`` is exactly ``(pixels / 255 - 0.5) / 0.5``; ``caffe`` is ``(pixels - 128) / 256``; ``imagenet`` needs
    3 channels (RGB)."""
    if input_scale == "unit":
        return (pixels / 255 - PIXEL_MEAN) / PIXEL_STD
    if input_scale == "caffe":
        return (pixels - 128) / 256
    if input_scale != "imagenet":
        raise ValueError(f"unknown input scale {input_scale!r}; known: {', '.join(INPUT_SCALES)}")
    if pixels.shape[-3] != 3:
        raise CPMError(f"data.input_scale = 'imagenet' normalises RGB images; these have {pixels.shape[-3]} channels")
    mean, std = (torch.tensor(v, dtype=pixels.dtype, device=pixels.device)[:, None, None]
                 for v in INPUT_SCALES["imagenet"])
    return (pixels / 255 - mean) / std


class EpochDataset(Dataset):
    """What the training datasets share: ``length`` samples an epoch, the epoch set before each one (augmentations
    are drawn from (seed, epoch, index)), and the input side of each epoch's samples (``input_size``, or
    ``epoch_input_sizes`` for progressive resizing, the last one kept)."""

    length: int
    input_size: int
    epoch_input_sizes: tuple[int, ...]
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Call before iterating an epoch (DataLoader workers copy the dataset when they start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def size_at(self, epoch: int) -> int:
        """The input side of the samples of ``epoch``."""
        if not self.epoch_input_sizes:
            return self.input_size
        return self.epoch_input_sizes[min(epoch, len(self.epoch_input_sizes) - 1)]


class PoseDataset(EpochDataset):
    def __init__(
        self,
        source: Sequence[dict],
        *,
        input_size: int,
        flip_permutation: tuple[int, ...],
        crop_padding: float = 1.2,
        augment: bool = False,
        scale_range: tuple[float, float] = (1.0, 1.0),
        rotation: float = 0.0,
        flip: bool = False,
        shift: float = 0.0,
        occlusion: float = 0.0,
        seed: int = 0,
        length: int | None = None,
        resample_each_epoch: bool = False,
        reuse_epochs: int = 1,
        channels: int | None = None,
        input_scale: str = "unit",
        epoch_input_sizes: Sequence[int] = (),
        pad_value: float = 0.0,
    ) -> None:
        """``length`` samples per epoch (default: all of ``source``). With ``resample_each_epoch``,
        epoch e reads source items e*length .. e*length + length - 1, so an unbounded source (the
        renderer) shows new samples every epoch; with ``reuse_epochs`` = n as well, every n consecutive epochs
        read the same items (block e // n), each epoch under its own augmentation, and a process keeps the items
        of the current block it has read (up to ``length`` of them) instead of rendering them again.
        ``epoch_input_sizes``: the crop side of each epoch (the last one for any later epoch) instead of
        ``input_size`` (progressive resizing). ``pad_value``: the pixel value (0-255) of crop pixels outside the
        image (``data.pad_value``)."""
        self.source = source
        self.length = len(source) if length is None else length
        self.input_size = input_size
        self.epoch_input_sizes = tuple(int(size) for size in epoch_input_sizes)
        self.flip_permutation = flip_permutation
        self.crop_padding = crop_padding
        self.augment = augment
        self.augmentation = {"scale_range": tuple(scale_range), "rotation": rotation, "flip": flip, "shift": shift}
        self.occlusion = occlusion
        self.seed = seed
        self.resample_each_epoch = resample_each_epoch
        self.reuse_epochs = max(1, int(reuse_epochs))
        self._kept: dict[int, dict] = {}  # reuse_epochs > 1: source items of the current block, by source index
        self.channels = channels
        self.input_scale = input_scale
        self.pad_value = pad_value
        self.epoch = 0

    def source_item(self, source_index: int) -> dict:
        """``source[source_index]``, kept for the rest of its block when the items serve several epochs or were
        rendered ahead (`prerender`)."""
        if source_index in self._kept:
            return self._kept[source_index]
        if self.reuse_epochs == 1 or not self.resample_each_epoch:
            return self.source[source_index]
        block = source_index // self.length
        if self._kept and next(iter(self._kept)) // self.length != block:
            self._kept.clear()  # a new block: the items of the last one are never read again
        if source_index not in self._kept:
            self._kept[source_index] = self.source[source_index]
        return self._kept[source_index]

    def prerender(self, epoch: int, *, processes: int = 0, progress: bool = False) -> None:
        """Render the source items of ``epoch``'s block (all ``length`` of them, with ``processes`` processes; 0:
        one per CPU core this process may use) and keep them for the epochs of that block in place of any kept
        before. A DataLoader worker started afterwards inherits them. The items are those `source_item` would
        read: a source item is a function of its index alone."""
        if not self.resample_each_epoch:
            raise CPMError("data.prerender: renders synthetic frames ahead; this dataset reads its images")
        block = epoch // self.reuse_epochs
        indices = range(block * self.length, (block + 1) * self.length)
        self._kept = {}  # the last block's frames go before the new ones are made
        items = render_items(self.source, indices, processes or usable_cores(), progress)
        self._kept = dict(zip(indices, items, strict=True))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.resample_each_epoch:
            source_index = self.epoch // self.reuse_epochs * self.length + index
        else:
            source_index = index
        sample = self.source_item(source_index)
        crop_side = self.crop_padding * float(sample["scale"])
        size = self.size_at(self.epoch)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            aug = sample_augmentation(rng, output_size=size, **self.augmentation)
            matrix = crop_matrix(sample["center"], crop_side / aug["scale"], size,
                                 rotation=aug["rotation"], flip=aug["flip"], shift=aug["shift"])
            flipped = aug["flip"]
        else:
            matrix = crop_matrix(sample["center"], crop_side, size)
            flipped = False
        image = warp_image(sample["image"], matrix, size, fill=self.pad_value)
        if image.ndim == 2:
            image = image[:, :, None]
        if self.channels is not None and image.shape[2] != self.channels:
            if image.shape[2] != 1:
                raise CPMError(f"sample {source_index}: {image.shape[2]}-channel image for a {self.channels}-channel "
                               "model (model.in_channels)")
            image = np.repeat(image, self.channels, axis=2)  # grayscale -> R = G = B
        if len(sample["keypoints"]) != len(self.flip_permutation):  # every sample, flipped or not, has the same K
            raise CPMError(f"sample {source_index}: {len(sample['keypoints'])} keypoints for a "
                           f"{len(self.flip_permutation)}-joint skeleton (data.skeleton)")
        keypoints = transform_keypoints(np.asarray(sample["keypoints"]), matrix, self.flip_permutation, flipped)
        if self.augment and self.occlusion > 0:  # its own random stream: occlusion = 0 leaves the rest unchanged
            occlusion_rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            if occlusion_rng.random() < self.occlusion:
                image, keypoints = occlude(image, keypoints, occlusion_rng)
        center = transform_keypoints(np.array([[*sample["center"], 2.0]]), matrix, None, False)[0, :2]
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        return {
            "image": normalize_pixels(image_tensor, self.input_scale),
            "keypoints": torch.from_numpy(keypoints),
            "center": torch.from_numpy(center.astype(np.float32)),
            "matrix": torch.from_numpy(matrix.astype(np.float32)),
            "source_keypoints": torch.from_numpy(np.asarray(sample["keypoints"], dtype=np.float32)),
        }


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Items(Dataset):
    """``source[indices[i]]``."""

    def __init__(self, source: Sequence[dict], indices: Sequence[int]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.source[self.indices[i]]


def _as_list(items: list[dict]) -> list[dict]:
    return items


def render_items(source: Sequence[dict], indices: Sequence[int], processes: int, progress: bool = False) -> list:
    """``[source[i] for i in indices]``, computed by ``processes`` DataLoader worker processes, in order (here
    when one process is asked for)."""
    bar = {"total": len(indices), "desc": "rendering", "disable": not progress, "leave": False, "dynamic_ncols": True,
           "unit": " frames"}
    if processes <= 1:
        return [source[i] for i in tqdm(indices, **bar)]
    chunk = max(1, min(64, len(indices) // (4 * processes)))
    loader = torch.utils.data.DataLoader(_Items(source, indices), batch_size=chunk, num_workers=processes,
                                         collate_fn=_as_list)
    items: list[dict] = []
    with tqdm(**bar) as shown:
        for batch in loader:
            items.extend(batch)
            shown.update(len(batch))
    return items
