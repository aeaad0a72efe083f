"""Part affinity field targets of a bottom-up model (Cao, Simon, Wei, Sheikh, CVPR 2017, Sec. 2.2-2.3).

Glossary: B batch, P people per image (rows with every v = 0 pad), K joints, L limbs (pairs of joints, e.g.
`cpm.skeleton.Skeleton.limbs`), H x W input size in pixels, s stride, h = H/s, w = W/s cells, C = K[+1] + 2L channels.

A bottom-up model sees a whole image and predicts, per stage, C channels in this order::

    0 .. K-1              confidence maps S, one per joint (Eq. 7-8)
    K                     background 1 - max over joints              (only with ``background``)
    K' + 2l, K' + 2l + 1  part affinity field L of limb l: x, y of a unit vector (Eq. 8-9), K' = K[+1]

on this project's grid: cell u is centred at input pixel ``s*u + (s - 1)/2`` (`cpm.targets.codecs`).

* **Confidence maps**: per joint the *max* over people of each person's Gaussian exp(-d^2 / 2 sigma^2), sigma in
  cells (the paper's Eq. 8: the max keeps two nearby peaks distinct where a sum would merge them into one).
* **Fields**: for person k and limb (j1, j2) with both joints labeled (v > 0), p1 -> p2 in cells, the unit vector
  v = (p2 - p1) / |p2 - p1| on every cell x whose centre lies in the limb's rectangle::

        0 <= v . (x - p1) <= |p2 - p1|   and   |v_perp . (x - p1)| <= limb_width   (cells: limb_width * s pixels)

  (edges included), 0 elsewhere. Where the limbs of several people overlap the field is the *average* of the
  non-zero vectors, L(x) = sum_k L_k(x) / n(x) (Eq. 9), so it may be shorter than 1 where directions differ.
  The paper's released training code (CMU's Caffe data layer, ``CPMDataTransformer::putVecMaps``) differs in two ways:
  its region is the segment's bounding box grown by the width and rounded to whole cells, less the cells farther than
  the width from the *line* (so it reaches up to the width past each end, inside the box), on a grid without the
  half-cell offset (cell g against p / 8); and it means to average with a running mean but increments its counter only
  in the branch where it is already nonzero, so the counter stays 0 and each person overwrites the one drawn before:
  the last person wins where limbs cross. Some PyTorch ports draw each limb with ``cv2.line`` of some thickness
  (integer endpoints, round caps) and overwrite as well.
  A limb with p1 = p2 draws nothing.
* **Weights** (B, C, h, w): 1 on every channel of every cell, whether or not anyone in the image has the joint or
  limb labeled (the network must learn "no limb here" as well as "limb here"), except the cells of ``mask``
  (B, h, w) nonzero: cells to ignore (unlabeled people such as COCO's crowd regions; the paper's W(p)), where every
  channel gets weight 0.

Labeled joints are drawn wherever they are, so a person partly outside the input draws the parts of its Gaussians
and limbs that reach into it. Unlabeled (v = 0) or non-finite joints draw nothing.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

__all__ = ["PafCodec"]


class PafCodec:
    """Confidence maps and part affinity fields of every person in an image, batched on any device (float32)."""

    def __init__(self, *, input_size: tuple[int, int], stride: int, sigma: float, limbs: Sequence[tuple[int, int]],
                 num_joints: int, limb_width: float = 1.0, background: bool = True) -> None:
        height, width = input_size
        if height % stride or width % stride:
            raise ValueError(f"input size {tuple(input_size)} is not a multiple of the stride {stride}")
        if sigma <= 0 or limb_width <= 0:
            raise ValueError(f"sigma ({sigma}) and limb_width ({limb_width}) must be > 0")
        self.limbs = validate_limbs(limbs, num_joints)
        self.num_joints = num_joints
        self.input_size = (height, width)
        self.stride = stride
        self.heatmap_size = (height // stride, width // stride)  # (h, w)
        self.sigma = sigma
        self.limb_width = limb_width
        self.background = background

    @property
    def field_offset(self) -> int:
        """Index of the first field channel: K[+1]."""
        return self.num_joints + int(self.background)

    @property
    def channels(self) -> int:
        """C = K[+1] + 2L."""
        return self.field_offset + 2 * len(self.limbs)

    def pixel_to_cell(self, x: torch.Tensor) -> torch.Tensor:
        return (x - (self.stride - 1) / 2) / self.stride

    def cell_to_pixel(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.stride + (self.stride - 1) / 2

    def center_map(self, centers: torch.Tensor) -> None:
        """None: a bottom-up model has no centre map (the training step passes it on to the model as it is)."""
        return None

    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """outputs (..., C, h, w) -> confidence maps S (..., K[+1], h, w), fields L (..., 2L, h, w)."""
        if outputs.shape[-3] != self.channels:
            raise ValueError(f"expected {self.channels} channels (K[+1] + 2L), got {outputs.shape[-3]}")
        return outputs[..., : self.field_offset, :, :], outputs[..., self.field_offset:, :, :]

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints (B, P, K, 3) [x, y, v] in input pixels (or (B, K, 3): one person each), mask (B, h, w) of cells
        to ignore or None -> targets (B, C, h, w), weights (B, C, h, w)."""
        if keypoints.ndim == 3:
            keypoints = keypoints[:, None]
        if keypoints.ndim != 4 or keypoints.shape[-2:] != (self.num_joints, 3):
            raise ValueError(f"keypoints must be (B, P, {self.num_joints}, 3), got {tuple(keypoints.shape)}")
        h, w = self.heatmap_size
        batch = keypoints.shape[0]
        xy = keypoints[..., :2].float()
        labeled = torch.isfinite(xy).all(dim=-1) & (keypoints[..., 2] > 0)  # (B, P, K)
        cells = self.pixel_to_cell(torch.where(labeled[..., None], xy, 0.0))  # (B, P, K, 2)

        u = torch.arange(w, device=keypoints.device, dtype=torch.float32)
        v = torch.arange(h, device=keypoints.device, dtype=torch.float32)
        # Separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2).
        gx = torch.exp(-((u - cells[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (B, P, K, w)
        gy = torch.exp(-((v - cells[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (B, P, K, h)
        gaussians = gy[..., :, None] * gx[..., None, :] * labeled[..., None, None]  # (B, P, K, h, w)
        maps = gaussians.amax(dim=1) if keypoints.shape[1] else gaussians.new_zeros(batch, self.num_joints, h, w)
        if self.background:
            maps = torch.cat([maps, (1 - maps.amax(dim=1, keepdim=True)).clamp(min=0)], dim=1)  # (B, K+1, h, w)

        fields = self._fields(cells, labeled, u, v)  # (B, 2L, h, w)
        targets = torch.cat([maps, fields], dim=1)  # (B, C, h, w)
        weights = torch.ones_like(targets)
        if mask is not None:
            if mask.shape != (batch, h, w):
                raise ValueError(f"mask must be (B, h, w) = {(batch, h, w)}, got {tuple(mask.shape)}")
            weights = weights * (mask == 0).to(weights.dtype)[:, None]
        return targets, weights

    def _fields(self, cells: torch.Tensor, labeled: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """cells (B, P, K, 2), labeled (B, P, K), cell coordinates u (w,), v (h,) -> fields (B, 2L, h, w)."""
        first, second = (torch.tensor(side, device=cells.device) for side in zip(*self.limbs, strict=True))
        p1, p2 = cells[:, :, first], cells[:, :, second]  # (B, P, L, 2)
        delta = p2 - p1
        length = delta.norm(dim=-1)  # (B, P, L) cells
        drawn = labeled[:, :, first] & labeled[:, :, second] & (length > 1e-6)
        unit = delta / length.clamp(min=1e-6)[..., None]  # (B, P, L, 2)
        ux, uy = unit[..., 0, None, None], unit[..., 1, None, None]  # (B, P, L, 1, 1)
        rx = u - p1[..., 0, None, None]  # (B, P, L, 1, w)
        ry = v[:, None] - p1[..., 1, None, None]  # (B, P, L, h, 1)
        along = ux * rx + uy * ry  # (B, P, L, h, w)
        across = (ux * ry - uy * rx).abs()
        inside = (along >= 0) & (along <= length[..., None, None]) & (across <= self.limb_width)
        inside = (inside & drawn[..., None, None]).float()  # (B, P, L, h, w)
        count = inside.sum(dim=1)  # (B, L, h, w) people whose limb covers the cell
        summed = torch.einsum("bplhw,bplc->blchw", inside, unit)  # (B, L, 2, h, w)
        return (summed / count.clamp(min=1)[:, :, None]).flatten(1, 2)  # (B, 2L, h, w): x, y per limb


def validate_limbs(limbs: Sequence[tuple[int, int]], num_joints: int) -> tuple[tuple[int, int], ...]:
    """-> the limbs as a tuple of (j1, j2) pairs; ValueError naming the first bad one (unknown joint index, a joint
    paired with itself, not a pair), or saying there are none."""
    if num_joints < 1:
        raise ValueError(f"num_joints must be >= 1, got {num_joints}")
    pairs = tuple(tuple(limb) for limb in limbs)
    if not pairs:
        raise ValueError("limbs: no limbs given; part affinity fields need at least one (j1, j2) pair")
    checked = []
    for number, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(j, numbers.Integral) and not isinstance(j, bool) for j in pair):
            raise ValueError(f"limb {number} {pair!r} is not a pair of joint indices")
        pair = (int(pair[0]), int(pair[1]))
        bad = next((j for j in pair if not 0 <= j < num_joints), None)
        if bad is not None:
            raise ValueError(f"limb {number} {pair!r} names joint {bad}, not one of 0..{num_joints - 1}")
        if pair[0] == pair[1]:
            raise ValueError(f"limb {number} {pair!r} pairs joint {pair[0]} with itself")
        checked.append(pair)
    return tuple(checked)
