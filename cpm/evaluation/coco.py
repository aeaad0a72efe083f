"""COCO keypoint evaluation: object keypoint similarity (OKS), OKS-NMS, and OKS AP through pycocotools.

Glossary: K joints, P predicted people, G ground-truth people, N candidates of one image. Keypoints are pixels of the
image, (..., K, 2) or (..., K, 3); the third column of ground truth is COCO's visibility v (0 not labeled), that of
predictions (a confidence) is not read. ``sigmas`` (K,) are the per-joint OKS sigmas (`cpm.skeleton.oks_sigmas`).

OKS (Ronchi & Perona 2017; pycocotools ``COCOeval.computeOks``) of a prediction against one person of area s::

    e_k = d_k^2 / (2 sigma_k)^2 / (s + eps) / 2        d_k: distance of joint k, eps = np.spacing(1)
    OKS = mean over the person's labeled joints (v > 0) of exp(-e_k)

A person with no labeled joint has no OKS here (`CPMError`): pycocotools then measures how far each predicted joint
lies outside a box twice the person's, but only to ignore predictions near such people, who never count
(``num_keypoints == 0``); `keypoint_ap` hands them to pycocotools, which does that itself.

OKS-NMS (HRNet's and mmpose's ``oks_nms``): candidates sorted by score; the best is kept and every remaining one
whose OKS with it exceeds the threshold is dropped, the kept one standing as ground truth over all K joints with
the mean of the two areas, as ``oks_iou`` does (``(a_g + a_d) / 2``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cpm.errors import CPMError
from cpm.io import write_text_atomic

# COCOeval.stats for keypoints, in its order.
AP_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
TABLE_COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def oks(predicted, ground_truth, area: float, sigmas) -> float:
    """OKS of one prediction (K, 2|3) against one person (K, 3) of ``area`` square pixels."""
    predicted, ground_truth = np.asarray(predicted, dtype=np.float64), np.asarray(ground_truth, dtype=np.float64)
    return float(oks_matrix(predicted[None], ground_truth[None], [area], sigmas)[0, 0])


def oks_matrix(predicted, ground_truth, areas, sigmas) -> np.ndarray:
    """OKS of each prediction (P, K, 2|3) against each person (G, K, 3) of ``areas`` (G,) -> (P, G)."""
    predicted = _keypoints(predicted, "predicted", 2)
    ground_truth = _keypoints(ground_truth, "ground_truth", 3)
    sigmas = _sigmas(sigmas, predicted.shape[1])
    areas = np.asarray(areas, dtype=np.float64)
    if ground_truth.shape[1] != len(sigmas) or areas.shape != ground_truth.shape[:1]:
        raise CPMError(f"oks: ground truth {ground_truth.shape} and areas {areas.shape} do not match "
                       f"{len(sigmas)} joints")
    labeled = ground_truth[..., 2] > 0  # (G, K)
    unlabeled = np.flatnonzero(~labeled.any(axis=1))
    if unlabeled.size:
        raise CPMError(f"oks: ground-truth person {unlabeled[0]} has no labeled joint (v > 0), so no OKS")
    squared = ((predicted[:, None, :, :2] - ground_truth[None, :, :, :2]) ** 2).sum(-1)  # (P, G, K)
    variances = (2 * sigmas) ** 2
    e = squared / variances / (areas[None, :, None] + np.spacing(1)) / 2
    return (np.exp(-e) * labeled).sum(-1) / labeled.sum(-1)


def oks_nms(keypoints, scores, areas, sigmas, threshold: float = 0.9) -> list[int]:
    """Greedy OKS-NMS of one image's candidates (N, K, 2|3) with ``scores`` and ``areas`` (N,): the indices kept,
    best score first (ties in input order). A candidate goes when its OKS with a better kept one is > threshold."""
    keypoints = _keypoints(keypoints, "keypoints", 2)
    scores, areas = np.asarray(scores, dtype=np.float64), np.asarray(areas, dtype=np.float64)
    if scores.shape != keypoints.shape[:1] or areas.shape != keypoints.shape[:1]:
        raise CPMError(f"oks_nms: {len(keypoints)} candidates but scores {scores.shape} and areas {areas.shape}")
    variances = (2 * _sigmas(sigmas, keypoints.shape[1])) ** 2
    order = list(np.argsort(-scores, kind="stable"))
    kept = []
    while order:
        best, rest = order[0], np.array(order[1:], dtype=int)
        kept.append(int(best))
        squared = ((keypoints[rest, :, :2] - keypoints[best, :, :2]) ** 2).sum(-1)  # (N', K)
        mean_areas = (areas[best] + areas[rest]) / 2
        similarity = np.exp(-squared / variances / (mean_areas[:, None] + np.spacing(1)) / 2).mean(-1)
        order = [int(i) for i in rest[similarity <= threshold]]
    return kept


def keypoint_ap(ground_truth: dict[str, Any], results: list[dict[str, Any]], sigmas) -> dict[str, float]:
    """COCO keypoint AP/AR of ``results`` on ``ground_truth`` (a COCO keypoints file's dict), by pycocotools'
    COCOeval with these per-joint ``sigmas``; its printing is silenced. Returns `AP_NAMES` -> value in [0, 1], or -1
    where no ground-truth person counts (APM on a file without medium people). No results scores 0 everywhere.

    ``results``: COCO results, ``{"image_id", "category_id", "keypoints": [x, y, v] * K, "score"}``. Ground-truth
    annotations without ``iscrowd`` or ``num_keypoints`` get 0 and their count of labeled joints. Neither argument is
    changed."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sigmas = _sigmas(sigmas, None)
    dataset = _checked_ground_truth(ground_truth, len(sigmas))
    results = _checked_results(results, dataset, len(sigmas))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        if results:
            detections = coco.loadRes(results)
        else:  # loadRes reads results[0]; an empty detection set scores 0
            detections = COCO()
            detections.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            detections.createIndex()
        evaluation = COCOeval(coco, detections, "keypoints")
        evaluation.params.kpt_oks_sigmas = sigmas
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(AP_NAMES, evaluation.stats, strict=True)}


def format_ap_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table of `keypoint_ap` results, one row per named setting: AP, AP50, AP75, APM, APL, AR in percent
    with one decimal; "n/a" where pycocotools says -1 (no people of that size)."""
    lines = ["| setting | " + " | ".join(TABLE_COLUMNS) + " |", "|---|" + "---:|" * len(TABLE_COLUMNS)]
    for setting, scores in rows.items():
        cells = ["n/a" if scores[name] < 0 else f"{100 * scores[name]:.1f}" for name in TABLE_COLUMNS]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(path: str | Path, results: list[dict[str, Any]]) -> Path:
    """COCO results as a JSON file, written whole or not at all (numpy numbers and arrays become JSON ones)."""
    return write_text_atomic(path, json.dumps(results, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _keypoints(keypoints, name: str, columns: int) -> np.ndarray:
    """(n, K, >= columns) finite float64 keypoints, or `CPMError` naming ``name``."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] not in (columns, 3):
        raise CPMError(f"{name}: expected keypoints (n, K, {'2 or 3' if columns == 2 else 3}), got {keypoints.shape}")
    if not np.isfinite(keypoints[..., :2]).all():
        raise CPMError(f"{name}: keypoint coordinates are not all finite")
    return keypoints


def _sigmas(sigmas, num_joints: int | None) -> np.ndarray:
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or not len(sigmas) or not (np.isfinite(sigmas) & (sigmas > 0)).all():
        raise CPMError(f"sigmas: expected K positive finite numbers, got {sigmas.tolist()}")
    if num_joints is not None and len(sigmas) != num_joints:
        raise CPMError(f"sigmas: {len(sigmas)} sigmas for keypoints of {num_joints} joints")
    return sigmas


GROUND_TRUTH_KEYS = ("id", "image_id", "category_id", "keypoints", "area", "bbox")


def _checked_ground_truth(ground_truth: dict[str, Any], num_joints: int) -> dict[str, Any]:
    """A copy of a COCO keypoints dict that pycocotools can evaluate with ``num_joints`` sigmas."""
    if not isinstance(ground_truth, dict) or not all(isinstance(ground_truth.get(key), list)
                                                     for key in ("images", "annotations", "categories")):
        raise CPMError("ground truth: expected a COCO dict with lists 'images', 'annotations' and 'categories'")
    dataset = copy.deepcopy(ground_truth)
    for category in dataset["categories"]:
        names = category.get("keypoints", [None] * num_joints)
        if len(names) != num_joints:
            raise CPMError(f"ground truth: category {category.get('id')} has {len(names)} keypoints, but there are "
                           f"{num_joints} sigmas")
    images = {image.get("id") for image in dataset["images"]}
    for annotation in dataset["annotations"]:
        missing = next((key for key in GROUND_TRUTH_KEYS if key not in annotation), None)
        if missing is not None:
            raise CPMError(f"ground truth: annotation {annotation.get('id')} has no {missing!r}")
        if annotation["image_id"] not in images:
            raise CPMError(f"ground truth: annotation {annotation['id']} is of image {annotation['image_id']}, "
                           "which 'images' does not list")
        if len(annotation["keypoints"]) != 3 * num_joints:
            raise CPMError(f"ground truth: annotation {annotation['id']} has {len(annotation['keypoints'])} keypoint "
                           f"values, not 3 x {num_joints}")
        annotation.setdefault("iscrowd", 0)
        annotation.setdefault("num_keypoints", int(np.count_nonzero(np.asarray(annotation["keypoints"])[2::3] > 0)))
    return dataset


def _checked_results(results: list[dict[str, Any]], dataset: dict[str, Any], num_joints: int) -> list[dict[str, Any]]:
    """A copy of ``results`` (loadRes writes into them), each of a known image and category with K finite joints."""
    if not isinstance(results, list):
        raise CPMError(f"results: expected a list of COCO results, got {type(results).__name__}")
    images = {image["id"] for image in dataset["images"]}
    categories = {category["id"] for category in dataset["categories"]}
    checked = []
    for i, result in enumerate(results):
        missing = next((key for key in ("image_id", "category_id", "keypoints", "score") if key not in result), None)
        if missing is not None:
            raise CPMError(f"results[{i}]: no {missing!r}")
        if result["image_id"] not in images:
            raise CPMError(f"results[{i}]: image {result['image_id']} is not in the ground truth")
        if result["category_id"] not in categories:
            raise CPMError(f"results[{i}]: category {result['category_id']} is not in the ground truth")
        keypoints = np.asarray(result["keypoints"], dtype=np.float64).ravel()
        if len(keypoints) != 3 * num_joints:
            raise CPMError(f"results[{i}]: {len(keypoints)} keypoint values, but category {result['category_id']} "
                           f"has {num_joints} keypoints (3 x {num_joints} values)")
        if not np.isfinite(keypoints).all() or not math.isfinite(result["score"]):
            raise CPMError(f"results[{i}]: keypoints or score not finite")
        checked.append({**result, "keypoints": keypoints.tolist(), "score": float(result["score"])})
    return checked
