"""The depth camera of the synthetic frames: Kinect2-like intrinsics (the 512 x 424 depth camera halved), its height
and pitch above the floor, the projection of camera-frame points to pixels, and the gray level of a depth (conventions
in `cpm.data.synthetic.frames`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_WIDTH = 256
FRAME_HEIGHT = 212
# Kinect2 depth intrinsics (512 x 424, f ~ 365 px) halved.
FOCAL = 182.5
CX, CY = (FRAME_WIDTH - 1) / 2, (FRAME_HEIGHT - 1) / 2
MIN_RANGE, MAX_RANGE = 0.5, 8.0  # metres; outside this the sensor returns nothing


@dataclass
class Camera:
    """Where the camera stands: ``height`` metres above the floor at the origin, looking along +z, pitched down."""

    height: float = 1.2
    pitch: float = 0.0  # radians, positive looks down

    def rotation(self) -> np.ndarray:
        """World -> camera rotation: mirror x and y (camera x right / y down), then pitch."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        return np.array([[-1.0, 0.0, 0.0], [0.0, -c, -s], [0.0, -s, c]])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (points - (0.0, self.height, 0.0)) @ self.rotation().T


def project_points(points_cam: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) -> pixel coordinates (N, 2)."""
    z = points_cam[:, 2:3]
    return points_cam[:, :2] * (FOCAL / z) + (CX, CY)


def depth_to_gray(z: np.ndarray | float) -> np.ndarray:
    """Depth in metres -> gray level (float, not yet quantised); invalid depths are not handled here."""
    return np.clip(255.0 * (1.0 - (np.asarray(z) - 0.5) / 7.0), 1.0, 255.0)
