"""Heads that output coordinates instead of belief maps, and stage-wise training (Wei et al. 2016, Sec. 3.3).

Glossary: B batch, C input channels, H x W input size, K joints, s stride, h = H/s, w = W/s, T stages.

Every head returns a list with one output per stage, so the training loop, the losses and the codecs read
all of them the same way:

* ``heatmap`` (`cpm.models.pose_machine.ConvolutionalPoseMachine`): T belief maps (B, K[+1], h, w), decoded by
  `cpm.targets.codecs.HeatmapCodec`;
* ``regression`` (`RegressionHead`): one stage of coordinates (B, K, 2), normalised to the crop as
  `cpm.targets.codecs.RegressionCodec` encodes them. The baseline regressor: a backbone (VGG16, its 4-conv
  net, or the CPM trunk), then average pooling to a ``pool_size`` x ``pool_size`` grid, flatten and two
  fully connected layers (``pool_size = 1`` is global average pooling; larger grids keep the layout that
  a flatten of the feature map keeps, at any input size); with ``model.regression_loss = "rle"`` (RLE, Li et al.
  2021) it outputs (B, K, 4): the coordinates and a scale σ per joint and axis, in (0, 1) through a sigmoid, and owns
  the flow (`cpm.models.realnvp.RealNVP`) that the RLE loss trains with it; the codec decodes the coordinates and
  scores a joint 1 - mean(σ);
* ``integral`` (`IntegralHead`): the CPM's stages, each followed by a soft-argmax (integral regression,
  Sun et al. 2018) that turns its K maps into normalised coordinates (B, K, 2), trained end to end with a
  coordinate loss: the bridge between the two. The maps are logits of a spatial softmax (no background).

Normalised coordinates of cell centres: cell u of a w-cell map is centred at input pixel s*u + (s-1)/2,
whose normalised coordinate (2x + 1)/W - 1 is (2u + 1)/w - 1, whatever the stride::

    cells            0        1    ...    w-1
    normalised  -1 + 1/w  -1 + 3/w  ...  1 - 1/w

`set_trainable_stages` freezes the parameters of the stages not being trained: the paper's stage-wise
regime trains stage t with stages 1..t-1 fixed, then may fine-tune all stages jointly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from cpm.config import ModelConfig
from cpm.models.backbones import build_backbone
from cpm.models.pose_machine import ConvolutionalPoseMachine
from cpm.models.realnvp import RealNVP
from cpm.targets.decoders import soft_argmax

__all__ = ["IntegralHead", "RegressionHead", "set_trainable_stages"]


class _StageOneFeatures(nn.Module):
    """The heatmap model's image trunk and stage 1 without its last 1x1 convolution: what a one-stage CPM computes
    before its belief maps, (B, stage1_width, h, w)."""

    def __init__(self, cpm: ConvolutionalPoseMachine) -> None:
        super().__init__()
        self.trunk = cpm.image_features_stage1 if cpm.image_features_stage1 is not None else cpm.image_features
        self.head = nn.Sequential(*list(cpm.stage1)[:-1])
        self.out_channels = cpm.stage1[-1].in_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(image))


class RegressionHead(nn.Module):
    """features -> average pool to (pool_size, pool_size) -> flatten -> [FC hidden -> ReLU] -> FC K x 2.

    ``regression_features = "backbone"``: the image backbone alone (the original regressor). ``"stage1"``: the
    heatmap model's trunk and stage 1 up to its last layer, built from the same config, so that a heatmap head
    and this one differ only in the last layer and the loss; with ``regression_pool = 1, regression_hidden = 0``
    that last layer is global average pooling and one FC layer.

    ``forward(image, center_map=None)`` returns ``[coordinates (B, K, 2)]`` normalised to [-1, 1) over the
    crop (one stage; the centre map is not used: the crop is already centred on the person).

    ``regression_loss = "rle"``: the last FC layer has 4 outputs per joint and ``forward`` returns ``[(B, K, 4)]``,
    [μx, μy, σx, σy]: μ the coordinates as above, σ = sigmoid of the other two (RLE's scale, in normalised units;
    1/2 at the start). ``flow`` is the RLE loss's residual density (None for the other losses); only the loss reads
    it (`cpm.targets.losses.rle_nll`).
    """

    def __init__(self, config: ModelConfig | None = None, num_joints: int = 15, *, background: bool = True,
                 center_pool: bool = False) -> None:
        """``config``: the ``[model]`` section; the head reads ``regression_hidden``, ``regression_pool``,
        ``regression_features`` and the backbone's fields (the stage-1 fields too with features ``stage1``, whose
        stage-1 network is built with ``background`` as `ConvolutionalPoseMachine` would be). The head takes no
        centre map: ``center_pool`` changes nothing."""
        super().__init__()
        c = config if config is not None else ModelConfig()
        hidden, pool_size, features = c.regression_hidden, c.regression_pool, c.regression_features
        if hidden < 0 or pool_size < 1:
            raise ValueError(f"hidden must be >= 0 and pool_size >= 1, got {hidden}, {pool_size}")
        if features not in ("backbone", "stage1"):
            raise ValueError(f"features must be 'backbone' or 'stage1', got {features!r}")
        self.config = c
        self.num_joints = num_joints
        self.in_channels = c.in_channels
        self.stride = c.stride
        self.out_channels = num_joints  # K coordinate pairs
        outputs = 4 if c.regression_loss == "rle" else 2  # per joint: x, y [, σx, σy]
        if features == "stage1":
            cpm = ConvolutionalPoseMachine(replace(c, stages=1, center_map=False, checkpoint_stages=False), num_joints,
                                           background=background)
            self.image_features = _StageOneFeatures(cpm)
        else:
            self.image_features = build_backbone(c.backbone, in_channels=c.in_channels, stride=c.stride,
                                                 trunk_widths=c.trunk_widths, trunk_kernel=c.trunk_kernel,
                                                 vgg_cpm_widths=c.vgg_cpm_widths, batch_norm=c.batch_norm,
                                                 trunk_strided_levels=c.trunk_strided_levels)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        flat = self.image_features.out_channels * pool_size * pool_size
        hidden_layers = [nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                         *([nn.Dropout(c.dropout)] if c.dropout > 0 else [])] if hidden else []
        self.regressor = nn.Sequential(nn.Flatten(), *hidden_layers, nn.Linear(hidden or flat, outputs * num_joints))
        for module in self.modules() if features == "backbone" else ():  # stage 1 keeps the CPM's own init
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Start at the crop centre (the mean pose is near it), with small but non-zero weights so every
        # layer gets a gradient from the first step.
        nn.init.normal_(self.regressor[-1].weight, std=1e-3)
        nn.init.zeros_(self.regressor[-1].bias)
        self.flow = RealNVP() if c.regression_loss == "rle" else None

    @property
    def num_stages(self) -> int:
        return 1

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        features = self.pool(self.image_features(image))  # (B, F, pool_size, pool_size)
        outputs = self.regressor(features).float()  # (B, 2K), or (B, 4K) with σ
        if self.flow is None:
            return [outputs.view(-1, self.num_joints, 2)]
        outputs = outputs.view(-1, self.num_joints, 4)
        return [torch.cat([outputs[..., :2], outputs[..., 2:].sigmoid()], dim=-1)]


class IntegralHead(ConvolutionalPoseMachine):
    """A CPM whose every stage ends in a soft-argmax: ``forward`` returns T tensors (B, K, 2) of normalised
    coordinates. It takes the config of `ConvolutionalPoseMachine` (any backbone, 1..6 stages); there is no
    background channel, because each map is a spatial distribution of one joint. ``beta`` sharpens the softmax."""

    def __init__(self, config: ModelConfig | None = None, num_joints: int = 15, *, beta: float = 1.0,
                 background: bool = False, center_pool: bool = False) -> None:
        """``background`` is taken and left out (a soft-argmax has no background); the rest as
        `ConvolutionalPoseMachine`."""
        super().__init__(config, num_joints, background=False, center_pool=center_pool)
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta = beta

    def forward_beliefs(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The maps before the soft-argmax: T tensors (B, K, h, w) of logits."""
        return super().forward(image, center_map)

    def coordinates(self, logits: torch.Tensor) -> torch.Tensor:
        """One stage's logits (B, K, h, w) -> its soft-argmax (B, K, 2), normalised as `RegressionCodec` decodes."""
        h, w = logits.shape[-2:]
        cells = soft_argmax(logits.float(), self.beta)  # (B, K, 2) expected (u, v) in cells
        size = torch.tensor([w, h], dtype=cells.dtype, device=cells.device)
        return (2 * cells + 1) / size - 1

    def probability_maps(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., h, w) -> the spatial softmax (with ``beta``) whose expectation `coordinates` takes, scaled
        to a peak of 1 per map for display."""
        probability = torch.softmax(self.beta * logits.float().flatten(-2), -1)
        return (probability / probability.amax(-1, keepdim=True)).view_as(logits)

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [self.coordinates(logits) for logits in self.forward_beliefs(image, center_map)]


def stage_modules(model: nn.Module) -> tuple[dict[int, list[nn.Module]], nn.Module | None, int]:
    """-> ({stage t: the modules only stage t uses}, the trunk shared by several stages or None, the first
    stage that uses that trunk). A model without CPM stages (`RegressionHead`) is one stage."""
    if not isinstance(model, ConvolutionalPoseMachine):
        return {1: [model]}, None, 1
    own = {1: [model.stage1] + ([model.image_features_stage1] if model.image_features_stage1 is not None else [])}
    for t, (project, stage) in enumerate(zip(model.project, model.stages, strict=True), start=2):
        own[t] = [project, stage]
    # The CPM backbone's second trunk feeds stages 2..T; a shared backbone (VGG, 4-conv) feeds every stage.
    first_user = 2 if model.image_features_stage1 is not None else 1
    return own, model.image_features, first_user


def set_trainable_stages(model: nn.Module, stages: Sequence[int]) -> list[int]:
    """Train only ``stages`` (1-based; empty: all). Every other stage's parameters get ``requires_grad =
    False``; a shared trunk trains only when the first stage that uses it does, so training stage t never
    changes what stages 1..t-1 output (the paper's stage-wise training). Returns the trainable stages.

    Batch-norm statistics of frozen stages still update in training mode (the layers are not switched to eval).
    """
    own, shared, first_user = stage_modules(model)
    wanted = sorted(set(stages)) if stages else sorted(own)
    unknown = [t for t in wanted if t not in own]
    if unknown:
        raise ValueError(f"stages {unknown} do not exist in a {len(own)}-stage model")
    for t, modules in own.items():
        for module in modules:
            module.requires_grad_(t in wanted)
    if shared is not None:
        shared.requires_grad_(first_user in wanted)
    return wanted
