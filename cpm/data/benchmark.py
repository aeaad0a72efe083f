"""The crops of the released CPM's benchmark (testing/src/run_benchmark.m), for ``cpm eval`` (``eval.crop``).

`cpm.data.dataset.PoseDataset` cuts a held-out crop of side ``data.crop_padding * scale`` around a sample's
``center``; `BenchmarkCrops` gives each sample the centre and scale that the benchmark's procedure uses instead, so that
the base crop (scale 1 of ``eval.scales``, `cpm.data.multiscale`) is the benchmark's 368 px box::

    eval.crop   centre                          crop side (source pixels)          run_benchmark.m
    person      the labeled joints' box centre  crop_padding x its longer side     (this project's training crop)
    image       the image centre                image height / image_fraction      LSP: target_dist = 0.8 of the
                                                                                   image height, boxsize 368
    annotated   the annotated objpos            crop_padding x 200 x annotated     MPII: scale0 = (41/35) / scale,
                                                scale                              centred on objpos

With ``crop_padding = 1.57`` (368 / 234.3 px: 41/35 of a 200 px person) the annotated crop is run_benchmark.m's
368 / scale0 exactly. The released code rounds the scaled centre to a whole pixel; here it stays where it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cpm.errors import CPMError

__all__ = ["CROPS", "BenchmarkCrops"]

CROPS = ("person", "image", "annotated")
MPII_SCALE_PIXELS = 200.0  # MPII's scale is the person's height / 200 px


class BenchmarkCrops(Sequence):
    """``source`` (a sequence of sample dicts) with each sample's ``center`` and ``scale`` set by ``crop``: see the
    module docstring. "annotated" needs samples with ``objpos`` and ``annotated_scale`` (MPII's readers)."""

    def __init__(self, source: Sequence[dict], *, crop: str, crop_padding: float, image_fraction: float = 0.8,
                 ) -> None:
        if crop not in CROPS:
            raise ValueError(f"unknown benchmark crop {crop!r}; known: {', '.join(CROPS)}")
        self.source, self.crop = source, crop
        self.crop_padding, self.image_fraction = float(crop_padding), float(image_fraction)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.source[index])
        if self.crop == "image":
            height, width = sample["image"].shape[:2]
            sample["center"] = np.array([(width - 1) / 2, (height - 1) / 2], dtype=np.float32)
            sample["scale"] = height / self.image_fraction / self.crop_padding
        elif self.crop == "annotated":
            if "objpos" not in sample or "annotated_scale" not in sample:
                raise CPMError(f"sample {sample.get('index', index)}: eval.crop = 'annotated' needs the annotated "
                               "objpos and scale, which this dataset's reader does not give")
            sample["center"] = np.asarray(sample["objpos"], dtype=np.float32)
            sample["scale"] = MPII_SCALE_PIXELS * float(sample["annotated_scale"])
        return sample
