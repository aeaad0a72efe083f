"""Inference on arrays: rebuild a checkpoint's model, cut the person crop, decode every stage back to image pixels.

The crop is cut exactly as in training (`cpm.data.transforms.crop_matrix`), every stage's belief maps are
decoded in crop pixels by the codec, and the keypoints are mapped back to the original image through the
crop's inverse affine, as ``cpm eval`` does::

    image (H, W) ──crop_matrix M──► crop (N, N) ──model──► beliefs T x (K[+1], h, w)
         ▲                                                      │ codec.decode
         └──────────────── M^-1 (invert_affine) ◄── keypoints (T, K, 2) crop pixels

Glossary: B images, T stages, K joints, K[+1] with the background channel, N x N crop, h x w cells.
`cpm.cli.predict` runs this on files, folders and videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cpm.data.dataset import PIXEL_MEAN, PIXEL_STD
from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, warp_image
from cpm.errors import CheckpointError, CPMError
from cpm.skeleton import Skeleton
from cpm.targets.codecs import DECODERS, HeatmapCodec, RegressionCodec
from cpm.training.checkpoint import load_model

__all__ = ["Predictor", "load_predictor", "person_crop", "predict_images"]


@dataclass
class Predictor:
    """A model ready to run: everything `predict_images` needs, read once from the checkpoint."""

    model: torch.nn.Module
    codec: HeatmapCodec | RegressionCodec  # a coordinate head (regression, integral) has a RegressionCodec
    skeleton: Skeleton
    input_size: int  # N, the side of the square crop
    in_channels: int  # 1: grayscale, 3: RGB
    crop_padding: float
    decoder: str
    device: torch.device
    checkpoint: Path

    @property
    def has_beliefs(self) -> bool:
        """Whether the model has belief maps to draw: heatmap and integral heads, not direct regression."""
        return isinstance(self.codec, HeatmapCodec) or hasattr(self.model, "forward_beliefs")


def load_predictor(path: str | Path, *, device_name: str = "auto", decoder: str | None = None) -> Predictor:
    """Read a checkpoint once: the model (fp32, eval mode) on ``device_name``, its codec, skeleton and crop
    settings. ``decoder`` defaults to the config's ``eval.decoder``."""
    from cpm.device import resolve_device
    from cpm.skeleton import get_skeleton
    from cpm.training.builders import build_codec

    device = resolve_device(device_name)
    model, config = load_model(path, device)
    codec = build_codec(config)
    if isinstance(codec, RegressionCodec):  # the head outputs coordinates: nothing for a decoder to do
        if decoder:
            kind = "an integral" if config.model.head == "integral" else "a regression"
            raise CPMError(f"--decoder: {path} has {kind} head, which outputs coordinates; decoders read belief maps")
        decoder = "soft-argmax (integral head)" if config.model.head == "integral" else "direct regression"
    decoder = decoder or config.eval.decoder
    if isinstance(codec, HeatmapCodec) and decoder not in DECODERS:
        raise CPMError(f"--decoder: unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")
    if model.in_channels not in (1, 3):
        raise CheckpointError(f"{path}: a {model.in_channels}-channel model; predict reads grayscale (1) or RGB (3)")
    return Predictor(model=model, codec=codec, skeleton=get_skeleton(config.data.skeleton),
                     input_size=config.data.input_size, in_channels=model.in_channels,
                     crop_padding=config.data.crop_padding, decoder=decoder, device=device,
                     checkpoint=Path(path))


def person_crop(image_shape: tuple[int, ...], *, crop_padding: float, center: Sequence[float] | None = None,
                bbox: Sequence[float] | None = None) -> tuple[np.ndarray, float]:
    """-> (centre (2,) in image pixels, crop side in pixels).

    ``bbox`` = (x, y, width, height) spans [x, x + width] x [y, y + height] in pixel coordinates (a box
    around the keypoints is (min x, min y, max x - min x, max y - min y)): the crop is centred on it with
    side ``crop_padding * max(width, height)``, as in training. Otherwise the crop holds the whole image
    (side = its longer side), centred on ``center`` or on the image centre ((W - 1) / 2, (H - 1) / 2).
    """
    height, width = image_shape[:2]
    if bbox is not None:
        x, y, box_width, box_height = (float(v) for v in bbox)
        return np.array([x + box_width / 2, y + box_height / 2]), crop_padding * max(box_width, box_height)
    if center is None:
        center = ((width - 1) / 2, (height - 1) / 2)
    return np.asarray(center, dtype=np.float64), float(max(height, width))


@torch.no_grad()
def predict_images(predictor: Predictor, images: Sequence[np.ndarray], *, center: Sequence[float] | None = None,
                   bbox: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """B images (H, W) gray or (H, W, 3) RGB uint8 -> every stage's keypoints in original-image pixels.

    Returns {"keypoints": (B, T, K, 2), "confidence": (B, T, K) peak belief (1 for a coordinate head), "beliefs":
    (B, T, K[+1], h, w) (an integral head: each joint's soft-argmax distribution scaled to peak 1; direct
    regression: None),
    "crops": (B, N, N[, 3]) uint8 (what the model saw), "matrices": (B, 2, 3) image -> crop, "centers": (B, 2)
    and "crop_sides": (B,) in image pixels}.
    """
    size, channels = predictor.input_size, predictor.in_channels
    crops, matrices, crop_centers, sides = [], [], [], []
    for image in images:
        crop_center, side = person_crop(image.shape, crop_padding=predictor.crop_padding, center=center, bbox=bbox)
        if side <= 0:
            raise CPMError(f"--bbox {bbox}: the box has no extent")
        matrix = crop_matrix(crop_center, side, size)
        crops.append(warp_image(image, matrix, size))
        matrices.append(matrix)
        crop_centers.append(crop_center)
        sides.append(side)
    pixels = np.stack(crops).reshape(len(crops), size, size, -1)  # (B, N, N, c), c = 1 or 3
    if pixels.shape[-1] != channels:
        if pixels.shape[-1] != 1:
            raise CPMError(f"{pixels.shape[-1]}-channel images for a {channels}-channel model")
        pixels = np.repeat(pixels, channels, axis=-1)  # grayscale -> R = G = B, as in training
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(predictor.device).float()
    tensor = (tensor / 255 - PIXEL_MEAN) / PIXEL_STD  # (B, C, N, N)
    # crop_matrix puts the person centre in the middle of the crop; the centre map marks it there.
    centers = torch.full((len(crops), 2), (size - 1) / 2, device=predictor.device)
    center_map = predictor.codec.center_map(centers)
    model, beliefs = predictor.model, None
    if isinstance(predictor.codec, RegressionCodec) and predictor.has_beliefs:  # integral head: one pass, its maps
        logits = torch.stack(model.forward_beliefs(tensor, center_map), dim=1).float()  # (B, T, K, h, w)
        outputs = model.coordinates(logits.flatten(0, 1)).unflatten(0, logits.shape[:2])  # (B, T, K, 2)
        beliefs = model.probability_maps(logits).cpu().numpy()  # what its soft-argmax averages, peak 1
    else:
        outputs = torch.stack(model(tensor, center_map), dim=1)  # (B, T, K[+1], h, w) or (B, T, K, 2)
        if isinstance(predictor.codec, HeatmapCodec):
            beliefs = outputs.float().cpu().numpy()
    batch, stages = outputs.shape[:2]
    points, confidence = predictor.codec.decode(outputs.flatten(0, 1), method=predictor.decoder)  # (B*T, K, 2)
    points = points.double().cpu().numpy().reshape(batch, stages, -1, 2)
    inverse = invert_affine(np.stack(matrices))  # (B, 2, 3) crop -> image
    return {
        "keypoints": apply_affine(points, inverse[:, None]),  # (B, T, K, 2)
        "confidence": confidence.float().cpu().numpy().reshape(batch, stages, -1),
        "beliefs": beliefs,
        "crops": np.stack(crops),
        "matrices": np.stack(matrices),
        "centers": np.stack(crop_centers),
        "crop_sides": np.array(sides),
    }
