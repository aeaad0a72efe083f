"""What every dataset reader returns: `ImageSamples` (images read lazily, with keypoints) and `KeypointSet`
(keypoints only), and the checks and helpers the readers share.

A sample is::

    {"image": (H, W) or (H, W, 3) RGB uint8, "keypoints": (K, 3) float32 [x, y, v],
     "center": (2,) float32, "scale": float, "index": int}

x, y are 0-based pixels; v is 0 unlabeled, 1 labeled but occluded, 2 labeled and visible. ``center`` and
``scale`` are the centre and the longer side of the labeled joints' bounding box, as the synthetic renderer
gives them, so ``data.crop_padding`` means the same for every source. ``index`` is the sample's dataset index:
its position in the reader's full list, kept by slices, `ImageSamples.subset` and `ImageSamples.exclude`. A reader
of a file that boxes each person (COCO's ``bbox``) passes ``boxes`` (N, 4) x, y, w, h; with ``crop_around = "box"``
(config ``data.crop_around``) ``center`` and ``scale`` are then the box's centre and longer side. A reader
whose file annotates the person's position and size (MPII's ``objpos`` and ``scale``, 0-based pixels and height / 200)
passes them as ``annotated``; its samples then also have ``"objpos"`` (2,) and ``"annotated_scale"``
(`cpm.data.benchmark`, ``eval.crop = "annotated"``).

One-channel images are depth frames and reach the model as nearness gray (`cpm.data.depth`): 8-bit files as they
are, 16-bit files (and integer ``.npy``) as millimetres, float ``.npy`` / TIFF as metres; ``ImageSamples.depth``
(config ``data.depth``) names the encoding the files must have and the near / far range.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cpm.data.depth import DepthSpec, load_npy, to_nearness
from cpm.errors import CPMError
from cpm.skeleton import ITOP_15, get_skeleton, map_keypoints, map_to_default

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".npy")


def person_box(keypoints: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) and longer side of the labeled (v > 0) joints' bounding box; all joints if none is labeled."""
    labeled = keypoints[keypoints[:, 2] > 0, :2]
    points = labeled if len(labeled) else keypoints[:, :2]
    lo, hi = points.min(0), points.max(0)
    return ((lo + hi) / 2).astype(np.float32), float(max((hi - lo).max(), 1.0))


def check_keypoints(keypoints: np.ndarray, num_joints: int, where: str) -> np.ndarray:
    """(N, K, 3) float32, finite, K = num_joints, v in {0, 1, 2}; else CPMError naming ``where``."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise CPMError(f"{where}: keypoints have shape {keypoints.shape}, expected (N, K, 3)")
    if keypoints.shape[1] != num_joints:
        raise CPMError(f"{where}: {keypoints.shape[1]} joints per sample, expected {num_joints}")
    good = (np.isfinite(keypoints[..., :2]).all(axis=-1) | (keypoints[..., 2] == 0)) & np.isfinite(keypoints[..., 2])
    if not good.all():
        n = int(np.argwhere(~good)[0, 0])
        raise CPMError(f"{where}: NaN or infinite coordinates of a labeled joint (sample {n})")
    if not np.isin(keypoints[..., 2], (0.0, 1.0, 2.0)).all():
        raise CPMError(f"{where}: visibility flags must be 0, 1 or 2")
    keypoints[..., :2] = np.where(np.isfinite(keypoints[..., :2]), keypoints[..., :2], 0.0)
    return keypoints.astype(np.float32)


def resolve_image(root: Path, name: str, where: str) -> Path:
    """``root / name``, which must exist and stay inside ``root`` (no ``..`` or absolute escapes)."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise CPMError(f"{where}: image path {name!r} leaves the dataset root {root}")
    if not path.is_file():
        raise CPMError(f"{where}: image {name!r} not found under {root}")
    return path


def load_image(path: Path, depth: DepthSpec | None = None) -> np.ndarray:
    """An image file -> (H, W) gray or (H, W, 3) RGB uint8. A one-channel file is a depth frame, made nearness gray
    (`cpm.data.depth.to_nearness`): with ``depth`` its dtype must be ``depth.encoding``'s, without it the dtype
    decides (16-bit: millimetres, float: metres, with the synthetic frames' near 0.5 m and far 7.5 m). Colour
    files of 16 bits are scaled to 8."""
    path = Path(path)
    image = load_npy(path) if path.suffix.lower() == ".npy" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CPMError(f"{path}: not a readable image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        spec = depth or DepthSpec()
        return to_nearness(image, near=spec.near, far=spec.far, encoding=depth.encoding if depth else None,
                           where=str(path))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise CPMError(f"{path}: an image of shape {image.shape}; expected (H, W) depth or gray, or (H, W, 3) colour")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise CPMError(f"{path}: a {image.dtype} colour image; expected 8 or 16 bits")
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


class ImageSamples(Sequence):
    """Images (read lazily) with keypoints ``(N, K, 3)`` of ``skeleton``. ``to_default()`` maps them to ITOP_15."""

    def __init__(self, images: Sequence[Path], keypoints: np.ndarray, *, skeleton: str, where: str,
                 num_joints: int | None = None, indices: Sequence[int] | None = None,
                 annotated: np.ndarray | None = None, boxes: np.ndarray | None = None) -> None:
        if len(images) == 0:
            raise CPMError(f"{where}: no samples")
        self.keypoints = check_keypoints(keypoints, num_joints or np.shape(keypoints)[1], where)
        if len(images) != len(self.keypoints):
            raise CPMError(f"{where}: {len(images)} images for {len(self.keypoints)} annotations")
        self.images = list(images)
        self.skeleton = skeleton
        self.where = where
        self.indices = list(range(len(self.images))) if indices is None else list(indices)
        self.depth: DepthSpec | None = None  # data.depth; None: a one-channel file's dtype tells its encoding
        # (N, 3) objpos x, y and scale as annotated (NaN where a person has none), or None
        self.annotated = None if annotated is None else np.asarray(annotated, dtype=np.float64).reshape(-1, 3)
        if self.annotated is not None and len(self.annotated) != len(self.keypoints):
            raise CPMError(f"{where}: {len(self.annotated)} annotated positions for {len(self.keypoints)} people")
        # (N, 4) person boxes x, y, w, h (NaN where a person has none), or None
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.boxes is not None and len(self.boxes) != len(self.keypoints):
            raise CPMError(f"{where}: {len(self.boxes)} boxes for {len(self.keypoints)} people")
        self.crop_around = "keypoints"  # data.crop_around: "box" centres on the person's box where there is one

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        n = self.indices[i]
        keypoints = self.keypoints[n]
        box = self.boxes[n] if self.crop_around == "box" and self.boxes is not None else None
        if box is not None and np.isfinite(box).all() and box[2] > 0 and box[3] > 0:
            center, scale = (box[:2] + box[2:] / 2).astype(np.float32), float(max(box[2], box[3]))
        else:
            center, scale = person_box(keypoints)
        sample = {"image": load_image(self.images[n], self.depth), "keypoints": keypoints, "center": center,
                  "scale": scale, "index": n}
        if self.annotated is not None and np.isfinite(self.annotated[n]).all():
            sample["objpos"], sample["annotated_scale"] = self.annotated[n, :2].astype(np.float32), self.annotated[n, 2]
        return sample

    def subset(self, positions: Sequence[int]) -> ImageSamples:
        """The samples at ``positions`` (of this sequence), sharing the arrays."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.indices = [self.indices[p] for p in positions]
        return view

    def exclude(self, indices: Sequence[int]) -> ImageSamples:
        """Without the samples whose dataset index is in ``indices`` (`cpm.data.datasets.exclude`)."""
        dropped = set(indices)
        return self.subset([p for p, n in enumerate(self.indices) if n not in dropped])

    def to_default(self) -> ImageSamples:
        """The same samples with keypoints in the default ITOP_15 order (unmapped joints unlabeled)."""
        return self.to_skeleton(ITOP_15.name)

    def to_skeleton(self, name: str) -> ImageSamples:
        """The same samples with keypoints of skeleton ``name`` (`cpm.skeleton.map_keypoints`: the same joints by
        name, or the ITOP-15 mapping); ValueError when there is no mapping."""
        view = self.subset(range(len(self)))
        view.keypoints = map_keypoints(self.keypoints, self.skeleton, get_skeleton(name).name).astype(np.float32)
        view.skeleton = name
        return view


@dataclass
class KeypointSet:
    """Keypoints without images: ``keypoints`` (N, K, 3) of ``skeleton``."""

    keypoints: np.ndarray
    skeleton: str

    def __len__(self) -> int:
        return len(self.keypoints)

    def to_default(self) -> KeypointSet:
        return KeypointSet(map_to_default(self.keypoints, self.skeleton), ITOP_15.name)


def image_folder(path: Path, root: str | Path | None) -> Path:
    """The image folder of annotation file ``path``: ``root`` if given, else its ``images/`` subfolder or folder."""
    if root is not None:
        folder = Path(root)
    else:
        folder = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    if not folder.is_dir():
        raise CPMError(f"{folder}: image folder not found")
    return folder


def read_json(path: Path):
    if not path.is_file():
        raise CPMError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CPMError(f"{path}: invalid JSON ({error})") from None


def json_key(entry: dict, key: str, where: str):
    """``entry[key]``, or CPMError naming ``where`` and the missing key."""
    if not isinstance(entry, dict) or key not in entry:
        raise CPMError(f"{where}: missing key {key!r}")
    return entry[key]
