"""Target representations: keypoints -> training targets (encode) and network outputs -> keypoints (decode).

Glossary: B batch, K joints, H x W input size in pixels, s stride, h = H/s, w = W/s heatmap cells.

The grid (the original Caffe CPM's): heatmap cell u covers input pixels s*u .. s*u + s - 1, so its
centre lies at input pixel ``x = s*u + (s - 1)/2``::

    input pixels  0   1   2   3 | 4   5   6   7 | 8 ...        (s = 4)
    cell centres        1.5     |      5.5      |   9.5
    cell u              0       |       1       |    2

encode and decode both go through `cell_to_pixel` / `pixel_to_cell`, so a noise-free Gaussian encoded
at any sub-pixel position decodes back to it (with the ``parabola`` decoder) to numerical precision.
The decoders themselves live in `cpm.targets.decoders`, which works in cells; `RegressionCodec` is the
counterpart for heads that output coordinates.
"""

from __future__ import annotations

import math
import typing

import torch

from cpm.config import Decoder, EvalDecoder, TargetsConfig, choices
from cpm.targets import decoders
from cpm.targets.decoders import soft_argmax

__all__ = ["DECODERS", "EVAL_DECODERS", "HeatmapCodec", "RegressionCodec", "soft_argmax"]

# Decoders of one belief map (the compare-decoders grid and the decoder benchmark run each of them).
DECODERS: tuple[str, ...] = typing.get_args(Decoder)  # argmax, quarter, parabola, bicubic, dark, soft_argmax
# What ``eval.decoder`` accepts: those, and ``paper``, the released CPM's test-time decoding (x stride bicubic
# upsampling and the argmax there; with ``eval.scales`` the maps are averaged over scales at input resolution first,
# `cpm.targets.multiscale`). At one scale its keypoints are those of ``bicubic``.
EVAL_DECODERS: tuple[str, ...] = typing.get_args(EvalDecoder)  # DECODERS and paper
MISSING_JOINTS: tuple[str, ...] = choices(typing.get_type_hints(TargetsConfig)["missing_joints"])


class HeatmapCodec:
    """Gaussian belief-map targets (Sec. 3.3 of the paper) and their decoders, batched on any device.

    Three switches reproduce the released Caffe CPM's labels (its ``data_transformer.cpp``, ``generateLabelMap``
    and ``putGaussianMaps``); their defaults keep this project's own targets:

    * ``missing_joints``: ``"ignore"`` gives an unlabeled, non-finite or out-of-crop joint weight 0 and an empty
      map; ``"zero"`` (Caffe) keeps every channel in the loss with weight 1: such a joint's channel is trained
      toward 0, and a labeled joint outside the crop still draws the part of its Gaussian that reaches into it.
    * ``cutoff``: Gaussian values below it are set to 0 (Caffe skips cells with exp(-d^2 / 2 sigma^2) < 0.01).
    * ``stage1_all_people``: the targets have 2 x K[+1] channels, those of stage 1 first, then those of
      stages >= 2 (Caffe's ``label_1st_lower`` and ``label_lower``): stage 1 learns the Gaussians of every person
      in the crop (summed and clipped at 1, as Caffe), later stages only the person the crop is centred on.
      `cpm.targets.losses.staged_heatmap_loss` reads the two halves by their channel count.
    """

    def __init__(self, *, input_size: tuple[int, int], stride: int, sigma: float, background: bool = True,
                 center_sigma: float = 2.5, soft_argmax_beta: float | None = None, missing_joints: str = "ignore",
                 cutoff: float = 0.0, stage1_all_people: bool = False) -> None:
        height, width = input_size
        if height % stride or width % stride:
            raise ValueError(f"input size {input_size} is not a multiple of the stride {stride}")
        if sigma <= 0 or center_sigma <= 0:
            raise ValueError("sigma and center_sigma must be > 0")
        if missing_joints not in MISSING_JOINTS:
            raise ValueError(f"missing_joints must be one of {', '.join(MISSING_JOINTS)}, got {missing_joints!r}")
        if not 0 <= cutoff < 1:
            raise ValueError(f"cutoff must be in [0, 1), got {cutoff}")
        self.missing_joints = missing_joints
        self.cutoff = cutoff
        self.stage1_all_people = stage1_all_people
        self.input_size = (height, width)
        self.stride = stride
        self.heatmap_size = (height // stride, width // stride)  # (h, w)
        self.sigma = sigma
        self.center_sigma = center_sigma
        self.background = background
        self.soft_argmax_beta = soft_argmax_beta  # None: default_soft_argmax_beta(heatmap_size)

    def pixel_to_cell(self, x: torch.Tensor) -> torch.Tensor:
        return (x - (self.stride - 1) / 2) / self.stride

    def cell_to_pixel(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.stride + (self.stride - 1) / 2

    def _gaussians(self, points: torch.Tensor, sigma: float) -> torch.Tensor:
        """points (..., 2) in input pixels -> unnormalised Gaussians (..., h, w), peak 1 at the point."""
        h, w = self.heatmap_size
        cells = self.pixel_to_cell(points.float())
        u = torch.arange(w, device=points.device, dtype=torch.float32)
        v = torch.arange(h, device=points.device, dtype=torch.float32)
        dx2 = (u - cells[..., 0:1]) ** 2  # (..., w)
        dy2 = (v - cells[..., 1:2]) ** 2  # (..., h)
        # The Gaussian is separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2).
        return torch.exp(-dy2 / (2 * sigma**2))[..., :, None] * torch.exp(-dx2 / (2 * sigma**2))[..., None, :]

    def encode(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints (B, K, 3) [x, y, v] in input pixels -> heatmaps (B, K[+1], h, w), weights (B, K).

        A joint gets weight 0 (and an empty heatmap) when it is unlabeled (v = 0), not finite, or
        outside the input crop (``missing_joints = "zero"``: weight 1, see the class). The background channel is
        max(0, 1 - max over joints).

        ``keypoints`` may also be (B, 1 + P, K, 3): the person the crop is centred on, then P other people in the
        crop (rows with v = 0 pad); only ``stage1_all_people`` reads the others, whose heatmaps then have
        2 x K[+1] channels: stage 1's (everyone), then the later stages' (the centred person).
        """
        others = None
        if keypoints.ndim == 4:
            keypoints, others = keypoints[:, 0], keypoints[:, 1:]
        heatmaps, weights = self._person_maps(keypoints)  # (B, K, h, w), (B, K)
        if self.missing_joints == "zero":
            weights = torch.ones_like(weights)
        if not self.stage1_all_people:
            return self._with_background(heatmaps), weights
        everyone = heatmaps
        if others is not None and others.shape[1]:
            other_maps, _ = self._person_maps(others.flatten(0, 1))  # (B*P, K, h, w)
            everyone = (heatmaps + other_maps.unflatten(0, others.shape[:2]).sum(dim=1)).clamp(max=1)
        return torch.cat([self._with_background(everyone), self._with_background(heatmaps)], dim=1), weights

    def _person_maps(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints (N, K, 3) -> the Gaussians that are drawn (N, K, h, w) and the joints' weights under
        ``missing_joints = "ignore"`` (N, K): labeled, finite and inside the crop."""
        height, width = self.input_size
        xy = keypoints[..., :2]
        finite = torch.isfinite(xy).all(dim=-1)
        xy = torch.where(finite[..., None], xy, torch.zeros_like(xy))
        inside = (xy[..., 0] >= -0.5) & (xy[..., 0] < width - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] < height - 0.5)
        weights = (finite & inside & (keypoints[..., 2] > 0)).float()  # (N, K)
        drawn = weights if self.missing_joints == "ignore" else (finite & (keypoints[..., 2] > 0)).float()
        heatmaps = self._gaussians(xy, self.sigma) * drawn[..., None, None]  # (N, K, h, w)
        if self.cutoff > 0:
            heatmaps = torch.where(heatmaps < self.cutoff, 0.0, heatmaps)
        return heatmaps, weights

    def _with_background(self, heatmaps: torch.Tensor) -> torch.Tensor:
        if not self.background:
            return heatmaps
        background = (1 - heatmaps.amax(dim=1, keepdim=True)).clamp(min=0)  # (B, 1, h, w)
        return torch.cat([heatmaps, background], dim=1)

    def center_map(self, centers: torch.Tensor) -> torch.Tensor:
        """centers (B, 2) in input pixels -> (B, 1, h, w) Gaussian that marks the person to parse."""
        return self._gaussians(centers[:, None, :], self.center_sigma)

    def decode(self, beliefs: torch.Tensor, method: str = "parabola") -> tuple[torch.Tensor, torch.Tensor]:
        """beliefs (B, K[+1], h, w) -> keypoints (B, K, 2) in input pixels, confidence (B, K) = peak value.

        ``method`` is one of `EVAL_DECODERS`, described in `cpm.targets.decoders`: ``argmax``, ``quarter``,
        ``parabola`` (exact for a noise-free Gaussian), ``bicubic`` (the original CPM's), ``paper`` (the same
        keypoints from the whole upsampled map, `cpm.targets.decoders.paper`), ``dark`` (blur with this
        codec's sigma, then a Newton step), ``soft_argmax`` (with ``soft_argmax_beta``). All are batched.
        """
        if method not in EVAL_DECODERS:
            raise ValueError(f"unknown decoder {method!r}; known: {', '.join(EVAL_DECODERS)}")
        beliefs = beliefs[:, : beliefs.shape[1] - int(self.background)].float()  # (B, K, h, w)
        if method == "bicubic":
            cells, confidence = decoders.bicubic(beliefs, self.stride)
        elif method == "paper":
            cells, confidence = decoders.paper(beliefs, self.stride)
        elif method == "dark":
            cells, confidence = decoders.dark(beliefs, self.sigma)
        elif method == "soft_argmax":
            beta = self.soft_argmax_beta or default_soft_argmax_beta(self.heatmap_size)
            cells, confidence = decoders.soft_argmax(beliefs, beta), beliefs.flatten(-2).amax(dim=-1)
        else:
            local = {"argmax": decoders.argmax, "quarter": decoders.quarter, "parabola": decoders.parabola}
            cells, confidence = local[method](beliefs)
        return self.cell_to_pixel(cells), confidence


def default_soft_argmax_beta(heatmap_size: tuple[int, int]) -> float:
    """log(h*w) + 6: on a unit-peak map, the softmax mass at the peak then outweighs that of the h*w background
    cells (each exp(0) = 1) about e^6 = 400 times over. Smaller beta lets the background pull the mean toward
    the map centre; larger beta narrows the peak to sigma/sqrt(beta) cells and the mean snaps to the argmax
    cell. 13.7 on 46 x 46 maps, near the measured optimum there (see ``python -m cpm.bench.decoders``).
    """
    return math.log(heatmap_size[0] * heatmap_size[1]) + 6


class RegressionCodec:
    """Keypoints <-> (x, y) normalised to the input crop, the targets of a coordinate-regression head.

    Normalised coordinates span the crop's outer edges (the pixel-centre convention of
    ``F.grid_sample(align_corners=False)``): pixel x (a centre) -> ``n = (2x + 1)/W - 1``::

        pixel edges   -0.5         0.5    ...    W-1.5         W-0.5
        pixel centres       0              ...          W-1
        n            -1        -1 + 1/W    ...     1 - 1/W       1

    so every point inside the crop has n in [-1, 1), and heatmap and regression codecs agree on where a
    pixel is. Computed in float64 (float32 on MPS, which has no float64); the dtype of the input is kept.

    ``center_codec`` (a `HeatmapCodec`) makes the centre maps of a head that takes one (the integral head's
    CPM stages); `center_map` delegates to it, so the training loop calls either codec the same way.
    """

    def __init__(self, *, input_size: tuple[int, int], center_codec: HeatmapCodec | None = None) -> None:
        self.input_size = tuple(input_size)  # (H, W)
        self.center_codec = center_codec

    def center_map(self, centers: torch.Tensor) -> torch.Tensor | None:
        """centers (B, 2) in input pixels -> the centre codec's map, or None without a centre codec."""
        return self.center_codec.center_map(centers) if self.center_codec is not None else None

    def _exact(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> values in float64 where the device has it, and the crop's (W, H) in the same dtype."""
        dtype = torch.float32 if values.device.type == "mps" else torch.float64
        height, width = self.input_size
        return values.to(dtype), torch.tensor([width, height], dtype=dtype, device=values.device)  # (x, y) order

    def encode(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints (B, K, 3) [x, y, v] in input pixels -> targets (B, K, 2) normalised, weights (B, K).

        Weight 0 (and target 0) for joints that are unlabeled (v = 0), not finite, or outside the crop.
        """
        xy, size = self._exact(keypoints[..., :2])
        finite = torch.isfinite(xy).all(dim=-1)
        xy = torch.where(finite[..., None], xy, torch.zeros_like(xy))
        inside = ((xy >= -0.5) & (xy < size - 0.5)).all(dim=-1)
        weights = finite & inside & (keypoints[..., 2] > 0)  # (B, K)
        targets = torch.where(weights[..., None], (2 * xy + 1) / size - 1, 0.0)
        return targets.to(keypoints.dtype), weights.to(keypoints.dtype)

    def decode(self, outputs: torch.Tensor, method: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """outputs (B, K, 2) normalised -> keypoints (B, K, 2) in input pixels, confidence (B, K) of ones.

        Outputs (B, K, 4) [x, y, σx, σy] (an RLE head, ``model.regression_loss = "rle"``): the keypoints of x, y,
        and confidence 1 - mean(σx, σy), as mmpose scores RLE (σ in (0, 1): the sharper, the more confident).

        ``method`` is ignored (a regression head has one decoding); it is accepted so that evaluation code
        can call either codec the same way.
        """
        dtype = outputs.dtype if outputs.is_floating_point() else torch.float32
        normalised, size = self._exact(outputs[..., :2])
        keypoints = ((normalised + 1) * size - 1) / 2
        if outputs.shape[-1] == 4:
            confidence = 1 - outputs[..., 2:].to(dtype).mean(dim=-1)
        else:
            confidence = torch.ones(outputs.shape[:-1], dtype=dtype, device=outputs.device)
        return keypoints.to(dtype), confidence


class InputResolutionCenterCodec(HeatmapCodec):
    """`HeatmapCodec` whose centre map is the Caffe CPM's: a Gaussian at input resolution (B, 1, H, W) with
    sigma = center_sigma * stride pixels (21 px in the paper), which the model average-pools to (B, 1, h, w)."""

    def center_map(self, centers: torch.Tensor) -> torch.Tensor:
        """centers (B, 2) in input pixels -> (B, 1, H, W)."""
        height, width = self.input_size
        sigma = self.center_sigma * self.stride
        x = torch.arange(width, device=centers.device, dtype=torch.float32)
        y = torch.arange(height, device=centers.device, dtype=torch.float32)
        gx = torch.exp(-((x - centers[:, 0:1].float()) ** 2) / (2 * sigma**2))  # (B, W)
        gy = torch.exp(-((y - centers[:, 1:2].float()) ** 2) / (2 * sigma**2))  # (B, H)
        return (gy[:, :, None] * gx[:, None, :])[:, None]
