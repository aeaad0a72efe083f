"""BVH motion capture: the skeleton hierarchy, per-frame channels, forward kinematics, and the 15 joints.

A BVH file (Biovision) has a ``HIERARCHY`` of joints, each with an ``OFFSET`` from its parent and a list of
``CHANNELS`` (positions and Euler rotations in the order the file lists them), and ``End Site`` leaves; then
``MOTION``: ``Frames: F``, ``Frame Time: dt`` and F lines of channel values in hierarchy order.

Forward kinematics: a joint's local transform is ``T(offset + position channels) @ R``, where R is the
product of the rotation channels in the order listed (``Zrotation Yrotation Xrotation`` -> ``Rz @ Ry @ Rx``,
angles in degrees); its world transform is its parent's times its local one, and its position is the world
transform's translation. End sites are named ``<parent>_end``.

`CMU_TO_ITOP_15` maps the CMU database's skeleton (the conversion in ``../shared/data/mocap/cmu``: y up, the
person facing +z, the person's left at +x in the rest pose) to the 15 ITOP joints; a joint listed with several
names is their mean (the head centre is halfway between the head joint and the top of the head).

Clips named ``SUBJECT_CLIP.bvh`` (the CMU database's naming) split by subject into training and held-out subjects
(`held_out_subject`: every subject whose number ends in 1 or 6), so that a model is measured on people and motions
it never saw: in ``../shared/data/mocap/cmu`` subjects 6, 16, 26, 46, 136 and 141, 11,359 of the 59,692 frames
(basketball, running and jumping, bending, walks, "weird walks" and general motions).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpm.errors import CPMError

CMU_TO_ITOP_15 = (
    ("Head", "Head_end"), ("Neck",), ("RightShoulder",), ("LeftShoulder",), ("RightElbow",), ("LeftElbow",),
    ("RightWrist",), ("LeftWrist",), ("Chest", "Chest2"), ("RightHip",), ("LeftHip",), ("RightKnee",),
    ("LeftKnee",), ("RightAnkle",), ("LeftAnkle",),
)
_AXES = {"X": 0, "Y": 1, "Z": 2}
SUBJECTS = ("train", "held_out", "all")  # which clips a `BVHPoses` reads (config data.bvh_subjects)
_CLIP_NAME = re.compile(r"(\d+)_\d+")


@dataclass
class Motion:
    """``names`` (J,), ``parents`` (J,) with -1 for the root, ``offsets`` (J, 3), ``channels`` a list of
    (joint, channel name) in the order of a frame's values, ``frames`` (F, C), ``frame_time`` seconds."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[int, str]]
    frames: np.ndarray
    frame_time: float

    def positions(self, frames: slice | np.ndarray | None = None) -> np.ndarray:
        """World positions (F, J, 3) of every joint and end site by forward kinematics."""
        values = self.frames if frames is None else self.frames[frames]
        values = np.atleast_2d(values)
        count, joints = len(values), len(self.names)
        translation = np.broadcast_to(self.offsets, (count, joints, 3)).copy()  # (F, J, 3)
        rotation = np.broadcast_to(np.eye(3), (count, joints, 3, 3)).copy()  # (F, J, 3, 3)
        for column, (joint, name) in enumerate(self.channels):
            axis = _AXES[name[0]]
            if name.endswith("position"):
                translation[:, joint, axis] += values[:, column]
            else:
                rotation[:, joint] = rotation[:, joint] @ _axis_rotation(axis, np.radians(values[:, column]))
        world_rotation = np.empty_like(rotation)
        world_position = np.empty_like(translation)
        for joint, parent in enumerate(self.parents):  # parents come before their children
            if parent < 0:
                world_rotation[:, joint], world_position[:, joint] = rotation[:, joint], translation[:, joint]
            else:
                world_rotation[:, joint] = world_rotation[:, parent] @ rotation[:, joint]
                world_position[:, joint] = world_position[:, parent] + np.einsum(
                    "fij,fj->fi", world_rotation[:, parent], translation[:, joint])
        return world_position

    def joints(self, mapping: tuple[tuple[str, ...], ...] = CMU_TO_ITOP_15,
               frames: slice | np.ndarray | None = None) -> np.ndarray:
        """(F, len(mapping), 3) world positions of the mapped joints."""
        missing = sorted({n for names in mapping for n in names} - set(self.names))
        if missing:
            raise CPMError(f"BVH skeleton has no joint {missing[0]!r} (joints: {', '.join(self.names[:8])}, ...)")
        index = {name: i for i, name in enumerate(self.names)}
        positions = self.positions(frames)
        return np.stack([positions[:, [index[n] for n in names]].mean(axis=1) for names in mapping], axis=1)


def _axis_rotation(axis: int, angles: np.ndarray) -> np.ndarray:
    """(F,) angles in radians -> (F, 3, 3) right-handed rotations about ``axis``."""
    c, s = np.cos(angles), np.sin(angles)
    matrices = np.zeros((len(angles), 3, 3))
    a, b = [k for k in range(3) if k != axis]
    matrices[:, axis, axis] = 1.0
    matrices[:, a, a], matrices[:, a, b], matrices[:, b, a], matrices[:, b, b] = c, -s, s, c
    if axis == 1:  # about y the cyclic order is z, x: flip the signs of the sines
        matrices[:, a, b], matrices[:, b, a] = s, -s
    return matrices


def read_bvh(path: str | Path) -> Motion:
    """Parse a BVH file. Errors (a truncated file, a bad number, a channel count that does not match the
    frames) raise CPMError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise CPMError(f"{path}: no such file")
    lines = path.read_text(errors="replace").splitlines()
    # The hierarchy and the two lines after MOTION are read word by word; the frames, most of the file, by numpy's
    # parser (the same float64 values as float()), or word by word again when they hold an error to name.
    motion = next((n for n, line in enumerate(lines) if line.strip() == "MOTION"), len(lines))
    header = [(n, line.split()) for n, line in enumerate(lines[:motion + 3], 1)]
    header = [(n, words) for n, words in header if words]
    frames = _frame_rows(lines[motion + 3:])
    cursor = _Cursor(header if frames is not None else header + [
        (n, words) for n, line in enumerate(lines[motion + 3:], motion + 4) if (words := line.split())])
    try:
        names, parents, offsets, channels, open_braces = _read_hierarchy(cursor, path)
        count, frame_time, rows = _read_motion(cursor, frames)
    except IndexError:
        raise CPMError(f"{path}: truncated BVH file") from None
    except ValueError as error:
        raise CPMError(f"{path}: line {cursor.line}: not a number ({error})") from None
    if open_braces or not names:
        raise CPMError(f"{path}: unbalanced braces or no joints in HIERARCHY")
    if len(rows) != count or any(len(row) != len(channels) for row in rows):
        raise CPMError(f"{path}: expected {count} frames of {len(channels)} channel values")
    return Motion(names, parents, np.array(offsets), channels, np.asarray(rows, dtype=np.float64).reshape(
        count, len(channels)), frame_time)


@dataclass
class _Cursor:
    """The non-blank lines of a BVH file as (line number, words), and the one being read (named on an error)."""

    tokens: list[tuple[int, list[str]]]
    position: int = 0

    @property
    def words(self) -> list[str]:
        return self.tokens[self.position][1]

    @property
    def line(self) -> int:
        return self.tokens[self.position][0]


def _read_hierarchy(cursor: _Cursor, path: Path) -> tuple[list[str], list[int], list[np.ndarray],
                                                           list[tuple[int, str]], list[int]]:
    """HIERARCHY up to and past MOTION -> joint names, parents (-1: the root), offsets, (joint, channel) of every
    channel in file order, and the braces left open."""
    names, parents, offsets, channels, stack = [], [], [], [], []
    last = -1
    if cursor.words[0] != "HIERARCHY":
        raise CPMError(f"{path}: line {cursor.line}: expected HIERARCHY")
    cursor.position = 1
    while cursor.words[0] != "MOTION":
        line, words = cursor.line, cursor.words
        keyword = words[0]
        if keyword in ("ROOT", "JOINT", "End"):
            name = words[1] if keyword != "End" else f"{names[stack[-1]]}_end"
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append(np.zeros(3))
            last = len(names) - 1
        elif keyword == "{":
            stack.append(last)
        elif keyword == "}":
            stack.pop()
        elif keyword == "OFFSET":
            offsets[stack[-1]] = np.array([float(v) for v in words[1:4]])
        elif keyword == "CHANNELS":
            listed = words[2:2 + int(words[1])]
            if any(c[0] not in _AXES or not c.endswith(("position", "rotation")) for c in listed):
                raise CPMError(f"{path}: line {line}: unknown channel in {' '.join(listed)}")
            channels += [(stack[-1], c) for c in listed]
        else:
            raise CPMError(f"{path}: line {line}: unexpected {keyword!r} in HIERARCHY")
        cursor.position += 1
    cursor.position += 1
    return names, parents, offsets, channels, stack


def _read_motion(cursor: _Cursor, frames: np.ndarray | None) -> tuple[int, float, np.ndarray | list[list[float]]]:
    """``Frames: F`` and ``Frame Time: T``, then the F frames: numpy's rows when they parsed whole, else read line by
    line (the cursor on the line being read)."""
    count = int(cursor.words[-1])  # Frames: F
    cursor.position += 1
    frame_time = float(cursor.words[-1])  # Frame Time: T
    if frames is not None and cursor.position + 1 == len(cursor.tokens) and frames.shape[0] >= count:
        return count, frame_time, frames[:count]
    rows, first = [], cursor.position + 1
    for position in range(first, min(first + count, len(cursor.tokens))):
        cursor.position = position
        rows.append([float(v) for v in cursor.words])
    return count, frame_time, rows


def _frame_rows(lines: list[str]) -> np.ndarray | None:
    """The frame lines of a BVH file as a (F, C) float64 array (blank lines skipped); None when a line is not all
    numbers or the lines differ in length, for `read_bvh` to name the line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" of a file without frames
            return np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        return None


def to_body_frame(joints: np.ndarray, *, height: float) -> np.ndarray:
    """ITOP-ordered joints (15, 3) of one frame (y up) -> the synthetic renderer's body frame: pelvis (mid-hip)
    at the origin, facing +z (hips' left-to-right axis rotated onto +x), scaled so that the chain head - neck -
    pelvis - knee - ankle is 0.895 ``height`` as in `cpm.data.synthetic.body.pose_body`."""
    pelvis = (joints[9] + joints[10]) / 2
    centred = joints - pelvis
    across = centred[10] - centred[9]  # right hip -> left hip, the body frame's +x
    angle = math.atan2(across[2], across[0])
    c, s = math.cos(angle), math.sin(angle)
    turn = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # rotates `across` onto +x about y
    centred = centred @ turn.T
    legs = [np.linalg.norm(centred[h] - centred[k]) + np.linalg.norm(centred[k] - centred[a])
            for h, k, a in ((9, 11, 13), (10, 12, 14))]
    chain = np.linalg.norm(centred[0] - centred[1]) + np.linalg.norm(centred[1]) + float(np.mean(legs))
    return centred * (0.895 * height / max(chain, 1e-9))


def clip_subject(path: str | Path) -> int | None:
    """The subject number of a clip named ``SUBJECT_CLIP.bvh`` (``35_02.bvh`` -> 35); None for other names."""
    match = _CLIP_NAME.fullmatch(Path(path).stem)
    return int(match.group(1)) if match else None


def held_out_subject(subject: int) -> bool:
    """Whether a CMU subject is held out for evaluation: every subject whose number ends in 1 or 6."""
    return subject % 5 == 1


def select_clips(paths: list[Path], subjects: str) -> list[Path]:
    """The clips of ``subjects``: "train" (subjects not held out), "held_out" or "all". Splitting by subject needs
    clip names ``SUBJECT_CLIP.bvh`` (CPMError naming a clip that is not)."""
    if subjects not in SUBJECTS:
        raise CPMError(f"subjects: {subjects!r} is not one of {', '.join(SUBJECTS)}")
    if subjects == "all":
        return list(paths)
    chosen = []
    for path in paths:
        subject = clip_subject(path)
        if subject is None:
            raise CPMError(f"{path}: not named SUBJECT_CLIP.bvh, so not split by subject (read every clip with "
                           "subjects = \"all\")")
        if held_out_subject(subject) == (subjects == "held_out"):
            chosen.append(path)
    return chosen


def bvh_paths(files: str | Path) -> list[Path]:
    """The clips of ``files``: the .bvh files of a folder, sorted by name, or the one file given."""
    files = Path(files)
    return sorted(files.glob("*.bvh")) if files.is_dir() else [files]


class BVHPoses:
    """A pose source for the renderer: ``poses(rng, height)`` is a random frame of a random clip, in the
    body frame (see `to_body_frame`). Clips are read once, when the source is made: every ``step``-th frame of
    the clips of ``subjects`` (`select_clips`). ``clips`` are their paths, ``clip_of_frame`` (F,) indexes them."""

    needs_yaw = True

    def __init__(self, files: str | Path, *, step: int = 4, subjects: str = "all") -> None:
        files = Path(files)
        paths = bvh_paths(files)
        if not paths:
            raise CPMError(f"{files}: no .bvh files")
        self.clips = select_clips(paths, subjects)
        if not self.clips:
            raise CPMError(f"{files}: no clip of {subjects.replace('_', '-')} subjects (held out: subject numbers "
                           "ending in 1 or 6)")
        clips = [read_bvh(p).joints(frames=slice(None, None, step)) for p in self.clips]
        self.frames = np.concatenate(clips)  # (F, 15, 3)
        self.clip_of_frame = np.repeat(np.arange(len(clips)), [len(c) for c in clips])
        self.files, self.subjects = files, subjects

    def __len__(self) -> int:
        return len(self.frames)

    def draw(self, rng: np.random.Generator) -> int:
        """The index of a random frame."""
        return int(rng.integers(len(self.frames)))

    def pose(self, index: int, height: float) -> np.ndarray:
        """Frame ``index`` in the body frame of a body of ``height`` metres."""
        return to_body_frame(self.frames[index], height=height)

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        return self.pose(self.draw(rng), height)
