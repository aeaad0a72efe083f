"""The ``bank`` pose source: real 2D poses (e.g. the K2HPD keypoints) lifted to 3D for the renderer.

A 2D pose says where each joint appears, not how far away it is. `lift` puts it into the renderer's body
frame (metres, pelvis at the origin, y up, facing +z, the person's left at +x) by scaling the spine to the
renderer's proportions (`cpm.data.synthetic.render.pose_body`), then gives each bone, walked from the pelvis outwards,
the depth offset that restores its 3D length: ``dz = sign * sqrt(L^2 - l^2)`` for a projected length l shorter
than the bone's length L. The sign is the plausible one most of the time (elbows, hands and knees in front,
shins behind) and random otherwise, so the depth ordering is plausible, not recovered. The pose keeps its
camera view: the renderer does not turn it (``needs_yaw = False``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpm.errors import CPMError

# (parent, child, bone length / body height, probability that the child is in front of its parent), walked in
# this order from the pelvis (joint 8 is placed by the pelvis-neck line; ITOP_15 indices).
BONES = (
    (-1, 1, 0.30, 0.6), (1, 0, 0.105, 0.7), (1, 2, 0.116, 0.5), (1, 3, 0.116, 0.5),
    (2, 4, 0.186, 0.7), (3, 5, 0.186, 0.7), (4, 6, 0.146, 0.8), (5, 7, 0.146, 0.8),
    (-1, 9, 0.055, 0.5), (-1, 10, 0.055, 0.5), (9, 11, 0.245, 0.8), (10, 12, 0.245, 0.8),
    (11, 13, 0.245, 0.3), (12, 14, 0.245, 0.3),
)


def lift(points: np.ndarray, *, height: float, rng: np.random.Generator) -> np.ndarray:
    """2D ITOP_15 keypoints (15, 2+) in image pixels (y down, the person's left on the image right for a person
    facing the camera) -> (15, 3) body-frame joints in metres."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    pelvis = (points[9] + points[10]) / 2
    spine = float(np.linalg.norm(points[1] - pelvis))
    scale = 0.30 * height / max(spine, 1e-6)
    joints = np.zeros((15, 3))
    joints[:, 0] = (points[:, 0] - pelvis[0]) * scale
    joints[:, 1] = -(points[:, 1] - pelvis[1]) * scale
    signs = np.where(rng.random(len(BONES)) < [b[3] for b in BONES], 1.0, -1.0)
    for (parent, child, length, _), sign in zip(BONES, signs, strict=True):
        start = np.zeros(3) if parent < 0 else joints[parent]
        projected = float(np.linalg.norm(joints[child, :2] - start[:2]))
        joints[child, 2] = start[2] + sign * np.sqrt(max((length * height) ** 2 - projected**2, 0.0))
    joints[8, 2] = 0.45 * joints[1, 2]  # the torso joint sits on the spine
    return joints


class BankPoses:
    """``source(rng, height)``: a random pose of a 2D keypoint bank, lifted with `lift`. ``files``: a K2HPD
    keypoint .mat (N x 19 x 2) or a .npy of (N, 15, 2+) ITOP_15 keypoints."""

    needs_yaw = False

    def __init__(self, files: str | Path) -> None:
        path = Path(files)
        if path.suffix == ".npy":
            if not path.is_file():
                raise CPMError(f"{path}: no such file")
            keypoints = np.load(path)
            if keypoints.ndim != 3 or keypoints.shape[1] != 15 or keypoints.shape[2] < 2 or not len(keypoints):
                raise CPMError(f"{path}: expected (N, 15, 2+) ITOP_15 keypoints, got {keypoints.shape}")
        else:
            from cpm.data.datasets.mat_readers import read_k2hpd

            keypoints = read_k2hpd(path).keypoints
        if not np.isfinite(keypoints[..., :2]).all():
            raise CPMError(f"{path}: NaN or infinite keypoints")
        self.keypoints = np.asarray(keypoints[..., :2], dtype=np.float64)  # (N, 15, 2)

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        return lift(self.keypoints[rng.integers(len(self.keypoints))], height=height, rng=rng)
