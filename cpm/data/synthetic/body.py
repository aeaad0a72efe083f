"""The articulated body of the synthetic frames: anthropometry, joint angles, the kinematic tree of capsules,
and the pose prior over activities (conventions in `cpm.data.synthetic.frames`). Its 15 joints are in ITOP order
(`cpm.skeleton.ITOP_15`); the rotations about the body frame's axes are shared with the fitted prior
(`cpm.data.synthetic.prior`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NUM_JOINTS = 15


def rotation_x(a: float) -> np.ndarray:
    """(3, 3) rotation by ``a`` radians about x: positive tips +y towards +z (a forward bend in the body frame)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(a: float) -> np.ndarray:
    """(3, 3) rotation by ``a`` radians about y (the vertical axis): positive turns +z towards +x."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(a: float) -> np.ndarray:
    """(3, 3) rotation by ``a`` radians about z: positive turns +x towards +y."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Body:
    """Anthropometry. ``lengths`` scales [spine, upper arm, forearm, thigh, shin]; ``girth`` all radii. ``cues``:
    the body tells its front from its back (`front_back_cues`: a nose, a chest in front, buttocks behind); without
    them its capsules are front-back symmetric but for the feet."""

    height: float = 1.75
    lengths: np.ndarray = field(default_factory=lambda: np.ones(5))
    girth: float = 1.0
    cues: bool = False


def front_back_cues(height: float, girth: float, *, chest: np.ndarray, hips: np.ndarray, head: np.ndarray,
                    forward: np.ndarray, hip_forward: np.ndarray, left: np.ndarray, hip_left: np.ndarray,
                    up: np.ndarray) -> list[tuple[float, ...]]:
    """Spheres that make a body's front unlike its back, as [a, b, r_a, r_b] capsules (a = b): a nose 2 cm in front
    of the face, the chest bulging ~4 cm in front of the chest capsule, the buttocks ~4 cm behind the pelvis (for a
    1.75 m body; ``girth`` = height * girth factor). ``chest``, ``hips`` and ``head`` are the centres of the chest,
    pelvis and head; ``forward`` / ``left`` the chest's unit axes, ``hip_forward`` / ``hip_left`` the pelvis's,
    ``up`` the spine's direction. Large enough to change the silhouette of a side view, and by 1-2 grey levels the
    depth of a frontal or back one."""
    H, g = height, girth
    nose = head + forward * 0.058 * H - up * 0.012 * H
    cues = [(*nose, *nose, 0.012 * H, 0.012 * H)]
    for side in (-1.0, 1.0):
        breast = chest + left * side * 0.045 * H + forward * 0.045 * H - up * 0.01 * H
        buttock = hips + hip_left * side * 0.042 * H - hip_forward * 0.035 * H - up * 0.03 * H
        cues += [(*breast, *breast, 0.045 * g, 0.045 * g), (*buttock, *buttock, 0.05 * g, 0.05 * g)]
    return cues


@dataclass
class Pose:
    """Joint angles in degrees. ``yaw`` 0 = facing the camera. Limb rows are [right, left]."""

    yaw: float = 0.0
    trunk: tuple[float, float, float] = (0.0, 0.0, 0.0)  # forward bend, side lean, twist
    head: tuple[float, float, float] = (0.0, 0.0, 0.0)  # nod, tilt, turn
    arms: np.ndarray = field(default_factory=lambda: np.zeros((2, 4)))  # flexion, abduction, rotation, elbow
    legs: np.ndarray = field(default_factory=lambda: np.zeros((2, 4)))  # flexion, abduction, rotation, knee


def pose_body(body: Body, pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward kinematics. Returns joints (15, 3) and capsules (K, 8) = [a, b, r_a, r_b] in a world
    frame centred on the person (pelvis above the origin, lowest surface on the floor), and each
    joint's body-part radius (15,) used by the visibility test."""
    H, g = body.height, body.height * body.girth
    spine, upper, fore, thigh, shin = body.lengths * H * np.array([0.29, 0.186, 0.146, 0.245, 0.245])
    bend, lean, twist = np.radians(pose.trunk)
    trunk = rotation_x(bend) @ rotation_z(lean) @ rotation_y(twist)  # upper body pivots about the pelvis
    nod, tilt, turn = np.radians(pose.head)
    head_rot = trunk @ rotation_x(nod) @ rotation_z(tilt) @ rotation_y(turn)

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
        # rot > 0 is internal rotation
        arm = trunk @ rotation_z(side * abd) @ rotation_x(-flex) @ rotation_y(-side * rot)
        joints[e] = joints[s] - arm[:, 1] * upper
        forearm = arm @ rotation_x(-elbow)  # elbow flexion brings the hand to the front of the upper arm
        joints[w] = joints[e] - forearm[:, 1] * fore
        flex, abd, rot, knee = legs[k]
        joints[h] = (side * 0.055 * H, -0.01 * H, 0.0)
        leg = rotation_z(side * abd) @ rotation_x(-flex) @ rotation_y(-side * rot)
        joints[kn] = joints[h] - leg[:, 1] * thigh
        shank = leg @ rotation_x(knee)  # knee flexion swings the shin backwards
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
    if body.cues:
        caps += front_back_cues(H, g, chest=trunk @ (0.0, 0.2 * H, 0.0), hips=np.zeros(3),
                                head=joints[0] + head_rot @ (0.0, -0.0025 * H, 0.0), forward=trunk[:, 2],
                                hip_forward=np.array([0.0, 0.0, 1.0]), left=trunk[:, 0],
                                hip_left=np.array([1.0, 0.0, 0.0]), up=trunk[:, 1])
    caps = np.array(caps)

    return _turn_and_stand(joints, caps, yaw=pose.yaw, girth=g)


def _turn_and_stand(joints: np.ndarray, caps: np.ndarray, *, yaw: float,
                    girth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame joints and capsules -> turned by ``yaw`` to face the camera, standing on the floor (y = 0);
    with each joint's radius (``girth`` = height * girth factor). Shared by `pose_body` and `pose_joints`."""
    turn = rotation_y(math.pi + math.radians(yaw))  # the body frame faces +z; the camera looks along +z
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
    if body.cues:  # the chest's and the pelvis's axes from the joints: forward = left x up
        up = unit(j[1] - pelvis)
        left, hip_left = unit(j[3] - j[2]), unit(j[10] - j[9])
        chest_forward, hip_forward = unit(np.cross(left, up)), unit(np.cross(hip_left, up))
        caps += front_back_cues(H, g, chest=(lerp(j[9], j[2], 0.75) + lerp(j[10], j[3], 0.75)) / 2, hips=pelvis,
                                head=j[0], forward=chest_forward, hip_forward=hip_forward, left=left,
                                hip_left=hip_left, up=up)
    return _turn_and_stand(j, np.array(caps), yaw=yaw, girth=g)


# Shares of frontal (|yaw| < 40), side (40-90) and back (90-270 degrees) views. Kinect-style captures face the
# sensor: in the 39,732 K2HPD test frames the shoulders appear in frontal left/right order in 99.98 % and
# foreshortened to under half the spine length (a side view) in 1.7 %. Mostly frontal, with a tail of side and back.
KINECT_VIEWS = (0.85, 0.12, 0.03)


def sample_pose(rng: np.random.Generator, views: tuple[float, float, float] = KINECT_VIEWS) -> Pose:
    """Joint angles from a mixture of activities; ranges stay within human joint limits. ``views``: the shares of
    frontal, side and back views the yaw is drawn from (the draws are the same for any shares)."""
    u = rng.uniform
    which = rng.random()
    if which < views[0]:
        yaw = u(-40, 40)
    elif which < views[0] + views[1]:
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
