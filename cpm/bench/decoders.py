"""Decoder benchmark: accuracy of every decoder on synthetic belief maps, and the speed of the batched DARK.

``python -m cpm.bench.decoders`` prints two Markdown tables:

1. `decoder_accuracy_table`: the mean error of each decoder in `cpm.targets.codecs.DECODERS` on unit-peak
   Gaussians (the training targets) at known random sub-pixel positions, encoded and decoded by
   `HeatmapCodec` (stride 8, 46 x 46 cells, a 368 x 368 crop as in the CPM paper), noise-free and with
   additive Gaussian noise of standard deviation 0.05 (the peak is 1) clamped at 0, for sigma 1, 1.5, 2.
   Positions are uniform over the cells at least 6 cells (48 pixels) from the map border, where no decoder
   is cut short by the border; near the border DARK's zero-padded blur pulls toward the centre.
2. `dark_speed`: the batched DARK (`HeatmapCodec.decode(method="dark")`, i.e. `cpm.targets.decoders.dark`) on
   4096 x 15 maps in one call, on one CPU thread by default, against `dark_reference`, the
   common per-keypoint NumPy/OpenCV loop of the DARK reference code (``gaussian_blur`` + ``taylor``),
   on the same maps in the same run: the speed ratio and the largest difference of their results.

Timings are wall clock on whatever else the machine is doing; the ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from cpm.targets import decoders
from cpm.targets.codecs import DECODERS, HeatmapCodec


def gaussian_heatmaps(count: int, *, sigma: float, stride: int = 8, size: int = 46, margin: float = 6.0,
                      noise: float = 0.0, joints: int = 1, seed: int = 0,
                      device: str = "cpu") -> tuple[HeatmapCodec, torch.Tensor, torch.Tensor]:
    """-> codec, keypoints (count, joints, 2) in input pixels, heatmaps (count, joints, size, size).

    Keypoints are uniform over the cells at least ``margin`` cells from the border; ``noise`` is the
    standard deviation of additive Gaussian noise (the peaks are 1), after which the maps are clamped at 0.
    """
    generator = torch.Generator().manual_seed(seed)
    codec = HeatmapCodec(input_size=(size * stride, size * stride), stride=stride, sigma=sigma, background=False)
    cells = margin + torch.rand(count, joints, 2, generator=generator, dtype=torch.float64) * (size - 1 - 2 * margin)
    keypoints = codec.cell_to_pixel(cells).float()
    visible = torch.full((count, joints, 1), 2.0)
    heatmaps, _ = codec.encode(torch.cat([keypoints, visible], dim=-1))
    if noise:
        heatmaps = (heatmaps + noise * torch.randn(heatmaps.shape, generator=generator)).clamp(min=0)
    return codec, keypoints.to(device), heatmaps.to(device)


def decoder_accuracy_table(*, count: int = 3000, sigmas: tuple[float, ...] = (1.0, 1.5, 2.0), noise: float = 0.05,
                           stride: int = 8, size: int = 46, seed: int = 0, device: str = "cpu") -> str:
    """Markdown: mean decoding error in input pixels (and cells) per decoder, sigma, and noise level."""
    errors = {}  # (decoder, sigma, noise) -> (count, 1) pixel errors
    for sigma in sigmas:
        for level in (0.0, noise):
            codec, keypoints, heatmaps = gaussian_heatmaps(count, sigma=sigma, stride=stride, size=size, noise=level,
                                                           seed=seed, device=device)
            for method in DECODERS:
                decoded, _ = codec.decode(heatmaps, method=method)
                errors[method, sigma, level] = (decoded - keypoints).norm(dim=-1)
    columns = [(sigma, level) for sigma in sigmas for level in (0.0, noise)]
    lines = [
        f"Mean error, input pixels (cells), of {count} keypoints per column: unit-peak Gaussians, stride {stride}, "
        f"{size} x {size} cells, at least 6 cells from the border; noise = additive N(0, {noise}^2), clamped at 0; "
        f"seed {seed}.",
        "",
        "| decoder | " + " | ".join(f"σ={s:g} {'noisy' if n else 'clean'}" for s, n in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method in DECODERS:
        cells = [errors[method, s, n].mean().item() for s, n in columns]
        lines.append(f"| {method} | " + " | ".join(f"{e:.3f} ({e / stride:.4f})" for e in cells) + " |")
    return "\n".join(lines)


# --- the per-keypoint baseline, as in the DARK reference code (ilovepose/DarkPose, lib/core/inference.py) ----

def _reference_blur(heatmaps: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    border = (kernel_size - 1) // 2
    batch, joints, height, width = heatmaps.shape
    for i in range(batch):
        for j in range(joints):
            origin_max = np.max(heatmaps[i, j])
            padded = np.zeros((height + 2 * border, width + 2 * border))
            padded[border:-border, border:-border] = heatmaps[i, j]
            padded = cv2.GaussianBlur(padded, (kernel_size, kernel_size), sigma)
            heatmaps[i, j] = padded[border:-border, border:-border]
            heatmaps[i, j] *= origin_max / np.max(heatmaps[i, j])
    return heatmaps


def _reference_taylor(log_map: np.ndarray, coord: np.ndarray) -> np.ndarray:
    height, width = log_map.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < width - 2 and 1 < py < height - 2:
        dx = 0.5 * (log_map[py][px + 1] - log_map[py][px - 1])
        dy = 0.5 * (log_map[py + 1][px] - log_map[py - 1][px])
        dxx = 0.25 * (log_map[py][px + 2] - 2 * log_map[py][px] + log_map[py][px - 2])
        dxy = 0.25 * (log_map[py + 1][px + 1] - log_map[py - 1][px + 1] - log_map[py + 1][px - 1]
                      + log_map[py - 1][px - 1])
        dyy = 0.25 * (log_map[py + 2][px] - 2 * log_map[py][px] + log_map[py - 2][px])
        if dxx * dyy - dxy**2 != 0:
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            coord += -np.linalg.inv(hessian) @ np.array([dx, dy])
    return coord


def dark_reference(heatmaps: np.ndarray, sigma: float, kernel_size: int | None = None) -> np.ndarray:
    """heatmaps (B, K, h, w) -> (B, K, 2) cells: DARK one joint at a time, in float64 (the reference code).

    Its ``get_max_preds`` (vectorised argmax), ``gaussian_blur`` (a cv2.GaussianBlur per joint, here
    with the training sigma instead of OpenCV's sigma-from-ksize), log, and ``taylor`` per joint.
    """
    kernel_size = kernel_size or decoders.dark_kernel_size(sigma)
    batch, joints, height, width = heatmaps.shape
    index = heatmaps.reshape(batch, joints, -1).argmax(axis=-1)
    coords = np.stack([index % width, index // width], axis=-1).astype(np.float64)
    log_maps = np.log(np.maximum(_reference_blur(heatmaps.astype(np.float64), kernel_size, sigma), 1e-10))
    for n in range(batch):
        for p in range(joints):
            coords[n, p] = _reference_taylor(log_maps[n, p], coords[n, p])
    return coords


def _timed(function, *args, repeats: int = 1, device: str = "cpu"):
    """-> (result of the last call, the median wall-clock seconds over ``repeats`` calls)."""
    seconds = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = function(*args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def dark_speed(*, batch: int = 4096, joints: int = 15, size: int = 46, stride: int = 8, sigma: float = 2.0,
               noise: float = 0.05, loop_batch: int | None = None, repeats: int = 5, threads: int | None = 1,
               seed: int = 0, device: str = "cpu") -> str:
    """Markdown: batched DARK (`HeatmapCodec.decode(method="dark")`) against the per-keypoint loop.

    The loop runs on the first ``loop_batch`` samples (all when None) and its time is scaled to the whole
    batch per keypoint; the difference is measured on the keypoints both decoded. Keypoints are at least
    4 cells from the border, where both make the same Newton step. ``threads`` sets torch's CPU threads for
    the batched call (None: leave as is); 1 compares one core with one core, and stays clear of the
    stalls that torch's thread pool has when other processes keep the cores busy.
    """
    codec, _, heatmaps = gaussian_heatmaps(batch, sigma=sigma, stride=stride, size=size, margin=4.0, noise=noise,
                                           joints=joints, seed=seed, device=device)

    def decode(maps: torch.Tensor) -> torch.Tensor:
        return codec.decode(maps, method="dark")[0]

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        decode(heatmaps[:8])  # warm-up
        batched, batched_seconds = _timed(decode, heatmaps, repeats=repeats, device=device)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    loop_batch = batch if loop_batch is None else min(loop_batch, batch)
    loop_maps = heatmaps[:loop_batch].cpu().numpy()
    looped, loop_seconds = _timed(dark_reference, loop_maps, sigma)
    looped_pixels = codec.cell_to_pixel(torch.from_numpy(looped))
    difference = (batched[:loop_batch].cpu().double() - looped_pixels).abs().amax().item()
    keypoints, loop_keypoints = batch * joints, loop_batch * joints
    loop_full = loop_seconds * keypoints / loop_keypoints
    scope = "all" if loop_batch == batch else f"the first {loop_batch} samples, scaled per keypoint to all"
    return "\n".join([
        f"DARK on {batch} x {joints} x {size} x {size} heatmaps (sigma {sigma:g} cells, kernel "
        f"{decoders.dark_kernel_size(sigma)}, noise {noise:g}) on {device}; batched with {used_threads} torch "
        f"thread(s), loop timed on {scope}.",
        "",
        "| implementation | seconds | µs per keypoint |",
        "|---|---:|---:|",
        f"| batched `HeatmapCodec.decode(method=\"dark\")` (one call, float32, median of {repeats}) "
        f"| {batched_seconds:.3f} "
        f"| {1e6 * batched_seconds / keypoints:.2f} |",
        f"| per-keypoint loop (NumPy + cv2, float64) | {loop_full:.2f} | {1e6 * loop_seconds / loop_keypoints:.1f} |",
        "",
        f"Speed ratio: {loop_full / batched_seconds:.0f}x. Largest difference of the results over "
        f"{loop_keypoints} keypoints: {difference:.2e} pixels ({difference / stride:.2e} cells).",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.decoders", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="keypoints per accuracy column")
    parser.add_argument("--batch", type=int, default=4096, help="samples of 15 joints for the DARK timing")
    parser.add_argument("--loop-batch", type=int, default=None, help="samples the per-keypoint loop runs on")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the batched DARK (0: as is)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(decoder_accuracy_table(count=args.count, device=args.device))
    print()
    print(dark_speed(batch=args.batch, loop_batch=args.loop_batch, threads=args.threads or None, device=args.device))


if __name__ == "__main__":
    main()
