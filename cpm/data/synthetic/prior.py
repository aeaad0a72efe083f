"""The fitted pose prior (``data.pose_prior = "fitted"``): the procedural sampler's joint angles drawn from
distributions fitted to real poses, instead of the hand-set activity ranges of `cpm.data.synthetic.body.sample_pose`.

Angles. A pose is the view yaw and 21 joint angles in degrees (`ANGLES`), in the renderer's body frame (metres,
pelvis at the origin, y up, the person's front at +z, their left at +x; `forward`): trunk bend, lean and twist
about the pelvis, head nod and tilt about the neck, and for each arm and leg (right, left) flexion, abduction and
internal rotation of the upper bone and the elbow or knee hinge, with `cpm.data.synthetic.body.pose_body`'s
conventions. `inverse` reads them off 15 joints (`forward(inverse(j))` has the bone directions of ``j``).

The fit (`fit_prior`). Real poses, each read by `inverse`: the K2HPD train split lifted to 3D
(`cpm.data.synthetic.bank.lift`, whose pelvis turn is the yaw of the camera view) and the frames of the training
subjects of the CMU clips (whose yaw is arbitrary, so the yaw is fitted to K2HPD alone). Each angle's distribution
is its weighted quantiles at `LEVELS` (mocap frames weighted to ``mocap_share`` of the total); the angles are tied
together by a Gaussian copula, the correlation of their normal scores, so that poses keep what goes together
(a squat's hips and knees, arms raised as a pair, walking's opposite legs). The bones are the K2HPD annotations'
own (`cpm.data.synthetic.bank.K2HPD_LENGTHS`), the shoulders drop from the neck by the median angle and the torso
joint sits at the median fraction of the spine of the K2HPD poses: with the renderer's own proportions even the
exact angles of the K2HPD poses stay far from them in `cpm data realism`.

The fitted table is `cpm.data.synthetic.fitted_prior.TABLE`, written by
``cpm data fit-prior --k2hpd ../shared/data/k2hpd/k2hpd_keypoints_train.mat --bvh ../shared/data/mocap/cmu
--out cpm/data/synthetic/fitted_prior.py``. `FittedPrior` is a pose source (as the bvh and bank ones): it draws a
pose's angles from (rng) and returns its joints.
"""

from __future__ import annotations

import math
import pprint
from pathlib import Path
from statistics import NormalDist

import numpy as np

from cpm.data.synthetic.bank import K2HPD_LENGTHS
from cpm.data.synthetic.body import rotation_x, rotation_y, rotation_z
from cpm.errors import CPMError

LIMB_ANGLES = ("flexion", "abduction", "rotation")
ANGLES = (
    "trunk_bend", "trunk_lean", "trunk_twist", "head_nod", "head_tilt",
    *(f"{side}_arm_{name}" for side in ("right", "left") for name in (*LIMB_ANGLES, "elbow")),
    *(f"{side}_leg_{name}" for side in ("right", "left") for name in (*LIMB_ANGLES, "knee")),
)
ARM, LEG = 5, 13  # index of the right arm's and the right leg's first angle in ANGLES; the left limb follows (+4)
LEVELS = (0.005, 0.025, *(round(0.05 * k, 2) for k in range(1, 20)), 0.975, 0.995)  # quantile levels of the table
# A limb's two solutions (flexion f, abduction a) and (180 - f, a + 180) point the upper bone the same way; the one
# within these ranges (degrees: flexion, abduction, rotation) is kept. Rotation counts where the hinge is bent.
BRANCH_RANGES = {"arm": ((-60.0, 180.0), (-40.0, 180.0), (-90.0, 90.0)),
                 "leg": ((-40.0, 140.0), (-30.0, 90.0), (-60.0, 60.0))}
DEFAULT_SHARE = 0.25  # mocap frames' share of the fit (weights), the K2HPD poses the rest


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def forward(angles: np.ndarray, yaw: float = 0.0, *, lengths: tuple[float, ...] = K2HPD_LENGTHS,
            shoulder_drop: float = 0.0, torso_along: float = 0.45) -> np.ndarray:
    """21 joint angles (`ANGLES`, degrees) and the view yaw -> (15, 3) body-frame joints of a body of height 1
    whose bones (`cpm.data.synthetic.bank.BONES`) are ``lengths`` long; the shoulders hang from the neck
    ``shoulder_drop`` degrees below the trunk's across axis, the torso joint is ``torso_along`` of the spine."""
    a = np.radians(np.asarray(angles, dtype=np.float64))
    spine, head, shoulder, upper, fore, hip, thigh, shin = (lengths[i] for i in (0, 1, 2, 4, 6, 8, 10, 12))
    trunk = rotation_x(a[0]) @ rotation_z(a[1]) @ rotation_y(a[2])
    joints = np.zeros((15, 3))
    joints[9], joints[10] = (-hip, 0.0, 0.0), (hip, 0.0, 0.0)
    joints[1] = trunk @ (0.0, spine, 0.0)
    joints[8] = torso_along * joints[1]
    joints[0] = joints[1] + trunk @ rotation_x(a[3]) @ rotation_z(a[4]) @ (0.0, head, 0.0)
    drop = math.radians(shoulder_drop)
    for k, side in enumerate((-1.0, 1.0)):
        s, e, w, h, kn, an = (2, 4, 6, 9, 11, 13) if side < 0 else (3, 5, 7, 10, 12, 14)
        flex, abd, rot, elbow = a[ARM + 4 * k:ARM + 4 * k + 4]
        joints[s] = joints[1] + trunk @ (side * shoulder * math.cos(drop), -shoulder * math.sin(drop), 0.0)
        arm = trunk @ rotation_z(side * abd) @ rotation_x(-flex) @ rotation_y(-side * rot)
        joints[e] = joints[s] - arm[:, 1] * upper
        joints[w] = joints[e] - (arm @ rotation_x(-elbow))[:, 1] * fore
        flex, abd, rot, knee = a[LEG + 4 * k:LEG + 4 * k + 4]
        leg = rotation_z(side * abd) @ rotation_x(-flex) @ rotation_y(-side * rot)
        joints[kn] = joints[h] - leg[:, 1] * thigh
        joints[an] = joints[kn] - (leg @ rotation_x(knee))[:, 1] * shin
    return joints @ rotation_y(math.radians(yaw)).T


def inverse(joints: np.ndarray) -> tuple[np.ndarray, float]:
    """(15, 3) body-frame joints -> (21 joint angles of `ANGLES`, yaw), degrees: the yaw turns the hips' axis onto
    +x, the trunk's bend and lean point it along the pelvis-neck line and its twist along the shoulders, the head's
    angles point the neck-head line, and each limb's angles its two bones (`_limb`)."""
    j = np.asarray(joints, dtype=np.float64)
    across = j[10] - j[9]
    yaw = math.degrees(math.atan2(-across[2], across[0]))
    j = (j - (j[9] + j[10]) / 2) @ rotation_y(math.radians(yaw))  # the rows turned by the inverse of the yaw
    up = _unit(j[1])
    lean = math.degrees(math.asin(min(max(-up[0], -1.0), 1.0)))
    bend = math.degrees(math.atan2(up[2], up[1]))
    upright = rotation_x(math.radians(bend)) @ rotation_z(math.radians(lean))
    shoulders = upright.T @ (j[3] - j[2])
    twist = math.degrees(math.atan2(-shoulders[2], shoulders[0]))
    trunk = upright @ rotation_y(math.radians(twist))
    head = trunk.T @ _unit(j[0] - j[1])
    tilt = math.degrees(math.asin(min(max(-head[0], -1.0), 1.0)))
    nod = math.degrees(math.atan2(head[2], head[1]))
    angles = [bend, lean, twist, nod, tilt]
    for s, e, w, side in ((2, 4, 6, -1.0), (3, 5, 7, 1.0)):
        angles += _limb(trunk.T @ _unit(j[e] - j[s]), trunk.T @ _unit(j[w] - j[e]), side, "arm")
    for h, k, a, side in ((9, 11, 13, -1.0), (10, 12, 14, 1.0)):
        angles += _limb(_unit(j[k] - j[h]), _unit(j[a] - j[k]), side, "leg")
    return np.array(angles), yaw


def _limb(upper: np.ndarray, lower: np.ndarray, side: float, kind: str) -> list[float]:
    """[flexion, abduction, rotation, hinge] of a limb whose bones point along ``upper`` and ``lower`` (unit
    vectors in its trunk part's frame): of the two solutions for the upper bone, the one within `BRANCH_RANGES`
    (the smaller angles where both are)."""
    flexion = math.degrees(math.asin(min(max(upper[2], -1.0), 1.0)))
    turn = math.degrees(math.atan2(upper[0], -upper[1]))  # side x abduction
    best = None
    for f, t in ((flexion, turn), (180.0 - flexion, _wrap(turn + 180.0))):
        rest = rotation_z(math.radians(t)) @ rotation_x(-math.radians(f))
        w = rest.T @ lower  # the lower bone in the upper bone's frame before rotation
        hinge = math.degrees(math.acos(min(max(-w[1], -1.0), 1.0)))
        theta = math.atan2(w[0], w[2]) if kind == "arm" else math.atan2(-w[0], -w[2])  # elbow forwards, knee back
        rotation = _wrap(-side * math.degrees(theta))
        values = (f, side * t, rotation)
        ranges = BRANCH_RANGES[kind]
        excess = sum(max(lo - v, v - hi, 0.0) for v, (lo, hi) in zip(values[:2], ranges[:2], strict=True))
        if hinge > 10.0:
            excess += max(ranges[2][0] - rotation, rotation - ranges[2][1], 0.0)
        key = (excess, abs(f) + abs(side * t))
        if best is None or key < best[0]:
            best = (key, [f, side * t, rotation, hinge])
    return best[1]


def weighted_cdf(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values, sorted; the weighted CDF at their mid-points): equal values share their mass."""
    distinct, group = np.unique(values, return_inverse=True)
    mass = np.bincount(group, weights=weights) / weights.sum()
    return distinct, np.cumsum(mass) - 0.5 * mass


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels=LEVELS) -> np.ndarray:
    """Quantiles of ``values`` (N,) at ``levels`` with sample ``weights``: the inverse of `weighted_cdf`, linear
    between values."""
    distinct, cdf = weighted_cdf(values, weights)
    return np.interp(levels, cdf, distinct)


def normal_scores(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each value's standard normal quantile of `weighted_cdf` (the copula's margin made normal; ties share
    one score)."""
    distinct, cdf = weighted_cdf(values, weights)
    inverse_cdf = np.vectorize(NormalDist().inv_cdf)
    scores = inverse_cdf(np.clip(cdf, 1e-6, 1 - 1e-6))
    return scores[np.searchsorted(distinct, values)]


def fit_table(k2hpd: np.ndarray, k2hpd_yaw: np.ndarray, mocap: np.ndarray, *, mocap_share: float = DEFAULT_SHARE,
              shoulder_drop: float, torso_along: float) -> dict:
    """The prior's table from the angles of the real poses: ``k2hpd`` (N, 21) with their yaws (N,), ``mocap``
    (M, 21) weighted to ``mocap_share`` of the total: {"angles", "levels", "quantiles" (21 x levels), "yaw"
    (levels), "correlation" (21 x 21), "lengths", "shoulder_drop", "torso_along", "mocap_share", "poses"}."""
    if not len(k2hpd) or (mocap_share > 0 and not len(mocap)) or not 0 <= mocap_share < 1:
        raise CPMError("fit_prior: needs K2HPD poses, mocap frames for mocap_share > 0, and 0 <= mocap_share < 1")
    if mocap_share > 0:
        rows = np.concatenate([k2hpd, mocap])
        weights = np.concatenate([np.full(len(k2hpd), (1 - mocap_share) / len(k2hpd)),
                                  np.full(len(mocap), mocap_share / len(mocap))])
    else:
        rows, weights, mocap = k2hpd, np.full(len(k2hpd), 1.0 / len(k2hpd)), mocap[:0]
    scores = np.stack([normal_scores(rows[:, k], weights) for k in range(rows.shape[1])], axis=1)
    mean = weights @ scores
    centred = scores - mean
    covariance = (centred * weights[:, None]).T @ centred
    spread = np.sqrt(np.diag(covariance))
    correlation = covariance / np.outer(spread, spread)
    return {
        "angles": list(ANGLES), "levels": list(LEVELS),
        "quantiles": [[round(float(q), 2) for q in weighted_quantiles(rows[:, k], weights)]
                      for k in range(rows.shape[1])],
        "yaw": [round(float(q), 2) for q in weighted_quantiles(k2hpd_yaw, np.ones(len(k2hpd_yaw)))],
        "correlation": [[round(float(c), 3) for c in row] for row in correlation],
        "lengths": list(K2HPD_LENGTHS), "shoulder_drop": round(shoulder_drop, 2), "torso_along": round(torso_along, 3),
        "mocap_share": mocap_share, "poses": {"k2hpd": len(k2hpd), "mocap": len(mocap)},
    }


def real_angles(k2hpd: str | Path, bvh: str | Path | None, *, step: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The angles of the real poses a prior is fitted to: every ``step``-th K2HPD pose of ``k2hpd`` lifted
    (`cpm.data.synthetic.bank.BankPoses`), and the frames of the training subjects' clips of ``bvh`` (None: no
    mocap). Returns (K2HPD angles (N, 21), their yaws (N,), mocap angles (M, 21), shoulder drop in degrees,
    torso fraction of the spine), the last two the medians of the K2HPD poses."""
    from cpm.data.synthetic.bank import BankPoses
    from cpm.data.synthetic.bvh import BVHPoses

    bank = BankPoses(k2hpd)
    angles, yaws, drops, alongs = [], [], [], []
    for index in range(0, len(bank), step):
        joints = bank.pose(index, 1.0)
        values, yaw = inverse(joints)
        angles.append(values)
        yaws.append(yaw)
        centred = (joints - (joints[9] + joints[10]) / 2) @ rotation_y(math.radians(yaw))
        bend, lean, twist = (math.radians(v) for v in values[:3])
        trunk = rotation_x(bend) @ rotation_z(lean) @ rotation_y(twist)
        for s, side in ((2, -1.0), (3, 1.0)):
            bone = trunk.T @ (centred[s] - centred[1])
            drops.append(math.degrees(math.atan2(-bone[1], side * bone[0])))
        spine = centred[1]
        alongs.append(float(centred[8] @ spine / max(float(spine @ spine), 1e-12)))
    mocap = []
    if bvh is not None:
        frames = BVHPoses(bvh, subjects="train")
        mocap = [inverse(frames.pose(index, 1.0))[0] for index in range(len(frames))]
    return (np.array(angles), np.array(yaws), np.array(mocap).reshape(-1, len(ANGLES)), float(np.median(drops)),
            float(np.median(alongs)))


def fit_prior(k2hpd: str | Path, bvh: str | Path | None, *, mocap_share: float = DEFAULT_SHARE,
              step: int = 1) -> dict:
    """`fit_table` of `real_angles`: the table of `cpm.data.synthetic.fitted_prior`."""
    angles, yaws, mocap, drop, along = real_angles(k2hpd, bvh, step=step)
    return fit_table(angles, yaws, mocap, mocap_share=mocap_share if bvh is not None else 0.0,
                     shoulder_drop=drop, torso_along=along)


def write_table(table: dict, path: str | Path, *, command: str) -> None:
    """Write ``table`` as the Python module `cpm.data.synthetic.fitted_prior` (``TABLE = {...}``), saying the
    ``command`` that fitted it."""
    program, *options = command.split(" --")
    lines = [program]
    for option in options:  # the command wrapped between its options
        if len(lines[-1]) + len(option) + 3 > 104:
            lines.append(f"--{option}")
        else:
            lines[-1] += f" --{option}"
    wrapped = "\n        ".join(lines)
    text = (f'"""The fitted pose prior\'s table (`cpm.data.synthetic.prior`), written by\n\n    {wrapped}\n"""\n\n'
            f"TABLE = {pprint.pformat(table, width=116, compact=True, sort_dicts=False)}\n")
    Path(path).write_text(text, encoding="utf-8")


class FittedPrior:
    """A pose source of the fitted prior: ``source(rng, height)`` draws a view yaw and 21 joint angles from
    ``table`` (default: `cpm.data.synthetic.fitted_prior.TABLE`), 22 draws of ``rng``, and returns `forward`'s
    joints for a body of ``height`` metres; the yaw is in the joints (``needs_yaw = False``)."""

    needs_yaw = False

    def __init__(self, table: dict | None = None) -> None:
        if table is None:
            from cpm.data.synthetic.fitted_prior import TABLE as table
        self.table = table
        self.levels = np.asarray(table["levels"], dtype=np.float64)
        self.quantiles = np.asarray(table["quantiles"], dtype=np.float64)
        self.yaw = np.asarray(table["yaw"], dtype=np.float64)
        correlation = np.asarray(table["correlation"], dtype=np.float64)
        self.cholesky = np.linalg.cholesky(correlation + 1e-9 * np.eye(len(correlation)))
        self.shape = {"lengths": tuple(table["lengths"]), "shoulder_drop": table["shoulder_drop"],
                      "torso_along": table["torso_along"]}

    def sample_angles(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """(21 angles, yaw) in degrees: normal scores correlated by the copula, each mapped through its angle's
        quantiles; the yaw on its own."""
        z = self.cholesky @ rng.standard_normal(len(self.quantiles))
        u = np.array([NormalDist().cdf(float(v)) for v in z])
        angles = np.array([np.interp(p, self.levels, q) for p, q in zip(u, self.quantiles, strict=True)])
        return angles, float(np.interp(rng.random(), self.levels, self.yaw))

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        angles, yaw = self.sample_angles(rng)
        return forward(angles, yaw, **self.shape) * height
