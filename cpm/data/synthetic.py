"""Procedural Kinect2-like depth frames of an articulated human body, with exact 2D keypoints.

Each sample is a 256 x 212 uint8 depth image (numpy shape ``(212, 256)``) of one adult standing on a
floor in front of a back wall, with a few pieces of furniture around. The body is a kinematic tree of
capsules (torso as pelvis + waist + chest + shoulder girdle, limbs, neck, head, hands, feet) posed by a
small prior over "activities" (standing, walking, arms raised, reaching, bending, squatting) within
human joint limits. Everything is ray-cast analytically into a z-buffer, then degraded like a Kinect2
depth frame: distance-dependent Gaussian noise, 8-bit quantisation and missing depth along edges.

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

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import cv2
import numpy as np

FRAME_WIDTH = 256
FRAME_HEIGHT = 212
NUM_JOINTS = 15
# Kinect2 depth intrinsics (512 x 424, f ~ 365 px) halved.
FOCAL = 182.5
CX, CY = (FRAME_WIDTH - 1) / 2, (FRAME_HEIGHT - 1) / 2
MIN_RANGE, MAX_RANGE = 0.5, 8.0  # metres; outside this the sensor returns nothing
VISIBILITY_MARGIN = 0.05  # metres added to a joint's body-part radius before calling it occluded

_COLS = np.arange(FRAME_WIDTH, dtype=np.float32)
_ROWS = np.arange(FRAME_HEIGHT, dtype=np.float32)[:, None]
_XN = (_COLS - CX) / FOCAL  # normalised ray coordinates, shared by every plane intersection
_YN = (_ROWS - CY) / FOCAL
# Fixed bank of standard normals; a sample reads a random window of it. Drawing 54k fresh normals
# would cost about a fifth of a frame's render time, and the noise need not be independent across frames.
_NOISE = np.random.default_rng(20160627).standard_normal(4 * FRAME_WIDTH * FRAME_HEIGHT, dtype=np.float32)


def _rx(a: float) -> np.ndarray:  # positive tips +y towards +z (a forward bend in the body frame)
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Body:
    """Anthropometry. ``lengths`` scales [spine, upper arm, forearm, thigh, shin]; ``girth`` all radii."""

    height: float = 1.75
    lengths: np.ndarray = field(default_factory=lambda: np.ones(5))
    girth: float = 1.0


@dataclass
class Pose:
    """Joint angles in degrees. ``yaw`` 0 = facing the camera. Limb rows are [right, left]."""

    yaw: float = 0.0
    trunk: tuple[float, float, float] = (0.0, 0.0, 0.0)  # forward bend, side lean, twist
    head: tuple[float, float, float] = (0.0, 0.0, 0.0)  # nod, tilt, turn
    arms: np.ndarray = field(default_factory=lambda: np.zeros((2, 4)))  # flexion, abduction, rotation, elbow
    legs: np.ndarray = field(default_factory=lambda: np.zeros((2, 4)))  # flexion, abduction, rotation, knee


@dataclass
class Camera:
    height: float = 1.2
    pitch: float = 0.0  # radians, positive looks down

    def rotation(self) -> np.ndarray:
        """World -> camera rotation: mirror x and y (camera x right / y down), then pitch."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        return np.array([[-1.0, 0.0, 0.0], [0.0, -c, -s], [0.0, -s, c]])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (points - (0.0, self.height, 0.0)) @ self.rotation().T


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


def project_points(points_cam: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) -> pixel coordinates (N, 2)."""
    z = points_cam[:, 2:3]
    return points_cam[:, :2] * (FOCAL / z) + (CX, CY)


def depth_to_gray(z: np.ndarray | float) -> np.ndarray:
    """Depth in metres -> gray level (float, not yet quantised); invalid depths are not handled here."""
    return np.clip(255.0 * (1.0 - (np.asarray(z) - 0.5) / 7.0), 1.0, 255.0)


def pose_body(body: Body, pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward kinematics. Returns joints (15, 3) and capsules (K, 8) = [a, b, r_a, r_b] in a world
    frame centred on the person (pelvis above the origin, lowest surface on the floor), and each
    joint's body-part radius (15,) used by the visibility test."""
    H, g = body.height, body.height * body.girth
    spine, upper, fore, thigh, shin = body.lengths * H * np.array([0.29, 0.186, 0.146, 0.245, 0.245])
    bend, lean, twist = np.radians(pose.trunk)
    trunk = _rx(bend) @ _rz(lean) @ _ry(twist)  # upper body pivots about the pelvis
    nod, tilt, turn = np.radians(pose.head)
    head_rot = trunk @ _rx(nod) @ _rz(tilt) @ _ry(turn)

    joints = np.zeros((NUM_JOINTS, 3))
    joints[1] = trunk @ (0.0, spine, 0.0)
    joints[8] = trunk @ (0.0, 0.45 * spine, 0.01 * H)
    joints[0] = joints[1] + head_rot @ (0.0, 0.105 * H, 0.012 * H)
    caps = [
        (*(-0.05 * H, 0.0, 0.0), *(0.05 * H, 0.0, 0.0), 0.062 * g, 0.062 * g),  # pelvis
        (*(0.0, 0.02 * H, 0.0), *joints[1], 0.054 * g, 0.054 * g),  # waist / spine
        (*trunk @ (-0.035 * H, 0.13 * H, 0.005 * H), *trunk @ (0.035 * H, 0.13 * H, 0.005 * H),
         0.058 * g, 0.058 * g),  # abdomen
        (*trunk @ (-0.05 * H, 0.215 * H, 0.0), *trunk @ (0.05 * H, 0.215 * H, 0.0), 0.068 * g, 0.068 * g),
        (*joints[1], *joints[0] - head_rot @ (0.0, 0.05 * H, 0.0), 0.03 * g, 0.03 * g),  # neck
        (*joints[0] + head_rot @ (0.0, -0.02 * H, 0.005 * H), *joints[0] + head_rot @ (0.0, 0.015 * H, 0.0),
         0.056 * H * body.girth**0.3, 0.056 * H * body.girth**0.3),  # head varies less than the belly
    ]
    arms, legs = np.radians(pose.arms), np.radians(pose.legs)
    # side = -1 for the right (the body frame's +x is the person's left), +1 for the left.
    for k, side in enumerate((-1.0, 1.0)):
        s, e, w, h, kn, a = (2, 4, 6, 9, 11, 13) if side < 0 else (3, 5, 7, 10, 12, 14)
        flex, abd, rot, elbow = arms[k]
        joints[s] = trunk @ (side * 0.113 * H, spine - 0.025 * H, -0.005 * H)
        arm = trunk @ _rz(side * abd) @ _rx(-flex) @ _ry(-side * rot)  # rot > 0 is internal rotation
        joints[e] = joints[s] - arm[:, 1] * upper
        forearm = arm @ _rx(-elbow)  # elbow flexion brings the hand to the front of the upper arm
        joints[w] = joints[e] - forearm[:, 1] * fore
        flex, abd, rot, knee = legs[k]
        joints[h] = (side * 0.055 * H, -0.01 * H, 0.0)
        leg = _rz(side * abd) @ _rx(-flex) @ _ry(-side * rot)
        joints[kn] = joints[h] - leg[:, 1] * thigh
        shank = leg @ _rx(knee)  # knee flexion swings the shin backwards
        joints[a] = joints[kn] - shank[:, 1] * shin
        caps += [
            (*joints[s], *joints[e], 0.03 * g, 0.025 * g),
            (*joints[e], *joints[w], 0.024 * g, 0.018 * g),
            (*(joints[w] - forearm[:, 1] * 0.045 * H),) * 2 + (0.026 * g, 0.026 * g),  # hand
            (*joints[h], *joints[kn], 0.052 * g, 0.036 * g),
            (*joints[kn], *joints[a], 0.034 * g, 0.022 * g),
            (*joints[a] + shank @ (0.0, -0.018 * H, -0.02 * H),  # foot, heel to toe
             *joints[a] + shank @ (0.0, -0.025 * H, 0.11 * H), 0.02 * g, 0.02 * g),
        ]
    caps.insert(4, (*joints[2], *joints[3], 0.038 * g, 0.038 * g))  # shoulder girdle
    caps = np.array(caps)

    return _turn_and_stand(joints, caps, yaw=pose.yaw, girth=g)


def _turn_and_stand(joints: np.ndarray, caps: np.ndarray, *, yaw: float,
                    girth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame joints and capsules -> turned by ``yaw`` to face the camera, standing on the floor (y = 0);
    with each joint's radius (``girth`` = height * girth factor). Shared by `pose_body` and `pose_joints`."""
    turn = _ry(math.pi + math.radians(yaw))  # the body frame faces +z; the camera looks along +z
    joints = joints @ turn.T
    caps[:, 0:3] = caps[:, 0:3] @ turn.T
    caps[:, 3:6] = caps[:, 3:6] @ turn.T
    floor = min((caps[:, 1] - caps[:, 6]).min(), (caps[:, 4] - caps[:, 7]).min())
    joints[:, 1] -= floor
    caps[:, [1, 4]] -= floor
    # Depth of the body surface in front of each joint when nothing else is in the way; the torso
    # joint gets the torso's half-width so that it stays visible in profile.
    radius = girth * np.array([0.056, 0.054, 0.038, 0.038, 0.028, 0.028, 0.045, 0.045, 0.075,
                               0.062, 0.062, 0.04, 0.04, 0.03, 0.03])
    return joints, caps, radius


def pose_joints(body: Body, joints: np.ndarray, *, yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pose_body` for joint positions given directly (a BVH frame, a lifted 2D pose): ``joints`` (15, 3) in
    the body frame (metres, pelvis at the origin, y up, the person facing +z, their left at +x). Capsules are
    laid between the joints with `pose_body`'s radii; the torso pieces are interpolated between shoulders and
    hips, hands continue the forearm, feet point forwards. Returns joints, capsules and radii as `pose_body`."""
    H, g = body.height, body.height * body.girth
    j = np.asarray(joints, dtype=np.float64).copy()
    pelvis = (j[9] + j[10]) / 2

    def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
        return a + t * (b - a)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(float(np.linalg.norm(v)), 1e-9)

    head_axis = unit(j[0] - j[1])
    caps = [
        (*j[9], *j[10], 0.062 * g, 0.062 * g),  # pelvis
        (*pelvis, *j[1], 0.054 * g, 0.054 * g),  # waist / spine
        (*lerp(j[9], j[2], 0.45), *lerp(j[10], j[3], 0.45), 0.058 * g, 0.058 * g),  # abdomen
        (*lerp(j[9], j[2], 0.75), *lerp(j[10], j[3], 0.75), 0.068 * g, 0.068 * g),  # chest
        (*j[2], *j[3], 0.038 * g, 0.038 * g),  # shoulder girdle
        (*j[1], *(j[0] - head_axis * 0.05 * H), 0.03 * g, 0.03 * g),  # neck
        (*j[0], *j[0], 0.056 * H * body.girth**0.3, 0.056 * H * body.girth**0.3),  # head
    ]
    forward = np.array([0.0, 0.0, 1.0])
    for s, e, w, h, kn, a in ((2, 4, 6, 9, 11, 13), (3, 5, 7, 10, 12, 14)):
        hand = j[w] + unit(j[w] - j[e]) * 0.045 * H
        caps += [
            (*j[s], *j[e], 0.03 * g, 0.025 * g),
            (*j[e], *j[w], 0.024 * g, 0.018 * g),
            (*hand, *hand, 0.026 * g, 0.026 * g),
            (*j[h], *j[kn], 0.052 * g, 0.036 * g),
            (*j[kn], *j[a], 0.034 * g, 0.022 * g),
            (*(j[a] - forward * 0.02 * H), *(j[a] + forward * 0.11 * H - (0.0, 0.025 * H, 0.0)), 0.02 * g, 0.02 * g),
        ]
    return _turn_and_stand(j, np.array(caps), yaw=yaw, girth=g)


def sample_pose(rng: np.random.Generator) -> Pose:
    """Joint angles from a mixture of activities; ranges stay within human joint limits."""
    u = rng.uniform
    # Kinect-style captures face the sensor: in the 39,732 K2HPD test frames the shoulders appear in
    # frontal left/right order in 99.98 % and foreshortened to under half the spine length (a side
    # view) in 1.7 %. Mostly frontal, with a tail of side and back views.
    which = rng.random()
    if which < 0.85:
        yaw = u(-40, 40)
    elif which < 0.97:
        yaw = rng.choice((-1.0, 1.0)) * u(40, 90)
    else:
        yaw = u(90, 270)
    trunk = [u(-5, 10), u(-6, 6), u(-15, 15)]
    head = (u(-15, 25), u(-10, 10), u(-30, 30))
    arms = np.stack([[u(-15, 35), u(3, 30), u(-20, 40), u(0, 70)] for _ in range(2)])
    legs = np.stack([[u(-5, 10), u(0, 10), u(-10, 15), u(0, 10)] for _ in range(2)])
    activity = rng.choice(6, p=[0.25, 0.2, 0.15, 0.15, 0.12, 0.13])
    if activity == 0 and rng.random() < 0.3:  # standing, hands on hips
        arms[:] = [[u(-10, 10), u(35, 55), u(50, 80), u(90, 130)] for _ in range(2)]
    elif activity == 1:  # walking: legs swing in antiphase, arms against the legs
        phase = u(-1, 1) * u(15, 35)
        legs[:, 0] = phase, -phase
        legs[:, 3] = [u(5, 45) if f < 0 else u(0, 15) for f in legs[:, 0]]
        arms[:, 0] = -0.8 * legs[:, 0] + rng.normal(0, 5, 2)
        arms[:, 3] = u(5, 45, 2)
    elif activity == 2:  # one or both arms raised, forwards or sideways
        for k in np.flatnonzero(rng.random(2) < 0.8):
            arms[k, :2] = (u(100, 180), u(0, 40)) if rng.random() < 0.5 else (u(-10, 30), u(70, 160))
            arms[k, 3] = u(0, 60)
    elif activity == 3:  # reaching with one arm
        k = rng.integers(2)
        arms[k] = [u(40, 120), u(0, 60), u(-20, 30), u(0, 40)]
        trunk[0], trunk[2] = u(0, 25), u(-30, 30)
    elif activity == 4:  # bending forwards at the hips, arms hanging
        trunk[0] = u(30, 85)
        arms[:, 0] = trunk[0] + u(-20, 20, 2)
        arms[:, 3] = u(0, 40, 2)
        legs[:, 0], legs[:, 3] = u(0, 20, 2), u(0, 30, 2)
    elif activity == 5:  # squatting: shins stay roughly vertical, so the knee bends ~ the hip
        legs[:, 0] = u(60, 120, 2)
        legs[:, 1] = u(5, 30, 2)
        legs[:, 3] = np.minimum(legs[:, 0] + u(0, 40, 2), 140)
        trunk[0] = u(10, 45)
        arms[:, 0], arms[:, 3] = u(20, 90, 2), u(0, 90, 2)
    for k in np.flatnonzero(rng.random(2) < 0.15):  # anything goes, for variety
        arms[k] = [u(-30, 170), u(0, 120), u(-40, 70), u(0, 150)]
    return Pose(yaw, tuple(trunk), head, arms, legs)


def sample_scene(rng: np.random.Generator, pose_source: PoseSource | None = None) -> Scene:
    """Body, pose, camera placement and furniture. The camera distance is chosen so the posed body
    fits the frame; about 8% of scenes are framed tighter, so that in ~5% a joint leaves it.
    ``pose_source`` (opt-in; None = the procedural prior) gives body-frame joints and, with them, whether
    the view yaw is still to be drawn (BVH) or already in the pose (a 2D bank)."""
    u = rng.uniform
    body = Body(u(1.5, 1.95), u(0.92, 1.08, 5), u(0.8, 1.2))
    if pose_source is None:
        scene = Scene(body, sample_pose(rng), Camera())
    else:
        posed = pose_source(rng, body.height)
        yaw = sample_pose(rng).yaw if pose_source.needs_yaw else 0.0
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


def _render_capsules(zbuf: np.ndarray, caps: np.ndarray) -> None:
    """Min-composite camera-frame capsules into ``zbuf``. Screen-space approximation: distance to
    the projected axis, depth and radius interpolated along it, spherical cross-section."""
    for ax, ay, az, bx, by, bz, ra, rb in caps.tolist():
        if min(az, bz) - max(ra, rb) < 0.1:
            continue
        ua, va = FOCAL * ax / az + CX, FOCAL * ay / az + CY
        ub, vb = FOCAL * bx / bz + CX, FOCAL * by / bz + CY
        pa, pb = FOCAL * ra / az + 1, FOCAL * rb / bz + 1
        u0, u1 = max(int(min(ua - pa, ub - pb)), 0), min(int(max(ua + pa, ub + pb)) + 1, FRAME_WIDTH)
        v0, v1 = max(int(min(va - pa, vb - pb)), 0), min(int(max(va + pa, vb + pb)) + 1, FRAME_HEIGHT)
        if u0 >= u1 or v0 >= v1:
            continue
        px, py = _COLS[u0:u1] - ua, _ROWS[v0:v1] - va
        du, dv = ub - ua, vb - va
        length2 = du * du + dv * dv
        if length2 > 1e-6:
            t = np.clip(px * (du / length2) + py * (dv / length2), 0.0, 1.0)
            ex, ey = px - t * du, py - t * dv
            z, r = az + t * (bz - az), ra + t * (rb - ra)
        else:
            ex, ey, z, r = px, py, np.float32(az), np.float32(ra)  # a sphere
        s = r * r - (ex * ex + ey * ey) * (z * (1.0 / FOCAL)) ** 2  # r^2 - (metric offset)^2
        depth = np.where(s > 0, z - np.sqrt(np.maximum(s, 0)), np.inf)
        region = zbuf[v0:v1, u0:u1]
        np.minimum(region, depth, out=region)


def _render_box(zbuf: np.ndarray, camera: Camera, box: tuple[float, ...]) -> None:
    """Ray-cast the faces of an axis-aligned box that can face the camera (front, top, one side)."""
    x0, x1, tall, z0, z1 = (float(v) for v in box)  # python floats: comparisons give bools, not numpy.bool
    bounds = np.array([[x0, x1], [0.0, tall], [z0, z1]])
    faces = [(2, z0)] + [(1, tall)] * (tall < camera.height) + [(0, x0)] * (x0 > 0) + [(0, x1)] * (x1 < 0)
    rot = camera.rotation().tolist()  # python floats keep the pixel arrays float32
    origin = (0.0, camera.height, 0.0)
    for axis, value in faces:
        corners = np.repeat(bounds[None, :, 0], 4, 0)
        corners[:, axis] = value
        others = [k for k in range(3) if k != axis]
        corners[[1, 3], others[0]] = bounds[others[0], 1]
        corners[[2, 3], others[1]] = bounds[others[1], 1]
        cam = camera.to_camera(corners)
        if cam[:, 2].min() < 0.1:
            continue
        uv = project_points(cam)
        u0, v0 = np.maximum(np.floor(uv.min(0)).astype(int), 0)
        u1, v1 = np.minimum(np.ceil(uv.max(0)).astype(int) + 1, (FRAME_WIDTH, FRAME_HEIGHT))
        if u0 >= u1 or v0 >= v1:
            continue
        xn, yn = _XN[u0:u1], _YN[v0:v1]
        # World direction of the ray whose camera-frame z is 1, so the ray parameter is the z-depth.
        dirs = [rot[0][k] * xn + rot[1][k] * yn + rot[2][k] for k in range(3)]
        with np.errstate(divide="ignore"):
            depth = (value - origin[axis]) / dirs[axis]
        inside = depth > 0
        for k in range(3):
            if k != axis:
                hit = origin[k] + depth * dirs[k]
                inside &= (hit >= bounds[k, 0]) & (hit <= bounds[k, 1])
        region = zbuf[v0:v1, u0:u1]
        np.minimum(region, np.where(inside, depth, np.inf), out=region)


def render_scene(scene: Scene, rng: np.random.Generator | None = None) -> dict:
    """Render a scene. With ``rng`` the sensor noise and edge dropouts are applied, else the clean
    depth is quantised. Returns the same dict as ``render_sample``."""
    camera = scene.camera
    joints, caps, radius = scene.geometry
    offset = np.array([scene.position[0], 0.0, scene.position[1]])
    joints_cam = camera.to_camera(joints + offset)
    caps_cam = caps.copy()
    caps_cam[:, 0:3] = camera.to_camera(caps[:, 0:3] + offset)
    caps_cam[:, 3:6] = camera.to_camera(caps[:, 3:6] + offset)

    # Background: floor (y = 0) and back wall (z = wall) by ray-plane intersection; a ray's z-depth
    # to a plane n.X = d is (d - n.C) / (n . R^T ray). The camera has no roll or yaw (its rotation's
    # first row is (-1, 0, 0)), so both depths are constant along an image row.
    _, (_, r11, r12), (_, r21, r22) = camera.rotation().tolist()
    with np.errstate(divide="ignore"):
        floor = -camera.height / (r11 * _YN + r21)
        wall = scene.wall / (r12 * _YN + r22)
    background = np.minimum(np.where(floor > 0, floor, np.inf), np.where(wall > 0, wall, np.inf))
    zbuf = np.empty((FRAME_HEIGHT, FRAME_WIDTH), np.float32)
    zbuf[:] = background
    for box in scene.boxes:
        _render_box(zbuf, camera, box)
    cylinders = [(x, r, z, x, max(h - r, r), z, r, r) for x, z, r, h in scene.cylinders]
    if cylinders:  # upright capsules: bins, stools, posts
        cyl = np.array(cylinders)
        cyl[:, 0:3], cyl[:, 3:6] = camera.to_camera(cyl[:, 0:3]), camera.to_camera(cyl[:, 3:6])
        _render_capsules(zbuf, cyl)
    _render_capsules(zbuf, caps_cam)

    uv = project_points(joints_cam)
    col, row = np.rint(uv).astype(int).T
    in_frame = (col >= 0) & (col < FRAME_WIDTH) & (row >= 0) & (row < FRAME_HEIGHT)
    surface = zbuf[np.clip(row, 0, FRAME_HEIGHT - 1), np.clip(col, 0, FRAME_WIDTH - 1)]
    visible = surface >= joints_cam[:, 2] - radius - VISIBILITY_MARGIN
    flags = np.where(in_frame, np.where(visible, 2.0, 1.0), 0.0)

    depth = zbuf
    if rng is not None:  # Kinect2-like axial noise, growing with the square of the distance
        sigma = 0.0012 + 0.0019 * np.square(np.minimum(zbuf, MAX_RANGE) - 0.4)
        start = rng.integers(_NOISE.size - zbuf.size)
        depth = zbuf + sigma * _NOISE[start:start + zbuf.size].reshape(zbuf.shape)
    valid = (depth > MIN_RANGE) & (depth < MAX_RANGE)
    image = (depth_to_gray(depth) + 0.5).astype(np.uint8)
    image[~valid] = 0
    if rng is not None:  # mixed pixels at depth discontinuities come back empty on a real sensor
        clean = np.where(zbuf < MAX_RANGE, zbuf, 0).astype(np.float32)
        kernel = np.ones((3, 3), np.uint8)
        near = cv2.erode(clean, kernel)
        # The threshold grows with distance so that the grazing far floor is not taken for an edge.
        edges = np.flatnonzero(cv2.dilate(clean, kernel) - near > 0.15 + 0.02 * near * near)
        image.flat[edges[rng.random(edges.size) < 0.3]] = 0

    lo, hi = uv.min(0), uv.max(0)
    return {
        "image": image,
        "keypoints": np.concatenate([uv, flags[:, None]], 1).astype(np.float32),
        "center": ((lo + hi) / 2).astype(np.float32),
        "scale": float((hi - lo).max()),
    }


def render_sample(seed: int, index: int, pose_source: PoseSource | None = None) -> dict:
    """Sample ``index`` of the stream ``seed``: {"image": uint8 (212, 256), "keypoints": float32
    (15, 3) [x, y, v], "center": float32 (2,) keypoint-bbox centre, "scale": float keypoint-bbox side}."""
    rng = np.random.default_rng([seed, index])
    return render_scene(sample_scene(rng, pose_source), rng)


class SyntheticPoses:
    """Map-style dataset of ``size`` samples of stream ``seed``: ``ds[i]`` is ``render_sample(seed, i)``."""

    def __init__(self, seed: int = 0, size: int = 1000, pose_source: PoseSource | None = None) -> None:
        self.seed, self.size, self.pose_source = seed, size, pose_source

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        return render_sample(self.seed, index, self.pose_source)


class PoseSource(Protocol):
    """``source(rng, height)`` -> (15, 3) body-frame joints (see `pose_joints`) for a body of ``height`` metres;
    ``needs_yaw``: whether the renderer still turns the body (False when the pose comes in its camera view)."""

    needs_yaw: bool

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray: ...


def pose_sampler(kind: str, files: str) -> PoseSource:
    """Config ``data.pose_source`` -> a pose source: ``bvh`` (cpm.data.bvh.BVHPoses of a file or folder) or
    ``bank`` (cpm.data.poses.BankPoses of a keypoint .mat); the files must exist (ConfigError naming
    ``data.pose_files``)."""
    from pathlib import Path

    from cpm.errors import ConfigError

    if not Path(files).exists():
        raise ConfigError(f"data.pose_files: {files}: no such file or folder")
    if kind == "bvh":
        from cpm.data.bvh import BVHPoses

        return BVHPoses(files)
    if kind == "bank":
        from cpm.data.poses import BankPoses

        return BankPoses(files)
    raise ConfigError(f"data.pose_source: {kind!r} is not one of bvh, bank")
