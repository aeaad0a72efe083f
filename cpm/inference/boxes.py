"""Person boxes for prediction: one ``(x, y, width, height)`` in image pixels per image, checked (`check_box`), read
from a file (`read_boxes`: three JSON layouts and CSV) and matched to an input by its path or file name
(`box_for`). ``cpm predict --boxes FILE`` reads them here; errors name the file as ``--boxes FILE``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cpm.data.datasets.json_readers import is_number
from cpm.errors import CPMError

__all__ = ["Box", "box_for", "check_box", "read_boxes", "read_people_boxes"]

Box = Sequence[float]  # (x, y, width, height) in image pixels


def check_box(box: Box, where: str) -> tuple[float, float, float, float]:
    """(x, y, width, height) of finite numbers with a positive width or height, or `CPMError` naming ``where``."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not np.isfinite(values).all() or min(values[2:]) < 0 or max(values[2:]) <= 0:
        raise CPMError(f"{where}: expected [x, y, width, height] with a positive width or height, got {box!r}")
    return values  # type: ignore[return-value]


def read_boxes(path: str | Path) -> dict[str, tuple[float, float, float, float]]:
    """A boxes file -> {image name: (x, y, width, height)} in image pixels.

    JSON: ``{"a.png": [x, y, w, h], ...}``, ``[{"image": "a.png", "bbox": [x, y, w, h]}, ...]`` or COCO's
    ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "bbox"}]}`` (per image the annotation with the
    highest ``score``, else the largest box). CSV: ``image, x, y, w, h`` rows (a header row is skipped). Bad input
    raises `CPMError` naming the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise CPMError(f"--boxes {path}: no such file")
    boxes = _json_boxes(path) if path.suffix.lower() == ".json" else _csv_boxes(path)
    if not boxes:
        raise CPMError(f"--boxes {path}: no boxes")
    return boxes


def _json_boxes(path: Path) -> dict[str, tuple]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CPMError(f"--boxes {path}: invalid JSON ({error})") from None
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return _coco_boxes(data, path)
    boxes: dict[str, tuple] = {}
    if isinstance(data, dict):
        for name, value in data.items():
            value = value.get("bbox") if isinstance(value, dict) else value
            boxes[str(name)] = check_box(value, f"--boxes {path}: {name}")
    elif isinstance(data, list):
        for n, entry in enumerate(data):
            where = f"--boxes {path}: entry {n}"
            name = entry.get("image", entry.get("file_name")) if isinstance(entry, dict) else None
            if name is None or "bbox" not in entry:
                raise CPMError(f"{where}: expected image and bbox")
            boxes[str(name)] = check_box(entry["bbox"], where)
    else:
        raise CPMError(f"--boxes {path}: expected a JSON object or list of boxes")
    return boxes


def _coco_boxes(data: dict, path: Path) -> dict[str, tuple]:
    """Per image of a COCO file the box of its annotation with the highest ``score``, else the largest box."""
    names = {image.get("id"): image.get("file_name") for image in data["images"] if isinstance(image, dict)}
    best: dict[str, tuple[float, tuple]] = {}
    for n, annotation in enumerate(data["annotations"]):
        where = f"--boxes {path}: annotations[{n}]"
        if not isinstance(annotation, dict) or "bbox" not in annotation or "image_id" not in annotation:
            raise CPMError(f"{where}: expected image_id and bbox")
        name = names.get(annotation["image_id"])
        if name is None:
            raise CPMError(f"{where}: image_id {annotation['image_id']!r} is not in images")
        box = check_box(annotation["bbox"], where)
        rank = float(annotation.get("score", box[2] * box[3]))
        if name not in best or rank > best[name][0]:
            best[name] = (rank, box)
    return {name: box for name, (_, box) in best.items()}


def _csv_boxes(path: Path) -> dict[str, tuple]:
    boxes: dict[str, tuple] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for line, row in enumerate(csv.reader(file), start=1):
            if not row or (line == 1 and len(row) > 1 and not is_number(row[1])):
                continue
            if len(row) != 5:
                raise CPMError(f"--boxes {path}: line {line}: expected image, x, y, width, height")
            boxes[row[0].strip()] = check_box(row[1:], f"--boxes {path}: line {line}")
    return boxes


def box_for(boxes: dict[str, tuple], path: Path, source: str | Path) -> tuple:
    """The box of input ``path``: by the path as given, else by its file name (``source``: the boxes file)."""
    for key in (str(path), path.as_posix(), path.name):
        if key in boxes:
            return boxes[key]
    by_name = {Path(key).name: box for key, box in boxes.items()}
    if path.name in by_name:
        return by_name[path.name]
    raise CPMError(f"--boxes {source}: no box for {path.name}")


def read_people_boxes(path: str | Path) -> dict[str, list[tuple[tuple[float, float, float, float], float]]]:
    """Every person box of each image, with its score: {image name: [((x, y, width, height), score), ...]}.

    JSON: COCO's ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "bbox"[, "score"]}]}`` (a
    keypoints file's people, or a detector's boxes in that layout; crowds left out) or ``[{"image", "bbox"[,
    "score"]}, ...]`` with an entry per person. CSV: ``image, x, y, w, h[, score]`` rows. A missing score is 1. Bad
    input raises `CPMError` naming the file as ``--people FILE`` and the entry."""
    path = Path(path)
    if not path.is_file():
        raise CPMError(f"--people {path}: no such file")
    people: dict[str, list] = {}

    def add(name, box, score, where: str) -> None:
        try:
            value = float(score)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise CPMError(f"{where}: score must be a number, got {score!r}")
        people.setdefault(str(name), []).append((check_box(box, where), value))

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CPMError(f"--people {path}: invalid JSON ({error})") from None
        if isinstance(data, dict) and "annotations" in data and "images" in data:
            names = {image.get("id"): image.get("file_name") for image in data["images"] if isinstance(image, dict)}
            for n, annotation in enumerate(data["annotations"]):
                where = f"--people {path}: annotations[{n}]"
                if not isinstance(annotation, dict) or "bbox" not in annotation or "image_id" not in annotation:
                    raise CPMError(f"{where}: expected image_id and bbox")
                if names.get(annotation["image_id"]) is None:
                    raise CPMError(f"{where}: image_id {annotation['image_id']!r} is not in images")
                if not annotation.get("iscrowd", 0):
                    add(names[annotation["image_id"]], annotation["bbox"], annotation.get("score", 1.0), where)
        elif isinstance(data, list):
            for n, entry in enumerate(data):
                where = f"--people {path}: entry {n}"
                name = entry.get("image", entry.get("file_name")) if isinstance(entry, dict) else None
                if name is None or "bbox" not in entry:
                    raise CPMError(f"{where}: expected image and bbox")
                add(name, entry["bbox"], entry.get("score", 1.0), where)
        else:
            raise CPMError(f"--people {path}: expected a COCO file or a JSON list of {{image, bbox, score}}")
    else:
        with path.open(newline="", encoding="utf-8") as file:
            for line, row in enumerate(csv.reader(file), start=1):
                if not row or (line == 1 and len(row) > 1 and not is_number(row[1])):
                    continue
                if len(row) not in (5, 6):
                    raise CPMError(f"--people {path}: line {line}: expected image, x, y, width, height[, score]")
                add(row[0].strip(), row[1:5], row[5] if len(row) == 6 else 1.0, f"--people {path}: line {line}")
    if not people:
        raise CPMError(f"--people {path}: no boxes")
    return people
