"""The other people in a training crop, for Caffe's stage-1 targets (``targets.stage1_all_people``).

The released CPM trains stage 1 on the Gaussians of every labeled person in the crop and stages >= 2 on the
person the crop is centred on (its ``joint_others``, `cpm.targets.codecs.HeatmapCodec`). Here the other people of
a sample are the other annotations of the same image file in the dataset (MPII lists each person of an image as
its own entry): `WithOtherPeople` wraps a `cpm.data.dataset.PoseDataset` and returns each sample's ``keypoints`` as
(1 + P, K, 3): the centred person, then the others through the same crop, flip included, padded with unlabeled
rows (v = 0) to the largest P of the dataset, so that batches stack. A source with one person per image (the
synthetic renderer, LSP) has P = 0 and is returned as it is by `with_other_people`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset

from cpm.data.dataset import PoseDataset
from cpm.data.transforms import transform_keypoints

__all__ = ["WithOtherPeople", "other_people", "with_other_people"]


def other_people(source) -> dict[int, list[int]]:
    """Dataset index -> the dataset indices of the other annotations of the same image file (all of them, whichever
    split they are in, as Caffe's ``joint_others``). Empty for a source without ``images`` and ``keypoints``
    (`cpm.data.datasets.samples.ImageSamples` has them)."""
    images = getattr(source, "images", None)
    if images is None or getattr(source, "keypoints", None) is None:
        return {}
    by_image: dict[str, list[int]] = defaultdict(list)
    for n, path in enumerate(images):
        by_image[str(path)].append(n)
    return {n: [m for m in group if m != n] for group in by_image.values() if len(group) > 1 for n in group}


class WithOtherPeople(Dataset):
    """``dataset[i]`` with ``keypoints`` (1 + P, K, 3): the centred person first, then the other people of the image
    in crop pixels (see the module docstring)."""

    def __init__(self, dataset: PoseDataset, others: dict[int, list[int]]) -> None:
        self.dataset = dataset
        self.others = others
        self.max_others = max((len(group) for group in others.values()), default=0)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):  # the wrapped dataset's attributes (epoch, length, input_size...)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.dataset[index]
        base = self.dataset
        position = base.epoch * base.length + index if base.resample_each_epoch else index
        source = base.source
        n = source.indices[position] if hasattr(source, "indices") else position
        group = self.others.get(n, [])
        matrix = item["matrix"].double().numpy()
        flipped = bool(np.linalg.det(matrix[:, :2]) < 0)  # crop_matrix mirrors x for a flip
        joints = item["keypoints"].shape[0]
        people = np.zeros((self.max_others, joints, 3), dtype=np.float32)  # v = 0: padding rows draw nothing
        for p, m in enumerate(group):
            people[p] = transform_keypoints(np.asarray(source.keypoints[m]), matrix, base.flip_permutation, flipped)
        item["keypoints"] = torch.cat([item["keypoints"][None], torch.from_numpy(people)])
        return item


def with_other_people(dataset: PoseDataset) -> Dataset:
    """``dataset`` wrapped by `WithOtherPeople` when some image of its source has more than one person, else
    ``dataset`` itself."""
    others = other_people(dataset.source)
    return WithOtherPeople(dataset, others) if others else dataset
