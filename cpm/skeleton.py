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

SKELETONS = {skeleton.name: skeleton for skeleton in (ITOP_15, LSP_14)}
DEFAULT_SKELETON = ITOP_15


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}") from None
