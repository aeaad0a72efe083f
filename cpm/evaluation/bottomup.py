"""Bottom-up evaluation of a part-affinity-field model (``model.head = "paf"``): the model once per held-out image, the
final stage's confidence maps and fields grouped into people (`cpm.targets.grouping.group_people`), their keypoints
mapped back to image pixels and scored by the COCO API with the skeleton's OKS sigmas (`cpm.evaluation.coco`), the
same evaluation as top-down on boxes (`cpm.evaluation.topdown`) on the same files.

Each person's COCO score is the grouping's person score; its keypoints' third value is the peak of their map.
Frames per second are timed per image (the network, then the grouping) so that time can be read against the number
of people in the frame, the paper's runtime claim."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cpm.errors import CPMError

__all__ = ["evaluate_bottomup", "format_times"]


@torch.no_grad()
def evaluate_bottomup(checkpoint: str | Path, annotations: str | Path | None = None, *,
                      overrides: dict[str, Any] | None = None, device_name: str = "auto", progress: bool = True,
                      matching: str = "greedy", min_parts: int = 3) -> dict[str, Any]:
    """A paf checkpoint on every image of a COCO keypoints file (default: its config's held-out annotations) ->
    {"stats": COCO AP / AR, "results": COCO results, "images", "people", "times": per image {"people",
    "network_ms", "grouping_ms"}, "matching"}."""
    from cpm.config import apply, validate
    from cpm.data.datasets.coco_files import read_coco_file
    from cpm.data.loader import make_loader
    from cpm.data.transforms import apply_affine, invert_affine
    from cpm.device import resolve_device
    from cpm.evaluation.coco import keypoint_ap
    from cpm.runtime.build import build_bottom_up_datasets, build_codec
    from cpm.runtime.checkpoint import load_model
    from cpm.skeleton import get_skeleton, oks_sigmas
    from cpm.targets.grouping import group_people

    device = resolve_device(device_name)
    model, config = load_model(checkpoint, device)
    if config.model.head != "paf":
        raise CPMError(f"{checkpoint}: a {config.model.head} model; bottom-up evaluation groups the maps of a paf "
                       "model (top-down on boxes: cpm eval --coco)")
    if annotations is not None:
        root = Path(annotations).resolve().parent
        overrides = {**(overrides or {}), "data": {**(overrides or {}).get("data", {}), "root": str(root),
                                                   "val_annotations": Path(annotations).name}}
    if overrides:
        validate(apply(config, overrides, source="--set"))
    path = Path(config.data.root) / config.data.val_annotations
    if not config.data.val_annotations or not path.is_file():
        raise CPMError(f"data.val_annotations: {path}: no such file (give the COCO keypoints file to evaluate on)")
    skeleton = get_skeleton(config.data.skeleton)
    coco = read_coco_file(path, skeleton=skeleton.name)
    config.data.annotations = config.data.val_annotations  # only the held-out file is read here
    _, dataset = build_bottom_up_datasets(config)
    loader = make_loader(dataset, batch_size=1, shuffle=False, workers=config.data.workers, device=device, seed=0)
    codec = build_codec(config)
    results, times = [], []
    for batch in tqdm(loader, desc="bottom-up", disable=not progress, dynamic_ncols=True, leave=False):
        image = batch["image"].to(device)
        start = time.perf_counter()
        outputs = model(image, None)[-1].float()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        grouped = time.perf_counter()
        S, L = codec.split(outputs)
        people = group_people(S[0], L[0], skeleton.limbs, stride=config.model.stride, matching=matching,
                              min_parts=min_parts, background=config.targets.background)
        done = time.perf_counter()
        inverse = invert_affine(batch["matrix"][0].double().numpy())
        image_id = dataset.image_ids[int(batch["index"][0])]
        times.append({"people": int(batch["people"][0]), "network_ms": 1000 * (grouped - start),
                      "grouping_ms": 1000 * (done - grouped)})
        for person in people:
            keypoints = person.keypoints.astype(np.float64)
            found = keypoints[:, 2] > 0
            keypoints[found, :2] = apply_affine(keypoints[found, :2], inverse)
            results.append({"image_id": image_id, "category_id": 1,
                            "keypoints": [round(float(v), 3) for v in keypoints.reshape(-1)],
                            "score": round(float(person.score), 6)})
    sigmas = oks_sigmas(skeleton)
    return {"stats": keypoint_ap(coco.to_dict(), results, sigmas), "results": results, "images": len(dataset),
            "people": int(sum(t["people"] for t in times)), "times": times, "matching": matching}


def format_times(times: dict[str, list[dict[str, float]]]) -> str:
    """{setting: per-image times of `evaluate_bottomup`} -> a Markdown table of the median milliseconds per frame
    (network, grouping) and frames per second by the number of people in the frame."""
    lines = ["| setting | people | frames | network ms | grouping ms | frames / s |", "|---|---:|---:|---:|---:|---:|"]
    for name, rows in times.items():
        for people in sorted({row["people"] for row in rows}):
            chosen = [row for row in rows if row["people"] == people]
            network = float(np.median([row["network_ms"] for row in chosen]))
            grouping = float(np.median([row["grouping_ms"] for row in chosen]))
            lines.append(f"| {name} | {people} | {len(chosen)} | {network:.1f} | {grouping:.1f} | "
                         f"{1000 / (network + grouping):.1f} |")
    return "\n".join(lines)
