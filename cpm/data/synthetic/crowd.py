"""Depth frames of several people: 1 to 5 adults (by default) standing on the floor at different depths and places,
so that they overlap and hide each other in the image, sometimes touching, among optional furniture, seen by one
depth camera. The bodies, poses, camera and z-buffer are those of the single-person frames
(`cpm.data.synthetic.frames`, whose conventions hold here).

Per person: keypoints (15, 3) in ITOP order with visibility from the shared z-buffer (2 visible; 1 occluded by
another person, furniture or the person's own body; 0 projected outside the frame, with x = y = 0 as COCO files
have it), the box of the pixels where the person is the nearest surface (their visible silhouette, within the
frame) as COCO's [x, y, w, h] in this project's pixel grid (pixel j spans [j - 0.5, j + 0.5], so a box at the left
border starts at x = -0.5), and its area (the silhouette's pixel count, COCO's segmentation area).

Who is annotated, as COCO does it: a person with no visible pixel is left out (hidden behind others, or outside
the frame); a person with visible pixels but fewer than ``min_joints`` (3) labeled joints stays, with every joint
unlabeled (num_keypoints = 0): COCO's keypoint evaluation ignores such a person (a detection of them is no false
positive), and `cpm.data.datasets.json_readers.read_coco` makes no sample of them.

Frame ``index`` of stream ``seed`` is a pure function of (seed, index) via
``np.random.default_rng([seed, index, CROWD_STREAM])``, apart from the single-person stream of the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from cpm.data.synthetic.body import Body, Pose, pose_body, pose_joints, sample_pose
from cpm.data.synthetic.camera import CX, FOCAL, FRAME_WIDTH, MAX_RANGE, MIN_RANGE, Camera
from cpm.data.synthetic.sources import PoseMix
from cpm.data.synthetic.zbuffer import joint_flags, person_in_camera, render_background, render_capsules, sensor_image
from cpm.errors import CPMError

if TYPE_CHECKING:
    from cpm.data.synthetic.sources import PoseSource

CROWD_STREAM = 0x63726F77  # the third word of a crowd frame's generator, so that it is not a single-person frame's
MIN_JOINTS = 3  # a visible person with fewer labeled joints is kept unlabeled (num_keypoints = 0)
DEPTHS = (1.8, 6.0)  # metres from the camera, where people stand


@dataclass
class Person:
    """One body in a pose (``posed``: body-frame joints of a pose source, else ``pose``'s joint angles), standing at
    ``position`` (x, z) on the floor."""

    body: Body
    pose: Pose
    position: tuple[float, float]
    posed: np.ndarray | None = None

    @cached_property
    def geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joints (15, 3), capsules (C, 8) and joint radii (15,) around the person's own origin."""
        if self.posed is not None:
            return pose_joints(self.body, self.posed, yaw=self.pose.yaw)
        return pose_body(self.body, self.pose)

    @cached_property
    def footprint(self) -> tuple[np.ndarray, float]:
        """Centre (x, z) and radius of a circle on the floor around the whole posed body, around its own origin."""
        _, caps, _ = self.geometry
        ends = np.concatenate([caps[:, [0, 2]], caps[:, [3, 5]]])
        radii = np.concatenate([caps[:, 6], caps[:, 7]])
        centre = (ends.min(0) + ends.max(0)) / 2
        return centre, float((np.linalg.norm(ends - centre, axis=1) + radii).max())


@dataclass
class Crowd:
    """People, the camera that sees them, the back wall's z and furniture as `cpm.data.synthetic.scene.Scene` has
    it (boxes (x0, x1, height, z0, z1), cylinders (x, z, radius, height))."""

    people: list[Person]
    camera: Camera = field(default_factory=Camera)
    wall: float = 8.0
    boxes: list[tuple[float, ...]] = field(default_factory=list)
    cylinders: list[tuple[float, ...]] = field(default_factory=list)


def render_crowd(seed: int, index: int, pose_source: PoseSource | PoseMix | None = None,
                 people: tuple[int, int] = (1, 5), *, depths: tuple[float, float] = DEPTHS,
                 furniture: bool = True) -> dict:
    """Frame ``index`` of the crowd stream ``seed``: `sample_crowd` then `render_crowd_scene` with one generator.
    {"image": uint8 (212, 256), "keypoints": float32 (N, 15, 3), "boxes": float32 (N, 4) x, y, w, h,
    "areas": float32 (N,)} for the N people annotated (see the module docstring)."""
    rng = np.random.default_rng([seed, index, CROWD_STREAM])
    return render_crowd_scene(sample_crowd(rng, pose_source, people=people, depths=depths, furniture=furniture), rng)


def render_crowd_scene(crowd: Crowd, rng: np.random.Generator | None = None, *, min_joints: int = MIN_JOINTS) -> dict:
    """Render ``crowd`` into one z-buffer, every person's pixels marked with who they are; with ``rng`` the sensor's
    noise and dropouts (else the clean depth). Returns `render_crowd`'s dict, people in ``crowd.people``'s order
    less those with no visible pixel; "people" (N,) holds the index in ``crowd.people`` of each."""
    camera = crowd.camera
    zbuf = render_background(camera, crowd.wall, crowd.boxes, crowd.cylinders)
    owner = np.full(zbuf.shape, -1, np.int16)  # (H, W) which person each pixel shows; -1: none
    placed = [person_in_camera(camera, person.geometry, person.position) for person in crowd.people]
    for n, (_, caps_cam, _) in enumerate(placed):
        render_capsules(zbuf, caps_cam, owner, n)
    owner[(zbuf <= MIN_RANGE) | (zbuf >= MAX_RANGE)] = -1  # no reading there
    keypoints, boxes, areas, kept = [], [], [], []
    for n, (joints_cam, _, radius) in enumerate(placed):
        rows, cols = np.nonzero(owner == n)
        if not len(rows):
            continue
        uv, flags = joint_flags(zbuf, joints_cam, radius)
        if (flags > 0).sum() < min_joints:
            flags[:] = 0
        person = np.concatenate([uv, flags[:, None]], 1)
        person[flags == 0, :2] = 0.0
        keypoints.append(person)
        x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
        boxes.append((x0 - 0.5, y0 - 0.5, x1 - x0 + 1, y1 - y0 + 1))
        areas.append(len(rows))
        kept.append(n)
    return {
        "image": sensor_image(zbuf, rng),
        "keypoints": np.array(keypoints, np.float32).reshape(-1, 15, 3),
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "areas": np.array(areas, np.float32),
        "people": np.array(kept, np.int64),
    }


def sample_crowd(rng: np.random.Generator, pose_source: PoseSource | PoseMix | None = None, *,
                 people: tuple[int, int] = (1, 5), depths: tuple[float, float] = DEPTHS,
                 furniture: bool = True) -> Crowd:
    """A crowd: between ``people[0]`` and ``people[1]`` people (inclusive), each posed by ``pose_source`` (a `PoseMix`
    draws each person's source by its weights), standing ``depths`` metres from the camera, their centres in the
    middle 80 % of the frame's width; about a third are placed against someone already there (touching or nearly).
    No two bodies' floor circles overlap; a person that finds no free place in 20 tries is left out."""
    low, high = people
    if not 1 <= low <= high:
        raise CPMError(f"people: {low}-{high}: need 1 <= low <= high")
    if not 0.5 < depths[0] < depths[1] < MAX_RANGE:
        raise CPMError(f"depths: {depths[0]:g}-{depths[1]:g} m: need 0.5 < near < far < {MAX_RANGE:g}")
    u = rng.uniform
    height = u(1.0, 1.8)
    middle = (depths[0] + depths[1]) / 2
    camera = Camera(height, math.atan2(height - 0.9, middle) + rng.normal(0.0, 0.03))
    crowd: list[Person] = []
    for _ in range(rng.integers(low, high + 1)):
        person = _posed_person(rng, pose_source)
        centre, radius = person.footprint
        for _ in range(20):
            if crowd and rng.random() < 0.35:  # beside someone: floor circles touching, up to 10 cm apart
                other = crowd[rng.integers(len(crowd))]
                other_centre = np.add(other.position, other.footprint[0])
                angle = u(0.0, 2 * math.pi)
                spot = other_centre + (other.footprint[1] + radius + u(0.0, 0.1)) * np.array(
                    [math.cos(angle), math.sin(angle)])
                x, z = spot - centre
            else:
                z = u(*depths)
                x = -(u(0.1, 0.9) * FRAME_WIDTH - CX) * z / FOCAL - centre[0]  # x_cam = -x_world
            if depths[0] <= z <= depths[1] and _free(crowd, np.add((x, z), centre), radius):
                person.position = (float(x), float(z))
                crowd.append(person)
                break
    far = max(p.position[1] + p.footprint[0][1] + p.footprint[1] for p in crowd) if crowd else depths[1]
    scene = Crowd(crowd, camera, wall=max(u(5.0, 7.5), far + u(0.5, 1.5)))
    if furniture:
        _add_furniture(rng, scene)
    return scene


def _posed_person(rng: np.random.Generator, pose_source: PoseSource | PoseMix | None) -> Person:
    u = rng.uniform
    body = Body(u(1.5, 1.95), u(0.92, 1.08, 5), u(0.8, 1.2))
    if isinstance(pose_source, PoseMix):
        names = pose_source.names
        pose_source = pose_source.sources[names[rng.choice(len(names), p=[pose_source.weights[n] for n in names])]]
    if pose_source is None:
        return Person(body, sample_pose(rng), (0.0, 0.0))
    posed = pose_source(rng, body.height)
    yaw = sample_pose(rng).yaw if pose_source.needs_yaw else 0.0
    return Person(body, Pose(yaw=yaw), (0.0, 0.0), posed=posed)


def _free(crowd: list[Person], centre: np.ndarray, radius: float) -> bool:
    """Whether a floor circle at ``centre`` (world x, z) of ``radius`` overlaps nobody of ``crowd``."""
    return all(np.linalg.norm(centre - np.add(p.position, p.footprint[0])) >= radius + p.footprint[1] - 1e-9
               for p in crowd)


def _add_furniture(rng: np.random.Generator, crowd: Crowd) -> None:
    """Up to 3 boxes or upright cylinders on the floor in view, between the nearest depth and the wall, touching
    nobody (some stand in front of people and hide their legs)."""
    u = rng.uniform
    for _ in range(rng.integers(0, 4)):
        size, tall = u(0.3, 1.0), u(0.4, 1.3)
        z0 = u(1.5, max(1.6, crowd.wall - size - 0.1))
        cx = -(u(0.0, 1.0) * FRAME_WIDTH - CX) * (z0 + size / 2) / FOCAL
        if not _free(crowd.people, np.array([cx, z0 + size / 2]), size * math.sqrt(0.5)):
            continue
        if rng.random() < 0.6:
            crowd.boxes.append((cx - size / 2, cx + size / 2, tall, z0, z0 + size))
        else:
            crowd.cylinders.append((cx, z0 + size / 2, size / 2, tall))

