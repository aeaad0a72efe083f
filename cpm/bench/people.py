"""Time per frame against the number of people: top-down on boxes against bottom-up (part affinity fields).

``python -m cpm.bench.people --topdown CKPT --bottomup CKPT [--annotations FILE]`` prints one Markdown table. Both
checkpoints run on the same held-out frames of a COCO keypoints file (default: the bottom-up checkpoint's held-out
annotations, e.g. the depth scenes of ``make train-scenes``), one frame at a time, in fp32 on the CPU threads given:

- top-down: every ground-truth box of the frame cropped as training crops (`cpm.evaluation.topdown.box_samples`), the
  crops as one batch through the network, their final-stage maps decoded (``eval.decoder``): its cost grows with the
  people in the frame;
- bottom-up: the whole frame through the network once, its final-stage maps and fields grouped into people
  (`cpm.targets.grouping.group_people`, greedy matching): one network pass whatever the people.

Each frame's two passes are timed in turn (`cpm.bench.timing`-style alternation: top-down, bottom-up, frame after
frame); crops and the frame's resize are made before the clock starts, for both. The table gives the median
milliseconds per frame of each by the number of annotated people, and the frames per second. The paper's runtime
claim (Cao et al. 2017, Fig. 10) is the shape: top-down's time rises with the people, bottom-up's stays flat.

Timings are wall clock on whatever else the machine is doing; compare the columns of one run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from cpm.errors import CPMError


@torch.no_grad()
def frame_times(topdown: str | Path, bottomup: str | Path, annotations: str | Path | None = None, *,
                frames: int = 0, device_name: str = "cpu") -> list[dict[str, float]]:
    """Per frame {"people", "topdown_ms", "bottomup_ms"} (see the module docstring); ``frames`` > 0: the first so
    many frames of the file."""
    from cpm.config import apply, validate
    from cpm.data.dataset import PoseDataset
    from cpm.data.datasets.coco_files import read_coco_file
    from cpm.device import resolve_device
    from cpm.evaluation.topdown import box_samples, depth_spec, ground_truth_boxes
    from cpm.runtime.batch import prepare_batch
    from cpm.runtime.build import build_bottom_up_datasets, build_codec, dataset_options
    from cpm.runtime.checkpoint import load_model
    from cpm.skeleton import get_skeleton
    from cpm.targets.grouping import group_people

    device = resolve_device(device_name)
    bu_model, bu_config = load_model(bottomup, device)
    td_model, td_config = load_model(topdown, device)
    if bu_config.model.head != "paf":
        raise CPMError(f"--bottomup {bottomup}: a {bu_config.model.head} model, not a paf one")
    if td_config.model.head == "paf":
        raise CPMError(f"--topdown {topdown}: a paf model; top-down needs a model of one person's crop")
    if annotations is not None:
        path = Path(annotations)
        validate(apply(bu_config, {"data": {"root": str(path.resolve().parent), "val_annotations": path.name}},
                       source="--annotations"))
    path = Path(bu_config.data.root) / bu_config.data.val_annotations
    if not path.is_file():
        raise CPMError(f"{path}: no such file (give --annotations, a COCO keypoints file)")
    skeleton = get_skeleton(bu_config.data.skeleton)
    coco = read_coco_file(path, skeleton=skeleton.name)
    bu_config.data.annotations = bu_config.data.val_annotations
    _, whole = build_bottom_up_datasets(bu_config)
    bu_codec = build_codec(bu_config)
    td_codec = build_codec(td_config)
    samples, meta = box_samples(coco, ground_truth_boxes(coco), td_config.data.crop_padding)
    samples.depth = depth_spec(td_config)
    crops = PoseDataset(samples, **dataset_options(td_config))
    by_image: dict[int, list[int]] = defaultdict(list)
    for index, (image_id, _, _) in enumerate(meta):
        by_image[image_id].append(index)
    count = len(whole) if frames <= 0 else min(frames, len(whole))
    times = []
    for position in range(count):
        item = whole[position]
        image_id = whole.image_ids[int(item["index"])]
        batch = default_collate([crops[i] for i in by_image.get(image_id, [])]) if by_image.get(image_id) else None
        frame = item["image"][None].to(device)
        topdown_ms = 0.0
        if batch is not None:
            image, center_map, _, _ = prepare_batch(batch, td_codec, device, False)
            start = time.perf_counter()
            td_codec.decode(td_model(image, center_map)[-1].float(), method=td_config.eval.decoder)
            topdown_ms = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        S, L = bu_codec.split(bu_model(frame, None)[-1].float())
        group_people(S[0], L[0], skeleton.limbs, stride=bu_config.model.stride, matching="greedy",
                     background=bu_config.targets.background)
        bottomup_ms = 1000 * (time.perf_counter() - start)
        times.append({"people": int(item["people"]), "boxes": len(by_image.get(image_id, [])),
                      "topdown_ms": topdown_ms, "bottomup_ms": bottomup_ms})
    return times


def format_table(times: list[dict[str, float]]) -> str:
    lines = ["| people | frames | top-down ms | bottom-up ms | top-down frames / s | bottom-up frames / s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for people in sorted({row["people"] for row in times}):
        chosen = [row for row in times if row["people"] == people]
        top = float(np.median([row["topdown_ms"] for row in chosen]))
        bottom = float(np.median([row["bottomup_ms"] for row in chosen]))
        rate = f"{1000 / top:.1f}" if top else "n/a"  # a frame without a labeled person has no crop to run
        lines.append(f"| {people} | {len(chosen)} | {top:.1f} | {bottom:.1f} | {rate} | {1000 / bottom:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.people", description=__doc__.splitlines()[0])
    parser.add_argument("--topdown", required=True, help="a top-down checkpoint (e.g. runs/scenes/best.pt)")
    parser.add_argument("--bottomup", required=True, help="a paf checkpoint (e.g. runs/paf/best.pt)")
    parser.add_argument("--annotations", help="COCO keypoints file (default: the paf checkpoint's held-out file)")
    parser.add_argument("--frames", type=int, default=0, help="the first N frames only (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        times = frame_times(args.topdown, args.bottomup, args.annotations, frames=args.frames)
    except CPMError as error:
        print(f"python -m cpm.bench.people: error: {error}", file=sys.stderr)
        return 2
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, fp32, "
          f"torch {torch.__version__}\n")
    print(format_table(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
