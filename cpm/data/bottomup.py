"""Whole images of many people for bottom-up models (part affinity fields, Cao et al. 2017, Sec. 3): one sample per
image, not per person. `cpm.runtime.build.build_datasets` makes them from the images of a COCO keypoints file
(`cpm.data.datasets.coco_files.CocoFile`: its crowd annotations and people without a labeled joint left out).

`BottomUpDataset` turns image i of epoch e into::

    image      (C, N, N) float32: the whole image, its longer side fitted to the N x N input, centred, the rest
               ``pad_value``; augmented in training (scale, rotation, flip, shift, as `cpm.data.dataset.PoseDataset`
               augments a person crop); normalised by `normalize_pixels`
    keypoints  (P, K, 3) float32: every person's keypoints in input pixels, v as in the file; P = the most people of
               any image of the file, rows of v = 0 pad the rest (so that batches stack); a flip renames left and right
    center     (2,) float32 zeros: the batch code reads one; a bottom-up model has no centre map
    matrix     (2, 3) float32: source pixels -> input pixels (predictions map back with its inverse)
    source_keypoints (P, K, 3) float32: the same people in source pixels (the same padding)
    people     () int64: the people of the image (the first rows of keypoints)
    index      () int64: the sample's position (``image_ids[index]`` is its image's id)

Every sample is a pure function of (seed, index, epoch), as `PoseDataset`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from cpm.data.dataset import EpochDataset, normalize_pixels
from cpm.data.transforms import crop_matrix, occlude, sample_augmentation, transform_keypoints, warp_image
from cpm.errors import CPMError


class BottomUpDataset(EpochDataset):
    """Images of many people as whole-image samples (the module docstring's layout)."""

    def __init__(
        self,
        images: Sequence[Path],
        people: Sequence[np.ndarray],
        *,
        read_image: Callable[[Path], np.ndarray],
        input_size: int,
        flip_permutation: tuple[int, ...],
        image_ids: Sequence | None = None,
        people_only: bool = False,
        augment: bool = False,
        scale_range: tuple[float, float] = (1.0, 1.0),
        rotation: float = 0.0,
        flip: bool = False,
        shift: float = 0.0,
        occlusion: float = 0.0,
        seed: int = 0,
        length: int | None = None,
        channels: int | None = None,
        input_scale: str = "unit",
        epoch_input_sizes: Sequence[int] = (),
        pad_value: float = 0.0,
    ) -> None:
        """``images``: the image files, read by ``read_image`` (path -> (H, W[, C]) uint8); ``people``: per image its
        people's keypoints (N, K, 3) in its pixels (N may be 0), K = ``len(flip_permutation)``; ``image_ids``: what
        the images are called (default: their positions). With ``people_only`` the images without a person are left
        out (training). ``length`` samples per epoch (default: every image). The other keywords are
        `cpm.data.dataset.PoseDataset`'s."""
        if len(images) != len(people):
            raise ValueError(f"{len(images)} images for {len(people)} lists of people")
        self.num_joints = len(flip_permutation)
        for path, persons in zip(images, people, strict=True):
            if np.ndim(persons) != 3 or np.shape(persons)[1:] != (self.num_joints, 3):
                raise CPMError(f"{path}: keypoints of shape {np.shape(persons)} for a {self.num_joints}-joint skeleton "
                               "(data.skeleton); expected (people, K, 3)")
        ids = list(range(len(images))) if image_ids is None else list(image_ids)
        kept = [i for i in range(len(images)) if len(people[i]) or not people_only]
        if not kept:
            raise CPMError(f"{images[0] if len(images) else 'the dataset'}: no images"
                           + (" with a person" if people_only else ""))
        self.paths = [Path(images[i]) for i in kept]
        self.people = [np.asarray(people[i], dtype=np.float32) for i in kept]
        self.image_ids = [ids[i] for i in kept]
        self.read_image = read_image
        self.max_people = max(1, max(len(p) for p in self.people))
        self.length = len(self.paths) if length is None else min(length, len(self.paths))
        self.input_size = input_size
        self.epoch_input_sizes = tuple(int(size) for size in epoch_input_sizes)
        self.flip_permutation = flip_permutation
        self.augment = augment
        self.augmentation = {"scale_range": tuple(scale_range), "rotation": rotation, "flip": flip, "shift": shift}
        self.occlusion = occlusion
        self.seed = seed
        self.channels = channels
        self.input_scale = input_scale
        self.pad_value = pad_value
        self.epoch = 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        pixels = self.read_image(self.paths[index])
        height, width = pixels.shape[:2]
        center = np.array([(width - 1) / 2, (height - 1) / 2])
        side = float(max(width, height))  # the longer side fits the input
        size = self.size_at(self.epoch)
        flipped = False
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            aug = sample_augmentation(rng, output_size=size, **self.augmentation)
            matrix = crop_matrix(center, side / aug["scale"], size, rotation=aug["rotation"], flip=aug["flip"],
                                 shift=aug["shift"])
            flipped = aug["flip"]
        else:
            matrix = crop_matrix(center, side, size)
        image = warp_image(pixels, matrix, size, fill=self.pad_value)
        if image.ndim == 2:
            image = image[:, :, None]
        if self.channels is not None and image.shape[2] != self.channels:
            if image.shape[2] != 1:
                raise CPMError(f"{self.paths[index]}: {image.shape[2]}-channel image for a {self.channels}-channel "
                               "model (model.in_channels)")
            image = np.repeat(image, self.channels, axis=2)  # grayscale -> R = G = B
        people = self.people[index]  # (n, K, 3) source pixels
        source = np.zeros((self.max_people, self.num_joints, 3), dtype=np.float32)
        source[:len(people)] = people
        keypoints = np.zeros_like(source)
        for n, person in enumerate(people):
            keypoints[n] = transform_keypoints(person, matrix, self.flip_permutation, flipped)
        if self.augment and self.occlusion > 0:  # its own random stream, as PoseDataset's
            occlusion_rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            if occlusion_rng.random() < self.occlusion:
                image, rows = occlude(image, keypoints.reshape(-1, 3), occlusion_rng)
                keypoints = rows.reshape(keypoints.shape)
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        return {
            "image": normalize_pixels(image_tensor, self.input_scale),
            "keypoints": torch.from_numpy(keypoints),
            "center": torch.zeros(2),
            "matrix": torch.from_numpy(matrix.astype(np.float32)),
            "source_keypoints": torch.from_numpy(source),
            "people": torch.tensor(len(people)),
            "index": torch.tensor(index),
        }
