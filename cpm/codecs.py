"""Target representations: keypoints -> training targets (encode) and network outputs -> keypoints (decode).

Glossary: B batch, K joints, H x W input size in pixels, s stride, h = H/s, w = W/s heatmap cells.

The grid (the original Caffe CPM's): heatmap cell u covers input pixels s*u .. s*u + s - 1, so its
centre lies at input pixel ``x = s*u + (s - 1)/2``::

    input pixels  0   1   2   3 | 4   5   6   7 | 8 ...        (s = 4)
    cell centres        1.5     |      5.5      |   9.5
    cell u              0       |       1       |    2

encode and decode both go through `cell_to_pixel` / `pixel_to_cell`, so a noise-free Gaussian encoded
at any sub-pixel position decodes back to it (with the ``parabola`` decoder) to numerical precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DECODERS = ("argmax", "quarter", "parabola")


class HeatmapCodec:
    """Gaussian belief-map targets (Sec. 3.3 of the paper) and their decoders, batched on any device."""

    def __init__(self, *, input_size: tuple[int, int], stride: int, sigma: float, background: bool = True,
                 center_sigma: float = 2.5) -> None:
        height, width = input_size
        if height % stride or width % stride:
            raise ValueError(f"input size {input_size} is not a multiple of the stride {stride}")
        if sigma <= 0 or center_sigma <= 0:
            raise ValueError("sigma and center_sigma must be > 0")
        self.input_size = (height, width)
        self.stride = stride
        self.heatmap_size = (height // stride, width // stride)  # (h, w)
        self.sigma = sigma
        self.center_sigma = center_sigma
        self.background = background

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
        outside the input crop. The background channel is max(0, 1 - max over joints).
        """
        height, width = self.input_size
        xy = keypoints[..., :2]
        finite = torch.isfinite(xy).all(dim=-1)
        xy = torch.where(finite[..., None], xy, torch.zeros_like(xy))
        inside = (xy[..., 0] >= -0.5) & (xy[..., 0] < width - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] < height - 0.5)
        weights = (finite & inside & (keypoints[..., 2] > 0)).float()  # (B, K)
        heatmaps = self._gaussians(xy, self.sigma) * weights[..., None, None]  # (B, K, h, w)
        if self.background:
            background = (1 - heatmaps.amax(dim=1, keepdim=True)).clamp(min=0)  # (B, 1, h, w)
            heatmaps = torch.cat([heatmaps, background], dim=1)
        return heatmaps, weights

    def center_map(self, centers: torch.Tensor) -> torch.Tensor:
        """centers (B, 2) in input pixels -> (B, 1, h, w) Gaussian that marks the person to parse."""
        return self._gaussians(centers[:, None, :], self.center_sigma)

    def decode(self, beliefs: torch.Tensor, method: str = "parabola") -> tuple[torch.Tensor, torch.Tensor]:
        """beliefs (B, K[+1], h, w) -> keypoints (B, K, 2) in input pixels, confidence (B, K) = peak value.

        Methods: ``argmax`` (cell centre of the maximum); ``quarter`` (argmax moved a quarter cell
        toward the higher neighbour on each axis, as in Newell et al. and the CPM evaluation code);
        ``parabola`` (a parabola through the log of the maximum and its two neighbours on each axis,
        exact for a noise-free Gaussian; falls back to the argmax on the border or when not concave).
        """
        if method not in DECODERS:
            raise ValueError(f"unknown decoder {method!r}; known: {', '.join(DECODERS)}")
        beliefs = beliefs[:, : beliefs.shape[1] - int(self.background)].float()  # (B, K, h, w)
        batch, joints, h, w = beliefs.shape
        confidence, index = beliefs.reshape(batch, joints, h * w).max(dim=-1)  # (B, K)
        row, col = index // w, index % w
        offset = torch.zeros(batch, joints, 2, device=beliefs.device)
        if method != "argmax":
            # Neighbour values through a replicate-padded copy, so border cells read themselves.
            padded = F.pad(beliefs, (1, 1, 1, 1), mode="replicate").reshape(batch, joints, -1)

            def value_at(d_row: int, d_col: int) -> torch.Tensor:
                flat = (row + 1 + d_row) * (w + 2) + (col + 1 + d_col)
                return padded.gather(-1, flat[..., None])[..., 0]

            for axis, (before, after, inner) in enumerate(
                [(value_at(0, -1), value_at(0, 1), (col > 0) & (col < w - 1)),
                 (value_at(-1, 0), value_at(1, 0), (row > 0) & (row < h - 1))]
            ):
                if method == "quarter":
                    shift = 0.25 * torch.sign(after - before)
                else:
                    log_before, log_centre, log_after = (
                        v.clamp(min=1e-10).log() for v in (before, confidence, after)
                    )
                    curvature = log_before - 2 * log_centre + log_after
                    concave = curvature < -1e-6
                    safe_curvature = torch.where(concave, curvature, -torch.ones_like(curvature))
                    shift = 0.5 * (log_before - log_after) / safe_curvature
                    shift = torch.where(concave, shift.clamp(-0.5, 0.5), torch.zeros_like(shift))
                offset[..., axis] = torch.where(inner, shift, torch.zeros_like(shift))
        cells = torch.stack([col, row], dim=-1).float() + offset
        return self.cell_to_pixel(cells), confidence
