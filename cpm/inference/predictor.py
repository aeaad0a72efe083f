"""Inference on arrays: rebuild a checkpoint's model, cut the person crop, decode every stage back to image pixels.

The crop is cut exactly as in training (`cpm.data.transforms.crop_matrix`), every stage's belief maps are
decoded in crop pixels by the codec, and the keypoints are mapped back to the original image through the
crop's inverse affine, as ``cpm eval`` does::

    image (H, W) ──crop_matrix M──► crop (N, N) ──model──► beliefs T x (K[+1], h, w)
         ▲                                                      │ codec.decode
         └──────────────── M^-1 (invert_affine) ◄── keypoints (T, K, 2) crop pixels

Glossary: B images, T stages, K joints, K[+1] with the background channel, N x N crop, h x w cells.
`cpm.cli.predict` runs this on files, folders and videos.

The Python API (also ``from cpm import load_predictor, Predictor``)::

    predictor = load_predictor("runs/default/best.pt", "cpu")          # once: model, codec, skeleton
    result = predictor.predict_files(["a.png", "b.png"], boxes=[(40, 20, 90, 180), (35, 18, 95, 185)])
    result.keypoints          # (B, K, 2) the final stage, image pixels; result.stage_keypoints (B, T, K, 2)
    result.joints(0)          # [{"name", "x", "y", "confidence"}, ...] of image 0
    predictor.predict(depth_mm, boxes=[box])   # arrays: uint8 nearness / RGB, uint16 millimetres, float metres

A box (x, y, width, height) per image centres the crop on the person with the training crop's padding
(``data.crop_padding``); without one the crop is the whole image. With flip test (the checkpoint's
``eval.flip_test``, or ``flip_test=`` of `load_predictor` and `Predictor.predict`) the crop and its mirror both go
through the model and their outputs are averaged before decoding (`cpm.targets.flip`).

A part-affinity-field checkpoint (``model.head = "paf"``, bottom-up) sees the whole image, warped as in its training
(`cpm.data.bottomup`: the longer side fitted to the N x N input, centred, padded with ``data.pad_value``), and finds
every person in it (`cpm.targets.grouping.group_people` on the final stage's maps, as ``cpm eval --coco`` does)::

    predictor = load_predictor("runs/paf/best.pt", "cpu")
    people = predictor.predict_people([image])     # per image a list, best score first, of
    people[0][0]["score"], people[0][0]["keypoints"]   # (K, 3) [x, y, confidence] in image pixels

A joint not found has x = y = NaN and confidence 0. Boxes, centres, decoders, flip test and multi-scale do not apply
to it; its `Predictor.predict` and `Predictor.predict_files` refuse, naming ``predict_people`` and
``predict_people_files``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cpm.data.dataset import normalize_pixels
from cpm.data.depth import DepthSpec
from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, warp_image
from cpm.errors import CheckpointError, CPMError
from cpm.inference.boxes import Box, check_box
from cpm.inference.images import DEFAULT_DEPTH, read_image, to_model_pixels
from cpm.runtime.checkpoint import load_model
from cpm.skeleton import Skeleton
from cpm.targets.codecs import EVAL_DECODERS, HeatmapCodec, RegressionCodec
from cpm.targets.flip import FlipTest, integral_flip_test
from cpm.targets.multiscale import predict_scales

__all__ = ["Prediction", "Predictor", "load_predictor", "person_crop", "predict_images", "predict_people_images"]

PAF_DECODER = "part affinity fields (grouping)"  # Predictor.decoder of a paf checkpoint


@dataclass
class Prediction:
    """What `Predictor.predict` returns for B images: keypoints in original-image pixels."""

    joint_names: tuple[str, ...]
    stage_keypoints: np.ndarray  # (B, T, K, 2) every stage
    stage_confidence: np.ndarray  # (B, T, K) peak belief (1 for a coordinate head; RLE: 1 - mean σ)
    beliefs: np.ndarray | None  # (B, T, K[+1], h, w); None for direct regression
    crops: np.ndarray  # (B, N, N[, 3]) uint8, what the model saw
    matrices: np.ndarray  # (B, 2, 3) image -> crop
    centers: np.ndarray  # (B, 2) crop centres, image pixels
    crop_sides: np.ndarray  # (B,) image pixels

    @property
    def keypoints(self) -> np.ndarray:
        """(B, K, 2): the final stage's keypoints."""
        return self.stage_keypoints[:, -1]

    @property
    def confidence(self) -> np.ndarray:
        """(B, K): the final stage's confidence."""
        return self.stage_confidence[:, -1]

    def __len__(self) -> int:
        return len(self.stage_keypoints)

    def joints(self, index: int = 0, stage: int = -1) -> list[dict]:
        """Image ``index``'s joints at ``stage`` (-1: the final one; 0-based): [{"name", "x", "y", "confidence"}]."""
        return [{"name": name, "x": float(x), "y": float(y), "confidence": float(c)}
                for name, (x, y), c in zip(self.joint_names, self.stage_keypoints[index, stage],
                                           self.stage_confidence[index, stage], strict=True)]


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
    input_scale: str = "unit"  # data.input_scale of the checkpoint's config
    scales: tuple[float, ...] = (1.0,)  # eval.scales: the maps of these crops are averaged (cpm.targets.multiscale)
    depth: DepthSpec = DEFAULT_DEPTH  # data.depth of the checkpoint: the near / far range of its nearness gray
    pad_value: float = 0.0  # data.pad_value: crop pixels outside the image (128 for the released Caffe nets)
    flip_test: bool = False  # eval.flip_test: the crop's and its mirror's outputs averaged (cpm.targets.flip)
    oks_nms: float = 0.9  # eval.oks_nms: people of one image above this OKS are one (cpm predict --people)
    head: str = "heatmap"  # model.head; "paf": bottom-up, `predict_people`

    @property
    def bottom_up(self) -> bool:
        """Whether the checkpoint is a bottom-up part-affinity-field model (people by `predict_people`)."""
        return self.head == "paf"

    @property
    def has_beliefs(self) -> bool:
        """Whether the model has belief maps to draw: heatmap and integral heads, not direct regression."""
        return isinstance(self.codec, HeatmapCodec) or hasattr(self.model, "forward_beliefs")

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.skeleton.joint_names

    def predict(self, images: np.ndarray | Sequence[np.ndarray], *, boxes: Sequence[Box | None] | None = None,
                centers: Sequence[Sequence[float] | None] | None = None, decoder: str | None = None,
                depth: str | None = None, flip_test: bool | None = None) -> Prediction:
        """Images -> `Prediction`. ``images``: one array or a list of them, each (H, W) or (H, W, 3) RGB; for a
        one-channel model uint8 is nearness gray, uint16 millimetres and float metres (``depth`` names the encoding
        they must have, None: their dtype tells). ``boxes``: one (x, y, width, height) per image, or None for one
        that has none; ``centers`` likewise (the crop is then the whole image). ``decoder``: another heatmap
        decoder than the predictor's; ``flip_test``: True / False to override the predictor's flip test."""
        self._not_bottom_up("predict")
        if isinstance(images, np.ndarray):
            images = [images]
        pixels = [to_model_pixels(image, channels=self.in_channels, depth=self.depth, encoding=depth,
                                  where=f"image {i}", key="depth") for i, image in enumerate(images)]
        predictor = self
        if decoder is not None and decoder != self.decoder:
            if not isinstance(self.codec, HeatmapCodec):
                raise CPMError(f"decoder: {self.checkpoint} has a coordinate head; decoders read belief maps")
            if decoder not in EVAL_DECODERS:
                raise CPMError(f"decoder: unknown decoder {decoder!r}; known: {', '.join(EVAL_DECODERS)}")
            predictor = dataclasses.replace(self, decoder=decoder)
        if flip_test is not None and bool(flip_test) != predictor.flip_test:
            predictor = dataclasses.replace(predictor, flip_test=bool(flip_test))
        result = predict_images(predictor, pixels, boxes=boxes, centers=centers)
        return Prediction(joint_names=self.joint_names, stage_keypoints=result["keypoints"],
                          stage_confidence=result["confidence"], beliefs=result["beliefs"], crops=result["crops"],
                          matrices=result["matrices"], centers=result["centers"], crop_sides=result["crop_sides"])

    def predict_files(self, paths: Sequence[str | Path], *, boxes: Sequence[Box | None] | None = None,
                      centers: Sequence[Sequence[float] | None] | None = None, decoder: str | None = None,
                      depth: str | None = None, flip_test: bool | None = None) -> Prediction:
        """Image files (PNG, JPEG, 16-bit depth PNG, ``.npy``...) -> `Prediction`, as `predict` on what
        `read_image` reads."""
        self._not_bottom_up("predict_files")
        if isinstance(paths, (str, Path)):
            paths = [paths]
        images = [self.read_image(path, depth=depth) for path in paths]
        return self.predict(images, boxes=boxes, centers=centers, decoder=decoder, flip_test=flip_test)

    def predict_people(self, images: np.ndarray | Sequence[np.ndarray], *, depth: str | None = None,
                       matching: str = "greedy", min_parts: int = 3) -> list[list[dict]]:
        """A paf checkpoint: images (as `predict` reads them) -> per image every person found, best score first, each
        {"score": float, "keypoints": (K, 3) [x, y, confidence] in image pixels (NaN x, y for a joint not found)}.
        ``matching``, ``min_parts``: `cpm.targets.grouping.group_people`'s."""
        if not self.bottom_up:
            raise CPMError(f"predict_people: {self.checkpoint} is a top-down {self.head} model; use predict with one "
                           "box per person")
        if isinstance(images, np.ndarray):
            images = [images]
        pixels = [to_model_pixels(image, channels=self.in_channels, depth=self.depth, encoding=depth,
                                  where=f"image {i}", key="depth") for i, image in enumerate(images)]
        return predict_people_images(self, pixels, matching=matching, min_parts=min_parts)

    def predict_people_files(self, paths: Sequence[str | Path], *, depth: str | None = None,
                             matching: str = "greedy", min_parts: int = 3) -> list[list[dict]]:
        """Image files -> `predict_people` on what `read_image` reads."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        images = [self.read_image(path, depth=depth) for path in paths]
        return self.predict_people(images, matching=matching, min_parts=min_parts)

    def _not_bottom_up(self, method: str) -> None:
        if self.bottom_up:
            raise CPMError(f"{method}: {self.checkpoint} is a bottom-up part-affinity-field model that finds every "
                           "person in the whole image; use predict_people / predict_people_files (no boxes or centres)")

    def read_image(self, path: str | Path, *, depth: str | None = None, **warn) -> np.ndarray:
        """A file as this model reads it: (H, W) uint8 nearness / gray for a one-channel model, (H, W, 3) RGB
        otherwise (`cpm.inference.images.read_image`; ``warn``: where a decoder's complaint goes)."""
        return read_image(path, channels=self.in_channels, depth=self.depth, encoding=depth, **warn)


def load_predictor(path: str | Path, device: str | None = None, *, device_name: str = "auto",
                   decoder: str | None = None, scales: Sequence[float] | None = None,
                   flip_test: bool | None = None) -> Predictor:
    """Read a checkpoint once: the model (fp32, eval mode) on ``device`` (or ``device_name``; auto: cuda, mps, cpu),
    its codec, skeleton, crop and depth settings. ``decoder`` defaults to the config's ``eval.decoder``,
    ``scales`` to its ``eval.scales``, ``flip_test`` to its ``eval.flip_test``."""
    from cpm.device import resolve_device
    from cpm.runtime.build import build_codec
    from cpm.skeleton import get_skeleton

    device = resolve_device(device or device_name)
    model, config = load_model(path, device)
    codec = build_codec(config)
    if config.model.head == "paf":  # bottom-up: the whole image, grouped into people; no decoder, flip or scales
        for name, value in (("decoder", decoder), ("flip_test", flip_test), ("scales", scales)):
            if value and not (name == "scales" and tuple(float(s) for s in value) == (1.0,)):
                raise CPMError(f"--{name.replace('_', '-')}: {path} is a bottom-up part-affinity-field model; its "
                               "people are grouped from its maps, with no decoder, flip test or multi-scale")
        decoder, scales, flip_test = PAF_DECODER, (1.0,), False
    if isinstance(codec, RegressionCodec):  # the head outputs coordinates: nothing for a decoder to do
        if decoder:
            kind = "an integral" if config.model.head == "integral" else "a regression"
            raise CPMError(f"--decoder: {path} has {kind} head, which outputs coordinates; decoders read belief maps")
        decoder = "soft-argmax (integral head)" if config.model.head == "integral" else "direct regression"
    decoder = decoder or config.eval.decoder
    if isinstance(codec, HeatmapCodec) and decoder not in EVAL_DECODERS:
        raise CPMError(f"--decoder: unknown decoder {decoder!r}; known: {', '.join(EVAL_DECODERS)}")
    scales = tuple(float(s) for s in (config.eval.scales if scales is None else scales))
    if not scales or min(scales) <= 0:
        raise CPMError(f"scales: expected crop scales > 0, got {list(scales)}")
    if scales != (1.0,) and not isinstance(codec, HeatmapCodec):
        raise CPMError(f"scales: {path} has a coordinate head; multi-scale averaging reads belief maps")
    if model.in_channels not in (1, 3):
        raise CheckpointError(f"{path}: a {model.in_channels}-channel model; predict reads grayscale (1) or RGB (3)")
    skeleton = get_skeleton(config.data.skeleton)
    if getattr(model, "num_joints", skeleton.num_joints) != skeleton.num_joints:
        raise CheckpointError(f"{path}: a {model.num_joints}-joint model, but its data.skeleton {skeleton.name!r} "
                              f"has {skeleton.num_joints} joints")
    return Predictor(model=model, codec=codec, skeleton=skeleton,
                     input_size=config.data.input_size, in_channels=model.in_channels,
                     crop_padding=config.data.crop_padding, decoder=decoder, device=device,
                     checkpoint=Path(path), input_scale=config.data.input_scale, scales=scales,
                     depth=DepthSpec.of(config.data.depth), pad_value=config.data.pad_value,
                     flip_test=bool(config.eval.flip_test if flip_test is None else flip_test),
                     oks_nms=config.eval.oks_nms, head=config.model.head)


def whole_image_matrix(image_shape: tuple[int, ...], size: int) -> np.ndarray:
    """(2, 3) image -> input: the whole image, its longer side fitted to ``size``, centred (`cpm.data.bottomup`)."""
    height, width = image_shape[:2]
    return crop_matrix(np.array([(width - 1) / 2, (height - 1) / 2]), float(max(height, width)), size)


@torch.no_grad()
def predict_people_images(predictor: Predictor, images: Sequence[np.ndarray], *, matching: str = "greedy",
                          min_parts: int = 3) -> list[list[dict]]:
    """A paf predictor on B images (H, W) gray or (H, W, 3) RGB uint8 -> per image its people, best score first:
    {"score", "keypoints": (K, 3) [x, y, confidence] in image pixels, NaN x, y where a joint was not found}."""
    from cpm.targets.grouping import group_people

    size = predictor.input_size
    matrices = [whole_image_matrix(image.shape, size) for image in images]
    crops = [warp_image(image, matrix, size, fill=predictor.pad_value) for image, matrix in zip(images, matrices,
                                                                                                strict=True)]
    found_people = []
    for start in range(0, len(crops), 8):  # a few images per forward pass
        outputs = predictor.model(_model_input(predictor, crops[start:start + 8]), None)[-1].float()
        maps, fields = predictor.codec.split(outputs)
        for b in range(len(outputs)):
            people = group_people(maps[b], fields[b], predictor.codec.limbs, stride=predictor.codec.stride,
                                  matching=matching, min_parts=min_parts, background=predictor.codec.background)
            inverse = invert_affine(matrices[start + b])
            persons = []
            for person in people:
                keypoints = np.asarray(person.keypoints, dtype=np.float64).copy()
                found = keypoints[:, 2] > 0
                keypoints[found, :2] = apply_affine(keypoints[found, :2], inverse)
                keypoints[~found] = (np.nan, np.nan, 0.0)
                persons.append({"score": float(person.score), "keypoints": keypoints})
            found_people.append(persons)
    return found_people


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


def _model_input(predictor: Predictor, crops: Sequence[np.ndarray]) -> torch.Tensor:
    """Crops (N, N[, c]) uint8 -> the model's input (B, C, N, N) on its device, with the config's input scale."""
    size, channels = predictor.input_size, predictor.in_channels
    pixels = np.stack(crops).reshape(len(crops), size, size, -1)  # (B, N, N, c), c = 1 or 3
    if pixels.shape[-1] != channels:
        if pixels.shape[-1] != 1:
            raise CPMError(f"{pixels.shape[-1]}-channel images for a {channels}-channel model")
        pixels = np.repeat(pixels, channels, axis=-1)  # grayscale -> R = G = B, as in training
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(predictor.device).float()
    return normalize_pixels(tensor, predictor.input_scale)


@torch.no_grad()
def predict_images(predictor: Predictor, images: Sequence[np.ndarray], *, center: Sequence[float] | None = None,
                   bbox: Sequence[float] | None = None, boxes: Sequence[Box | None] | None = None,
                   centers: Sequence[Sequence[float] | None] | None = None) -> dict[str, np.ndarray]:
    """B images (H, W) gray or (H, W, 3) RGB uint8 -> every stage's keypoints in original-image pixels.

    The crop of image b is centred on ``boxes[b]`` (x, y, width, height), else on ``centers[b]``, else on the
    ``bbox`` or ``center`` given for all of them, else on the image centre (`person_crop`).

    Returns {"keypoints": (B, T, K, 2), "confidence": (B, T, K) peak belief (1 for a coordinate head; RLE: 1 - mean σ),
    "beliefs": (B, T, K[+1], h, w) (an integral head: each joint's soft-argmax distribution scaled to peak 1; direct
    regression: None),
    "crops": (B, N, N[, 3]) uint8 (what the model saw), "matrices": (B, 2, 3) image -> crop, "centers": (B, 2)
    and "crop_sides": (B,) in image pixels}.
    """
    crops, matrices, crop_centers, sides = _person_crops(predictor, images, center=center, bbox=bbox, boxes=boxes,
                                                         centers=centers)
    # crop_matrix puts the person centre in the middle of the crop; the centre map marks it there.
    middle = torch.full((len(crops), 2), (predictor.input_size - 1) / 2, device=predictor.device)
    center_map = predictor.codec.center_map(middle)
    if predictor.scales != (1.0,):  # eval.scales: the maps of every scale's crop averaged on this crop's grid
        points, confidence, beliefs = _predict_scales(predictor, images, center_map, matrices, crop_centers, sides)
    else:
        points, confidence, beliefs = _predict_crops(predictor, _model_input(predictor, crops), center_map)
    inverse = invert_affine(np.stack(matrices))  # (B, 2, 3) crop -> image
    return {
        "keypoints": apply_affine(points, inverse[:, None]),  # (B, T, K, 2)
        "confidence": confidence.float().cpu().numpy().reshape(*points.shape[:2], -1),
        "beliefs": beliefs,
        "crops": np.stack(crops),
        "matrices": np.stack(matrices),
        "centers": np.stack(crop_centers),
        "crop_sides": np.array(sides),
    }


def _person_crops(predictor: Predictor, images: Sequence[np.ndarray], *, center: Sequence[float] | None,
                  bbox: Sequence[float] | None, boxes: Sequence[Box | None] | None,
                  centers: Sequence[Sequence[float] | None] | None) -> tuple[list, list, list, list]:
    """Each image's crop as `predict_images` chooses it -> (crops (N, N[, 3]) uint8, matrices (2, 3) image -> crop,
    crop centres (2,) and sides in image pixels), one of each per image."""
    size = predictor.input_size
    for name, per_image in (("boxes", boxes), ("centers", centers)):
        if per_image is not None and len(per_image) != len(images):
            raise CPMError(f"{name}: {len(per_image)} given for {len(images)} images; give one per image (or None)")
    crops, matrices, crop_centers, sides = [], [], [], []
    for b, image in enumerate(images):
        box = boxes[b] if boxes is not None and boxes[b] is not None else bbox
        point = centers[b] if centers is not None and centers[b] is not None else center
        if box is not None:
            box = check_box(box, f"box of image {b}")
        crop_center, side = person_crop(image.shape, crop_padding=predictor.crop_padding,
                                        center=None if box is not None else point, bbox=box)
        if side <= 0:
            raise CPMError(f"--bbox {box}: the box has no extent")
        matrix = crop_matrix(crop_center, side, size)
        crops.append(warp_image(image, matrix, size, fill=predictor.pad_value))
        matrices.append(matrix)
        crop_centers.append(crop_center)
        sides.append(side)
    return crops, matrices, crop_centers, sides


def _model(predictor: Predictor) -> torch.nn.Module:
    """The predictor's model, flip-tested when ``predictor.flip_test`` (`cpm.targets.flip.FlipTest`)."""
    if predictor.flip_test:
        return FlipTest(predictor.model, predictor.skeleton.flip_permutation)
    return predictor.model


def _predict_crops(predictor: Predictor, tensor: torch.Tensor, center_map: torch.Tensor
                   ) -> tuple[np.ndarray, torch.Tensor, np.ndarray | None]:
    """The model on the crops ``tensor`` (B, C, N, N) -> keypoints (B, T, K, 2) in crop pixels, confidence
    (B * T, K) and the belief maps to draw (an integral head: its soft-argmax distributions; direct regression:
    None)."""
    model, beliefs = predictor.model, None
    integral = isinstance(predictor.codec, RegressionCodec) and predictor.has_beliefs
    if integral and predictor.flip_test:  # the mean coordinates are the mean distributions' expectations
        coordinates, distributions = integral_flip_test(model, tensor, center_map, predictor.skeleton.flip_permutation)
        outputs = torch.stack(coordinates, dim=1)  # (B, T, K, 2)
        maps = torch.stack(distributions, dim=1)  # (B, T, K, h, w)
        beliefs = (maps / maps.flatten(-2).amax(-1)[..., None, None]).cpu().numpy()  # peak 1, as probability_maps
    elif integral:  # one pass, its maps
        logits = torch.stack(model.forward_beliefs(tensor, center_map), dim=1).float()  # (B, T, K, h, w)
        outputs = model.coordinates(logits.flatten(0, 1)).unflatten(0, logits.shape[:2])  # (B, T, K, 2)
        beliefs = model.probability_maps(logits).cpu().numpy()  # what its soft-argmax averages, peak 1
    else:
        outputs = torch.stack(_model(predictor)(tensor, center_map), dim=1)  # (B, T, K[+1], h, w) or (B, T, K, 2)
        if isinstance(predictor.codec, HeatmapCodec):
            beliefs = outputs.float().cpu().numpy()
    batch, stages = outputs.shape[:2]
    points, confidence = predictor.codec.decode(outputs.flatten(0, 1), method=predictor.decoder)  # (B*T, K, 2)
    return points.double().cpu().numpy().reshape(batch, stages, -1, 2), confidence, beliefs


def _predict_scales(predictor: Predictor, images: Sequence[np.ndarray], center_map: torch.Tensor,
                    matrices: list[np.ndarray], crop_centers: list[np.ndarray], sides: list[float]
                    ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """``eval.scales``: each image cropped again at every scale around the same centre, the model run on each
    scale's crops and their maps averaged on the base crop's grid (`cpm.targets.multiscale.predict_scales`) ->
    keypoints (B, T, K, 2) in base crop pixels, confidence (B, T, K), the averaged maps (B, T, K[+1], h, w)."""
    size, inputs, scale_matrices = predictor.input_size, [], []
    for scale in predictor.scales:
        scaled = [crop_matrix(c, side / scale, size) for c, side in zip(crop_centers, sides, strict=True)]
        inputs.append(_model_input(predictor, [warp_image(image, m, size, fill=predictor.pad_value)
                                               for image, m in zip(images, scaled, strict=True)]))
        scale_matrices.append(np.stack(scaled))
    points, confidence, averaged = predict_scales(
        _model(predictor), inputs, [center_map] * len(inputs), torch.from_numpy(np.stack(matrices)),
        torch.from_numpy(np.stack(scale_matrices, axis=1)), predictor.codec, predictor.decoder, device=predictor.device)
    return points.double().cpu().numpy(), confidence, torch.stack(averaged, dim=1).cpu().numpy()
