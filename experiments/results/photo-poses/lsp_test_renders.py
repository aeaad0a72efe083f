"""The contact sheet of lsp-test-renders.png: 24 of the hardest LSP test poses (the 8 most upside down, the 8 nearest
to lying, the 8 most foreshortened at the lift's scale), each as two tiles: the photograph's 2D pose in ITOP_15
(drawn alone, scaled to the tile) and the depth frame the bank source renders of it (stream 0, frame = the pose's
index), cropped around the person as the model's crop is. Prints how many of all 1000 LSP test renders keep every
joint in the frame, and of the first 1000 K2HPD test poses in the same scenes.

    cd experiments/results/photo-poses && ../../../.venv/bin/python lsp_test_renders.py --out lsp-test-renders.png
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from cpm.data.synthetic.bank import PHOTO_LENGTHS, BankPoses, _scale, projected_lengths
from cpm.data.synthetic.frames import render_sample
from cpm.viz import contact_sheet


class OnePose:
    """The bank's pose ``index`` for every frame."""

    needs_yaw = False

    def __init__(self, bank: BankPoses, index: int) -> None:
        self.bank, self.index = bank, index

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        return self.bank.pose(self.index, height)


def hardest(bank: BankPoses, each: int = 8) -> list[int]:
    keypoints = bank.keypoints
    spine = keypoints[:, 1] - (keypoints[:, 9] + keypoints[:, 10]) / 2
    away = np.degrees(np.abs(np.arctan2(spine[:, 0], -spine[:, 1])))  # 0 upright, 180 upside down
    full = np.array(PHOTO_LENGTHS)
    shortened = np.array([1 - np.minimum(seen * _scale(full, seen) / full, 1).mean()
                          for seen in projected_lengths(keypoints)])
    chosen: list[int] = []
    for order in (np.argsort(-away), np.argsort(np.abs(away - 90)), np.argsort(-shortened)):
        chosen += [int(i) for i in order if i not in chosen][:each]
    return chosen


def photo_tile(points: np.ndarray) -> dict:
    low, high = points.min(axis=0), points.max(axis=0)
    drawn = (points - (low + high) / 2) * (180 / max(high - low)) + (128, 106)
    return {"image": np.full((212, 256), 40, np.uint8), "keypoints": np.concatenate([drawn, np.full((15, 1), 2.0)], 1)}


def cropped(sample: dict, padding: float = 1.3) -> dict:
    keypoints = sample["keypoints"].copy()
    low, high = keypoints[:, :2].min(axis=0), keypoints[:, :2].max(axis=0)
    zoom = 200 / (padding * max(high - low))
    centre = (low + high) / 2
    matrix = np.float32([[zoom, 0, 128 - zoom * centre[0]], [0, zoom, 106 - zoom * centre[1]]])
    image = cv2.warpAffine(sample["image"], matrix, (256, 212), flags=cv2.INTER_NEAREST)
    keypoints[:, :2] = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return {"image": image, "keypoints": keypoints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    bank = BankPoses("lsp:test")
    tiles = []
    for index in hardest(bank):
        tiles += [photo_tile(bank.keypoints[index]), cropped(render_sample(0, index, OnePose(bank, index)))]
    sheet = contact_sheet(tiles, columns=8, tile=144)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out}")
    for name, poses in (("LSP test", bank), ("K2HPD test", BankPoses("k2hpd:test"))):
        whole = [(render_sample(0, i, OnePose(poses, i))["keypoints"][:, 2] > 0).all() for i in range(1000)]
        print(f"{name}: {sum(whole)} of 1000 renders have every joint in the frame")


if __name__ == "__main__":
    main()
