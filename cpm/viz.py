"""Pictures of predictions: the skeleton drawn on an image, and the belief maps of every stage.

`belief_panel` draws the figure used to explain a Convolutional Pose Machine (Wei et al. 2016, Fig. 1
and Sec. 3.1): one row per stage, one column per joint, each belief map laid over the crop the model
saw. Early stages are blurry or confused between left and right; later stages, which see the
previous stage's beliefs through a growing receptive field, sharpen to one peak.

Glossary: T stages, K joints, K[+1] with the background channel, h x w belief-map cells, N x N crop.

Images here are RGB (or grayscale) uint8 arrays; convert with ``cv2.cvtColor(..., cv2.COLOR_RGB2BGR)``
before ``cv2.imwrite``. Figures are plain `matplotlib.figure.Figure` objects (no pyplot, no global
backend), so this module works on servers and inside notebooks alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from cpm.errors import CPMError
from cpm.skeleton import ITOP_15, Skeleton, get_skeleton

# RGB. The person's own right in red, left in blue, the midline (head, neck, torso) in green.
SIDE_COLOURS = {"right": (230, 57, 70), "left": (29, 120, 230), "centre": (60, 180, 75)}
_SUBPIXEL_BITS = 4  # cv2 drawing with shift=4: coordinates in 1/16 pixel, so joints are drawn where decoded


def joint_side(name: str) -> str:
    """``"left"``, ``"right"`` or ``"centre"`` from a joint name such as ``left_elbow``."""
    for side in ("left", "right"):
        if name.startswith(side) or name.endswith(side):
            return side
    return "centre"


def limb_side(skeleton: Skeleton, limb: tuple[int, int]) -> str:
    """A limb takes the side of whichever end is not on the midline (neck - left shoulder is left)."""
    sides = {joint_side(skeleton.joint_names[j]) for j in limb} - {"centre"}
    return sides.pop() if len(sides) == 1 else "centre"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {image.shape}")


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, skeleton: Skeleton, *,
                  confidence: np.ndarray | None = None, min_confidence: float = 0.0,
                  thickness: int | None = None, radius: int | None = None) -> np.ndarray:
    """Draw limbs and joints on a copy of ``image`` (H, W) or (H, W, 3) RGB uint8 -> (H, W, 3) RGB uint8.

    ``keypoints`` (K, 2+) are x, y in pixels of ``image`` (pixel centres at integers, any extra columns
    are ignored). Joints whose ``confidence`` (K,) is below ``min_confidence``, or whose coordinates are
    not finite, are left out together with their limbs. Limbs are coloured by side (`SIDE_COLOURS`);
    each joint is a filled dot of its side's colour, drawn over the limbs, with its centre pixel exactly
    that colour.
    """
    canvas = _as_rgb(image)
    points = np.asarray(keypoints, dtype=np.float64)[:, :2]  # (K, 2)
    if points.shape[0] != skeleton.num_joints:
        raise ValueError(f"{points.shape[0]} keypoints for the {skeleton.num_joints}-joint skeleton {skeleton.name}")
    shown = np.isfinite(points).all(axis=1)
    if confidence is not None:
        shown &= np.asarray(confidence, dtype=np.float64) >= min_confidence
    side = min(canvas.shape[:2])
    thickness = thickness or max(1, round(side / 160))
    radius = radius or max(2, round(side / 100))
    scale = 1 << _SUBPIXEL_BITS
    fixed = np.round(np.where(shown[:, None], points, 0) * scale).astype(np.int64)  # (K, 2) in 1/16 px
    for a, b in skeleton.limbs:
        if shown[a] and shown[b]:
            cv2.line(canvas, tuple(map(int, fixed[a])), tuple(map(int, fixed[b])),
                     SIDE_COLOURS[limb_side(skeleton, (a, b))], thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    for j in np.flatnonzero(shown):
        colour = SIDE_COLOURS[joint_side(skeleton.joint_names[j])]
        cv2.circle(canvas, tuple(map(int, fixed[j])), radius * scale, colour, -1, cv2.LINE_8, _SUBPIXEL_BITS)
    return canvas


def belief_mosaic(beliefs: np.ndarray, joints: int, *, image: np.ndarray | None = None, tile: int = 96,
                  gap: int = 4, alpha: float = 0.65, colormap: str = "magma") -> np.ndarray:
    """Belief maps (T, K[+1], h, w) -> one RGB uint8 image (T*tile + gaps, K*tile + gaps): row t, column k holds
    stage t's map of joint k, coloured on [0, 1] and laid over ``image`` (the crop, (N, N[, 3]) uint8) if given.

    Maps and crop are resized to ``tile`` pixels with `cv2.INTER_LINEAR`, which maps extents [-0.5, n - 0.5]
    onto each other: cell u of stride s covers crop pixels s*u .. s*u + s - 1, so each map stays on its crop.
    """
    from matplotlib import colormaps

    beliefs = np.asarray(beliefs, dtype=np.float32)
    if beliefs.ndim != 4 or beliefs.shape[1] < joints:
        raise ValueError(f"expected beliefs (T, K[+1], h, w) with at least {joints} channels, got {beliefs.shape}")
    stages = beliefs.shape[0]
    backdrop = None
    if image is not None:
        backdrop = cv2.resize(_as_rgb(np.asarray(image)), (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
    mosaic = np.full((stages * (tile + gap) - gap, joints * (tile + gap) - gap, 3), 255, dtype=np.uint8)
    lookup = colormaps[colormap]
    for t in range(stages):
        for k in range(joints):
            belief = cv2.resize(beliefs[t, k], (tile, tile), interpolation=cv2.INTER_LINEAR)  # (tile, tile)
            coloured = lookup(np.clip(belief, 0.0, 1.0))[..., :3].astype(np.float32) * 255  # (tile, tile, 3)
            if backdrop is not None:
                coloured = alpha * coloured + (1 - alpha) * backdrop
            y, x = t * (tile + gap), k * (tile + gap)
            mosaic[y:y + tile, x:x + tile] = np.round(coloured).astype(np.uint8)
    return mosaic


def belief_panel(beliefs: np.ndarray, joint_names: Sequence[str], *, image: np.ndarray | None = None,
                 title: str | None = None, tile: int = 96, inches_per_tile: float = 0.9) -> Figure:
    """Belief maps (T, K[+1], h, w) -> a figure with T rows (stages) and K columns (joints).

    The background channel, if any, is left out (only the first K = len(joint_names) channels are drawn).
    With ``image``, the crop the model saw, each map is laid over it (see `belief_mosaic`). One colour
    scale, [0, 1] (the targets' range), for every panel, so stages can be compared.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    joints, gap = len(joint_names), 4
    mosaic = belief_mosaic(beliefs, joints, image=image, tile=tile, gap=gap)
    stages = np.asarray(beliefs).shape[0]
    figure = Figure(figsize=(inches_per_tile * joints + 1.2, inches_per_tile * stages + 1.3), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    centres = np.arange(max(joints, stages)) * (tile + gap) + (tile - 1) / 2
    ax.set_xticks(centres[:joints], [name.replace("_", " ") for name in joint_names], rotation=45, ha="left",
                  fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(centres[:stages], [f"stage {t + 1}" for t in range(stages)], fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    figure.colorbar(ScalarMappable(Normalize(0, 1), "magma"), ax=ax, shrink=0.8, pad=0.01, label="belief")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def contact_sheet(samples: list[dict], *, skeleton_name: str = ITOP_15.name, columns: int = 8,
                  tile: int = 160) -> np.ndarray:
    """Samples -> one RGB uint8 image: each frame with its labeled joints drawn, scaled to ``tile`` pixels wide."""
    skeleton = get_skeleton(skeleton_name)
    tiles = []
    for sample in samples:
        image = sample["image"]
        factor = tile / image.shape[1]
        size = (tile, max(1, round(image.shape[0] * factor)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        keypoints = np.asarray(sample["keypoints"], dtype=np.float64).copy()
        keypoints[:, :2] = (keypoints[:, :2] + 0.5) * factor - 0.5
        keypoints[keypoints[:, 2] == 0, :2] = np.nan  # unlabeled joints are not drawn
        tiles.append(draw_skeleton(small, keypoints, skeleton))
    height = max(t.shape[0] for t in tiles)
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * (height + 2), min(columns, len(tiles)) * (tile + 2), 3), 255, np.uint8)
    for k, image in enumerate(tiles):
        y, x = (k // columns) * (height + 2), (k % columns) * (tile + 2)
        sheet[y:y + image.shape[0], x:x + tile] = image
    return sheet


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    path = Path(path)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise CPMError(f"{path}: cannot write the image")
