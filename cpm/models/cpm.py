"""Convolutional Pose Machine (Wei, Ramakrishna, Kanade, Sheikh, CVPR 2016, Sec. 3 and Fig. 2).

Glossary: B batch, C input channels, H x W input size, K joints, s stride, h = H/s, w = W/s.
Belief maps have K + 1 channels when the background channel is on (the paper's setting), else K.

::

    image ──► image_features_stage1 ──► stage 1 head ──────────────► b1 (B, K+1, h, w)
      │                                                                │
      └─────► image_features (shared, once) ─► project_t ─┐           │
                                                            ├─ concat ─┴─ + centre map ─► stage t ─► bt
                                                                                  (t = 2..T, bt feeds t+1)

Stage 1 sees only the image through a limited receptive field; every later stage sees the image
features, the previous stage's beliefs (whose spatial context grows with each stage) and a Gaussian
centre map that tells the network which person to parse. Defaults here are the small CPU variant
(narrow high-resolution layers, whose cost on a CPU is memory traffic, not arithmetic); the paper's
layer sizes are reached through the keyword arguments (``trunk_widths=128, trunk_kernel=9,
stage1_width=512, stage1_kernel=9, stage_width=128, stage_kernel=11``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int, kernel: int, *, batch_norm: bool, relu: bool = True,
               dropout: float = 0.0) -> nn.Sequential:
    """kxk 'same' convolution, optional batch norm, ReLU, optional dropout."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


def trunk_widths_for(width: int | Sequence[int], stride: int) -> tuple[int, ...]:
    """One width per factor of two of the stride; an int means the same width at every level."""
    levels = int(math.log2(stride))
    if 2**levels != stride:
        raise ValueError(f"stride must be a power of two, got {stride}")
    widths = (width,) * levels if isinstance(width, int) else tuple(width)
    if len(widths) != levels:
        raise ValueError(f"{len(widths)} trunk widths given for stride {stride} ({levels} levels)")
    return widths


def image_trunk(in_channels: int, widths: Sequence[int], kernel: int, *, batch_norm: bool) -> nn.Sequential:
    """One kxk conv + 3x3/2 max-pool per level: (B, C, H, W) -> (B, widths[-1], H / 2^L, W / 2^L)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers += [conv_block(channels, width, kernel, batch_norm=batch_norm),
                   nn.MaxPool2d(3, stride=2, padding=1)]
        channels = width
    return nn.Sequential(*layers)


class RefinementStage(nn.Module):
    """Stage t >= 2: [projected features, previous beliefs, centre map] -> beliefs (Sec. 3.1, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, *, width: int, kernel: int, layers: int,
                 batch_norm: bool) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers):
            blocks.append(conv_block(channels, width, kernel, batch_norm=batch_norm))
            channels = width
        blocks.append(conv_block(width, width, 1, batch_norm=batch_norm))
        blocks.append(nn.Conv2d(width, out_channels, 1))
        self.layers = nn.Sequential(*blocks)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


class ConvolutionalPoseMachine(nn.Module):
    """A T-stage CPM. ``forward(image, center_map)`` returns the list of T belief-map tensors."""

    def __init__(
        self,
        *,
        num_joints: int = 15,
        in_channels: int = 1,
        stages: int = 4,
        stride: int = 8,
        trunk_widths: int | Sequence[int] = (16, 32, 64),
        trunk_kernel: int = 5,
        feature_channels: int = 32,
        stage1_width: int = 128,
        stage1_kernel: int = 7,
        stage_width: int = 64,
        stage_kernel: int = 7,
        stage_layers: int = 3,
        center_map: bool = True,
        background: bool = True,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.num_joints = num_joints
        self.stride = stride
        self.use_center_map = center_map
        self.out_channels = num_joints + int(background)
        bn = batch_norm
        widths = trunk_widths_for(trunk_widths, stride)

        # Stage 1: its own image trunk, then a wide large-kernel layer (9x9 512 in the paper).
        self.image_features_stage1 = image_trunk(in_channels, widths, trunk_kernel, batch_norm=bn)
        self.stage1 = nn.Sequential(
            conv_block(widths[-1], feature_channels, 5, batch_norm=bn),
            conv_block(feature_channels, stage1_width, stage1_kernel, batch_norm=bn, dropout=dropout),
            conv_block(stage1_width, stage1_width, 1, batch_norm=bn, dropout=dropout),
            nn.Conv2d(stage1_width, self.out_channels, 1),
        )

        # Stages 2..T: one image trunk computed once and shared; each stage projects it (5x5 conv 32).
        refinements = stages - 1
        self.image_features = (
            image_trunk(in_channels, widths, trunk_kernel, batch_norm=bn) if refinements else None
        )
        self.project = nn.ModuleList(
            conv_block(widths[-1], feature_channels, 5, batch_norm=bn) for _ in range(refinements)
        )
        stage_inputs = feature_channels + self.out_channels + int(center_map)
        self.stages = nn.ModuleList(
            RefinementStage(stage_inputs, self.out_channels, width=stage_width, kernel=stage_kernel,
                            layers=stage_layers, batch_norm=bn)
            for _ in range(refinements)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Belief outputs start near zero, as the targets mostly are.
        for head in [self.stage1[-1], *(stage.layers[-1] for stage in self.stages)]:
            nn.init.normal_(head.weight, std=1e-3)

    @property
    def num_stages(self) -> int:
        return 1 + len(self.stages)

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        """image (B, C, H, W), center_map (B, 1, h, w) -> [beliefs of stage t (B, K[+1], h, w)] * T."""
        if self.use_center_map and center_map is None and self.stages:
            raise ValueError("this model uses a centre map: pass center_map (B, 1, h, w)")
        beliefs = self.stage1(self.image_features_stage1(image))  # (B, K+1, h, w)
        outputs = [beliefs]
        if self.image_features is None:
            return outputs
        features = self.image_features(image)  # (B, widths[-1], h, w), shared by every later stage
        center = [center_map.to(features.dtype)] if self.use_center_map else []
        for project, stage in zip(self.project, self.stages, strict=True):
            beliefs = stage(torch.cat([project(features), beliefs, *center], dim=1))
            outputs.append(beliefs)
        return outputs
