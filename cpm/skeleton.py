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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Skeleton:
    """A named joint set. Indices everywhere refer to positions in ``joint_names``."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    torso: tuple[int, int]  # (left shoulder, right hip)

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        indices = [i for pair in (*self.flip_pairs, *self.limbs, self.torso) for i in pair]
        if any(not 0 <= i < k for i in indices):
            raise ValueError(f"skeleton {self.name!r}: joint index out of range 0..{k - 1}")

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


def map_to_default(keypoints, source: str):
    """Keypoints (..., K, 3) of skeleton ``source`` -> (..., 15, 3) in ITOP_15 order; joints the source does not
    have get x = y = 0, v = 0 (unlabeled)."""
    import numpy as np

    if source == DEFAULT_SKELETON.name:
        return np.asarray(keypoints, dtype=np.float64).copy()
    if source not in TO_ITOP_15:
        raise ValueError(f"no mapping from skeleton {source!r} to {DEFAULT_SKELETON.name}")
    keypoints = np.asarray(keypoints, dtype=np.float64)
    index = np.array(TO_ITOP_15[source])
    mapped = keypoints[..., np.maximum(index, 0), :].copy()
    mapped[..., index < 0, :] = 0.0
    return mapped


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}") from None
