"""Bottom-up grouping: confidence maps and part affinity fields -> people (Cao et al., CVPR 2017, Sec. 2.4).

Glossary: K joints, L limbs, h x w cells of stride s; N peaks (joint candidates) of all joints, n1, n2 those of a
limb's two joints.

One image at a time, in four steps, each vectorised where the work is:

1. **Peaks** (`find_peaks`): the local maxima of each confidence map S_j above ``peak_threshold`` (3 x 3 max-pool
   non-maximum suppression, optionally after a Gaussian blur of ``blur`` cells as the released demo blurs); each
   peak is refined to sub-cell precision per axis by the vertex of the parabola through the logarithms of the peak
   and its two neighbours (exact for the Gaussian targets of `cpm.targets.paf`; no shift on the map's border or
   where the log is not concave; at most half a cell). Its score is S_j at the peak cell. With ``blur`` > 0 the peaks
   are found and refined on the blurred maps (border replicated): that keeps white noise from making a peak of
   every other cell, and may pull a peak less than a cell from the map's edge onto the edge cell.
2. **Candidate limbs** (`score_limbs`): all pairs (a peak of j1, a peak of j2) of all limbs at once: the field of
   the limb sampled *bilinearly* at ``samples`` evenly spaced points from one peak to the other (both ends
   included), each dotted with the pair's unit vector (Eq. 10-11, the released demo's line integral, which reads
   the nearest pixel of fields upsampled to the image instead). Score = mean + min(0.5 H / |d| - 1, 0), the
   released distance prior (H = ``image_height``, by default the maps' height h*s in input pixels; |d| in pixels).
   A pair is allowed when the fraction of samples above ``score_threshold`` is >= ``min_fraction`` (the demo's
   "more than 80 %") and its score is > 0.
3. **Matching** per limb (Eq. 12-13): ``greedy`` takes the allowed pairs by decreasing score when neither peak is
   used yet (the paper's and the demo's); ``optimal`` solves the maximum-weight bipartite matching of the allowed
   pairs exactly (`scipy.optimize.linear_sum_assignment` on the score matrix, disallowed pairs at 0).
4. **Assembly** (the released demo's greedy merge): limb by limb in the order given, a connection whose peaks
   belong to no person starts one; one that shares a peak with one person adds its other peak to that person
   when that joint is free there (the demo adds only the second joint's peak, overwriting one already there); one
   that joins two people merges them when they have no joint in common, else is dropped (the demo then gives the
   first person the second peak as well, which may leave one peak in two people). People with fewer than
   ``min_parts`` joints are dropped. A person's score is (sum of its peak scores + sum of its connection scores)
   / its number of joints, the demo's ``subset[-2] / subset[-1]`` (the demo also drops people below 0.4 of it).

Keypoints come out in input pixels on the project's grid, ``x = s*u + (s - 1)/2`` for cell coordinate u.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from cpm.targets.paf import validate_limbs

__all__ = ["MATCHINGS", "Person", "find_peaks", "group_people", "match_pairs", "score_limbs"]

MATCHINGS = ("greedy", "optimal")


@dataclass(frozen=True, eq=False)
class Person:
    """keypoints (K, 3): x, y in input pixels and the peak's score, (0, 0, 0) for a joint not found; score: see
    the module docstring."""

    keypoints: np.ndarray
    score: float


def group_people(S: torch.Tensor | np.ndarray, L: torch.Tensor | np.ndarray, limbs: Sequence[tuple[int, int]], *,
                 stride: int, peak_threshold: float = 0.1, samples: int = 10, score_threshold: float = 0.05,
                 min_fraction: float = 0.8, min_parts: int = 3, matching: str = "greedy", background: bool = True,
                 blur: float = 0.0, image_height: float | None = None) -> list[Person]:
    """S (K[+1], h, w) confidence maps (the last channel a background map when ``background``), L (2L, h, w) fields
    (x, y per limb, as `cpm.targets.paf.PafCodec` orders them), for one image -> its people, best score first."""
    maps, fields = _as_maps(S, "S"), _as_maps(L, "L")
    num_joints = maps.shape[0] - int(background)
    if num_joints < 1:
        raise ValueError(f"S has {maps.shape[0]} channel(s): no joint maps{' besides the background' * background}")
    limbs = validate_limbs(limbs, num_joints)
    if fields.shape[0] != 2 * len(limbs) or fields.shape[1:] != maps.shape[1:]:
        raise ValueError(f"L must be (2 x {len(limbs)} limbs, h, w) = {(2 * len(limbs), *maps.shape[1:])}, "
                         f"got {tuple(fields.shape)}")
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {', '.join(MATCHINGS)}, got {matching!r}")
    if samples < 2 or stride < 1:
        raise ValueError(f"samples ({samples}) must be >= 2 and stride ({stride}) >= 1")
    height = image_height if image_height is not None else maps.shape[1] * stride

    joint, cells, peak_score = find_peaks(maps[:num_joints], threshold=peak_threshold, blur=blur)
    peak_np = peak_score.cpu().numpy()
    assembly = _People(num_joints, len(peak_np), peak_np)
    if len(joint):
        # Each joint's peaks in a row of a (K, n) table (-1 pads), so that every limb is scored in one call.
        counts = torch.bincount(joint, minlength=num_joints)  # (K,)
        rank = torch.arange(len(joint), device=joint.device) - (counts.cumsum(0) - counts)[joint]  # joint-sorted
        table = torch.full((num_joints, int(counts.max())), -1, dtype=torch.long, device=joint.device)
        table[joint, rank] = torch.arange(len(joint), device=joint.device)
        first, second = (table[list(side)] for side in zip(*limbs, strict=True))  # (L, n) each
        score, allowed = score_limbs(fields.unflatten(0, (len(limbs), 2)), cells[first.clamp(min=0)],
                                     cells[second.clamp(min=0)], stride=stride, samples=samples,
                                     score_threshold=score_threshold, min_fraction=min_fraction, image_height=height)
        allowed &= (first >= 0)[:, :, None] & (second >= 0)[:, None, :]
        score, allowed, first, second = (t.cpu().numpy() for t in (score, allowed, first, second))
        for index, (j1, j2) in enumerate(limbs):
            connections = match_pairs(score[index], allowed[index], matching)
            assembly.add([(int(first[index, r]), int(second[index, c]), value) for r, c, value in connections], j1, j2)
    pixels = (cells * stride + (stride - 1) / 2).cpu().numpy()  # (N, 2) input pixels
    people = []
    for row, total in zip(assembly.slots, assembly.totals, strict=True):
        count = int((row >= 0).sum())
        if count < max(min_parts, 1):
            continue
        keypoints = np.zeros((num_joints, 3), np.float32)
        found = row >= 0
        keypoints[found, :2] = pixels[row[found]]
        keypoints[found, 2] = peak_np[row[found]]
        people.append(Person(keypoints=keypoints, score=float(total / count)))
    return sorted(people, key=lambda person: -person.score)


def _as_maps(maps: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    maps = torch.as_tensor(maps).detach().float()
    if maps.ndim != 3:
        raise ValueError(f"{name} must be (channels, h, w) for one image, got {tuple(maps.shape)}")
    return maps


def find_peaks(maps: torch.Tensor, *, threshold: float, blur: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """maps (K, h, w) -> per peak: joint (N,), refined cell coordinates (N, 2) x, y, score (N,) = the map's value."""
    detect = _blur(maps, blur) if blur > 0 else maps
    pooled = F.max_pool2d(detect[None], kernel_size=3, stride=1, padding=1)[0]
    joint, row, col = ((detect == pooled) & (detect > threshold)).nonzero(as_tuple=True)
    h, w = maps.shape[-2:]
    log = detect.clamp(min=1e-10).log()
    shifts = []
    for d_row, d_col, inner in ((0, 1, (col > 0) & (col < w - 1)), (1, 0, (row > 0) & (row < h - 1))):
        before = log[joint, (row - d_row).clamp(0, h - 1), (col - d_col).clamp(0, w - 1)]
        after = log[joint, (row + d_row).clamp(0, h - 1), (col + d_col).clamp(0, w - 1)]
        curvature = before - 2 * log[joint, row, col] + after
        usable = inner & (curvature < -1e-6)
        shift = 0.5 * (before - after) / torch.where(usable, curvature, -1.0)
        shifts.append(torch.where(usable, shift.clamp(-0.5, 0.5), 0.0))
    cells = torch.stack([col.float() + shifts[0], row.float() + shifts[1]], dim=-1)  # (N, 2)
    return joint, cells, maps[joint, row, col]


def _blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each map, sigma in cells, replicated border."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = maps.shape[0]
    padded = F.pad(maps[None], (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)[0]


def score_limbs(fields: torch.Tensor, first: torch.Tensor, second: torch.Tensor, *, stride: int, samples: int,
                score_threshold: float, min_fraction: float, image_height: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fields (L, 2, h, w) x, y per limb, first (L, n1, 2) and second (L, n2, 2) peaks of its joints in cells ->
    for every pair of every limb the score (L, n1, n2) and whether it is allowed (L, n1, n2); all at once."""
    h, w = fields.shape[-2:]
    delta = second[:, None, :] - first[:, :, None]  # (L, n1, n2, 2) cells
    length = delta.norm(dim=-1)  # (L, n1, n2)
    unit = delta / length.clamp(min=1e-6)[..., None]
    # The sample points in grid_sample's coordinates: align_corners=True puts -1 and 1 on the first and last cells.
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=fields.device, dtype=fields.dtype)
    steps = torch.linspace(0, 1, samples, device=fields.device, dtype=fields.dtype)
    grid = torch.addcmul((first * scale - 1)[:, :, None, None], steps[:, None], (delta * scale)[..., None, :])
    values = F.grid_sample(fields, grid.flatten(1, 2), mode="bilinear", padding_mode="border", align_corners=True)
    along = torch.einsum("lcms,lmc->lms", values, unit.flatten(1, 2)).unflatten(1, delta.shape[1:3])  # (L, n1, n2, S)
    prior = (0.5 * image_height / (length * stride).clamp(min=1e-6) - 1).clamp(max=0)
    score = along.mean(dim=-1) + prior
    above = (along > score_threshold).sum(dim=-1)
    allowed = (above >= min_fraction * samples - 1e-6) & (score > 0) & (length > 0)
    return score, allowed


def match_pairs(score: np.ndarray, allowed: np.ndarray, matching: str) -> list[tuple[int, int, float]]:
    """One limb's pair scores and allowed pairs (n1, n2) -> its connections (row, column, score), each row and
    column used at most once."""
    if matching == "optimal":
        matrix = np.where(allowed, score, 0.0)
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        return [(int(r), int(c), float(matrix[r, c])) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
    rows, cols = np.nonzero(allowed)
    connections, used_rows, used_cols = [], set(), set()
    for i in np.argsort(-score[rows, cols], kind="stable"):
        r, c = int(rows[i]), int(cols[i])
        if r not in used_rows and c not in used_cols:
            connections.append((r, c, float(score[r, c])))
            used_rows.add(r)
            used_cols.add(c)
    return connections


class _People:
    """People under assembly: per person the peak of each joint (-1: none) and the running score total; ``owner``
    maps each peak to its person (-1: none), so that a connection finds its people in constant time."""

    def __init__(self, num_joints: int, num_peaks: int, peak_score: np.ndarray) -> None:
        self.slots: list[np.ndarray] = []  # (K,) per person; merged people are emptied, never removed
        self.totals: list[float] = []
        self.owner = np.full(num_peaks, -1, np.int64)
        self.num_joints = num_joints
        self.peak_score = peak_score

    def add(self, connections: list[tuple[int, int, float]], j1: int, j2: int) -> None:
        """One limb's connections (first peak, second peak, score)."""
        for a, b, score in connections:
            owner_a, owner_b = int(self.owner[a]), int(self.owner[b])
            if owner_a < 0 and owner_b < 0:
                row = np.full(self.num_joints, -1, np.int64)
                row[j1], row[j2] = a, b
                self.owner[[a, b]] = len(self.slots)
                self.slots.append(row)
                self.totals.append(float(self.peak_score[a] + self.peak_score[b] + score))
            elif owner_a >= 0 and owner_b >= 0:
                if owner_a != owner_b and not ((self.slots[owner_a] >= 0) & (self.slots[owner_b] >= 0)).any():
                    self._merge(owner_a, owner_b, score)
                # else: two people with a joint in common, or a person that has both peaks already: dropped
            else:
                person, joint, peak = (owner_a, j2, b) if owner_a >= 0 else (owner_b, j1, a)
                if self.slots[person][joint] < 0:  # the joint is free there
                    self.slots[person][joint] = peak
                    self.owner[peak] = person
                    self.totals[person] += float(self.peak_score[peak] + score)

    def _merge(self, keep: int, other: int, score: float) -> None:
        moved = self.slots[other] >= 0
        self.slots[keep][moved] = self.slots[other][moved]
        self.owner[self.slots[other][moved]] = keep
        self.totals[keep] += self.totals[other] + score
        self.slots[other][:] = -1
        self.totals[other] = 0.0
