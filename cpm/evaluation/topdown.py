"""Top-down on person boxes: a single-person model run on every box of an image, scored by COCO keypoint AP.

The boxes are an image's ground-truth person boxes, a detector's (a COCO results JSON of person boxes with scores,
the file mmpose and HRNet read), or detector-like boxes made from the ground truth (`detector_like_boxes`: jittered,
some missed, some doubled, some false alarms). Each box becomes a sample cropped as training crops with
``data.crop_around = "box"`` (centred on the box, side ``data.crop_padding`` x its longer side), so the crop pipeline,
``eval.scales`` and ``eval.flip_test`` are those of `cpm.evaluation.evaluate`. The final stage's keypoints, mapped back
to image pixels, make one instance per box, scored as HRNet and mmpose score them: the box's score times the mean
confidence of the joints whose peak belief exceeds `VISIBLE_CONFIDENCE`. Instances of one image whose OKS exceeds
``eval.oks_nms`` are merged by OKS-NMS (the higher score stays), and the rest go to the COCO API
(`cpm.evaluation.coco.keypoint_ap`) with the skeleton's OKS sigmas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cpm.errors import CPMError

__all__ = ["VISIBLE_CONFIDENCE", "box_samples", "detector_like_boxes", "evaluate_topdown", "ground_truth_boxes",
           "instances_to_results", "mean_pose_ap", "merge_instances", "read_detections"]

VISIBLE_CONFIDENCE = 0.2  # HRNet's in_vis_thre: joints above it make an instance's keypoint score
BoxList = dict[int, list[tuple[np.ndarray, float]]]  # image id -> [(x, y, w, h), score]


def ground_truth_boxes(coco) -> BoxList:
    """Every image's annotated person boxes with score 1: the non-crowd people with a labeled joint (those the
    keypoint evaluation counts; mmpose's ``use_gt_bbox``)."""
    return {image.id: [(box, 1.0) for box in _gt_people(image)] for image in coco.images}


def detector_like_boxes(coco, seed: int = 0, *, jitter: float = 0.1, miss: float = 0.05, duplicate: float = 0.1,
                        false_alarms: float = 0.2) -> list[dict[str, Any]]:
    """Boxes as a person detector gives them, made from the ground truth with a fixed ``seed``: each person's box
    moved by N(0, ``jitter`` x its size) in x and y, its width and height scaled by exp(N(0, ``jitter``)), scored
    U(0.5, 1); a person missed with probability ``miss``; a second, lower-scored box of one person with probability
    ``duplicate``; and Poisson(``false_alarms``) boxes per image of person-like size where nobody is, scored
    U(0.05, 0.5). Boxes are clipped to the image. Returns a COCO results list of person boxes (``image_id``,
    ``category_id`` 1, ``bbox``, ``score``), as a detector's file holds them."""
    rng = np.random.default_rng(seed)
    detections = []
    for image in coco.images:
        people = _gt_people(image)
        boxes: list[tuple[np.ndarray, float]] = []
        for box in people:
            if rng.random() < miss:
                continue
            score = float(rng.uniform(0.5, 1.0))
            boxes.append((_jittered(box, rng, jitter), score))
            if rng.random() < duplicate:
                boxes.append((_jittered(box, rng, jitter), score * float(rng.uniform(0.5, 0.9))))
        for _ in range(rng.poisson(false_alarms)):
            height = float(rng.uniform(0.2, 0.6)) * image.height
            width = height * float(rng.uniform(0.3, 0.6))
            x, y = rng.uniform(0, image.width - width), rng.uniform(0, image.height - height)
            boxes.append((np.array([x, y, width, height]), float(rng.uniform(0.05, 0.5))))
        for box, score in boxes:
            clipped = _clip(box, image.width, image.height)
            if clipped is not None:
                detections.append({"image_id": image.id, "category_id": 1,
                                   "bbox": [round(float(v), 2) for v in clipped], "score": round(score, 4)})
    return detections


def _gt_people(image) -> np.ndarray:
    keep = (~image.iscrowd) & ((image.keypoints[:, :, 2] > 0).any(axis=1))
    return image.boxes[keep].astype(np.float64)


def _jittered(box: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    x, y, w, h = box
    cx, cy = x + w / 2 + rng.normal(0, jitter * w), y + h / 2 + rng.normal(0, jitter * h)
    w, h = w * np.exp(rng.normal(0, jitter)), h * np.exp(rng.normal(0, jitter))
    return np.array([cx - w / 2, cy - h / 2, w, h])


def _clip(box: np.ndarray, width: float, height: float) -> np.ndarray | None:
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], width), min(box[1] + box[3], height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0])


def read_detections(path: str | Path, coco) -> BoxList:
    """A COCO results JSON of person boxes (``[{"image_id", "bbox": [x, y, w, h], "score"[, "category_id"]}]``) ->
    boxes per image of ``coco``. Entries of another category than 1 (person) are left out; a bad entry is a
    `CPMError` naming the file and the entry."""
    from cpm.data.datasets.samples import read_json

    path = Path(path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise CPMError(f"{path}: expected a COCO results list of person boxes [{{image_id, bbox, score}}, ...]")
    known = {image.id for image in coco.images}
    boxes: BoxList = {image_id: [] for image_id in known}
    for n, entry in enumerate(entries):
        where = f"{path}: entry {n}"
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            raise CPMError(f"{where}: expected {{image_id, bbox, score}}")
        if entry.get("category_id", 1) != 1:
            continue
        if entry["image_id"] not in known:
            raise CPMError(f"{where}: image_id {entry['image_id']!r} is not an image of the annotations")
        try:
            box = np.asarray(entry["bbox"], dtype=np.float64).reshape(4)
            score = float(entry.get("score", 1.0))
        except (TypeError, ValueError):
            raise CPMError(f"{where}: bbox must be [x, y, width, height] and score a number") from None
        if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0 or not np.isfinite(score):
            raise CPMError(f"{where}: bbox {entry['bbox']!r} needs a positive width and height (score {score})")
        boxes[entry["image_id"]].append((box, score))
    return boxes


def box_samples(coco, boxes: BoxList, crop_padding: float):
    """One `cpm.data.datasets.samples.ImageSamples` sample per box (cropped around the box), and per sample its
    (image id, box, box score)."""
    from cpm.data.datasets.samples import ImageSamples

    paths, keypoints, sample_boxes, meta = [], [], [], []
    num_joints = coco.num_joints
    for image in coco.images:
        for box, score in boxes.get(image.id, []):
            paths.append(image.path)
            keypoints.append(np.zeros((num_joints, 3)))  # unknown: the AP of the instances scores them
            sample_boxes.append(box)
            meta.append((image.id, np.asarray(box, dtype=np.float64), float(score)))
    if not paths:
        raise CPMError(f"{coco.where}: no person boxes to run the model on")
    samples = ImageSamples(paths, np.stack(keypoints), skeleton=coco.skeleton, where=coco.where,
                           num_joints=num_joints, boxes=np.stack(sample_boxes))
    samples.crop_around = "box"
    return samples, meta


def merge_instances(keypoints: np.ndarray, confidence: np.ndarray, meta: Sequence[tuple[int, np.ndarray, float]],
                    sigmas: np.ndarray, *, nms_threshold: float = 0.9) -> list[tuple[int, float]]:
    """Keypoints (N, K, 2) in image pixels and their confidence (N, K), one per box of ``meta`` (image id, box, box
    score) -> the instances that stay, as (index into the N, score): each scored as the box's score times the mean
    confidence of its joints above `VISIBLE_CONFIDENCE`, then OKS-NMS per image (box areas; module docstring)."""
    from cpm.evaluation.coco import oks_nms

    by_image: dict[int, list[int]] = defaultdict(list)
    for n, (image_id, _, _) in enumerate(meta):
        by_image[image_id].append(n)
    kept = []
    for members in by_image.values():
        scores, areas = [], []
        for n in members:
            visible = confidence[n] > VISIBLE_CONFIDENCE
            keypoint_score = float(confidence[n][visible].mean()) if visible.any() else 0.0
            scores.append(meta[n][2] * keypoint_score)
            areas.append(float(meta[n][1][2] * meta[n][1][3]))
        people = np.concatenate([keypoints[members], confidence[members][..., None]], axis=-1)
        for k in oks_nms(people, np.array(scores), np.array(areas), sigmas, threshold=nms_threshold):
            kept.append((members[k], scores[k]))
    return kept


def instances_to_results(keypoints: np.ndarray, confidence: np.ndarray, meta: Sequence[tuple[int, np.ndarray, float]],
                         sigmas: np.ndarray, *, nms_threshold: float = 0.9) -> list[dict[str, Any]]:
    """`merge_instances` as COCO keypoint results: {"image_id", "category_id" 1, "keypoints" [x, y, confidence] * K,
    "score"}."""
    results = []
    for n, score in merge_instances(keypoints, confidence, meta, sigmas, nms_threshold=nms_threshold):
        flat = np.concatenate([keypoints[n], confidence[n][:, None]], axis=1).reshape(-1)
        results.append({"image_id": meta[n][0], "category_id": 1, "keypoints": [round(float(v), 3) for v in flat],
                        "score": round(float(score), 6)})
    return results


def evaluate_topdown(checkpoint: str | Path, annotations: str | Path, *, boxes: str = "gt",
                     overrides: dict[str, Any] | None = None, device_name: str = "auto", progress: bool = True,
                     detection_seed: int = 0) -> dict[str, Any]:
    """A checkpoint on every person box of the images of a COCO keypoints file -> {"stats": COCO AP / AR
    (`cpm.evaluation.coco.keypoint_ap`), "results": the COCO results, "boxes": how many boxes ran, "detections":
    the boxes when ``boxes`` is "detector-like", "flip_test": whether it was on}. ``boxes``: "gt" (the annotated
    boxes), "detector-like" (`detector_like_boxes` with ``detection_seed``) or a COCO results file of person boxes.
    ``overrides``: config sections laid over the checkpoint's (e.g. {"eval": {"flip_test": True}})."""
    import torch

    from cpm.config import apply, validate
    from cpm.data.dataset import PoseDataset
    from cpm.data.datasets.coco_files import read_coco_file
    from cpm.data.loader import make_loader
    from cpm.device import resolve_amp, resolve_device
    from cpm.evaluation.coco import keypoint_ap
    from cpm.evaluation.evaluate import evaluate
    from cpm.runtime.build import build_codec, build_loss, dataset_options
    from cpm.runtime.checkpoint import load_model
    from cpm.skeleton import get_skeleton, oks_sigmas
    from cpm.targets.flip import FlipTest

    device = resolve_device(device_name)
    model, config = load_model(checkpoint, device)
    if overrides:
        validate(apply(config, overrides, source="--set"))
    skeleton = get_skeleton(config.data.skeleton)
    coco = read_coco_file(annotations, skeleton=skeleton.name)
    if coco.num_joints != skeleton.num_joints:
        raise CPMError(f"{annotations}: {coco.num_joints} keypoints per person, but {checkpoint} predicts "
                       f"{skeleton.num_joints} ({skeleton.name})")
    detections = None
    if boxes == "gt":
        per_image = ground_truth_boxes(coco)
    elif boxes == "detector-like":
        detections = detector_like_boxes(coco, detection_seed)
        per_image = _boxes_of(detections)
    else:
        per_image = read_detections(boxes, coco)
    samples, meta = box_samples(coco, per_image, config.data.crop_padding)
    samples.depth = depth_spec(config)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dataset = PoseDataset(samples, **dataset_options(config))
    loader = make_loader(dataset, batch_size=config.eval.batch_size, shuffle=False, workers=config.data.workers,
                         device=device, seed=0)
    evaluated = FlipTest(model, skeleton.flip_permutation) if config.eval.flip_test else model
    outputs = evaluate(evaluated, loader, build_codec(config), torso=skeleton.torso,
                       thresholds=config.eval.pck_thresholds, decoder=config.eval.decoder, device=device,
                       amp_dtype=resolve_amp(config.train.amp, device), channels_last=config.train.channels_last,
                       progress=progress, loss_fn=build_loss(config, model))
    sigmas = oks_sigmas(skeleton)
    results = instances_to_results(outputs["predictions"][:, -1], outputs["confidence"][:, -1], meta, sigmas,
                                   nms_threshold=config.eval.oks_nms)
    return {"stats": keypoint_ap(coco.to_dict(), results, sigmas), "results": results, "boxes": len(meta),
            "detections": detections, "flip_test": config.eval.flip_test, "images": len(coco.images),
            "people": int(sum(len(_gt_people(image)) for image in coco.images))}


def _boxes_of(detections: list[dict[str, Any]]) -> BoxList:
    boxes: BoxList = defaultdict(list)
    for entry in detections:
        boxes[entry["image_id"]].append((np.asarray(entry["bbox"], dtype=np.float64), float(entry["score"])))
    return boxes


def depth_spec(config):
    """The `cpm.data.depth.DepthSpec` of ``data.depth``: how a depth checkpoint's crops read their pixels, for the
    box crops of top-down evaluation and anything that builds them (`cpm.bench.people`)."""
    from cpm.data.depth import DepthSpec

    return DepthSpec.of(config.data.depth)


def mean_pose_ap(training: str | Path, annotations: str | Path, *, skeleton: str | None = None) -> dict[str, float]:
    """The trivial baseline of a top-down table: the training people's mean pose, in box coordinates ((x - box x) /
    box width, likewise y; labeled joints), placed in every ground-truth box of ``annotations``, all joints at
    confidence 1, scored by COCO keypoint AP as a model's instances are. What a head that sees no image scores."""
    from cpm.data.datasets.coco_files import read_coco_file
    from cpm.evaluation.coco import keypoint_ap
    from cpm.skeleton import get_skeleton, oks_sigmas

    train = read_coco_file(training, skeleton=skeleton, strict=False)
    coco = read_coco_file(annotations, skeleton=skeleton)
    if train.num_joints != coco.num_joints:
        raise CPMError(f"{training}: {train.num_joints} joints a person, {annotations} {coco.num_joints}")
    total, count = np.zeros((train.num_joints, 2)), np.zeros((train.num_joints, 1))
    for image in train.images:
        keep = (~image.iscrowd) & np.isfinite(image.boxes).all(axis=1)
        for person, box in zip(image.keypoints[keep], image.boxes[keep], strict=True):
            labeled = person[:, 2] > 0
            if box[2] > 0 and box[3] > 0 and labeled.any():
                total[labeled] += (person[labeled, :2] - box[:2]) / box[2:]
                count[labeled] += 1
    if not count.all():
        raise CPMError(f"{training}: a joint is labeled in no person with a box; no mean pose")
    mean = total / count
    keypoints, meta = [], []
    for image in coco.images:
        for box, score in ground_truth_boxes(coco)[image.id]:
            keypoints.append(box[:2] + mean * box[2:])
            meta.append((image.id, box, score))
    sigmas = oks_sigmas(get_skeleton(coco.skeleton))
    results = instances_to_results(np.stack(keypoints), np.ones((len(meta), coco.num_joints)), meta, sigmas,
                                   nms_threshold=1.0)
    return keypoint_ap(coco.to_dict(), results, sigmas)
