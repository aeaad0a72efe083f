"""Affine crops around the person: scale, rotation, horizontal flip and shift, with exact keypoint maths.

One 2x3 matrix ``M`` maps source pixels to crop pixels, ``[x', y'] = M @ [x, y, 1]``, in the pixel-
centre convention (pixel (row i, column j) has its centre at x = j, y = i), which is also the one
OpenCV's ``warpAffine`` uses. The image and its keypoints go through the same matrix, so keypoints
stay on the pixels they mark whatever the augmentation::

    source frame                    crop (size N x N)
    +--------------------+          +-----------+
    |      .  centre c   |   M      |     c'    |   c' = ((N-1)/2, (N-1)/2) + shift
    |    (person)        |  ---->   | (person)  |   scale N / crop_side, rotation about c,
    +--------------------+          +-----------+   then x' -> N - 1 - x' if flipped

A flip mirrors the image, so the person's left arm ends up where a right arm would be: the joints
are renamed with the skeleton's flip permutation to keep "left" meaning the person's left.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch


def crop_matrix(center: np.ndarray, crop_side: float, output_size: int, *, rotation: float = 0.0,
                flip: bool = False, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2x3 float64 matrix: source pixels -> crop pixels. ``rotation`` in degrees, counter-clockwise
    on screen; ``shift`` in crop pixels, applied before the flip."""
    scale = output_size / crop_side
    angle = math.radians(rotation)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    middle = (output_size - 1) / 2
    cx, cy = float(center[0]), float(center[1])
    # Image y points down, so a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]].
    matrix = np.array([
        [cos, sin, middle + shift[0] - (cos * cx + sin * cy)],
        [-sin, cos, middle + shift[1] - (-sin * cx + cos * cy)],
    ])
    if flip:
        matrix[0] = -matrix[0]
        matrix[0, 2] += output_size - 1
    return matrix


def invert_affine(matrix: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Inverse of a 2x3 affine matrix, also 2x3 (works on stacks (..., 2, 3)): a numpy array, or a torch tensor
    inverted where it lies (evaluation maps a batch's keypoints back on the device)."""
    if isinstance(matrix, np.ndarray):
        xp = np
    else:
        import torch as xp
    linear = xp.linalg.inv(matrix[..., :2])
    return xp.concatenate([linear, -linear @ matrix[..., 2:]], axis=-1)


def apply_affine(points: np.ndarray | torch.Tensor, matrix: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """points (..., K, 2), matrix (..., 2, 3) -> transformed points (..., K, 2); numpy arrays or torch tensors."""
    return points @ matrix[..., :2].swapaxes(-1, -2) + matrix[..., None, :, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: int, *, fill: float = 0) -> np.ndarray:
    """Resample ``image`` (H, W[, C]) into the (N, N[, C]) crop; outside the frame reads ``fill`` in every channel
    (``data.pad_value``; OpenCV fills a scalar ``borderValue`` into channel 0 alone)."""
    return cv2.warpAffine(image, matrix, (output_size, output_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(float(fill),) * 4)


def transform_keypoints(keypoints: np.ndarray, matrix: np.ndarray, flip_permutation: tuple[int, ...] | None,
                        flipped: bool) -> np.ndarray:
    """keypoints (K, 3) [x, y, v] -> crop keypoints (K, 3); renames left/right joints when flipped."""
    out = keypoints.astype(np.float32, copy=True)
    out[:, :2] = apply_affine(keypoints[:, :2].astype(np.float64), matrix)
    if flipped:
        if flip_permutation is None:
            raise ValueError("a flip needs the skeleton's flip permutation")
        out = out[list(flip_permutation)]
    return out


def occlude(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator, *,
            size: tuple[float, float] = (0.15, 0.4)) -> tuple[np.ndarray, np.ndarray]:
    """Paint one random rectangle (sides ``size`` x the crop side, a random uniform value per channel) into the
    crop ``image`` (N, N[, C]) in place; visible keypoints (v = 2) under it become occluded (v = 1). Keypoint
    positions never change. Returns (image, keypoints)."""
    n = image.shape[0]
    width, height = (max(1, int(round(rng.uniform(*size) * n))) for _ in range(2))
    x0, y0 = int(rng.integers(0, n - width + 1)), int(rng.integers(0, n - height + 1))
    channels = image.shape[2] if image.ndim == 3 else 1
    value = rng.integers(0, 256, size=channels).astype(image.dtype)
    image[y0:y0 + height, x0:x0 + width] = value if image.ndim == 3 else value[0]
    keypoints = keypoints.copy()
    x, y = keypoints[:, 0], keypoints[:, 1]
    covered = (x >= x0 - 0.5) & (x < x0 + width - 0.5) & (y >= y0 - 0.5) & (y < y0 + height - 0.5)
    keypoints[covered & (keypoints[:, 2] == 2), 2] = 1
    return image, keypoints


def sample_augmentation(rng: np.random.Generator, *, scale_range: tuple[float, float], rotation: float,
                        flip: bool, shift: float, output_size: int) -> dict:
    """Random scale factor, rotation (degrees), flip and shift (crop pixels) for one sample."""
    return {
        "scale": float(rng.uniform(*scale_range)),
        "rotation": float(rng.uniform(-rotation, rotation)) if rotation > 0 else 0.0,
        "flip": bool(flip and rng.random() < 0.5),
        "shift": tuple(float(s) for s in rng.uniform(-shift, shift, size=2) * output_size),
    }
