"""A scene of the synthetic frames: one body in a pose, standing on the floor in front of a back wall among a few
pieces of furniture, and the depth camera that sees it (`sample_scene` draws one; conventions in
`cpm.data.synthetic.frames`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from cpm.data.synthetic.body import KINECT_VIEWS, Body, Pose, pose_body, pose_joints, sample_pose
from cpm.data.synthetic.camera import CX, FOCAL, FRAME_HEIGHT, FRAME_WIDTH, Camera

if TYPE_CHECKING:
    from cpm.data.synthetic.sources import PoseSource


@dataclass
class Scene:
    body: Body
    pose: Pose
    camera: Camera
    position: tuple[float, float] = (0.0, 3.0)  # person's (x, z) on the floor
    wall: float = 6.0  # z of the back wall
    boxes: list[tuple[float, ...]] = field(default_factory=list)  # (x0, x1, height, z0, z1)
    cylinders: list[tuple[float, ...]] = field(default_factory=list)  # (x, z, radius, height)
    posed: np.ndarray | None = None  # (15, 3) body-frame joints from a pose source; None: pose's joint angles

    @cached_property
    def geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``pose_body(body, pose)`` (or `pose_joints` of ``posed``), computed once: make a new Scene rather
        than editing body or pose."""
        if self.posed is not None:
            return pose_joints(self.body, self.posed, yaw=self.pose.yaw)
        return pose_body(self.body, self.pose)


def sample_scene(rng: np.random.Generator, pose_source: PoseSource | None = None,
                 views: tuple[float, float, float] = KINECT_VIEWS, cues: bool = False) -> Scene:
    """Body, pose, camera placement and furniture. The camera distance is chosen so the posed body
    fits the frame; about 8% of scenes are framed tighter, so that in ~5% a joint leaves it.
    ``pose_source`` (opt-in; None = the procedural prior) gives body-frame joints and, with them, whether
    the view yaw is still to be drawn (BVH) or already in the pose (a 2D bank); ``views`` the shares of frontal,
    side and back views that yaw is drawn from (`cpm.data.synthetic.body.sample_pose`); ``cues``: a body with
    front/back cues (`cpm.data.synthetic.body.Body`; the same draws either way)."""
    u = rng.uniform
    body = Body(u(1.5, 1.95), u(0.92, 1.08, 5), u(0.8, 1.2), cues=cues)
    if pose_source is None:
        scene = Scene(body, sample_pose(rng, views), Camera())
    else:
        posed = pose_source(rng, body.height)
        yaw = sample_pose(rng, views).yaw if pose_source.needs_yaw else 0.0
        scene = Scene(body, Pose(yaw=yaw), Camera(), posed=posed)
    _, caps, _ = scene.geometry
    ends = np.concatenate([caps[:, 0:3], caps[:, 3:6]])
    radii = np.concatenate([caps[:, 6], caps[:, 7]])
    top = float((ends[:, 1] + radii).max())
    x_lo, x_hi = float((ends[:, 0] - radii).min()), float((ends[:, 0] + radii).max())
    z_lo, z_hi = float((ends[:, 2] - radii).min()), float((ends[:, 2] + radii).max())
    fits = max(FOCAL * top / (0.85 * FRAME_HEIGHT), FOCAL * (x_hi - x_lo) / (0.55 * FRAME_WIDTH)) - z_lo
    distance = u(max(2.0, fits), max(4.5, fits))
    height = u(0.8, 1.8)
    tight = rng.random() < 0.08
    if tight:  # closer than the body fits, and aimed off-centre: the head or the feet may be cut
        distance = max(1.5, fits * u(0.75, 0.95) - z_lo)
    pitch = math.atan2(height - 0.5 * top, distance) + rng.normal(0.0, 0.03)
    if tight:
        pitch += u(0.15, 0.3) * rng.choice((-1.0, 1.0))
    # Put the body centre anywhere in the middle 60% of the width (x_cam = -x_world).
    x = -(u(0.2, 0.8) * FRAME_WIDTH - CX) * distance / FOCAL - 0.5 * (x_lo + x_hi)
    if not tight:  # pull the silhouette back inside the frame if its side sticks out
        us = (-(x + np.array([x_lo, x_hi]))) * FOCAL / distance + CX
        x -= (max(0.0, 4 - us.min()) - max(0.0, us.max() - FRAME_WIDTH + 5)) * distance / FOCAL
    wall = max(u(4.0, 7.0), distance + z_hi + u(0.8, 1.5))

    boxes, cylinders = [], []
    for _ in range(rng.integers(2, 5)):  # furniture beside the person, never intersecting it
        size, tall = u(0.3, 1.0), u(0.4, 1.3)
        z0 = u(distance - 0.8, wall - size - 0.1)
        gap = u(0.25, 1.6) + size
        cx = x + (x_hi + gap if rng.random() < 0.5 else x_lo - gap)
        if rng.random() < 0.6:
            boxes.append((cx - size / 2, cx + size / 2, tall, z0, z0 + size))
        else:
            cylinders.append((cx, z0 + size / 2, size / 2, tall))
    if rng.random() < 0.1:  # a low box in front of the legs
        cx, half, z1 = x + u(-0.25, 0.25), u(0.15, 0.3), distance + z_lo - u(0.1, 0.3)
        boxes.append((cx - half, cx + half, u(0.3, 0.7), z1 - u(0.2, 0.5), z1))
    scene.camera, scene.position, scene.wall = Camera(height, pitch), (x, distance), wall
    scene.boxes, scene.cylinders = boxes, cylinders
    return scene
