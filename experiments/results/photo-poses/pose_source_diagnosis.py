"""Why a synthetic-data checkpoint scores lower on photographs' poses: its final-stage PCK per pose source
(`cpm eval --pose-sources`), split by what the frame shows.

For each pose source (500 held-out frames each, as `cpm eval CKPT --pose-sources --set data.val_samples=500`):

- PCK@0.1 / @0.2 as scored, and **mirror-blind**: each frame scored with its prediction or the prediction with
  every left/right pair swapped, whichever is closer; the difference is what left/right mix-ups cost;
- the share of frames whose swapped prediction is closer;
- PCK@0.1 by the **view** of the ground-truth pose, judged in the image with the spine turned upright: frontal (the
  person's right shoulder and hip on the image's left), back (both on the image's right), side (the
  shoulders less than 0.35 spine lengths wide or hips less than 0.21, or the two in disagreeing order);
- PCK@0.1 by the spine's **tilt** from upright (0-30, 30-60, 60-120, 120-180 degrees).

With ``--sheet PATH``: the 24 upright LSP test frames the checkpoint scores worst, ground truth (solid) and
prediction (dashed), the person's right limbs red, left blue, spine green.

    .venv/bin/python experiments/results/photo-poses/pose_source_diagnosis.py runs/default/best.pt \
        --sheet experiments/results/photo-poses/lsp-test-failures.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cpm.cli.eval import evaluate_pose_sources, find_shared_data
from cpm.skeleton import get_skeleton

TILTS = ((0, 30), (30, 60), (60, 120), (120, 181))
VIEWS = ("frontal", "side", "back")


def tilt(ground_truth: np.ndarray) -> np.ndarray:
    """(N,) degrees between the torso-to-neck direction and straight up in the image."""
    spine = ground_truth[:, 1, :2] - ground_truth[:, 8, :2]
    return np.degrees(np.abs(np.arctan2(spine[:, 0], -spine[:, 1])))


def view(ground_truth: np.ndarray) -> np.ndarray:
    """(N,) 0 frontal, 1 side, 2 back: the shoulders' and hips' left/right order with the spine turned upright."""
    spine = ground_truth[:, 1, :2] - (ground_truth[:, 9, :2] + ground_truth[:, 10, :2]) / 2
    length = np.maximum(np.linalg.norm(spine, axis=1), 1e-9)
    up = spine / length[:, None]  # image y points down: "up" is the spine's direction
    across = np.stack([-up[:, 1], up[:, 0]], axis=1)  # the image's right once the spine is upright
    shoulders = ((ground_truth[:, 3, :2] - ground_truth[:, 2, :2]) * across).sum(axis=1) / length
    hips = ((ground_truth[:, 10, :2] - ground_truth[:, 9, :2]) * across).sum(axis=1) / length
    kind = np.ones(len(ground_truth), dtype=int)
    wide = (np.abs(shoulders) >= 0.35) & (np.abs(hips) >= 0.35 * 0.6)
    kind[wide & (shoulders > 0) & (hips > 0)] = 0  # left shoulder and hip on the image's right: facing the camera
    kind[wide & (shoulders < 0) & (hips < 0)] = 2
    return kind


def scores(result: dict, swap: list[int], torso: tuple[int, int]) -> dict:
    predicted = result["predictions"][:, -1]
    truth = result["ground_truth"]
    labeled = truth[..., 2] > 0
    size = np.linalg.norm(truth[:, torso[0], :2] - truth[:, torso[1], :2], axis=-1)
    valid = size > 0
    error = np.linalg.norm(predicted - truth[..., :2], axis=-1)
    swapped = np.linalg.norm(predicted[:, swap] - truth[..., :2], axis=-1)
    closer = np.where(labeled, swapped, 0).sum(1) < np.where(labeled, error, 0).sum(1)
    blind = np.where(closer[:, None], swapped, error)

    def pck(distance, a, mask=None):
        keep = labeled & valid[:, None] & (True if mask is None else mask[:, None])
        return 100 * float(np.mean((distance <= a * size[:, None])[keep])) if keep.any() else float("nan")

    tilts, views = tilt(truth), view(truth)
    return {
        "pck": [pck(error, a) for a in (0.1, 0.2)], "blind": [pck(blind, a) for a in (0.1, 0.2)],
        "swapped_closer": 100 * float(closer[valid].mean()),
        "views": [(int((views == v).sum()), pck(error, 0.1, views == v), pck(blind, 0.1, views == v))
                  for v in range(3)],
        "tilts": [(int(((tilts >= lo) & (tilts < hi)).sum()), pck(error, 0.1, (tilts >= lo) & (tilts < hi)))
                  for lo, hi in TILTS],
        "frame_pck": np.nanmean(np.where(labeled, error <= 0.1 * size[:, None], np.nan), axis=1),
        "tilt": tilts,
    }


def tables(found: dict[str, dict]) -> str:
    lines = ["| pose source | PCK@0.1 | mirror-blind @0.1 | PCK@0.2 | mirror-blind @0.2 | swapped closer (% frames) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {s['pck'][0]:.1f} | {s['blind'][0]:.1f} | {s['pck'][1]:.1f} | {s['blind'][1]:.1f} | "
              f"{s['swapped_closer']:.1f} |" for name, s in found.items()]
    lines += ["", "PCK@0.1 by view (frames; as scored / mirror-blind):", "",
              "| pose source | " + " | ".join(VIEWS) + " |", "|---|" + "---:|" * len(VIEWS)]
    lines += [f"| {name} | " + " | ".join(f"{n}: {a:.1f} / {b:.1f}" if n else "0" for n, a, b in s["views"]) + " |"
              for name, s in found.items()]
    lines += ["", "PCK@0.1 by the spine's tilt from upright (frames: PCK):", "",
              "| pose source | " + " | ".join(f"{lo}-{min(hi, 180)}°" for lo, hi in TILTS) + " |",
              "|---|" + "---:|" * len(TILTS)]
    lines += [f"| {name} | " + " | ".join(f"{n}: {p:.1f}" if n else "0" for n, p in s["tilts"]) + " |"
              for name, s in found.items()]
    return "\n".join(lines)


def sheet(checkpoint: str, result: dict, found: dict, out: Path) -> None:
    """The 24 upright LSP test frames scored worst, drawn on their crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cpm.cli.eval import pose_source_overrides
    from cpm.config import apply, validate
    from cpm.runtime.build import build_datasets
    from cpm.runtime.checkpoint import load_model

    _, config = load_model(checkpoint, torch.device("cpu"))
    keys = pose_source_overrides(find_shared_data())[0]["LSP test poses"]
    validate(apply(config, {"data": keys | {"val_samples": len(result["ground_truth"])}}, source="--set"))
    _, val_set = build_datasets(config)
    skeleton = get_skeleton(config.data.skeleton)
    frame_pck, tilts = found["frame_pck"], found["tilt"]
    worst = [int(i) for i in np.argsort(frame_pck, kind="stable") if tilts[i] < 30][:24]
    right = {2, 4, 6, 9, 11, 13}
    figure, axes = plt.subplots(4, 6, figsize=(15, 10.5))
    for axis, index in zip(axes.flat, worst, strict=False):
        sample = val_set[index]
        matrix = sample["matrix"].numpy()
        axis.imshow(sample["image"][0].numpy(), cmap="gray")
        for points, style in ((result["ground_truth"][index, :, :2], "-"), (result["predictions"][index, -1], "--")):
            crop = points @ matrix[:, :2].T + matrix[:, 2]
            for a, b in skeleton.limbs:
                colour = "red" if b in right else ("green" if b in (0, 1, 8) else "royalblue")
                axis.plot(crop[[a, b], 0], crop[[a, b], 1], style, color=colour, lw=1.6 if style == "-" else 1.1)
        axis.set_title(f"frame {index}: PCK@0.1 {100 * frame_pck[index]:.0f}", fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--sheet", type=Path, default=None)
    parser.add_argument("--views", type=float, nargs=3, default=None, metavar=("FRONTAL", "SIDE", "BACK"),
                        help="shares of the views the renderer draws for the procedural and mocap frames "
                             "(data.val_views; default the checkpoint's)")
    args = parser.parse_args()
    data = {"val_samples": args.frames} | ({} if args.views is None else {"val_views": args.views})
    results, notes = evaluate_pose_sources(args.checkpoint, find_shared_data(), overrides={"data": data},
                                           progress=False)
    for note in notes:
        print(note)
    skeleton = get_skeleton("itop15")
    swap = list(skeleton.flip_permutation)
    found = {name: scores(result, swap, skeleton.torso) for name, result in results.items()}
    print(tables(found))
    if args.sheet is not None and "LSP test poses" in results:
        sheet(args.checkpoint, results["LSP test poses"], found["LSP test poses"], args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
