"""The z-buffer of the synthetic frames: a `cpm.data.synthetic.scene.Scene` seen by its
`cpm.data.synthetic.camera.Camera`, capsules, boxes, floor and wall ray-cast analytically, then the sensor's noise,
quantisation and edge dropouts (conventions in `cpm.data.synthetic.frames`).

`render_scene` renders one person; its pieces compose a frame of several (`cpm.data.synthetic.crowd`):
`render_background` (floor, wall, furniture), `person_in_camera` and `render_capsules` (a body, optionally marking
which person each pixel shows), `joint_flags` (visibility in the finished z-buffer) and `sensor_image`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from cpm.data.synthetic.camera import (
    CX,
    CY,
    FOCAL,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MAX_RANGE,
    MIN_RANGE,
    Camera,
    depth_to_gray,
    project_points,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cpm.data.synthetic.scene import Scene

VISIBILITY_MARGIN = 0.05  # metres added to a joint's body-part radius before calling it occluded
_COLS = np.arange(FRAME_WIDTH, dtype=np.float32)
_ROWS = np.arange(FRAME_HEIGHT, dtype=np.float32)[:, None]
_XN = (_COLS - CX) / FOCAL  # normalised ray coordinates, shared by every plane intersection
_YN = (_ROWS - CY) / FOCAL
# Fixed bank of standard normals; a sample reads a random window of it. Drawing 54k fresh normals
# would cost about a fifth of a frame's render time, and the noise need not be independent across frames.
_NOISE = np.random.default_rng(20160627).standard_normal(4 * FRAME_WIDTH * FRAME_HEIGHT, dtype=np.float32)


def render_capsules(zbuf: np.ndarray, caps: np.ndarray, owner: np.ndarray | None = None, person: int = 0) -> None:
    """Min-composite camera-frame capsules into ``zbuf``. Screen-space approximation: distance to
    the projected axis, depth and radius interpolated along it, spherical cross-section. With ``owner`` (an int
    array of ``zbuf``'s shape), the pixels where a capsule comes nearest are set to ``person`` there."""
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
        if owner is not None:
            owner[v0:v1, u0:u1][depth < region] = person
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
        # World direction of the ray whose camera-frame z is 1, so the ray parameter is the z-depth. The camera has
        # no roll or yaw (rot[0] = (-1, 0, 0), rot[1][0] = rot[2][0] = 0), so x varies along a row only and y, z
        # down a column only: each is kept as a row or a column, broadcast where they meet.
        dirs = [rot[0][0] * xn, rot[1][1] * yn + rot[2][1], rot[1][2] * yn + rot[2][2]]
        with np.errstate(divide="ignore"):
            depth = (value - origin[axis]) / dirs[axis]
        inside = depth > 0
        for k in range(3):
            if k != axis:
                hit = origin[k] + depth * dirs[k]
                inside = inside & (hit >= bounds[k, 0]) & (hit <= bounds[k, 1])
        region = zbuf[v0:v1, u0:u1]
        np.minimum(region, np.where(inside, depth, np.inf), out=region)


def render_scene(scene: Scene, rng: np.random.Generator | None = None) -> dict:
    """Render a scene. With ``rng`` the sensor noise and edge dropouts are applied, else the clean
    depth is quantised. Returns the same dict as ``render_sample``."""
    joints_cam, caps_cam, radius = person_in_camera(scene.camera, scene.geometry, scene.position)
    zbuf = render_background(scene.camera, scene.wall, scene.boxes, scene.cylinders)
    render_capsules(zbuf, caps_cam)
    uv, flags = joint_flags(zbuf, joints_cam, radius)
    image = sensor_image(zbuf, rng)
    lo, hi = uv.min(0), uv.max(0)
    return {
        "image": image,
        "keypoints": np.concatenate([uv, flags[:, None]], 1).astype(np.float32),
        "center": ((lo + hi) / 2).astype(np.float32),
        "scale": float((hi - lo).max()),
    }


def person_in_camera(camera: Camera, geometry: tuple[np.ndarray, np.ndarray, np.ndarray],
                     position: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A posed body (``geometry``: joints (15, 3), capsules (C, 8), joint radii (15,) of
    `cpm.data.synthetic.body.pose_body`) standing at ``position`` (x, z) on the floor, in ``camera``'s frame:
    joints (15, 3), capsules (C, 8) and the radii as they were."""
    joints, caps, radius = geometry
    offset = np.array([position[0], 0.0, position[1]])
    joints_cam = camera.to_camera(joints + offset)
    caps_cam = caps.copy()
    caps_cam[:, 0:3] = camera.to_camera(caps[:, 0:3] + offset)
    caps_cam[:, 3:6] = camera.to_camera(caps[:, 3:6] + offset)
    return joints_cam, caps_cam, radius


def render_background(camera: Camera, wall: float, boxes: Sequence[tuple[float, ...]],
                      cylinders: Sequence[tuple[float, ...]]) -> np.ndarray:
    """The z-buffer (212, 256) float32 of the floor, the back wall at z = ``wall`` and the furniture (``boxes``
    (x0, x1, height, z0, z1) and upright ``cylinders`` (x, z, radius, height), as `Scene` holds them); inf where a
    ray meets nothing."""
    # Floor (y = 0) and back wall (z = wall) by ray-plane intersection; a ray's z-depth
    # to a plane n.X = d is (d - n.C) / (n . R^T ray). The camera has no roll or yaw (its rotation's
    # first row is (-1, 0, 0)), so both depths are constant along an image row.
    _, (_, r11, r12), (_, r21, r22) = camera.rotation().tolist()
    with np.errstate(divide="ignore"):
        floor = -camera.height / (r11 * _YN + r21)
        wall_depth = wall / (r12 * _YN + r22)
    background = np.minimum(np.where(floor > 0, floor, np.inf), np.where(wall_depth > 0, wall_depth, np.inf))
    zbuf = np.empty((FRAME_HEIGHT, FRAME_WIDTH), np.float32)
    zbuf[:] = background
    for box in boxes:
        _render_box(zbuf, camera, box)
    upright = [(x, r, z, x, max(h - r, r), z, r, r) for x, z, r, h in cylinders]
    if upright:  # upright capsules: bins, stools, posts
        cyl = np.array(upright)
        cyl[:, 0:3], cyl[:, 3:6] = camera.to_camera(cyl[:, 0:3]), camera.to_camera(cyl[:, 3:6])
        render_capsules(zbuf, cyl)
    return zbuf


def joint_flags(zbuf: np.ndarray, joints_cam: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (15, 2) of camera-frame joints and their visibility flags (15,) in the finished z-buffer:
    2 visible, 1 occluded (a surface lies nearer than the joint by more than its radius + `VISIBILITY_MARGIN`),
    0 projected outside the frame."""
    uv = project_points(joints_cam)
    col, row = np.rint(uv).astype(int).T
    in_frame = (col >= 0) & (col < FRAME_WIDTH) & (row >= 0) & (row < FRAME_HEIGHT)
    surface = zbuf[np.clip(row, 0, FRAME_HEIGHT - 1), np.clip(col, 0, FRAME_WIDTH - 1)]
    visible = surface >= joints_cam[:, 2] - radius - VISIBILITY_MARGIN
    return uv, np.where(in_frame, np.where(visible, 2.0, 1.0), 0.0)


def sensor_image(zbuf: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The 8-bit depth frame (212, 256) of a z-buffer as the sensor sees it: with ``rng`` Kinect2-like noise and
    dropped pixels along depth edges (two draws of ``rng``, in this order), else the clean depth quantised; 0
    where the depth is out of range."""
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
    return image
