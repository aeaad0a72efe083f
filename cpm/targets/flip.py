"""Flip test (``eval.flip_test``): the crop and its mirror image both go through the model, and the mirror's outputs,
brought back to the crop's frame, are averaged with the crop's, stage by stage, before decoding (Simple Baselines /
HRNet, mmpose's ``flip_test``)::

    crop ───────────────model(crop, centre map)──────────────────────────────────────┐
    mirror(crop) ──model(mirror(crop), mirror(centre map))──► mirror back, swap L/R ──┴─ mean ──► decode

Mirroring the crop turns the person's left joints into right ones, so the mirror's channel k is joint
``flip_permutation[k]`` (`cpm.skeleton.Skeleton.flip_permutation`); the background channel, if any, stays. The centre
map (the model's second input) is mirrored with the crop.

No shift. Mirroring a crop of N = s*w pixels takes pixel x to N - 1 - x. On this project's grid heatmap cell u is
centred at pixel ``s*u + (s - 1)/2`` (`cpm.targets.codecs`), which the mirror takes to
``N - 1 - s*u - (s - 1)/2 = s*(w - 1 - u) + (s - 1)/2``: exactly the centre of cell w - 1 - u. So reversing the
columns of a map (``flip(-1)``) is the exact mirror, and the flipped-back map needs no shift (tests/test_flip_test.py
checks it on encoded targets, bit for bit). On a grid whose cell u is centred at pixel ``s*u`` (mmpose's, HRNet's)
the mirror takes cell u to ``s*(w - 1 - u) + (s - 1)``, (s - 1)/s cells off cell w - 1 - u, so a flipped-back map
lies (s - 1)/s cells left of the truth; mmpose's ``shift_heatmap`` moves it one cell right, which leaves 1/s cell
too far. Coordinates normalised to the crop, ``n = (2x + 1)/N - 1`` (`cpm.targets.codecs.RegressionCodec`), mirror
to ``(2(N - 1 - x) + 1)/N - 1 = -n``: a plain sign change.

What is averaged, per head:

* heatmaps (B, K[+1], h, w): the belief maps (the background map too).
* coordinates (B, K, 2) of a regression or integral head: x negated and joints permuted, then averaged. For an
  integral head the mean coordinates are exactly the soft-argmax expectation of the mean of the two spatial
  distributions (an expectation is linear, and a mirrored distribution's expectation is the mirrored point):
  `integral_flip_test` returns both, so drawn maps and keypoints agree.
* RLE (B, K, 4) [x, y, σx, σy]: x, y as above; σx, σy permuted with their joints (a mirror does not change a
  scale) and averaged, so the confidence 1 - mean σ is the mean of the two passes' confidences.

`FlipTest` wraps a model as a module (its ``forward`` is the model's, flip-tested), so that evaluation, multi-scale
testing (`cpm.targets.multiscale`: every scale's crop flip-tested, then the scales averaged) and the ONNX export run
it where they would run the model. Glossary: B batch, T stages, K joints, C = K[+1] channels, h x w cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["FlipTest", "average_flipped", "flip_back", "integral_flip_test", "mirror_inputs"]


def mirror_inputs(image: torch.Tensor, center_map: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """image (B, C, N, N), center_map (B, 1, h, w) or (B, 1, N, N) or None -> both mirrored left <-> right."""
    return image.flip(-1), None if center_map is None else center_map.flip(-1)


def _channel_order(channels: int, flip_permutation: Sequence[int]) -> list[int]:
    """The channels of a mirror's output in the order of the crop's: joints permuted, a background channel kept."""
    joints = len(flip_permutation)
    if channels not in (joints, joints + 1):
        raise ValueError(f"flip test: {channels} output channels for a skeleton of {joints} joints")
    return [*flip_permutation, *range(joints, channels)]


def flip_back(output: torch.Tensor, flip_permutation: Sequence[int]) -> torch.Tensor:
    """One stage's output for the mirrored crop -> the same in the crop's frame: belief maps (B, K[+1], h, w)
    mirrored (no shift, see the module docstring) and their joint channels permuted; coordinates (B, K, 2) or RLE's
    (B, K, 4) with x negated (normalised units) and joints permuted."""
    order = torch.tensor(_channel_order(output.shape[1], flip_permutation), device=output.device)
    output = output.index_select(1, order)
    if output.ndim == 4:  # (B, C, h, w) maps
        return output.flip(-1)
    if output.ndim == 3 and output.shape[-1] in (2, 4):  # (B, K, 2 | 4): x, y [, σx, σy]
        return torch.cat([-output[..., :1], output[..., 1:]], dim=-1)
    raise ValueError(f"flip test: cannot mirror an output of shape {tuple(output.shape)}")


def average_flipped(plain: Sequence[torch.Tensor], mirrored: Sequence[torch.Tensor],
                    flip_permutation: Sequence[int]) -> list[torch.Tensor]:
    """Per stage, the crop's output and the mirror's (`flip_back`) averaged in fp32: T x the shape of one stage."""
    return [(p.float() + flip_back(m, flip_permutation).float()) / 2 for p, m in zip(plain, mirrored, strict=True)]


class FlipTest(torch.nn.Module):
    """``FlipTest(model, flip_permutation)(image, center_map)``: the model's per-stage outputs, flip-tested.

    ``model(image, center_map)`` returns T tensors (belief maps or coordinates); so does this, each the mean of the
    crop's output and the mirrored crop's output brought back (`average_flipped`). ``flip_permutation``:
    `cpm.skeleton.Skeleton.flip_permutation` of the model's K joints."""

    def __init__(self, model: torch.nn.Module, flip_permutation: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.flip_permutation = tuple(int(i) for i in flip_permutation)

    @property
    def num_stages(self) -> int:
        return self.model.num_stages

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        plain = self.model(image, center_map)
        mirrored = self.model(*mirror_inputs(image, center_map))
        return average_flipped(plain, mirrored, self.flip_permutation)


def integral_flip_test(model: torch.nn.Module, image: torch.Tensor, center_map: torch.Tensor | None,
                       flip_permutation: Sequence[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """An integral head (`cpm.models.heads.IntegralHead`) flip-tested -> per stage its coordinates (B, K, 2), as
    ``FlipTest(model, flip_permutation)`` gives them, and the mean of the two passes' spatial softmax distributions
    (B, K, h, w), each summing to 1, whose expectation those coordinates are."""
    plain = model.forward_beliefs(image, center_map)  # T x (B, K, h, w) logits
    mirrored = model.forward_beliefs(*mirror_inputs(image, center_map))
    coordinates = average_flipped([model.coordinates(logits) for logits in plain],
                                  [model.coordinates(logits) for logits in mirrored], flip_permutation)

    def distribution(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model.beta * logits.float().flatten(-2), -1).view_as(logits)

    distributions = average_flipped([distribution(logits) for logits in plain],
                                    [distribution(logits) for logits in mirrored], flip_permutation)
    return coordinates, distributions
