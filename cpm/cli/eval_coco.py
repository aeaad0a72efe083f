"""``cpm eval CHECKPOINT --coco ANNOTATIONS``: the model on every person box of a COCO keypoints file, COCO keypoint
AP per setting (`cpm.evaluation.topdown`).

    cpm eval runs/scenes/best.pt --coco runs/scenes/val/annotations.json \
        --boxes gt --boxes detector-like --flip-test both

One row per boxes x flip setting: AP, AP50, AP75, APM, APL, AR (the COCO API's, with the skeleton's OKS sigmas).
``--out DIR`` also writes each setting's COCO results file (``results-<boxes>[-flip].json``, what the COCO API and
other toolboxes read), the detector-like boxes (``detections.json``) and ``coco-ap.json`` / ``coco-ap.md`` with the
table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cpm.errors import CPMError

BOX_NAMES = {"gt": "ground-truth boxes", "detector-like": "detector-like boxes"}
FLIP_SETTINGS = {"off": (False,), "on": (True,), "both": (False, True), "config": (None,)}


def add_coco_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("many people: top-down on boxes, COCO keypoint AP")
    group.add_argument("--coco", metavar="ANNOTATIONS",
                       help="a COCO keypoints file: run the model on every person box of its images, print COCO AP")
    group.add_argument("--boxes", action="append", default=[], metavar="gt|detector-like|DETECTIONS.json",
                       help="the boxes of --coco: the annotated ones (gt, the default), detector-like ones made from "
                            "them, or a COCO results file of person boxes with scores (repeatable: one row each)")
    group.add_argument("--flip-test", choices=tuple(FLIP_SETTINGS), default="config",
                       help="flip test off, on, both (with --coco: a row each), or as eval.flip_test says (config)")
    group.add_argument("--out", metavar="DIR", help="with --coco: write the results files and the table here")
    group.add_argument("--matching", choices=("greedy", "optimal", "both"), default="greedy",
                       help="with --coco and a part-affinity-field model: how each limb's candidates are matched "
                            "(the paper's greedy, or optimal by the Hungarian method), or a row for each")


def run_coco(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from cpm.evaluation.coco import format_ap_table, write_results
    from cpm.evaluation.topdown import evaluate_topdown
    from cpm.io import write_text_atomic

    if not Path(args.coco).is_file():
        raise CPMError(f"--coco {args.coco}: no such file")
    out = Path(args.out) if args.out else None
    if out is not None and not out.resolve().parent.is_dir():
        raise CPMError(f"--out {args.out}: the folder to write into does not exist")
    for boxes in args.boxes:
        if boxes not in BOX_NAMES and not Path(boxes).is_file():
            raise CPMError(f"--boxes {boxes}: neither gt, detector-like nor a detections file")
    rows: dict[str, dict[str, float]] = {}
    written: dict[str, Any] = {}
    if _head(args.checkpoint) == "paf":
        return _run_bottomup(args, overrides, out)
    for boxes in args.boxes or ["gt"]:
        for flip in FLIP_SETTINGS[args.flip_test]:
            layered = {**overrides, "eval": {**overrides.get("eval", {})}}
            if flip is not None:
                layered["eval"]["flip_test"] = flip
            result = evaluate_topdown(args.checkpoint, args.coco, boxes=boxes, overrides=layered,
                                      device_name=args.device, progress=not args.no_progress)
            name = BOX_NAMES.get(boxes, f"boxes of {Path(boxes).name}") + (", flip test" if result["flip_test"] else "")
            rows[name] = result["stats"]
            written[name] = {"boxes": boxes, "flip_test": result["flip_test"], "instances": result["boxes"],
                             "images": result["images"], "people": result["people"], **result["stats"]}
            if out is not None:
                out.mkdir(exist_ok=True)
                tag = boxes if boxes in BOX_NAMES else Path(boxes).stem
                write_results(out / f"results-{tag}{'-flip' if result['flip_test'] else ''}.json", result["results"])
                if result["detections"] is not None:
                    write_results(out / "detections.json", result["detections"])
    table = format_ap_table(rows)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "annotations": args.coco, "settings": written}, indent=2))
    else:
        print(f"COCO keypoint AP of {args.checkpoint} on {args.coco} (OKS, the COCO API):")
        print(table)
    if out is not None:
        write_text_atomic(out / "coco-ap.json", json.dumps({"checkpoint": args.checkpoint, "annotations": args.coco,
                                                             "settings": written}, indent=2) + "\n")
        write_text_atomic(out / "coco-ap.md", table + "\n")
    return 0


def _head(checkpoint: str | Path) -> str:
    """``model.head`` of a checkpoint's config, read without building the model."""
    from cpm.runtime.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).get("config", {})
    return str(config.get("model", {}).get("head", "heatmap")) if isinstance(config, dict) else "heatmap"


def _run_bottomup(args: argparse.Namespace, overrides: dict[str, Any], out: Path | None) -> int:
    """``cpm eval PAF_CHECKPOINT --coco FILE``: bottom-up, one row per matching, and time per frame by people."""
    from cpm.evaluation.bottomup import evaluate_bottomup, format_times
    from cpm.evaluation.coco import format_ap_table, write_results
    from cpm.io import write_text_atomic

    if args.boxes or args.flip_test not in ("config", "off"):
        raise CPMError("--boxes and --flip-test are for top-down models; a part-affinity-field model finds the "
                       "people itself")
    rows, written, times = {}, {}, {}
    for matching in ("greedy", "optimal") if args.matching == "both" else (args.matching,):
        result = evaluate_bottomup(args.checkpoint, args.coco, overrides=overrides, device_name=args.device,
                                   progress=not args.no_progress, matching=matching)
        name = f"bottom-up, {matching} matching"
        rows[name] = result["stats"]
        times[name] = result["times"]
        written[name] = {"matching": matching, "images": result["images"], "people": result["people"],
                         **result["stats"]}
        if out is not None:
            out.mkdir(exist_ok=True)
            write_results(out / f"results-bottom-up-{matching}.json", result["results"])
    table, timing = format_ap_table(rows), format_times(times)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "annotations": args.coco, "settings": written}, indent=2))
    else:
        print(f"COCO keypoint AP of {args.checkpoint} on {args.coco} (OKS, the COCO API):")
        print(table)
        print(f"\nTime per frame by the people in it ({args.device}):\n")
        print(timing)
    if out is not None:
        write_text_atomic(out / "coco-ap.json", json.dumps({"checkpoint": args.checkpoint, "annotations": args.coco,
                                                             "settings": written, "times": times}, indent=2) + "\n")
        write_text_atomic(out / "coco-ap.md", table + "\n\n" + timing + "\n")
    return 0


def coco_ap_after_training(run_dir: str | Path, *, progress: bool = True) -> str:
    """The end of ``cpm train`` for a run that crops around COCO person boxes (``data.crop_around = "box"``): its
    best.pt on every person of the held-out annotations (``data.val_annotations``), with the ground-truth and with
    detector-like boxes, flip test off and on; the table, also written to ``coco-ap.md`` / ``coco-ap.json`` of the
    run. "" for any other run, or one without held-out annotations."""
    from cpm.config import load_config
    from cpm.evaluation.coco import format_ap_table
    from cpm.evaluation.topdown import evaluate_topdown
    from cpm.io import write_text_atomic

    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.toml")
    annotations = Path(config.data.root) / config.data.val_annotations
    if not config.data.val_annotations or not annotations.is_file():
        return ""
    if config.model.head == "paf":
        return _bottomup_after_training(run_dir, annotations, progress=progress)
    if config.data.crop_around != "box":
        return ""
    rows, written = {}, {}
    for boxes in BOX_NAMES:
        for flip in (False, True):
            result = evaluate_topdown(run_dir / "best.pt", annotations, boxes=boxes,
                                      overrides={"eval": {"flip_test": flip}}, progress=progress)
            name = BOX_NAMES[boxes] + (", flip test" if flip else "")
            rows[name] = result["stats"]
            written[name] = {"boxes": boxes, "flip_test": flip, "instances": result["boxes"],
                             "images": result["images"], "people": result["people"], **result["stats"]}
    training = Path(config.data.root) / config.data.annotations
    if training.is_file():  # the trivial baseline: the training people's mean pose in every ground-truth box
        from cpm.evaluation.topdown import mean_pose_ap

        rows["mean pose (no image), ground-truth boxes"] = mean_pose_ap(training, annotations)
        written["mean pose (no image), ground-truth boxes"] = {"boxes": "gt", **rows[
            "mean pose (no image), ground-truth boxes"]}
    table = format_ap_table(rows)
    write_text_atomic(run_dir / "coco-ap.md", table + "\n")
    write_text_atomic(run_dir / "coco-ap.json", json.dumps({"checkpoint": str(run_dir / "best.pt"),
                                                            "annotations": str(annotations), "settings": written},
                                                           indent=2) + "\n")
    people = next(iter(written.values()))
    return (f"\nCOCO keypoint AP on the held-out scenes ({annotations}: {people['images']} images, {people['people']} "
            f"people; OKS, the COCO API):\n\n{table}")


def _bottomup_after_training(run_dir: Path, annotations: Path, *, progress: bool) -> str:
    """The end of a paf run: best.pt bottom-up on the held-out annotations, greedy and optimal matching."""
    from cpm.evaluation.bottomup import evaluate_bottomup, format_times
    from cpm.evaluation.coco import format_ap_table
    from cpm.io import write_text_atomic

    rows, times, written = {}, {}, {}
    for matching in ("greedy", "optimal"):
        result = evaluate_bottomup(run_dir / "best.pt", annotations, progress=progress, matching=matching)
        name = f"bottom-up, {matching} matching"
        rows[name], times[name] = result["stats"], result["times"]
        written[name] = {"matching": matching, "images": result["images"], "people": result["people"],
                         **result["stats"]}
    table, timing = format_ap_table(rows), format_times(times)
    write_text_atomic(run_dir / "coco-ap.md", table + "\n\n" + timing + "\n")
    write_text_atomic(run_dir / "coco-ap.json", json.dumps({"checkpoint": str(run_dir / "best.pt"),
                                                            "annotations": str(annotations), "settings": written,
                                                            "times": times}, indent=2) + "\n")
    people = next(iter(written.values()))
    return (f"\nCOCO keypoint AP on the held-out scenes ({annotations}: {people['images']} images, {people['people']} "
            f"people; OKS, the COCO API):\n\n{table}\n\nTime per frame by the people in it:\n\n{timing}")
