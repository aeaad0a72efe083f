"""Multi-scale testing (``eval.scales``): the released CPM's search over scales (``octave`` in testing/config.m,
testing/src/applyModel.m), for any decoder.

The person is cropped once per scale s around the same centre, with crop side = (base side) / s, so s > 1 zooms in.
Every scale's belief maps are brought onto the grid of the base crop (s = 1) and averaged, stage by stage::

    crop s ──model──► maps_s (K[+1], h, w) ──sample at M_s M_0^-1 p──► maps on the base crop's grid ──┐
                                                                                      mean over s ◄─┘ ──► decode

M_0 and M_s are the base crop's and crop s's matrices (source pixels -> crop pixels); base crop pixel p sits at
pixel ``M_s M_0^-1 p`` of crop s. Maps are sampled bilinearly; outside its crop a joint's map reads 0 and the
background 1, as the released code pads (``resizeIntoScaledImg``).

* Every decoder but ``paper``: the maps are averaged on the base crop's heatmap grid (h x w) and decoded there
  (`cpm.targets.codecs.HeatmapCodec.decode`).
* ``paper``, as the released code: each scale's maps are first upsampled x stride with MATLAB's bicubic
  (`cpm.targets.decoders.upsample_bicubic`) to its crop's pixels, then sampled at the base crop's pixels (N x N),
  averaged, and the first maximum taken there. (The released code resizes them into the original image and takes
  the argmax on its pixels; here the base crop's pixels play that part.)

The confidence is the peak of the averaged maps on the heatmap grid, for every decoder.
Glossary: B batch, S scales, T stages, K joints, C = K[+1] channels, h x w cells, N x N crop pixels, s stride.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from cpm.device import autocast
from cpm.targets.codecs import HeatmapCodec
from cpm.targets.decoders import pixel_argmax, upsample_bicubic

__all__ = ["average_scales", "decode_scales", "predict_scales", "relative_affines", "resample"]


def _homogeneous(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 2, 3) -> (..., 3, 3)."""
    last = torch.zeros(*matrix.shape[:-2], 1, 3, dtype=matrix.dtype, device=matrix.device)
    last[..., 0, 2] = 1
    return torch.cat([matrix, last], dim=-2)


def relative_affines(base: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """base (B, 2, 3), matrices (B, S, 2, 3), each source pixels -> crop pixels -> (B, S, 2, 3): base crop pixels ->
    crop s pixels, ``M_s M_0^-1``."""
    inverse = torch.linalg.inv(_homogeneous(base.double()))  # (B, 3, 3)
    return (_homogeneous(matrices.double()) @ inverse[:, None])[..., :2, :]


def resample(maps: torch.Tensor, affine: torch.Tensor, *, size: tuple[int, int], source_grid: tuple[float, float],
             target_grid: tuple[float, float], background: bool = False) -> torch.Tensor:
    """Sample ``maps`` (B, C, h, w) at the points of another grid.

    Target sample (i, j) lies at pixel ``(t0 * j + t1, t0 * i + t1)`` of its crop (``target_grid = (t0, t1)``),
    which ``affine`` (B, 2, 3) takes to pixel q of the maps' crop; the maps' sample (v, u) lies at pixel
    ``(s0 * u + s1, s0 * v + s1)`` (``source_grid``). Heatmaps have grid ``(stride, (stride - 1) / 2)``, maps at
    input resolution ``(1, 0)``. Bilinear; outside the maps a channel reads 0, the last one 1 if ``background``.
    Returns (B, C, size[0], size[1]).
    """
    height, width = size
    h, w = maps.shape[-2:]
    step, offset = target_grid
    ys = torch.arange(height, dtype=torch.float64, device=maps.device) * step + offset
    xs = torch.arange(width, dtype=torch.float64, device=maps.device) * step + offset
    points = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width),
                          torch.ones(height, width, dtype=torch.float64, device=maps.device)], dim=-1)  # (H, W, 3)
    q = torch.einsum("bij,hwj->bhwi", affine.double().to(maps.device), points)  # (B, H, W, 2) pixels of the maps' crop
    cells = (q - source_grid[1]) / source_grid[0]
    grid = (2 * cells + 1) / torch.tensor([w, h], dtype=torch.float64, device=maps.device) - 1  # align_corners=False
    values = maps.float()
    if background:
        values = torch.cat([values[:, :-1], 1 - values[:, -1:]], dim=1)
    sampled = F.grid_sample(values, grid.to(values.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    if background:
        sampled = torch.cat([sampled[:, :-1], 1 - sampled[:, -1:]], dim=1)
    return sampled


def average_scales(outputs: Sequence[Sequence[torch.Tensor]], relative: torch.Tensor, *, stride: int,
                   background: bool) -> list[torch.Tensor]:
    """outputs[s][t] (B, C, h, w) of crop s, relative (B, S, 2, 3) (`relative_affines`) -> per stage the maps
    averaged over scales on the base crop's heatmap grid, T x (B, C, h, w)."""
    grid = (float(stride), (stride - 1) / 2)
    stages = len(outputs[0])
    averaged = []
    for t in range(stages):
        size = tuple(outputs[0][t].shape[-2:])
        total = sum(resample(outputs[s][t], relative[:, s], size=size, source_grid=grid, target_grid=grid,
                             background=background) for s in range(len(outputs)))
        averaged.append(total / len(outputs))
    return averaged


def decode_scales(codec: HeatmapCodec, outputs: Sequence[Sequence[torch.Tensor]], relative: torch.Tensor,
                  method: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """outputs[s][t] (B, C, h, w) of crop s, relative (B, S, 2, 3) -> keypoints (B, T, K, 2) in base crop pixels,
    confidence (B, T, K), and the averaged maps T x (B, C, h, w) (see the module docstring)."""
    averaged = average_scales(outputs, relative, stride=codec.stride, background=codec.background)
    points, confidence = [], []
    for t, maps in enumerate(averaged):
        decoded, peak = codec.decode(maps, method="argmax" if method == "paper" else method)
        if method == "paper":
            decoded = _paper_points(codec, [scale[t] for scale in outputs], relative)
        points.append(decoded)
        confidence.append(peak)
    return torch.stack(points, dim=1), torch.stack(confidence, dim=1), averaged


def predict_scales(model: Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]],
                   images: Sequence[torch.Tensor], center_maps: Sequence[torch.Tensor], base: torch.Tensor,
                   matrices: torch.Tensor, codec: HeatmapCodec, method: str, *, device: torch.device,
                   amp_dtype: torch.dtype | None = None, channels_last: bool = False,
                   ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Multi-scale testing of ``model`` on the crops of every scale: images[s] (B, C, N, N) with their centre maps
    center_maps[s], base (B, 2, 3) the base crop's and matrices (B, S, 2, 3) crop s's source -> crop matrices. Each
    scale's outputs (under autocast to ``amp_dtype``) go to `decode_scales`: keypoints (B, T, K, 2) in base crop
    pixels, confidence (B, T, K) and the averaged maps T x (B, C, h, w). ``cpm eval`` and
    `cpm.inference.predictor.predict_images` both decode their scales here."""
    outputs = []
    for image, center_map in zip(images, center_maps, strict=True):
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            outputs.append([o.float() for o in model(image, center_map)])
    relative = relative_affines(base, matrices).to(outputs[0][0].device)
    return decode_scales(codec, outputs, relative, method)


def _paper_points(codec: HeatmapCodec, maps: Sequence[torch.Tensor], relative: torch.Tensor) -> torch.Tensor:
    """maps[s] (B, C, h, w) of one stage -> (B, K, 2) base crop pixels: upsample each scale, bring it onto the base
    crop's pixels, average, first maximum. One sample at a time, so that memory holds K x N x N values per map."""
    joints = maps[0].shape[1] - int(codec.background)
    height, width = codec.input_size
    points = []
    for b in range(len(maps[0])):
        total = torch.zeros(1, joints, height, width, device=maps[0].device)
        for s, scale_maps in enumerate(maps):
            upsampled = upsample_bicubic(scale_maps[b:b + 1, :joints].float(), codec.stride)  # (1, K, N, N)
            total += resample(upsampled, relative[b:b + 1, s], size=(height, width), source_grid=(1.0, 0.0),
                              target_grid=(1.0, 0.0))
        points.append(pixel_argmax(total)[0])
    return torch.stack(points).to(torch.float32)
