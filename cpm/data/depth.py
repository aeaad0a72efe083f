"""Depth frames in, nearness gray out: the one picture of depth every model of this project sees.

The synthetic renderer draws depth as *nearness*: gray = 255 at ``near`` metres, falling linearly to 1 at ``far``
metres (and beyond), 0 where the camera has no reading (`cpm.data.synthetic.camera.depth_to_gray`: near 0.5 m,
far 7.5 m). Real depth comes in other encodings (`cpm.config.DEPTH_ENCODINGS`); config
``data.depth = {encoding, near, far}`` says which::

    encoding        stored as                                   becomes
    nearness8       8-bit gray, near = bright, 0 = no reading    itself
    millimetres16   16-bit, depth in millimetres (raw Kinect)    gray = 255 (far - z) / (far - near), in [1, 255]
    metres32        float metres (.npy, 32-bit TIFF)             the same; z <= 0 or NaN -> 0

so a raw Kinect PNG reads as the model expects it, not as a photographic negative (far = bright) of it.
An image's dtype tells its encoding (uint8, uint16, float); readers of a dataset check it against
``data.depth.encoding`` and stop with one line naming the file when they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpm.errors import CPMError

_STORED_AS = {"nearness8": "8-bit", "millimetres16": "16-bit", "metres32": "floating-point"}


@dataclass(frozen=True)
class DepthSpec:
    """``data.depth``: the encoding depth files are stored in, and the range (metres) nearness gray spans."""

    encoding: str = "nearness8"
    near: float = 0.5
    far: float = 7.5

    @classmethod
    def of(cls, depth) -> DepthSpec:
        """From a `cpm.config.DepthConfig` (or anything with encoding, near and far)."""
        return cls(depth.encoding, float(depth.near), float(depth.far))

    def describe(self) -> str:
        """One line for people: how a depth frame becomes the model's input."""
        return (f"depth as nearness gray: 255 at {self.near:g} m, 1 at {self.far:g} m and beyond, 0 = no reading "
                f"(data.depth.encoding = {self.encoding!r})")


def encoding_of(image: np.ndarray, where: str) -> str:
    """The encoding an array's dtype stands for: uint8 nearness, uint16 millimetres, float metres."""
    if image.dtype == np.uint8:
        return "nearness8"
    if image.dtype == np.uint16:
        return "millimetres16"
    if np.issubdtype(image.dtype, np.floating):
        return "metres32"
    raise CPMError(f"{where}: a {image.dtype} depth image; expected 8-bit nearness, 16-bit millimetres or float "
                   "metres")


def metres_to_nearness(metres: np.ndarray, *, near: float, far: float) -> np.ndarray:
    """Depth in metres -> uint8 nearness gray: ``255 (far - z) / (far - near)`` clipped to [1, 255] and rounded
    half up, 0 where there is no reading (z <= 0, NaN or infinite). With near 0.5 and far 7.5 this is the synthetic
    renderer's conversion, level for level."""
    z = np.asarray(metres, dtype=np.float64)
    valid = np.isfinite(z) & (z > 0)
    gray = np.clip(255.0 * (far - np.where(valid, z, far)) / (far - near), 1.0, 255.0)
    return np.where(valid, np.floor(gray + 0.5), 0).astype(np.uint8)


def to_nearness(image: np.ndarray, *, near: float, far: float, encoding: str | None = None, where: str = "image",
                key: str = "data.depth.encoding") -> np.ndarray:
    """One depth frame (H, W) -> uint8 nearness gray (H, W). ``encoding`` None: the dtype decides (uint8 as it is,
    uint16 millimetres, float metres); otherwise the dtype must be that encoding's, or `CPMError` names ``where``
    and ``key``."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise CPMError(f"{where}: a depth frame must be one channel (H, W), got shape {image.shape}")
    found = encoding_of(image, where)
    if encoding is not None and found != encoding:
        raise CPMError(f"{where}: a {_STORED_AS[found]} image, but {key} = {encoding!r} expects "
                       f"{_STORED_AS[encoding]} ones; set {key} = {found!r} if it holds {found}")
    if found == "nearness8":
        return image
    metres = image.astype(np.float64) / 1000.0 if found == "millimetres16" else image
    return metres_to_nearness(metres, near=near, far=far)


def nearness_to_metres(gray: np.ndarray, *, near: float, far: float) -> np.ndarray:
    """The inverse of `metres_to_nearness` up to its rounding: gray levels 1..255 -> metres, 0 -> 0 (no reading)."""
    gray = np.asarray(gray, dtype=np.float64)
    return np.where(gray > 0, far - gray * (far - near) / 255.0, 0.0)


def load_npy(path) -> np.ndarray:
    """A ``.npy`` depth frame (no pickled objects), or `CPMError` naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CPMError(f"{path}: not a readable .npy array ({str(error).splitlines()[0][:200]})") from None
