"""Grouping benchmark: milliseconds per frame of `cpm.targets.grouping.group_people` against the number of people.

``python -m cpm.bench.grouping`` prints one Markdown table. For each number of people (1 to 5) it renders crowd depth
frames of exactly that many people (`cpm.data.synthetic.crowd.render_crowd`, 256 x 212), pads each to a 256 x 256 input
(the frame at the top left, keypoints unchanged; ``--size 160 --fit`` scales it into experiments/paf.toml's 160 px input
instead), encodes its confidence maps and part affinity fields with `cpm.targets.paf.PafCodec` (stride 8: 32 x 32 cells;
sigma 1 cell, limb width 1 cell; ITOP-15's 14 limbs) and times ``group_people`` on those maps, greedy and optimal
matching called in turn (`cpm.bench.timing.timed_alternately`), on one torch thread by default. ``--noise`` adds N(0,
noise^2) to every channel (``--blur`` then blurs S before the peak search). The last columns say how many of the
annotated people were found whole (every labeled joint within a cell of one person found; at this scale people 30 px
tall and partly hidden behind each other are often missed or split even on clean maps: limbs shorter than a cell hold
almost no cell centre in their rectangle) and how many people were found in all.

Timings are wall clock on whatever else the machine is doing; compare the columns of one run.
"""

from __future__ import annotations

import argparse
import functools
import platform

import numpy as np
import torch

from cpm.bench.timing import timed_alternately
from cpm.data.synthetic.crowd import render_crowd
from cpm.skeleton import ITOP_15
from cpm.targets.grouping import MATCHINGS, Person, group_people
from cpm.targets.paf import PafCodec

FRAME_WIDTH = 256  # render_crowd's frames are 256 x 212


def crowd_maps(people: int, *, frames: int, size: int = 256, stride: int = 8, noise: float = 0.0, fit: bool = False,
               seed: int = 0) -> tuple[list[np.ndarray], list[tuple[torch.Tensor, torch.Tensor]]]:
    """``frames`` crowd frames of ``people`` people -> their keypoints (P, 15, 3) in the input and encoded maps (S, L)
    each. ``fit``: the frame scaled by size / 256 to fit the input (as ``data.input_size`` fits a whole scene), else
    placed at the top left unscaled."""
    codec = PafCodec(input_size=(size, size), stride=stride, sigma=1.0, limbs=ITOP_15.limbs, num_joints=15)
    generator = torch.Generator().manual_seed(seed)
    keypoints = [render_crowd(seed, index, people=(people, people))["keypoints"] for index in range(frames)]
    if fit:
        for truth in keypoints:  # pixel centres: x -> (x + 0.5) * scale - 0.5
            truth[..., :2] = np.where(truth[..., 2:] > 0, (truth[..., :2] + 0.5) * size / FRAME_WIDTH - 0.5, 0)
    maps = []
    for truth in keypoints:
        targets, _ = codec.encode(torch.from_numpy(truth)[None])
        if noise:
            targets = targets + noise * torch.randn(targets.shape, generator=generator)
        maps.append(codec.split(targets[0]))
    return keypoints, maps


def group_frames(maps: list[tuple[torch.Tensor, torch.Tensor]], *, matching: str, stride: int, blur: float
                 ) -> list[list[Person]]:
    """`group_people` on every frame's (S, L)."""
    return [group_people(s, f, ITOP_15.limbs, stride=stride, matching=matching, blur=blur) for s, f in maps]


def found_whole(truth: np.ndarray, found: list[Person], tolerance: float) -> int:
    """People of ``truth`` (P, K, 3) with at least one labeled joint whose labeled joints are all within ``tolerance``
    pixels of one found person's (each found person used once)."""
    free, count = set(range(len(found))), 0
    for person in truth:
        labeled = person[:, 2] > 0
        if not labeled.any():
            continue
        for index in sorted(free):
            keypoints = found[index].keypoints[labeled]
            near = np.linalg.norm(keypoints[:, :2] - person[labeled, :2], axis=1) <= tolerance
            if (near & (keypoints[:, 2] > 0)).all():
                free.remove(index)
                count += 1
                break
    return count


def grouping_table(*, people: tuple[int, ...] = (1, 2, 3, 4, 5), frames: int = 20, size: int = 256, stride: int = 8,
                   noise: float = 0.0, blur: float = 0.0, fit: bool = False, seconds: float = 1.0,
                   threads: int | None = 1, seed: int = 0) -> str:
    """Markdown: ms per frame of greedy and optimal grouping for each number of people, and what they found."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    rows = []
    try:
        used_threads = torch.get_num_threads()
        for count in people:
            keypoints, maps = crowd_maps(count, frames=frames, size=size, stride=stride, noise=noise, fit=fit,
                                         seed=seed)
            calls = {m: functools.partial(group_frames, maps, matching=m, stride=stride, blur=blur) for m in MATCHINGS}
            seconds_per_call = timed_alternately(calls, seconds=seconds, device=torch.device("cpu"))
            annotated = sum(int((truth[:, :, 2] > 0).any(axis=1).sum()) for truth in keypoints)
            found = {m: call() for m, call in calls.items()}
            whole = {m: sum(found_whole(t, f, stride) for t, f in zip(keypoints, found[m], strict=True))
                     for m in MATCHINGS}
            rows.append(f"| {count} | {frames} "
                        + "".join(f"| {1e3 * seconds_per_call[m] / frames:.2f} " for m in MATCHINGS)
                        + f"| {seconds_per_call['optimal'] / seconds_per_call['greedy']:.2f} "
                        + "".join(f"| {whole[m]} / {annotated} " for m in MATCHINGS)
                        + "".join(f"| {sum(len(f) for f in found[m])} " for m in MATCHINGS) + "|")
    finally:
        torch.set_num_threads(previous_threads)
    height, width = size // stride, size // stride
    return "\n".join([
        f"group_people on encoded crowd frames (render_crowd seed {seed}, 256 x 212 "
        f"{'scaled to fit' if fit else 'padded to'} {size} x {size}, stride {stride}: {height} x {width} cells, "
        f"15 joints, 14 limbs), noise {noise:g}, blur {blur:g} cells; "
        f"{platform.processor() or platform.machine()}, {used_threads} torch thread(s); median of calls over "
        f">= {seconds:g} s per column, all frames per call.",
        "",
        "| people | frames | greedy ms/frame | optimal ms/frame | optimal / greedy | found whole, greedy "
        "| found whole, optimal | people found, greedy | people found, optimal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.grouping", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per number of people")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels (the frame padded to it)")
    parser.add_argument("--stride", type=int, default=8, help="input pixels per map cell")
    parser.add_argument("--fit", action="store_true", help="scale the frame by size / 256 instead of padding it")
    parser.add_argument("--noise", type=float, default=0.0, help="standard deviation of noise added to the maps")
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian blur of S before the peak search, cells")
    parser.add_argument("--seconds", type=float, default=1.0, help="least time spent timing each column")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: as is)")
    args = parser.parse_args(argv)
    print(grouping_table(frames=args.frames, size=args.size, stride=args.stride, noise=args.noise, blur=args.blur,
                         fit=args.fit, seconds=args.seconds, threads=args.threads or None))


if __name__ == "__main__":
    main()
