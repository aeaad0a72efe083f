"""ITOP (Haque et al. 2016): depth frames and labels in HDF5 files (needs h5py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpm.data.datasets.samples import ImageSamples, person_box
from cpm.errors import CPMError
from cpm.skeleton import ITOP_15


def read_itop(labels: str | Path, depth: str | Path, *, valid_only: bool = True) -> ImageSamples:
    """ITOP (Haque et al. 2016): ``*_labels.h5`` (``image_coordinates`` N x 15 x 2, ``visible_joints``,
    ``is_valid``) and ``*_depth_map.h5`` (``data`` N x 240 x 320 metres). Depth becomes nearness gray
    (`cpm.data.depth.metres_to_nearness`) over the near / far range of ``data.depth`` (``ItopSamples.depth``; by
    default the synthetic renderer's 0.5 - 7.5 m), 0 = no reading."""
    try:
        import h5py
    except ImportError:
        raise CPMError(f"{labels}: reading ITOP HDF5 files needs h5py (pip install 'cpm-pose[itop]')") from None
    for path in (labels, depth):
        if not Path(path).is_file():
            raise CPMError(f"{path}: no such file")
    with h5py.File(labels, "r") as file:
        for key in ("image_coordinates", "visible_joints", "is_valid"):
            if key not in file:
                raise CPMError(f"{labels}: no dataset {key!r}")
        coords = np.asarray(file["image_coordinates"], dtype=np.float64)
        visible = np.asarray(file["visible_joints"])
        valid = np.asarray(file["is_valid"]).astype(bool)
    frames = np.flatnonzero(valid) if valid_only else np.arange(len(valid))
    keypoints = np.concatenate([coords, np.where(visible > 0, 2.0, 1.0)[..., None]], axis=2)[frames]
    return ItopSamples(Path(depth), frames, keypoints, where=str(labels))


class ItopSamples(ImageSamples):
    """ITOP frames come from one HDF5 array, not from image files."""

    def __init__(self, depth: Path, frames: np.ndarray, keypoints: np.ndarray, *, where: str) -> None:
        super().__init__([depth] * len(frames), keypoints, skeleton=ITOP_15.name, where=where, num_joints=15)
        self.frames = frames

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        import h5py

        from cpm.data.depth import DepthSpec, metres_to_nearness

        n = self.indices[i]
        with h5py.File(self.images[n], "r") as file:
            metres = np.asarray(file["data"][int(self.frames[n])], dtype=np.float32)
        spec = self.depth or DepthSpec()  # the files hold metres whatever data.depth.encoding says
        image = metres_to_nearness(metres, near=spec.near, far=spec.far)
        center, scale = person_box(self.keypoints[n])
        return {"image": image, "keypoints": self.keypoints[n], "center": center, "scale": scale, "index": n}
