"""Procedural Kinect2-like depth frames of an articulated human body, with exact 2D keypoints.

Each sample is a 256 x 212 uint8 depth image (numpy shape ``(212, 256)``) of one adult standing on a
floor in front of a back wall, with a few pieces of furniture around. The body is a kinematic tree of
capsules (torso as pelvis + waist + chest + shoulder girdle, limbs, neck, head, hands, feet) posed by a
small prior over "activities" (standing, walking, arms raised, reaching, bending, squatting) within
human joint limits. Everything is ray-cast analytically into a z-buffer, then degraded like a Kinect2
depth frame: distance-dependent Gaussian noise, 8-bit quantisation and missing depth along edges.

Here: `render_sample` (sample i of a stream) and `SyntheticPoses`, the dataset of a stream. A sample's scene is drawn
by `cpm.data.synthetic.scene.sample_scene` (the body and its pose: `cpm.data.synthetic.body`, or a pose source of
`cpm.data.synthetic.sources`) and rendered by `cpm.data.synthetic.zbuffer.render_scene` through the depth camera of
`cpm.data.synthetic.camera`.

Conventions
    * World: metres, y up, floor is the plane y = 0. The camera sits at (0, h, 0) looking along +z,
      pitched down by a small angle. Camera frame: x right, y down, z forward (OpenCV).
    * Pixel (row i, column j) has its centre at x = j, y = i.
    * Gray level = nearness: ``255 * (1 - (z - 0.5) / 7)`` clipped to [1, 255] for a valid depth z
      (z-depth along the optical axis); 0 means "no reading" (too near, too far, or a dropped pixel).
    * Keypoints: 15 joints in ITOP order (see ``cpm.skeleton.ITOP_15``), "right" is the person's own
      right. ``v`` = 2 visible, 1 occluded (a surface lies in front of the joint by more than the
      joint's own body-part radius + 5 cm), 0 projected outside the frame (x, y still given).
    * Sample ``i`` of ``seed`` is a pure function of ``(seed, i)`` via ``np.random.default_rng([seed, i])``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cpm.data.synthetic.body import KINECT_VIEWS
from cpm.data.synthetic.scene import sample_scene
from cpm.data.synthetic.sources import PoseMix
from cpm.data.synthetic.zbuffer import render_scene

if TYPE_CHECKING:
    from cpm.data.synthetic.sources import PoseSource


def render_sample(seed: int, index: int, pose_source: PoseSource | PoseMix | None = None,
                  views: tuple[float, float, float] = KINECT_VIEWS, cues: bool = False) -> dict:
    """Sample ``index`` of the stream ``seed``: {"image": uint8 (212, 256), "keypoints": float32
    (15, 3) [x, y, v], "center": float32 (2,) keypoint-bbox centre, "scale": float keypoint-bbox side}. A
    `PoseMix` first picks the sample's pose source from (seed, index). ``views``: the shares of frontal, side and
    back views where the renderer draws the yaw (`cpm.data.synthetic.scene.sample_scene`); ``cues``: a body with
    front/back cues (`cpm.data.synthetic.body.Body`)."""
    rng = np.random.default_rng([seed, index])
    if isinstance(pose_source, PoseMix):
        pose_source = pose_source.source(seed, index)
    return render_scene(sample_scene(rng, pose_source, views, cues), rng)


class SyntheticPoses:
    """Map-style dataset of ``size`` samples of stream ``seed``: ``ds[i]`` is ``render_sample(seed, i)``."""

    def __init__(self, seed: int = 0, size: int = 1000, pose_source: PoseSource | PoseMix | None = None,
                 views: tuple[float, float, float] = KINECT_VIEWS, cues: bool = False) -> None:
        self.seed, self.size, self.pose_source, self.views = seed, size, pose_source, tuple(views)
        self.cues = cues

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        return render_sample(self.seed, index, self.pose_source, self.views, self.cues)
