"""``cpm data``: look at the data, measure how real it is, and find bad labels.

    cpm data render --source procedural --n 64 --out sheet.png      a contact sheet with the skeletons drawn
    cpm data render --source bvh --files ../shared/data/mocap/cmu --out bvh.png
    cpm data realism --real ../shared/data/k2hpd/k2hpd_keypoints_test.mat --bvh ... --bank ...
    cpm data check --source lsp --root DATASET --out flags.csv       label checks, one CSV row per flag
    cpm data check --synthetic 2000                                  precision / recall on injected errors

Wire it into a parser with ``add_data_parser(subparsers)``; ``run_data(args)`` runs it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from cpm.errors import CPMError
from cpm.skeleton import ITOP_15, get_skeleton
from cpm.viz import draw_skeleton


def synthetic_samples(source: str, files: str | None, *, seed: int, n: int) -> list[dict]:
    """``n`` rendered samples of pose source ``source`` (procedural, bvh, bank)."""
    from cpm.data.synthetic import pose_sampler, render_sample

    if source == "procedural":
        return [render_sample(seed, i) for i in range(n)]
    if not files:
        raise CPMError(f"--source {source} needs --files (a .bvh file or folder, or a keypoint .mat)")
    poses = pose_sampler(source, files)
    return [render_sample(seed, i, poses) for i in range(n)]


def contact_sheet(samples: list[dict], *, skeleton_name: str = ITOP_15.name, columns: int = 8,
                  tile: int = 160) -> np.ndarray:
    """Samples -> one RGB uint8 image: each frame with its labeled joints drawn, scaled to ``tile`` pixels wide."""
    skeleton = get_skeleton(skeleton_name)
    tiles = []
    for sample in samples:
        image = sample["image"]
        factor = tile / image.shape[1]
        size = (tile, max(1, round(image.shape[0] * factor)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        keypoints = np.asarray(sample["keypoints"], dtype=np.float64).copy()
        keypoints[:, :2] = (keypoints[:, :2] + 0.5) * factor - 0.5
        keypoints[keypoints[:, 2] == 0, :2] = np.nan  # unlabeled joints are not drawn
        tiles.append(draw_skeleton(small, keypoints, skeleton))
    height = max(t.shape[0] for t in tiles)
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * (height + 2), min(columns, len(tiles)) * (tile + 2), 3), 255, np.uint8)
    for k, image in enumerate(tiles):
        y, x = (k // columns) * (height + 2), (k % columns) * (tile + 2)
        sheet[y:y + image.shape[0], x:x + tile] = image
    return sheet


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    path = Path(path)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise CPMError(f"{path}: cannot write the image")


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm data {render, realism, check}`` to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser("data", help="render, compare and check pose data",
                                   description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="data_command", required=True)

    render = commands.add_parser("render", help="contact sheet of synthetic samples with skeletons drawn")
    render.add_argument("--source", choices=("procedural", "bvh", "bank"), default="procedural")
    render.add_argument("--files", help="bvh: a .bvh file or folder; bank: a keypoint .mat (K2HPD)")
    render.add_argument("--n", type=int, default=64)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--columns", type=int, default=8)
    render.add_argument("--out", required=True, metavar="PNG")

    realism = commands.add_parser("realism", help="pose statistics of each source against real K2HPD poses")
    realism.add_argument("--real", required=True, metavar="MAT", help="K2HPD keypoints (k2hpd_keypoints_test.mat)")
    realism.add_argument("--reference", metavar="MAT", help="another real set to show the floor (K2HPD train)")
    realism.add_argument("--bvh", metavar="PATH", help="also the bvh source from this file or folder")
    realism.add_argument("--bank", metavar="MAT", help="also the bank source from this keypoint file")
    realism.add_argument("--n", type=int, default=4000, help="synthetic poses per source")
    realism.add_argument("--seed", type=int, default=0)

    check = commands.add_parser("check", help="flag suspicious labels (CSV with reasons)")
    check.add_argument("--source", default="lsp", help="a reader of cpm.data.readers (lsp, list, mpii, coco, ...)")
    check.add_argument("--root", help="dataset folder")
    check.add_argument("--annotations", default="", help="annotation file in --root")
    check.add_argument("--keypoints", metavar="MAT", help="keypoints only: a K2HPD keypoint .mat")
    check.add_argument("--synthetic", type=int, metavar="N",
                       help="measure precision / recall on N synthetic samples with injected label errors")
    check.add_argument("--out", metavar="CSV", help="write the flags here")
    check.add_argument("--sheet", metavar="PNG", help="contact sheet of up to 64 flagged samples")
    check.add_argument("--seed", type=int, default=0)
    return parser


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "render":
        if args.n < 1:
            raise CPMError("--n must be >= 1")
        samples = synthetic_samples(args.source, args.files, seed=args.seed, n=args.n)
        write_png(args.out, contact_sheet(samples, columns=args.columns))
        print(f"wrote {args.out}: {args.n} {args.source} samples")
        return 0
    if args.data_command == "realism":
        from cpm.data.realism import format_table, realism_report

        rows = realism_report(real=args.real, reference=args.reference, bvh=args.bvh, bank=args.bank,
                              n=args.n, seed=args.seed)
        print(format_table(rows))
        return 0
    from cpm.data.cleaning import run_check

    return run_check(args)
