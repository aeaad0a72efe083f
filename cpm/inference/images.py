"""Images in, the pixels a model's crops are cut from out: image files (PNG, JPEG, 16-bit depth PNG, ``.npy``) and
arrays read the same way for the Python API (`cpm.inference.predictor.Predictor`) and ``cpm predict``.

One-channel arrays are depth (`cpm.data.depth.to_nearness`: uint8 nearness as it is, uint16 millimetres, float
metres, over the checkpoint's ``data.depth`` near / far); colour arrays are RGB. What the image libraries (libpng,
libjpeg, FFmpeg, OpenCV's log) print straight to file descriptor 2 is caught (`captured_stderr`), so that a bad
file gives one clear line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cpm.data.depth import DepthSpec, load_npy, to_nearness
from cpm.errors import CPMError

__all__ = ["DEFAULT_DEPTH", "captured_stderr", "first_message", "read_image", "to_model_pixels"]

DEFAULT_DEPTH = DepthSpec()  # the synthetic frames' nearness8, 0.5 - 7.5 m


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Catch what C libraries print straight to file descriptor 2; the list holds those lines once the block has
    ended."""
    messages: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            messages += [line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip()]


def first_message(messages: list[str]) -> str:
    """`` (the first caught line)`` for an error message, or nothing."""
    return f" ({messages[0][:200]})" if messages else ""


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def read_image(path: str | Path, *, channels: int, depth: DepthSpec = DEFAULT_DEPTH, encoding: str | None = None,
               key: str = "--depth", warn: Callable[[str], None] = _warn) -> np.ndarray:
    """An image or ``.npy`` file -> `to_model_pixels` of it. A file OpenCV cannot decode is a `CPMError` naming it
    (with what the decoder said); one it decodes while complaining (a truncated JPEG decodes with a grey bottom) is
    read, and ``warn`` gets ``"<path>: <the complaint>"``."""
    import cv2

    path = Path(path)
    if path.suffix.lower() == ".npy":
        image = load_npy(path)
    else:
        with captured_stderr() as messages:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CPMError(f"{path}: not an image that OpenCV can decode{first_message(messages)}")
        if messages:
            warn(f"{path}: {messages[0][:200]}")
        if image.ndim == 3 and image.shape[2] in (3, 4):  # OpenCV's BGR(A) -> RGB
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return to_model_pixels(image, channels=channels, depth=depth, encoding=encoding, where=str(path), key=key)


def to_model_pixels(image: np.ndarray, *, channels: int, depth: DepthSpec = DEFAULT_DEPTH, encoding: str | None = None,
                    where: str = "image", key: str = "--depth") -> np.ndarray:
    """An array -> what the model's crops are cut from: uint8 (H, W) for a one-channel model, (H, W) or (H, W, 3)
    for an RGB one. One-channel arrays are depth (`cpm.data.depth.to_nearness`: uint8 nearness as it is, uint16
    millimetres, float metres, over ``depth``'s near / far; ``encoding`` the one they must be in); colour arrays are
    RGB, 16-bit ones scaled to 8 bits, made gray for a one-channel model."""
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return to_nearness(image, near=depth.near, far=depth.far, encoding=encoding, where=where, key=key)
    if image.ndim != 3 or image.shape[2] != 3:
        raise CPMError(f"{where}: an image of shape {image.shape}; expected (H, W) depth or gray, or (H, W, 3) RGB")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise CPMError(f"{where}: a {image.dtype} colour image; expected 8 or 16 bits per channel")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if channels == 1 else image
