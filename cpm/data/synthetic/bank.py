"""The ``bank`` pose source: real 2D poses (e.g. the K2HPD keypoints) lifted to 3D for the renderer.

A 2D pose says where each joint appears, not how far away it is. `lift` puts it into the renderer's body frame
(metres, pelvis at the origin, y up, the person's front at +z, their left at +x; the image's right is +x and the
camera looks along -z) on a skeleton of fixed bone lengths (``lengths``, fractions of the body height):

1. scale: a bone seen at its full length fixes metres per pixel, a foreshortened one only bounds it from above
   (``length / projected``). The scale is a low quantile (`SCALE_QUANTILE`) of those bounds over the bones, so
   that one noisy or oddly proportioned bone does not foreshorten all the others.
2. bones longer in the image than in 3D at that scale (annotation noise, people's proportions) are shortened in
   the image to their length, direction kept, and carry their children with them; every other bone gets the depth
   offset that restores its length, ``|dz| = sqrt(L^2 - l^2)``. Lifted bones thus keep their lengths exactly.
3. depth signs by a 3D prior, not at random: every combination of the torso's signs (pelvis turn, forward or
   backward lean, shoulder turn, head nod) and of each limb's two bones is scored by how far its joint angles go
   beyond human limits (`_limb_cost`, `_torso_cost`: trunk lean, twist, head nod, shoulder and hip extension,
   hip flexion, elbow and knee flexion, and the hinge's bending direction about the upper bone), and the least
   costly combination is kept. Where limits do not decide, a small preference does (limbs and lean forwards, no
   twist); the mirror turn of a symmetric torso, which a 2D pose cannot tell, follows a checksum of the pose.

`lift` is deterministic: the same 2D pose gives the same 3D pose, in proportion to ``height``. The pose keeps its
camera view: the renderer does not turn it (``needs_yaw = False``).

Photographs (the named sets of `cpm.data.synthetic.photo_poses`: sport poses lying, upside down, strongly
foreshortened) are lifted by `lift_photo`, which adds to `lift`:

4. the prior sees the body upright: the pose is turned in the image plane until its spine points up, lifted, and
   turned back (the turn leaves every depth as it was). The prior's limits hold in the body's own frame, so a
   handstand or a lying body is scored as the standing body it is about its hips, not as a trunk bent beyond them.
5. the arms keep clear of the torso: a combination that puts an elbow, a hand or the middle of a forearm inside
   the trunk (within `TORSO_CLEARANCE` of its plane, between the hips and the neck and the shoulders' width) pays
   `THROUGH_TORSO`, as much as a joint limit exceeded by ~18 degrees, for each such point.
6. the bones have the photographs' own proportions (`PHOTO_LENGTHS`), so that fewer of them are too long for the
   skeleton and shortened (step 2) out of the photograph's shape.

Files (a K2HPD .mat, a .npy) keep `lift` as it was: the frames of their poses do not change.
"""

from __future__ import annotations

import itertools
import math
import zlib
from pathlib import Path

import numpy as np

from cpm.data.synthetic.body import rotation_z
from cpm.errors import CPMError

# (parent, child) bones, walked in this order from the pelvis (-1, the hips' midpoint); ITOP_15 indices. The torso
# joint (8) is placed on the pelvis-neck line.
BONES = (
    (-1, 1), (1, 0), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    (-1, 9), (-1, 10), (9, 11), (10, 12), (11, 13), (12, 14),
)
SPINE, HEAD, SHOULDERS, HIPS = 0, 1, (2, 3), (8, 9)
ARMS = ((2, 4, 6, -1.0), (3, 5, 7, 1.0))  # (bone from the neck, upper arm, forearm, side: -1 right, +1 left)
LEGS = ((8, 10, 12, -1.0), (9, 11, 13, 1.0))  # (bone from the pelvis, thigh, shin, side)

# Bone lengths / body height of the renderer's own body (`cpm.data.synthetic.body.pose_body`).
RENDERER_LENGTHS = (0.30, 0.105, 0.116, 0.116, 0.186, 0.186, 0.146, 0.146, 0.055, 0.055, 0.245, 0.245, 0.245, 0.245)
# The K2HPD annotations' own proportions, `fit_lengths` of the 55,943 train poses (k2hpd_keypoints_train.mat):
# their neck sits higher and their hips lower than the renderer's joints, so the K2HPD spine is ~1.4 times the
# renderer's relative to the limbs; lifting K2HPD poses onto the renderer's proportions would foreshorten every
# limb by ~45 degrees to make up the difference.
K2HPD_LENGTHS = (0.366, 0.086, 0.125, 0.125, 0.151, 0.151, 0.173, 0.173, 0.047, 0.047, 0.236, 0.236, 0.207, 0.207)
# `fit_lengths` of the LSP training poses (lsp:train, person-centric; head and torso by the photo_poses table): the
# photographs' shins are longer and their forearms shorter than K2HPD's.
PHOTO_LENGTHS = (0.345, 0.078, 0.114, 0.114, 0.161, 0.161, 0.152, 0.152, 0.054, 0.054, 0.23, 0.23, 0.243, 0.243)
SCALE_QUANTILE = 0.2  # of the bones' metres-per-pixel bounds (step 1)
FIT_PERCENTILE = 90  # `fit_lengths`: a bone's length is this percentile of its projected length

# Joint-angle limits in degrees: beyond them a combination pays the squared excess in radians.
LEAN = (-30.0, 90.0)  # trunk bend about the hips: backwards, forwards
TWIST = 45.0  # shoulders against hips, either way
NOD = (-50.0, 70.0)  # head about the neck: backwards, forwards
EXTENSION = {"arm": 50.0, "leg": 30.0}  # upper bone behind the trunk's frontal plane
THIGH_RISE = 40.0  # thigh above the horizontal (hip flexion of 130 degrees)
HINGE = {"arm": (0.0, 150.0), "leg": (0.0, 155.0)}  # elbow, knee flexion
# Bending direction of the hinge about the upper bone, from its rest direction (the arm's front, the leg's back),
# positive towards the body's midline: humeral / hip rotation and carrying angle.
BEND = {"arm": (-45.0, 120.0), "leg": (-40.0, 40.0)}
PREFERENCE = 1e-3  # weight of the preferences that decide between combinations within the limits
# `lift_photo`: the trunk's half depth in heights (the chest capsule's radius and a forearm's), the cost of each
# point of an arm inside it, and the shortest spine (a fraction of its length) whose image direction turns the pose
TORSO_CLEARANCE = 0.09
THROUGH_TORSO = 0.1
UPRIGHT_SPINE = 0.3


def projected_lengths(points: np.ndarray) -> np.ndarray:
    """(..., 15, 2+) keypoints -> (..., 14) image lengths of `BONES`."""
    points = np.asarray(points, dtype=np.float64)[..., :2]
    pelvis = (points[..., 9, :] + points[..., 10, :]) / 2
    return np.stack([np.linalg.norm(points[..., c, :] - (pelvis if p < 0 else points[..., p, :]), axis=-1)
                     for p, c in BONES], axis=-1)


def fit_lengths(keypoints: np.ndarray, *, percentile: float = FIT_PERCENTILE) -> tuple[float, ...]:
    """Bone lengths / height of a bank of 2D poses (N, 15, 2+): each pose's size is the median over its bones of
    projected length / the bone's typical share, a bone's length is the ``percentile`` of its projected length in
    those units (its nearly unforeshortened views), left and right are averaged, and the lengths are scaled so
    that head-neck + neck-pelvis + thigh + shin = 0.895 (as `cpm.data.synthetic.bvh.to_body_frame`)."""
    lengths = projected_lengths(keypoints)
    lengths = lengths[(lengths > 0).all(axis=1)]
    if not len(lengths):
        raise CPMError("fit_lengths: no pose with all its bones drawn")
    share = np.median(lengths / lengths.sum(axis=1, keepdims=True), axis=0)
    size = np.median(lengths / share, axis=1, keepdims=True)
    fitted = np.percentile(lengths / size, percentile, axis=0)
    for right, left in ((2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)):
        fitted[[right, left]] = fitted[[right, left]].mean()
    fitted *= 0.895 / (fitted[SPINE] + fitted[HEAD] + fitted[10] + fitted[12])
    return tuple(round(float(v), 3) for v in fitted)


def lift(points: np.ndarray, *, height: float, lengths: tuple[float, ...] = K2HPD_LENGTHS,
         clearance: float = 0.0) -> np.ndarray:
    """2D ITOP_15 keypoints (15, 2+) in image pixels (y down, the person's left on the image right for a person
    facing the camera) -> (15, 3) body-frame joints in metres whose `BONES` are ``lengths`` x ``height`` long.
    ``clearance`` > 0: the arms keep that far (in heights) out of the trunk (step 5, `lift_photo`)."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    full = np.asarray(lengths, dtype=np.float64) * height
    flat = (points - (points[9] + points[10]) / 2) * (1.0, -1.0)  # pixels, pelvis at 0, y up
    vectors = np.stack([flat[c] - (0.0 if p < 0 else flat[p]) for p, c in BONES])  # (14, 2)
    seen = np.linalg.norm(vectors, axis=1)
    drawn = seen > 0
    scale = _scale(full, seen)
    planar = vectors * scale
    planar_length = seen * scale
    too_long = planar_length > full
    planar[too_long] *= (full[too_long] / planar_length[too_long])[:, None]
    depth = np.sqrt(np.maximum(full**2 - (planar**2).sum(axis=1), 0.0))
    signs = _choose_signs(planar, depth, tiebreak=zlib.crc32(np.round(points, 3).tobytes()) & 1,
                          clearance=clearance * height)
    joints = np.zeros((15, 3))
    for (parent, child), step_xy, dz, sign in zip(BONES, planar, depth, signs, strict=True):
        start = np.zeros(3) if parent < 0 else joints[parent]
        joints[child] = start + (step_xy[0], step_xy[1], sign * dz)
    spine = flat[1]  # the torso joint: its place along the annotated spine, on the lifted one
    along = float(np.clip(flat[8] @ spine / max(float(spine @ spine), 1e-12), 0.0, 1.0)) if drawn[SPINE] else 0.45
    joints[8] = along * joints[1]
    return joints


def _scale(full: np.ndarray, seen: np.ndarray) -> float:
    """Step 1: metres per pixel, the `SCALE_QUANTILE` of the drawn bones' bounds (0 with no bone drawn)."""
    drawn = seen > 0
    return float(np.quantile(full[drawn] / seen[drawn], SCALE_QUANTILE)) if drawn.any() else 0.0


def lift_photo(points: np.ndarray, *, height: float, lengths: tuple[float, ...] = PHOTO_LENGTHS) -> np.ndarray:
    """`lift` of a photograph's pose (steps 4-6 of the module docstring): turned upright in the image plane about
    the pelvis for the prior (where its spine is drawn at `UPRIGHT_SPINE` of its length or more), lifted with the
    arms clear of the trunk, and turned back, so that its image is the photograph's."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    pelvis = (points[9] + points[10]) / 2
    flat = (points - pelvis) * (1.0, -1.0)  # pixels, y up
    full = np.asarray(lengths, dtype=np.float64)
    spine = flat[1]
    seen = projected_lengths(points)
    angle = 0.0
    if np.linalg.norm(spine) * _scale(full, seen) >= UPRIGHT_SPINE * full[SPINE]:
        angle = math.atan2(-spine[0], spine[1])  # the spine's turn from straight up, anticlockwise
    upright = flat @ rotation_z(-angle)[:2, :2].T  # (15, 2) the spine straight up
    joints = lift(upright * (1.0, -1.0) + pelvis, height=height, lengths=lengths, clearance=TORSO_CLEARANCE)
    return joints @ rotation_z(angle).T


def _choose_signs(planar: np.ndarray, depth: np.ndarray, *, tiebreak: int, clearance: float = 0.0) -> np.ndarray:
    """Depth sign (+1: towards the camera) of each bone: the least costly combination of the torso's four signs
    and, for each of them, each limb's best pair of signs (the legs hang from the pelvis, the arms from the
    shoulders, so each limb is scored once per frame of its trunk part). ``clearance`` > 0: the arms also pay
    `THROUGH_TORSO` for each point inside the trunk (`_through_torso`)."""
    bones = [(float(x), float(y), float(z)) for (x, y), z in zip(planar, depth, strict=True)]

    def bone(index: int, sign: float) -> Vector:
        x, y, z = bones[index]
        return x, y, sign * z

    up = (0.0, 1.0, 0.0)
    pelvises = {turn: _frame(bone(HIPS[1], turn), up) for turn in (1.0, -1.0)}  # +1: the left hip nearer
    legs = {turn: [_best_limb(bone, limb, pelvises[turn], "leg") for limb in LEGS] for turn in pelvises}
    chests, arms = {}, {}
    for lean in (1.0, -1.0):
        for shoulders in (1.0, -1.0):
            across = _sub(bone(SHOULDERS[1], shoulders), bone(SHOULDERS[0], -shoulders))
            chests[lean, shoulders] = chest = _frame(across, bone(SPINE, lean))
            trunks = [None, None]
            if clearance > 0:  # the trunk in the chest frame: length, half width, half depth, each shoulder's place
                neck = _local(chest, bone(SPINE, lean))
                roots = [tuple(a + b for a, b in zip(neck, _local(chest, bone(s, sign)), strict=True))
                         for s, sign in ((SHOULDERS[0], -shoulders), (SHOULDERS[1], shoulders))]
                half_width = max(abs(roots[0][0]), abs(roots[1][0]))
                trunks = [(neck[1], half_width, clearance, root) for root in roots]
            arms[lean, shoulders] = [_best_limb(bone, limb, chest, "arm", trunk=trunk)
                                     for limb, trunk in zip(ARMS, trunks, strict=True)]
    preferred_turn = 1.0 if tiebreak else -1.0
    best_cost, best = math.inf, None
    for turn, lean, shoulders, nod in itertools.product((1.0, -1.0), repeat=4):
        limbs = arms[lean, shoulders] + legs[turn]
        cost = _torso_cost(pelvises[turn], chests[lean, shoulders], bone(SPINE, lean), bone(HEAD, nod))
        cost += sum(c for c, _ in limbs) + PREFERENCE * 0.01 * (turn != preferred_turn)
        if cost < best_cost:
            signs = np.ones(len(BONES))
            signs[SPINE], signs[HEAD] = lean, nod
            signs[SHOULDERS[0]], signs[SHOULDERS[1]] = -shoulders, shoulders
            signs[HIPS[0]], signs[HIPS[1]] = -turn, turn
            for (_, upper, lower, _), (_, pair) in zip(ARMS + LEGS, limbs, strict=True):
                signs[upper], signs[lower] = pair
            best_cost, best = cost, signs
    return best


# 3-vectors as tuples of floats: the sign search scores ~50 limbs per pose, where numpy's per-call cost dominates.
Vector = tuple[float, float, float]


def _dot(a: Vector, b: Vector) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vector, b: Vector) -> Vector:
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def _sub(a: Vector, b: Vector) -> Vector:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def _scaled(a: Vector, k: float) -> Vector:
    return a[0] * k, a[1] * k, a[2] * k


def _unit(a: Vector) -> Vector:
    return _scaled(a, 1.0 / max(math.sqrt(_dot(a, a)), 1e-12))


def _frame(across: Vector, up: Vector) -> tuple[Vector, Vector, Vector]:
    """Axes x (the person's right to left), y (up), z (front) of a body part: ``across`` orthogonalised to ``up``."""
    y = _unit(up)
    x = _unit(_sub(across, _scaled(y, _dot(across, y))))
    return x, y, _cross(x, y)


def _local(frame: tuple[Vector, Vector, Vector], v: Vector) -> Vector:
    return _dot(frame[0], v), _dot(frame[1], v), _dot(frame[2], v)


def _excess(value: float, low: float, high: float) -> float:
    """Squared excess in radians of an angle in degrees beyond [low, high]."""
    return math.radians(max(low - value, value - high, 0.0)) ** 2


def _angle(y: float, x: float) -> float:
    return math.degrees(math.atan2(y, x))


def _torso_cost(pelvis, chest, spine: Vector, head: Vector) -> float:
    """Trunk lean about the hips, shoulders' twist against the hips and head nod beyond their limits, and a
    preference for leaning and nodding forwards without a twist."""
    s, h = _local(pelvis, spine), _local(chest, head)
    lean, nod = _angle(s[2], s[1]), _angle(h[2], h[1])
    twist = _angle(-_dot(pelvis[2], chest[0]), _dot(pelvis[0], chest[0]))
    cost = _excess(lean, *LEAN) + _excess(twist, -TWIST, TWIST) + _excess(nod, *NOD)
    return cost + PREFERENCE * (max(-lean, 0.0) + max(-nod, 0.0) + abs(twist)) / 90.0


def _best_limb(bone, limb: tuple, frame, kind: str, trunk: tuple | None = None) -> tuple[float, tuple[float, float]]:
    """(cost, (upper sign, lower sign)) of the best of a limb's four depth-sign pairs in the frame of its trunk
    part; with ``trunk`` (length, half width, half depth, the limb's root), also `_through_torso`."""
    _, upper, lower, side = limb
    options = []
    for a, b in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
        u, v = _local(frame, bone(upper, a)), _local(frame, bone(lower, b))
        cost = _limb_cost(u, v, side, kind)
        if trunk is not None:
            cost += _through_torso(u, v, *trunk)
        options.append((cost, (a, b)))
    return min(options, key=lambda option: option[0])


def _through_torso(upper: Vector, lower: Vector, length: float, half_width: float, half_depth: float,
                   root: Vector) -> float:
    """`THROUGH_TORSO` for each of the elbow, the middle of the forearm and the hand (``root`` + bones, in the chest
    frame with the pelvis at 0) inside the trunk: up to ``length`` above the pelvis, within ``half_width`` of the
    spine and ``half_depth`` of the trunk's plane, in proportion to how deep inside."""
    elbow = tuple(r + u for r, u in zip(root, upper, strict=True))
    cost = 0.0
    for reach in (0.0, 0.5, 1.0):
        x, y, z = (e + reach * v for e, v in zip(elbow, lower, strict=True))
        if 0.0 < y < length and abs(x) < half_width and abs(z) < half_depth:
            cost += THROUGH_TORSO * (1.0 - abs(z) / half_depth)
    return cost


def _limb_cost(upper: Vector, lower: Vector, side: float, kind: str) -> float:
    """Cost of a limb (upper and lower bone in its trunk part's frame, x right-to-left, y up, z front): extension
    behind the trunk, hip flexion, hinge flexion, and the hinge's bending direction about the upper bone, measured
    from the rest direction (arm: front, leg: back) carried along by the shortest swing from hanging straight down.
    The bending direction counts as much as the hinge is bent, and fades out where the swing is undefined (a limb
    straight up)."""
    u, v = _unit(upper), _unit(lower)
    behind = math.degrees(math.asin(min(max(-u[2], -1.0), 1.0)))
    cost = _excess(behind, -90.0, EXTENSION[kind])
    if kind == "leg":
        cost += _excess(math.degrees(math.asin(min(max(u[1], -1.0), 1.0))), -90.0, THIGH_RISE)
    along = _dot(u, v)
    cost += _excess(math.degrees(math.acos(min(max(along, -1.0), 1.0))), *HINGE[kind])
    rest = (0.0, -1.0, 0.0)
    cross, dot = _cross(rest, u), _dot(rest, u)
    if dot > -1.0 + 1e-9:
        def swing(w: Vector) -> Vector:  # the shortest rotation taking `rest` onto u
            turned = _cross(cross, w)
            twice = _cross(cross, turned)
            return tuple(w[i] + turned[i] + twice[i] / (1.0 + dot) for i in range(3))

        towards = swing((0.0, 0.0, 1.0 if kind == "arm" else -1.0))
        medial = swing((-side, 0.0, 0.0))
        bend = _sub(v, _scaled(u, along))  # the lower bone's direction across the upper one: |bend| = sin(flexion)
        weight = math.sqrt(_dot(bend, bend)) * min(1.0, (1.0 + dot) / 0.5)
        cost += weight * _excess(_angle(_dot(bend, medial), _dot(bend, towards)), *BEND[kind])
    preference = max(-u[2], 0.0) + max(-v[2], 0.0) if kind == "arm" else max(-u[2], 0.0)
    return cost + PREFERENCE * preference


def prior_cost(joints: np.ndarray) -> float:
    """The 3D prior's cost of a body-frame pose (15, 3): what `lift` minimises over depth signs (without its
    tie-break); 0 within every joint-angle limit and preference-free, ~0.01 for a limit exceeded by 6 degrees."""
    j = [tuple(float(v) for v in joint) for joint in np.asarray(joints, dtype=np.float64)]
    pelvis_centre = _scaled(tuple(a + b for a, b in zip(j[9], j[10], strict=True)), 0.5)
    spine = _sub(j[1], pelvis_centre)
    pelvis = _frame(_sub(j[10], j[9]), (0.0, 1.0, 0.0))
    chest = _frame(_sub(j[3], j[2]), spine)
    cost = _torso_cost(pelvis, chest, spine, _sub(j[0], j[1]))
    for frame, kind, chains in ((chest, "arm", ARMS), (pelvis, "leg", LEGS)):
        for first, upper, lower, side in chains:
            root, middle, end = BONES[first][1], BONES[upper][1], BONES[lower][1]
            cost += _limb_cost(_local(frame, _sub(j[middle], j[root])), _local(frame, _sub(j[end], j[middle])),
                               side, kind)
    return cost


class BankPoses:
    """``source(rng, height)``: a random pose of a 2D keypoint bank, lifted with `lift` (each pose once, then
    scaled). ``files``: a K2HPD keypoint .mat (N x 19 x 2), a .npy of (N, 15, 2+) ITOP_15 keypoints, a named set
    ``name:split`` or several comma-separated entries (`cpm.data.synthetic.photo_poses`; ``key`` is the config key
    its errors name). Several entries share the draws equally, each drawing its poses uniformly; ``rows`` (N,) is
    each pose's row in its file and ``entry_of`` (N,) its entry. Files and k2hpd are lifted by `lift` on
    ``lengths``, the photo sets (lsp, lspet, mpii) by `lift_photo`."""

    needs_yaw = False

    def __init__(self, files: str | Path, *, lengths: tuple[float, ...] = K2HPD_LENGTHS,
                 key: str = "data.bank_files") -> None:
        from cpm.data.synthetic.photo_poses import bank_entries, read_named

        entries = bank_entries(files, key)
        parts = [read_named(entry) if entry.name not in ("", "k2hpd") else _read_file(entry.path)
                 for entry in entries]
        self.keypoints = parts[0][0] if len(parts) == 1 else np.concatenate([p for p, _ in parts])  # (N, 15, 2)
        self.rows = np.concatenate([rows for _, rows in parts])
        self.entry_of = np.repeat(np.arange(len(parts)), [len(rows) for _, rows in parts])
        self.entries = tuple(f"{e.name}:{e.split}" if e.name else str(e.path) for e in entries)
        self._photo = [entry.name not in ("", "k2hpd") for entry in entries]  # lifted by `lift_photo`
        self._bounds = np.cumsum([0] + [len(rows) for _, rows in parts])
        self.files = entries[0].path if len(entries) == 1 and not entries[0].name else str(files)
        self.lengths = tuple(lengths)
        self._lifted: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.keypoints)

    def draw(self, rng: np.random.Generator) -> int:
        """The bank index of a random pose: one entry's poses uniformly, several entries in equal shares."""
        if len(self._bounds) == 2:
            return int(rng.integers(len(self.keypoints)))
        entry = int(rng.integers(len(self._bounds) - 1))
        return int(self._bounds[entry] + rng.integers(self._bounds[entry + 1] - self._bounds[entry]))

    def pose(self, index: int, height: float) -> np.ndarray:
        """Pose ``index`` lifted for a body of ``height`` metres."""
        if index not in self._lifted:
            if self._photo[self.entry_of[index]]:
                self._lifted[index] = lift_photo(self.keypoints[index], height=1.0)
            else:
                self._lifted[index] = lift(self.keypoints[index], height=1.0, lengths=self.lengths)
        return self._lifted[index] * height

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        return self.pose(self.draw(rng), height)


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bank file -> its (N, 15, 2) keypoints and rows 0..N-1."""
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
    return np.asarray(keypoints[..., :2], dtype=np.float64), np.arange(len(keypoints))
