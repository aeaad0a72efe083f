"""Held-out crops at several scales, for multi-scale testing (``eval.scales``, `cpm.targets.multiscale`).

`MultiScaleDataset` returns sample i of a held-out `cpm.data.dataset.PoseDataset` as it is (the base crop, which
the loss, the keypoints and the metrics use) plus the same person cropped at each scale s of ``scales``: the crop
side divided by s around the same centre (s > 1 zooms in)::

    scale_images    (S, C, N, N)  the crops
    scale_matrices  (S, 2, 3)     source pixels -> crop pixels of each
    scale_centers   (S, 2)        the person centre in each crop's pixels (where its centre map goes)

The source sample (its image file) is read once per item.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from cpm.data.dataset import PoseDataset

__all__ = ["MultiScaleDataset"]


class _LastItem(Sequence):
    """A source that remembers its last item, so that the crops of one sample at every scale read it once."""

    def __init__(self, source: Sequence[dict]) -> None:
        self.source = source
        self.last: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        if self.last is None or self.last[0] != index:
            self.last = (index, self.source[index])
        return self.last[1]


class MultiScaleDataset(Dataset):
    """See the module docstring. ``dataset`` must be a held-out (not augmented) `PoseDataset`."""

    def __init__(self, dataset: PoseDataset, scales: Sequence[float]) -> None:
        if dataset.augment:
            raise ValueError("multi-scale crops are for held-out samples, not augmented ones")
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of values > 0, got {list(scales)}")
        self.scales = [float(s) for s in scales]
        source = _LastItem(dataset.source)
        self.base = copy.copy(dataset)
        self.base.source = source
        self.crops = []
        for scale in self.scales:
            crop = copy.copy(dataset)
            crop.source, crop.crop_padding = source, dataset.crop_padding / scale
            self.crops.append(crop)

    def set_epoch(self, epoch: int) -> None:
        for dataset in (self.base, *self.crops):
            dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.base[index]
        crops = [crop[index] for crop in self.crops]
        item["scale_images"] = torch.stack([c["image"] for c in crops])
        item["scale_matrices"] = torch.stack([c["matrix"] for c in crops])
        item["scale_centers"] = torch.stack([c["center"] for c in crops])
        return item
