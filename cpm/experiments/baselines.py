"""Trivial baselines for the experiment tables: what a model scores that does not look at the image.

* ``mean pose``: the mean of the training crops' keypoints (crop pixels, each joint over the crops where it is
  labelled), placed in every held-out crop and mapped back to source pixels.
* ``crop centre``: every joint at the person centre of the held-out crop (the centre map's peak).

Both are scored like a model's final stage (PCK against the torso, on the config's held-out split), so a row of
a table that does not clearly beat them has learned little about where the joints are.

    python -m cpm.experiments.baselines CONFIG [--set SECTION.KEY=VALUE ...] [--train-frames N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cpm.config import Config, load_config
from cpm.data.transforms import apply_affine, invert_affine
from cpm.errors import CPMError
from cpm.evaluation.metrics import pck, torso_size
from cpm.io import write_text_atomic
from cpm.skeleton import get_skeleton

TRAIN_FRAMES = 2000  # training crops averaged into the mean pose


def mean_pose(train_set, frames: int, progress: bool = False) -> np.ndarray:
    """(K, 2) mean crop position of each joint over the first ``frames`` training crops (labelled joints only)."""
    total = count = None
    for index in tqdm(range(min(frames, len(train_set))), desc="mean pose", disable=not progress, leave=False):
        keypoints = train_set[index]["keypoints"].numpy().astype(np.float64)
        labelled = keypoints[:, 2] > 0
        if total is None:
            total, count = np.zeros((len(keypoints), 2)), np.zeros(len(keypoints))
        total[labelled] += keypoints[labelled, :2]
        count[labelled] += 1
    if total is None or (count == 0).any():
        raise CPMError(f"mean pose: a joint is never labelled in the first {frames} training crops")
    return total / count[:, None]


def baseline_scores(config: Config, *, train_frames: int = TRAIN_FRAMES, progress: bool = False) -> dict[str, Any]:
    """{"mean_pose": {"pck@A": value}, "crop_centre": {...}, "samples", "train_frames"} on ``config``'s held-out
    split, PCK as fractions at every ``eval.pck_thresholds``."""
    from cpm.data.synthetic.sources import drop_missing_pose_files
    from cpm.runtime.build import build_datasets

    train_set, val_set = build_datasets(drop_missing_pose_files(config))
    train_set.set_epoch(0)
    average = mean_pose(train_set, train_frames, progress)
    predicted = {"mean_pose": [], "crop_centre": []}
    truths = []
    for index in tqdm(range(len(val_set)), desc="held-out", disable=not progress, leave=False):
        item = val_set[index]
        matrix = item["matrix"].numpy().astype(np.float64)
        centre = item["center"].numpy().astype(np.float64)
        to_source = invert_affine(matrix)  # crop pixels -> source pixels
        predicted["mean_pose"].append(apply_affine(average, to_source))
        predicted["crop_centre"].append(apply_affine(np.repeat(centre[None], len(average), axis=0), to_source))
        truths.append(item["source_keypoints"].numpy().astype(np.float64))
    ground_truth = np.stack(truths)
    normaliser = torso_size(ground_truth, get_skeleton(config.data.skeleton).torso)
    scores: dict[str, Any] = {"samples": len(ground_truth), "train_frames": min(train_frames, len(train_set))}
    for name, points in predicted.items():
        scores[name] = {f"pck@{a:g}": pck(np.stack(points), ground_truth, normaliser, a).mean
                        for a in config.eval.pck_thresholds}
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="TOML config whose data and held-out split are scored")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--train-frames", type=int, default=TRAIN_FRAMES)
    parser.add_argument("--out", type=Path, help="write the scores as JSON here (else print them)")
    args = parser.parse_args(argv)
    try:
        if args.train_frames < 1:
            raise CPMError(f"--train-frames: expected a positive number, got {args.train_frames}")
        config = load_config(args.config, args.sets)
        scores = baseline_scores(config, train_frames=args.train_frames, progress=sys.stderr.isatty())
    except CPMError as error:
        print(f"cpm.experiments.baselines: error: {error}", file=sys.stderr)
        return 2
    scores["command"] = " ".join(["python -m cpm.experiments.baselines", *(argv if argv is not None else sys.argv[1:])])
    text = json.dumps(scores, indent=1, sort_keys=True) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
