"""Readers of text annotation files: a user's CSV / JSON list, the HRNet / mmpose MPII list, and COCO-style
keypoint JSON (COCO itself and mmpose's J-HMDB files). Each returns `cpm.data.datasets.samples.ImageSamples`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cpm.data.datasets.samples import ImageSamples, image_folder, json_key, read_json, resolve_image
from cpm.errors import CPMError
from cpm.skeleton import COCO_17, ITOP_15, JHMDB_15, MPII_16, get_skeleton


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


def read_coco(path: str | Path, *, image_root: str | Path | None = None) -> ImageSamples:
    """COCO keypoints JSON (``images``, ``annotations`` with ``keypoints`` [x, y, v] * K, ``categories``), one
    sample per annotated person (crowds and people without keypoints are left out). COCO's v is this project's.
    The skeleton is told from the category's keypoint names: COCO 17 (0-based pixels) or J-HMDB 15 (mmpose's
    J-HMDB files, which keep the 1-based MATLAB pixels of J-HMDB's ``pos_img``: labeled joints get 1 taken off,
    as mmpose's own J-HMDB loader does, so they agree with `cpm.data.datasets.mat_readers.read_jhmdb`)."""
    path = Path(path)
    data = read_json(path)
    for key in ("images", "annotations", "categories"):
        json_key(data, key, str(path))
    names = tuple(json_key(data["categories"][0], "keypoints", f"{path}: categories[0]")) if data["categories"] else ()
    skeletons = {COCO_17.joint_names: COCO_17, JHMDB_15.joint_names: JHMDB_15}
    if names not in skeletons:
        raise CPMError(f"{path}: categories[0].keypoints is neither the COCO 17 nor the J-HMDB 15 joint list")
    skeleton = skeletons[names]
    files = {}
    for n, image in enumerate(data["images"]):
        files[json_key(image, "id", f"{path}: images[{n}]")] = json_key(image, "file_name", f"{path}: images[{n}]")
    root = image_folder(path, image_root)
    images, keypoints = [], []
    for n, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{n}]"
        values = np.asarray(json_key(annotation, "keypoints", where), dtype=np.float64)
        if annotation.get("iscrowd", 0) or not (values[2::3] > 0).any():
            continue
        if values.size != 3 * skeleton.num_joints:
            raise CPMError(f"{where}: {values.size // 3} keypoints, expected {skeleton.num_joints}")
        image_id = json_key(annotation, "image_id", where)
        if image_id not in files:
            raise CPMError(f"{where}: image_id {image_id} is not in images")
        images.append(resolve_image(root, files[image_id], where))
        person = values.reshape(-1, 3)
        if skeleton is JHMDB_15:
            person[person[:, 2] > 0, :2] -= 1
        keypoints.append(person)
    return ImageSamples(images, np.array(keypoints).reshape(-1, skeleton.num_joints, 3), skeleton=skeleton.name,
                        where=str(path), num_joints=skeleton.num_joints)
