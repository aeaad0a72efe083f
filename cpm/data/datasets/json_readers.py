"""Readers of text annotation files: a user's CSV / JSON list, the HRNet / mmpose MPII list, and COCO-style
keypoint JSON (COCO itself, mmpose's J-HMDB files, this project's scenes; `cpm.data.datasets.coco_files`). Each
returns `cpm.data.datasets.samples.ImageSamples`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cpm.data.datasets.coco_files import read_coco_file
from cpm.data.datasets.samples import ImageSamples, image_folder, json_key, read_json, resolve_image
from cpm.errors import CPMError
from cpm.skeleton import ITOP_15, MPII_16, get_skeleton


def read_list(path: str | Path, *, image_root: str | Path | None = None, skeleton: str = ITOP_15.name,
              num_joints: int | None = None, check_joints: bool = False) -> ImageSamples:
    """A user's own list. CSV: one row per image, ``image, x0, y0, v0, x1, y1, v1, ...`` (a header row whose
    second cell is not a number is skipped). JSON: ``[{"image": "a.png", "keypoints": [[x, y, v], ...]}, ...]``.
    Coordinates are 0-based pixels, v in {0, 1, 2}. Images are relative to ``image_root`` (default: the
    list's folder, or its ``images/`` subfolder). With ``check_joints`` every row must have the joints of
    ``skeleton`` (a built-in or a declared one, `cpm.skeleton.get_skeleton`), else one line names the file and
    both counts."""
    path = Path(path)
    root = image_folder(path, image_root)
    names, rows = [], []
    if path.suffix.lower() == ".json":
        entries = read_json(path)
        if not isinstance(entries, list):
            raise CPMError(f"{path}: expected a JSON list of {{image, keypoints}} entries")
        for n, entry in enumerate(entries):
            names.append(str(json_key(entry, "image", f"{path}: entry {n}")))
            rows.append(np.asarray(json_key(entry, "keypoints", f"{path}: entry {n}"), dtype=np.float64).reshape(-1))
    else:
        if not path.is_file():
            raise CPMError(f"{path}: no such file")
        with path.open(newline="", encoding="utf-8") as file:
            for line, row in enumerate(csv.reader(file), start=1):
                if not row or (line == 1 and len(row) > 1 and not is_number(row[1])):
                    continue
                try:
                    rows.append(np.array([float(v) for v in row[1:]]))
                except ValueError:
                    raise CPMError(f"{path}: line {line}: coordinates must be numbers") from None
                names.append(row[0].strip())
    if not rows:
        raise CPMError(f"{path}: no samples")
    widths = {len(row) for row in rows}
    if len(widths) != 1 or widths.pop() % 3:
        raise CPMError(f"{path}: every sample needs the same number of joints, each x, y, v")
    keypoints = np.stack(rows).reshape(len(rows), -1, 3)
    if check_joints:
        expected = get_skeleton(skeleton).num_joints
        if keypoints.shape[1] != expected:
            raise CPMError(f"{path}: {keypoints.shape[1]} joints per sample, but data.skeleton {skeleton!r} has "
                           f"{expected}; declare a {keypoints.shape[1]}-joint skeleton ([skeleton] or "
                           "data.skeleton = \"file.toml\")")
        num_joints = expected
    images = [resolve_image(root, name, f"{path}: sample {n}") for n, name in enumerate(names)]
    return ImageSamples(images, keypoints, skeleton=skeleton, where=str(path), num_joints=num_joints)


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (a CSV field that is a coordinate, not a name)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_mpii_json(path: str | Path, *, image_root: str | Path | None = None) -> ImageSamples:
    """HRNet's / mmpose's MPII list ``[{"image", "center", "scale", "joints": 16x[x, y], "joints_vis": 16}]``,
    1-based MATLAB pixels. ``joints_vis`` 1 -> v = 2, 0 -> unlabeled (the list keeps no occlusion flag). ``center``
    and ``scale`` (MPII's objpos and scale) are kept as the samples' annotated position."""
    path = Path(path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise CPMError(f"{path}: expected a JSON list of MPII entries")
    root = image_folder(path, image_root)
    images, keypoints, annotated = [], [], []
    for n, entry in enumerate(entries):
        where = f"{path}: entry {n}"
        images.append(resolve_image(root, str(json_key(entry, "image", where)), where))
        center = np.asarray(entry.get("center", [np.nan, np.nan]), dtype=np.float64).reshape(-1)
        annotated.append([*(center[:2] - 1), float(entry.get("scale", np.nan))] if center.size == 2 else [np.nan] * 3)
        joints = np.asarray(json_key(entry, "joints", where), dtype=np.float64)
        visible = np.asarray(json_key(entry, "joints_vis", where), dtype=np.float64).reshape(-1)
        if joints.shape != (16, 2) or visible.shape != (16,):
            raise CPMError(f"{where}: joints must be 16 x [x, y] with 16 joints_vis, got {joints.shape}")
        keypoints.append(np.concatenate([joints - 1, 2.0 * (visible[:, None] > 0)], axis=1))
    return ImageSamples(images, np.array(keypoints).reshape(-1, 16, 3), skeleton=MPII_16.name, where=str(path),
                        num_joints=16, annotated=np.array(annotated))


def read_coco(path: str | Path, *, image_root: str | Path | None = None, skeleton: str | None = None) -> ImageSamples:
    """A COCO keypoints file (`cpm.data.datasets.coco_files.read_coco_file`, read without its ``strict`` checks:
    annotations need only ``image_id`` and ``keypoints``), one sample per annotated person, with the person's box
    (NaN where the file has none); crowds and people without a labeled joint are left out. COCO's v is this
    project's. The skeleton is told from the category's joint names (COCO 17, J-HMDB 15, this project's ITOP-15
    scenes, a declared skeleton named as the file's joints), else ``skeleton`` when its joint count is the file's.
    mmpose's J-HMDB files keep the 1-based MATLAB pixels of J-HMDB's ``pos_img``: labeled joints get 1 taken off, as
    mmpose's own J-HMDB loader does, so they agree with `cpm.data.datasets.mat_readers.read_jhmdb`."""
    coco = read_coco_file(path, skeleton=skeleton, image_root=image_root, strict=False)
    images, keypoints, boxes = [], [], []
    for image in coco.images:
        for person, box, crowd in zip(image.keypoints, image.boxes, image.iscrowd, strict=True):
            if crowd or not (person[:, 2] > 0).any():
                continue
            images.append(resolve_image(coco.image_root, image.file_name, f"{path}: image {image.id!r}"))
            keypoints.append(person)
            boxes.append(box)
    k = coco.num_joints
    return ImageSamples(images, np.array(keypoints).reshape(-1, k, 3), skeleton=coco.skeleton, where=str(path),
                        num_joints=k, boxes=np.array(boxes).reshape(-1, 4))
