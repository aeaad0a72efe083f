"""Joint sets: names, left/right flip pairs, limbs and the torso pair used to normalise PCK.

The default skeleton is the 15-joint ITOP order, which is also the 15-point subset of the Kinect2
depth data (K2HPD) the project imitates::

     0 head
     1 neck
     2 right_shoulder   3 left_shoulder
     4 right_elbow      5 left_elbow
     6 right_hand       7 left_hand        (wrists)
     8 torso
     9 right_hip       10 left_hip
    11 right_knee      12 left_knee
    13 right_foot      14 left_foot        (ankles)

"right" is the person's own right. The torso size used by the CPM/LSP PCK protocol is the distance
between the left shoulder and the right hip (Wei et al. 2016, Sec. 4).

Skeletons are data: besides the built-in ones (`SKELETONS`), a config may declare its own in a ``[skeleton]``
table, or in a TOML file named by ``data.skeleton`` (`skeleton_from_table`, `load_skeleton_file`)::

    [skeleton]
    name = "coco17_mine"
    joints = ["nose", "left_eye", "right_eye", ...]
    flip_pairs = [["left_eye", "right_eye"], ...]          # by name: swapped by a horizontal flip
    limbs = [["left_eye", "nose"], ...]                    # drawn by cpm.viz, and PCP's limbs
    torso = ["left_shoulder", "right_hip"]                 # the pair whose distance normalises PCK
    to_itop15 = [["left_shoulder", "left_shoulder"], ...]  # optional: [ITOP-15 joint, this skeleton's joint]

A declared skeleton is registered under its name (`register_skeleton`), so `get_skeleton` finds it wherever a
config names it: readers, flips, metrics, drawing, prediction and export.

OKS sigmas (COCO keypoint AP, `cpm.evaluation.coco`): `oks_sigmas(skeleton)` gives one per joint. COCO_17 has COCO's
published values (`COCO_OKS_SIGMAS`). A declared skeleton may give its own (``oks_sigmas = [...]``, K positive
numbers in the order of its joints; empty: the rule). Every other skeleton takes them by joint name: the name is
lower-cased, "-" and spaces read as "_", the side words ``left``, ``right``, ``l``, ``r`` (and K2HPD's ``image``
before a side) are dropped, and what is left is looked up in `OKS_SIGMA_BY_NAME`:

- a joint COCO has takes COCO's sigma: nose .026, eye .025, ear .035, shoulder .079, elbow .072, wrist / hand .062,
  hip .107, knee .087, ankle / foot .089;
- a joint COCO lacks takes CrowdPose's choice (its 14-joint file gives head top and neck the shoulders' .079):
  head, head_top, neck, upper_neck, thorax and spine_shoulder (Kinect's base of the neck) .079; torso, pelvis,
  spine, spine_base, spine_mid and belly (the trunk, as wide as the hips) .107.

A name the rule does not know is a `ConfigError` naming the joint: give ``[skeleton] oks_sigmas`` then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cpm.errors import ConfigError


@dataclass(frozen=True)
class Skeleton:
    """A named joint set. Indices everywhere refer to positions in ``joint_names``."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    torso: tuple[int, int]  # (left shoulder, right hip)
    # For each ITOP_15 joint, the index of the joint of this skeleton that marks the same place, or -1; None: no
    # mapping (the built-in skeletons keep theirs in TO_ITOP_15).
    to_itop15: tuple[int, ...] | None = field(default=None, compare=True)
    # The OKS sigmas a [skeleton] table gives, one per joint; None: `oks_sigmas` takes them by joint name.
    declared_oks_sigmas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        indices = [i for pair in (*self.flip_pairs, *self.limbs, self.torso) for i in pair]
        if any(not 0 <= i < k for i in indices):
            raise ValueError(f"skeleton {self.name!r}: joint index out of range 0..{k - 1}")
        if self.to_itop15 is not None and (len(self.to_itop15) != 15 or any(not -1 <= i < k for i in self.to_itop15)):
            raise ValueError(f"skeleton {self.name!r}: to_itop15 needs 15 indices in -1..{k - 1}")
        sigmas = self.declared_oks_sigmas
        if sigmas is not None and (len(sigmas) != k or not all(0 < s < math.inf for s in sigmas)):
            raise ValueError(f"skeleton {self.name!r}: declared_oks_sigmas needs {k} positive finite numbers")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @cached_property
    def flip_permutation(self) -> tuple[int, ...]:
        """``keypoints[flip_permutation]`` renames joints after a horizontal mirror (left <-> right)."""
        permutation = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            permutation[a], permutation[b] = b, a
        return tuple(permutation)

    def index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)

    def to_table(self) -> dict[str, Any]:
        """The ``[skeleton]`` table that declares this skeleton (joints by name), as `skeleton_from_table` reads it."""
        names = self.joint_names
        table: dict[str, Any] = {
            "name": self.name, "joints": list(names),
            "flip_pairs": [[names[a], names[b]] for a, b in self.flip_pairs],
            "limbs": [[names[a], names[b]] for a, b in self.limbs],
            "torso": [names[self.torso[0]], names[self.torso[1]]],
            "to_itop15": [],
        }
        if self.to_itop15 is not None:
            table["to_itop15"] = [[ITOP_15.joint_names[i], names[j]] for i, j in enumerate(self.to_itop15) if j >= 0]
        if self.declared_oks_sigmas is not None:  # only then: tables (and hashes) without sigmas stay as they were
            table["oks_sigmas"] = list(self.declared_oks_sigmas)
        return table


ITOP_15 = Skeleton(
    name="itop15",
    joint_names=(
        "head", "neck",
        "right_shoulder", "left_shoulder",
        "right_elbow", "left_elbow",
        "right_hand", "left_hand",
        "torso",
        "right_hip", "left_hip",
        "right_knee", "left_knee",
        "right_foot", "left_foot",
    ),
    flip_pairs=((2, 3), (4, 5), (6, 7), (9, 10), (11, 12), (13, 14)),
    limbs=(
        (0, 1),                      # head - neck
        (1, 2), (2, 4), (4, 6),      # right arm
        (1, 3), (3, 5), (5, 7),      # left arm
        (1, 8), (8, 9), (8, 10),     # spine and pelvis
        (9, 11), (11, 13),           # right leg
        (10, 12), (12, 14),          # left leg
    ),
    torso=(3, 9),
)

# LSP order (Johnson & Everingham 2010), used by LSP, LSPET and the original CPM's prediction files.
LSP_14 = Skeleton(
    name="lsp14",
    joint_names=(
        "right_ankle", "right_knee", "right_hip",
        "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist",
        "neck", "head_top",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    limbs=(
        (0, 1), (1, 2),              # right leg
        (5, 4), (4, 3),              # left leg
        (6, 7), (7, 8),              # right arm
        (11, 10), (10, 9),           # left arm
        (12, 13),                    # head
        (8, 2), (9, 3),              # torso sides (used by PCP's torso)
    ),
    torso=(9, 2),
)

# MPII Human Pose (Andriluka et al. 2014), the order of its annotations, HRNet's and mmpose's JSON.
MPII_16 = Skeleton(
    name="mpii16",
    joint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=(
        (0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6),  # legs up to the pelvis
        (6, 7), (7, 8), (8, 9),                          # spine and head
        (10, 11), (11, 12), (12, 7), (15, 14), (14, 13), (13, 7),  # arms to the thorax
    ),
    torso=(13, 2),
)

# J-HMDB (Jhuang et al. 2013), the order of its puppet joints and of mmpose's COCO-style JSON.
JHMDB_15 = Skeleton(
    name="jhmdb15",
    joint_names=(
        "neck", "belly", "head", "right_shoulder", "left_shoulder", "right_hip", "left_hip",
        "right_elbow", "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist",
        "right_ankle", "left_ankle",
    ),
    flip_pairs=((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)),
    limbs=(
        (0, 2), (0, 3), (0, 4), (0, 1), (3, 7), (7, 11), (4, 8), (8, 12),
        (1, 5), (1, 6), (5, 9), (9, 13), (6, 10), (10, 14),
    ),
    torso=(4, 5),
)

# COCO keypoints (Lin et al. 2014).
COCO_17 = Skeleton(
    name="coco17",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    torso=(5, 12),
)

# FLIC's 10 evaluated joints (eval_pose's order; see cpm.data.datasets.matfiles.FLIC_10).
FLIC_10 = Skeleton(
    name="flic10",
    joint_names=(
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "right_hip",
        "left_shoulder", "left_elbow", "left_wrist", "left_hip",
    ),
    flip_pairs=((2, 6), (3, 7), (4, 8), (5, 9)),
    limbs=((0, 1), (1, 2), (2, 3), (3, 4), (1, 6), (6, 7), (7, 8), (2, 5), (6, 9), (5, 9)),
    torso=(6, 5),
)

# K2HPD (Kinect2 Human Pose Dataset) as stored in ../shared/data/k2hpd: joints 0-14 are the ITOP-like set with
# sides named by the image ("image_left" is the person's right in the frontal frames that dominate it).
K2HPD_19 = Skeleton(
    name="k2hpd19",
    joint_names=(
        "head", "neck", "torso",
        "image_left_shoulder", "image_left_elbow", "image_left_hand",
        "image_right_shoulder", "image_right_elbow", "image_right_hand",
        "image_left_hip", "image_left_knee", "image_left_foot",
        "image_right_hip", "image_right_knee", "image_right_foot",
        "spine_shoulder", "spine_base", "image_left_wrist", "image_right_wrist",
    ),
    flip_pairs=((3, 6), (4, 7), (5, 8), (9, 12), (10, 13), (11, 14), (17, 18)),
    limbs=((0, 1), (1, 3), (3, 4), (4, 5), (1, 6), (6, 7), (7, 8), (1, 2), (2, 9), (2, 12),
           (9, 10), (10, 11), (12, 13), (13, 14)),
    torso=(6, 9),
)

# COCO's per-joint OKS sigmas in COCO_17's order (pycocotools' COCOeval, Ronchi & Perona 2017).
COCO_OKS_SIGMAS = (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089)

# The joint-name rule of the module docstring: a name without its side -> its OKS sigma.
OKS_SIGMA_BY_NAME = {
    # COCO's own joints (and the names other datasets give them)
    "nose": .026, "eye": .025, "ear": .035, "shoulder": .079, "elbow": .072, "wrist": .062, "hand": .062,
    "hip": .107, "knee": .087, "ankle": .089, "foot": .089,
    # joints COCO lacks, as CrowdPose chose: head and neck as a shoulder, the trunk as a hip
    "head": .079, "head_top": .079, "neck": .079, "upper_neck": .079, "thorax": .079, "spine_shoulder": .079,
    "torso": .107, "pelvis": .107, "spine": .107, "spine_base": .107, "spine_mid": .107, "belly": .107,
}
_SIDE_WORDS = {"left", "right", "l", "r"}

SKELETONS = {skeleton.name: skeleton for skeleton in (ITOP_15, LSP_14, MPII_16, JHMDB_15, COCO_17, FLIC_10, K2HPD_19)}
DEFAULT_SKELETON = ITOP_15

# For each joint of the default ITOP_15 skeleton, the joint of another skeleton that marks the same place, or
# -1 where that skeleton has no such joint (it becomes unlabeled, v = 0). Only joints that mean the same thing
# are mapped: LSP's and MPII's head top is not ITOP's head centre, so "head" stays unlabeled for them.
TO_ITOP_15 = {
    "lsp14": (-1, 12, 8, 9, 7, 10, 6, 11, -1, 2, 3, 1, 4, 0, 5),
    "mpii16": (-1, 8, 12, 13, 11, 14, 10, 15, -1, 2, 3, 1, 4, 0, 5),
    "jhmdb15": (2, 0, 3, 4, 7, 8, 11, 12, 1, 5, 6, 9, 10, 13, 14),
    "coco17": (-1, -1, 6, 5, 8, 7, 10, 9, -1, 12, 11, 14, 13, 16, 15),
    "flic10": (-1, 1, 2, 6, 3, 7, 4, 8, -1, 5, 9, -1, -1, -1, -1),
    "k2hpd19": (0, 1, 3, 6, 4, 7, 5, 8, 2, 9, 12, 10, 13, 11, 14),
}


def oks_sigmas(skeleton: Skeleton):
    """The per-joint OKS sigmas of ``skeleton``, a float64 array (K,): the declared ones, COCO's published ones for
    COCO_17, else the joint-name rule of the module docstring. `ConfigError` names a joint the rule does not know."""
    import numpy as np

    if skeleton.declared_oks_sigmas is not None:
        return np.array(skeleton.declared_oks_sigmas, dtype=np.float64)
    if skeleton == COCO_17:
        return np.array(COCO_OKS_SIGMAS, dtype=np.float64)
    return np.array([_oks_sigma_by_name(joint, skeleton.name) for joint in skeleton.joint_names], dtype=np.float64)


def _oks_sigma_by_name(joint: str, skeleton_name: str) -> float:
    words = joint.lower().replace("-", "_").replace(" ", "_").split("_")
    if len(words) > 1 and words[0] == "image" and words[1] in _SIDE_WORDS:  # K2HPD's sides as the image shows them
        words = words[1:]
    key = "_".join(word for word in words if word not in _SIDE_WORDS)
    if key not in OKS_SIGMA_BY_NAME:
        raise ConfigError(f"skeleton.oks_sigmas: joint {joint!r} of skeleton {skeleton_name!r} has no OKS sigma by "
                          f"name (known: {', '.join(OKS_SIGMA_BY_NAME)}); give [skeleton] oks_sigmas, one per joint")
    return OKS_SIGMA_BY_NAME[key]


def itop15_mapping(source: str) -> tuple[int, ...] | None:
    """For each ITOP_15 joint, the index of skeleton ``source``'s joint that marks it (-1: none); None: no mapping."""
    if source in TO_ITOP_15:
        return TO_ITOP_15[source]
    custom = _CUSTOM.get(source)
    return custom.to_itop15 if custom is not None else None


def map_to_default(keypoints, source: str):
    """Keypoints (..., K, 3) of skeleton ``source`` -> (..., 15, 3) in ITOP_15 order; joints the source does not
    have get x = y = 0, v = 0 (unlabeled). A declared skeleton maps through its ``to_itop15``."""
    import numpy as np

    if source == DEFAULT_SKELETON.name:
        return np.asarray(keypoints, dtype=np.float64).copy()
    mapping = itop15_mapping(source)
    if mapping is None:
        raise ValueError(f"no mapping from skeleton {source!r} to {DEFAULT_SKELETON.name}")
    return _take(keypoints, mapping)


def name_mapping(source: Skeleton, target: Skeleton) -> tuple[int, ...] | None:
    """For each joint of ``target``, the index of ``source``'s joint of the same name; None unless every joint of
    ``target`` is found (a declared skeleton with COCO's names reads COCO files; a subset of joints selects)."""
    if not set(target.joint_names) <= set(source.joint_names):
        return None
    return tuple(source.index(name) for name in target.joint_names)


def map_keypoints(keypoints, source: str, target: str):
    """Keypoints (..., K, 3) of skeleton ``source`` -> (..., K', 3) of skeleton ``target``: the same joints by name,
    or through the ITOP-15 mapping when ``target`` is ITOP_15. ValueError when neither applies."""
    import numpy as np

    if source == target:
        return np.asarray(keypoints, dtype=np.float64).copy()
    if target == DEFAULT_SKELETON.name and itop15_mapping(source) is not None:
        return map_to_default(keypoints, source)
    mapping = name_mapping(get_skeleton(source), get_skeleton(target))
    if mapping is None:
        raise ValueError(f"no mapping from skeleton {source!r} to {target!r}")
    return _take(keypoints, mapping)


def _take(keypoints, index):
    import numpy as np

    keypoints = np.asarray(keypoints, dtype=np.float64)
    index = np.array(index)
    mapped = keypoints[..., np.maximum(index, 0), :].copy()
    mapped[..., index < 0, :] = 0.0
    return mapped


# Skeletons declared by configs ([skeleton] or a data.skeleton file), by name; the latest declaration of a name wins.
_CUSTOM: dict[str, Skeleton] = {}


def register_skeleton(skeleton: Skeleton) -> Skeleton:
    """Make a declared skeleton known to `get_skeleton` (a built-in name cannot be redeclared)."""
    if skeleton.name in SKELETONS:
        raise ValueError(f"{skeleton.name!r} is a built-in skeleton")
    _CUSTOM[skeleton.name] = skeleton
    return skeleton


def get_skeleton(name: str) -> Skeleton:
    """A built-in skeleton, or one a config declared (`register_skeleton`)."""
    found = SKELETONS.get(name) or _CUSTOM.get(name)
    if found is None:
        known = ", ".join([*SKELETONS, *_CUSTOM])
        raise ValueError(f"unknown skeleton {name!r}; known: {known}")
    return found


SKELETON_KEYS = ("name", "joints", "flip_pairs", "limbs", "torso", "to_itop15", "oks_sigmas")


def skeleton_from_table(table: dict[str, Any], where: str = "skeleton") -> Skeleton:
    """A ``[skeleton]`` table (joints, flip pairs, limbs, torso and the optional ITOP-15 mapping, all by joint name)
    -> `Skeleton`. Bad tables raise `ConfigError` naming ``where.key`` and what is wrong."""
    unknown = [key for key in table if key not in SKELETON_KEYS]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown skeleton key (known: {', '.join(SKELETON_KEYS)})")
    name = _skeleton_name(table.get("name", ""), where)
    joints = _joint_names(table.get("joints", []), where)
    index = {joint: i for i, joint in enumerate(joints)}
    flips = _joint_pairs(table, "flip_pairs", index, where)
    flipped = [i for pair in flips for i in pair]
    if len(flipped) != len(set(flipped)):
        raise ConfigError(f"{where}.flip_pairs: a joint appears in two pairs")
    limbs = _joint_pairs(table, "limbs", index, where)
    torso = table.get("torso")
    if torso is None:
        raise ConfigError(f"{where}.torso: give the two joints whose distance normalises PCK, e.g. "
                          "[\"left_shoulder\", \"right_hip\"]")
    torso_pair = joint_pair(torso, index, f"{where}.torso", joints=f"{where}.joints")
    to_itop15 = _to_itop15(table["to_itop15"], index, where) if table.get("to_itop15") else None
    sigmas = _oks_sigmas(table.get("oks_sigmas", []), len(joints), where)
    return Skeleton(name=name, joint_names=tuple(joints), flip_pairs=tuple(flips), limbs=tuple(limbs),
                    torso=torso_pair, to_itop15=to_itop15, declared_oks_sigmas=sigmas)


def _skeleton_name(name: Any, where: str) -> str:
    """A new skeleton's name: not empty, not a built-in one, not a file name."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: give the skeleton a name")
    if name in SKELETONS:
        raise ConfigError(f"{where}.name: {name!r} is a built-in skeleton; choose another name for your own")
    if name.endswith(".toml"):
        raise ConfigError(f"{where}.name: {name!r} looks like a file name")
    return name


def _joint_names(joints: Any, where: str) -> list[str]:
    """A non-empty list of distinct joint names."""
    if not isinstance(joints, list) or not all(isinstance(j, str) and j for j in joints) or not joints:
        raise ConfigError(f"{where}.joints: expected a non-empty list of joint names")
    duplicates = sorted({j for j in joints if joints.count(j) > 1})
    if duplicates:
        raise ConfigError(f"{where}.joints: {duplicates[0]!r} is named twice")
    return joints


def _joint_pairs(table: dict[str, Any], key: str, index: dict[str, int], where: str) -> list[tuple[int, int]]:
    """``table[key]``, a list of [joint, joint] pairs (`joint_pair`), as index pairs."""
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key}: expected a list of [joint, joint] pairs")
    return [joint_pair(pair, index, f"{where}.{key}", joints=f"{where}.joints") for pair in value]


def _to_itop15(mapping: Any, index: dict[str, int], where: str) -> tuple[int, ...]:
    """``to_itop15`` ([itop15 joint, joint] pairs) -> for each ITOP-15 joint the index of its joint, -1 for none."""
    if not isinstance(mapping, list):
        raise ConfigError(f"{where}.to_itop15: expected a list of [itop15 joint, joint] pairs")
    to_itop15 = [-1] * 15
    for pair in mapping:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f"{where}.to_itop15: {pair!r} is not an [itop15 joint, joint] pair")
        if pair[0] not in ITOP_15.joint_names:
            raise ConfigError(f"{where}.to_itop15: {pair[0]!r} is not an ITOP-15 joint "
                              f"({', '.join(ITOP_15.joint_names)})")
        if pair[1] not in index:
            raise ConfigError(f"{where}.to_itop15: {pair[1]!r} is not one of {where}.joints")
        to_itop15[ITOP_15.index(pair[0])] = index[pair[1]]
    return tuple(to_itop15)


def _oks_sigmas(sigmas: Any, num_joints: int, where: str) -> tuple[float, ...] | None:
    """``oks_sigmas``: K positive finite numbers, one per joint; an empty list (None): by joint name."""
    if not isinstance(sigmas, list) or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in sigmas):
        raise ConfigError(f"{where}.oks_sigmas: expected a list of numbers, one per joint")
    if not sigmas:
        return None
    if len(sigmas) != num_joints:
        raise ConfigError(f"{where}.oks_sigmas: {len(sigmas)} sigmas for {num_joints} joints; give one per joint "
                          "(or none, to take them by joint name)")
    bad = next((s for s in sigmas if not 0 < s < math.inf), None)
    if bad is not None:
        raise ConfigError(f"{where}.oks_sigmas: {bad!r} is not a positive finite number")
    return tuple(float(s) for s in sigmas)


def joint_pair(pair: Any, index: dict[str, int], key: str, *, joints: str = "the skeleton's joints"
               ) -> tuple[int, int]:
    """``[joint, joint]``, the names of two different joints of ``index`` (which ``joints`` names) -> their
    indices, or `ConfigError` naming ``key``."""
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(joint, str) for joint in pair):
        raise ConfigError(f"{key}: {pair!r} is not a [joint, joint] pair, e.g. [\"left_shoulder\", \"right_hip\"]")
    for joint in pair:
        if joint not in index:
            raise ConfigError(f"{key}: {joint!r} is not one of {joints}")
    if pair[0] == pair[1]:
        raise ConfigError(f"{key}: {pair!r} pairs a joint with itself")
    return index[pair[0]], index[pair[1]]


def load_skeleton_file(path: str | Path) -> dict[str, Any]:
    """The skeleton table of a TOML file: its ``[skeleton]`` table, or its top-level keys. `ConfigError` names the
    file when it is missing or not TOML."""
    import tomllib

    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"data.skeleton: {path}: no such skeleton file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"data.skeleton: {path}: cannot read it ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"data.skeleton: {path}: invalid TOML ({error})") from None
    if "skeleton" in table:
        if not isinstance(table["skeleton"], dict) or len(table) > 1:
            raise ConfigError(f"data.skeleton: {path}: expected only a [skeleton] table")
        table = table["skeleton"]
    return table
