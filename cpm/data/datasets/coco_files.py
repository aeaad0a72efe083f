"""COCO keypoints files, read and written: many people per image (Lin et al. 2014, the format of the COCO keypoints
challenge; CrowdPose and mmpose's J-HMDB files use it too, and so do this project's synthetic scenes,
`cpm.data.synthetic.crowd`).

A file holds ``images`` ({id, file_name, width, height}), ``annotations`` ({id, image_id, category_id, keypoints
[x, y, v] * K, num_keypoints, bbox [x, y, w, h], area, iscrowd}) and ``categories`` (the person category, whose
``keypoints`` names the K joints and ``skeleton`` lists the limbs as 1-based joint pairs).

`read_coco_file` validates a file and gives a `CocoFile`: the skeleton told from the category's joint names, and per
image its path, size and people as arrays (keypoints (N, K, 3), boxes (N, 4), areas, ids, iscrowd), in this
project's 0-based pixels (J-HMDB's files keep the 1-based MATLAB pixels of its ``pos_img``: labeled joints and the
boxes' corners get 1 taken off, as mmpose's J-HMDB loader does). `write_coco` writes one atomically.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cpm.data.datasets.samples import image_folder, read_json
from cpm.errors import CPMError
from cpm.io import write_text_atomic
from cpm.skeleton import JHMDB_15, SKELETONS, Skeleton, get_skeleton

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (rounding; a box at the border in this project's grid)


@dataclass
class CocoImage:
    """One image of a COCO file and its annotated people (N of them, crowds included), 0-based pixels."""

    id: Any
    file_name: str
    path: Path  # the image root / file_name (not checked to exist)
    width: int | None  # None where the file does not say (read with strict=False)
    height: int | None
    keypoints: np.ndarray  # (N, K, 3) float32 x, y, v
    boxes: np.ndarray  # (N, 4) float32 x, y, w, h; NaN where an annotation has none (strict=False)
    areas: np.ndarray  # (N,) float32: the file's area, else w * h of the box
    ids: list  # (N,) the annotations' ids; None where one has none (strict=False)
    iscrowd: np.ndarray  # (N,) bool


@dataclass
class CocoFile:
    """A validated COCO keypoints file: ``data`` the file as read (J-HMDB's in its 1-based pixels; `to_dict` has the
    ground truth in the arrays' pixels), ``skeleton`` the name of its joint set, ``category`` its person category,
    ``images`` in the file's order, under ``image_root``."""

    path: Path
    data: dict
    skeleton: str
    category: dict
    images: list[CocoImage]
    image_root: Path

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def num_joints(self) -> int:
        return get_skeleton(self.skeleton).num_joints

    def to_dict(self) -> dict:
        """The file as the COCO API (pycocotools' ``COCO``, ``COCOeval``) reads ground truth, in the pixels of
        ``images``' arrays: every person annotation with its id, keypoints, num_keypoints, bbox, area and iscrowd;
        the person category alone. CPMError where an annotation has no id or box (a file read with strict=False)."""
        annotations = []
        for image in self.images:
            for n, annotation_id in enumerate(image.ids):
                if annotation_id is None or not np.isfinite(image.boxes[n]).all():
                    raise CPMError(f"{self.path}: an annotation of image {image.id} has no id or bbox; the COCO API "
                                   "needs both")
                annotations.append(annotation_dict(annotation_id, image.id, image.keypoints[n], image.boxes[n],
                                                   float(image.areas[n]), iscrowd=bool(image.iscrowd[n]),
                                                   category_id=self.category.get("id", 1)))
        images = [{"id": image.id, "file_name": image.file_name,
                   **({"width": image.width, "height": image.height} if image.width is not None else {})}
                  for image in self.images]
        return {"images": images, "annotations": annotations, "categories": [copy.deepcopy(self.category)]}


def read_coco_file(path: str | Path, *, skeleton: str | None = None, image_root: str | Path | None = None,
                   strict: bool = True) -> CocoFile:
    """Read and validate a COCO keypoints file. The skeleton: the built-in or declared one
    (`cpm.skeleton.get_skeleton`) whose joint names are the person category's ``keypoints``, else ``skeleton`` when
    its joint count is theirs. Images lie under ``image_root`` (default: the file's ``images/`` folder, else its
    own). The person category is the first with ``keypoints``; annotations of other categories are left out.

    ``strict`` (what ground truth for the COCO API needs): every annotation has an ``id`` and a ``bbox``, every
    image its ``width`` and ``height``. Without it (what `cpm.data.datasets.json_readers.read_coco` reads for
    training) only images' ``id`` and ``file_name`` and annotations' ``image_id`` and ``keypoints`` are needed.
    A bad file is one CPMError line naming it and the entry: a missing key, keypoints that are not K triples of
    numbers with v in {0, 1, 2}, an image_id not in images, a box of non-positive size or outside its image (by more
    than `BOX_TOLERANCE`), a duplicate image or annotation id."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise CPMError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(_key(data, key, str(path)), list):
            raise CPMError(f"{path}: {key} must be a list")
    category = next((c for c in data["categories"] if isinstance(c, dict) and "keypoints" in c), None)
    if category is None:
        raise CPMError(f"{path}: categories: no category with keypoints (the joint names)")
    found = _skeleton_of(category["keypoints"], skeleton, path)
    root = image_folder(path, image_root)
    images, people = [], {}
    for n, entry in enumerate(data["images"]):
        where = f"{path}: images[{n}]"
        image_id, file_name = _key(entry, "id", where), _key(entry, "file_name", where)
        size = [_key(entry, key, where) if strict else entry.get(key) for key in ("width", "height")]
        if size[0] is not None or size[1] is not None:
            if not all(isinstance(v, int | float) and v > 0 for v in size):
                raise CPMError(f"{where}: width and height must be positive numbers, got {size}")
            size = [int(v) for v in size]
        if not isinstance(image_id, int | str):
            raise CPMError(f"{where}: id {image_id!r} is not a number or a string")
        if image_id in people:
            raise CPMError(f"{where}: duplicate id {image_id!r}")
        people[image_id] = []
        images.append((image_id, str(file_name), size))
    sizes = {image_id: size for image_id, _, size in images}
    annotation_ids = set()
    for n, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{n}]"
        if not isinstance(entry, dict):
            raise CPMError(f"{where}: not a JSON object")
        if "category_id" in entry and "id" in category and entry["category_id"] != category["id"]:
            continue
        image_id = _key(entry, "image_id", where)
        if not isinstance(image_id, int | str) or image_id not in people:
            raise CPMError(f"{where}: image_id {image_id!r} is not in images")
        annotation_id = _key(entry, "id", where) if strict else entry.get("id")
        if annotation_id is not None:
            if not isinstance(annotation_id, int | str):
                raise CPMError(f"{where}: id {annotation_id!r} is not a number or a string")
            if annotation_id in annotation_ids:
                raise CPMError(f"{where}: duplicate id {annotation_id!r}")
            annotation_ids.add(annotation_id)
        keypoints = _keypoints(_key(entry, "keypoints", where), found, where)
        box = _box(_key(entry, "bbox", where) if strict else entry.get("bbox"), sizes[image_id], found, where)
        area = entry.get("area")
        if area is None:
            area = box[2] * box[3]
        elif not isinstance(area, int | float) or not area >= 0:
            raise CPMError(f"{where}: area must be a number >= 0, got {area!r}")
        iscrowd = entry.get("iscrowd", 0)
        if iscrowd not in (0, 1, None):
            raise CPMError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}")
        people[image_id].append((keypoints, box, float(area), annotation_id, bool(iscrowd)))
    k = found.num_joints
    result = []
    for image_id, file_name, (width, height) in images:
        rows = people[image_id]
        result.append(CocoImage(
            id=image_id, file_name=file_name, path=root / file_name, width=width, height=height,
            keypoints=np.array([r[0] for r in rows], np.float32).reshape(-1, k, 3),
            boxes=np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
            areas=np.array([r[2] for r in rows], np.float32), ids=[r[3] for r in rows],
            iscrowd=np.array([r[4] for r in rows], bool)))
    return CocoFile(path=path, data=data, skeleton=found.name, category=category, images=result, image_root=root)


def write_coco(path: str | Path, images: list[dict], people: list[list[dict]], skeleton: str | Skeleton) -> Path:
    """Write a COCO keypoints file atomically (`cpm.io.atomic_write`): ``images`` [{file_name, width, height}, ...]
    (id: its given ``id``, else its position + 1), ``people[i]`` the people of image i [{keypoints (K, 3), bbox
    [x, y, w, h], area}, ...] (annotation ids 1, 2, ... in that order; unlabeled joints written as 0, 0, 0 as COCO
    does), ``skeleton`` a name or a `cpm.skeleton.Skeleton`: the category's joint names and 1-based limbs."""
    write_text_atomic(path, json.dumps(coco_dict(images, people, skeleton), separators=(",", ":")))
    return Path(path)


def coco_dict(images: list[dict], people: list[list[dict]], skeleton: str | Skeleton) -> dict:
    """The dict `write_coco` writes."""
    if len(images) != len(people):
        raise CPMError(f"COCO file: {len(images)} images but people for {len(people)}")
    skeleton = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(skeleton.joint_names),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs]}
    written, annotations = [], []
    for n, (image, persons) in enumerate(zip(images, people, strict=True)):
        image_id = image.get("id", n + 1)
        written.append({"id": image_id, "file_name": str(image["file_name"]), "width": int(image["width"]),
                        "height": int(image["height"])})
        for person in persons:
            keypoints = np.asarray(person["keypoints"], np.float64)
            if keypoints.shape != (skeleton.num_joints, 3):
                raise CPMError(f"COCO file: image {image['file_name']}: keypoints of shape {keypoints.shape}, expected "
                               f"({skeleton.num_joints}, 3) of {skeleton.name}")
            annotations.append(annotation_dict(len(annotations) + 1, image_id, keypoints, person["bbox"],
                                               float(person["area"])))
    return {"images": written, "annotations": annotations, "categories": [category]}


def annotation_dict(annotation_id, image_id, keypoints: np.ndarray, bbox, area: float, *, iscrowd: bool = False,
                    category_id=1) -> dict:
    """One COCO annotation: keypoints (K, 3) flattened (unlabeled joints 0, 0, 0; 2 decimals), num_keypoints the
    labeled (v > 0) count, bbox x, y, w, h."""
    labeled = keypoints[:, 2] > 0
    flat = [v for (x, y, flag), keep in zip(keypoints.tolist(), labeled, strict=True)
            for v in ((round(x, 2), round(y, 2), int(flag)) if keep else (0, 0, 0))]
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id, "keypoints": flat,
            "num_keypoints": int(labeled.sum()), "bbox": [round(float(v), 2) for v in bbox], "area": round(area, 2),
            "iscrowd": int(iscrowd)}


def _key(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise CPMError(f"{where}: missing key {key!r}")
    return entry[key]


def _known_skeletons() -> list[Skeleton]:
    """The built-in skeletons, then those configs declared (`cpm.skeleton.register_skeleton`)."""
    from cpm import skeleton as skeletons

    return [*SKELETONS.values(), *skeletons._CUSTOM.values()]


def _skeleton_of(names: Any, skeleton: str | None, path: Path) -> Skeleton:
    """The skeleton whose joints are ``names`` (the category's ``keypoints``), else ``skeleton`` if it has as many."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CPMError(f"{path}: categories: keypoints must be a list of joint names")
    for known in _known_skeletons():
        if list(known.joint_names) == names:
            return known
    if skeleton is not None:
        try:
            given = get_skeleton(skeleton)
        except ValueError as error:
            raise CPMError(f"{path}: {error}") from None
        if given.num_joints == len(names):
            return given
        raise CPMError(f"{path}: its {len(names)} joints are no known skeleton's, and skeleton {given.name!r} has "
                       f"{given.num_joints}")
    raise CPMError(f"{path}: its {len(names)} joints ({', '.join(names[:3])}, ...) are no known skeleton's; name a "
                   f"skeleton of {len(names)} joints (data.skeleton, or declare one with these joint names)")


def _keypoints(values: Any, skeleton: Skeleton, where: str) -> np.ndarray:
    """An annotation's keypoints as (K, 3) float64, 0-based; CPMError naming ``where``."""
    try:
        keypoints = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CPMError(f"{where}: keypoints must be a list of numbers") from None
    k = skeleton.num_joints
    if keypoints.size != 3 * k:
        raise CPMError(f"{where}: {keypoints.size / 3:g} keypoints, expected {k} ({skeleton.name})")
    keypoints = keypoints.reshape(k, 3)
    if not np.isin(keypoints[:, 2], (0.0, 1.0, 2.0)).all():
        raise CPMError(f"{where}: visibility flags must be 0, 1 or 2")
    labeled = keypoints[:, 2] > 0
    if not np.isfinite(keypoints[labeled, :2]).all():
        raise CPMError(f"{where}: NaN or infinite coordinates of a labeled joint")
    keypoints[~labeled, :2] = np.nan_to_num(keypoints[~labeled, :2], nan=0.0, posinf=0.0, neginf=0.0)
    if skeleton is JHMDB_15:
        keypoints[labeled, :2] -= 1
    return keypoints


def _box(values: Any, size: list, skeleton: Skeleton, where: str) -> list[float]:
    """An annotation's bbox [x, y, w, h] (0-based), checked against its image's ``size`` (width, height, or None:
    unchecked); NaN * 4 where there is none."""
    if values is None:
        return [math.nan] * 4
    try:
        box = [float(v) for v in values] if isinstance(values, list) else []
    except (TypeError, ValueError):
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise CPMError(f"{where}: bbox must be 4 numbers x, y, w, h, got {values!r}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise CPMError(f"{where}: bbox {values} has a non-positive width or height")
    width, height = size
    if width is not None and (min(x, y) < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE
                              or y + h > height + BOX_TOLERANCE):
        raise CPMError(f"{where}: bbox {values} lies outside its {width} x {height} image")
    if skeleton is JHMDB_15:  # checked in the file's own pixels, then made 0-based
        box[0], box[1] = x - 1, y - 1
    return box
