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
centre map that tells the network which person to parse (Sec. 3.1, 3.2).

One class builds every variant from the fields of one `cpm.config.ModelConfig` (the config's ``[model]``
section; nanoGPT's ``GPT(GPTConfig)`` pattern):

* the small CPU model (the defaults: narrow high-resolution layers, whose cost on a CPU is memory
  traffic, not arithmetic);
* the released LSP/FLIC network (``backbone="cpm", trunk_widths=128, trunk_kernel=9, caffe_pooling=True,
  stage1_width=512, stage1_kernel=9, stage_width=128, stage_kernel=11, dropout=0.5, init="caffe"``, 6 stages,
  3 input channels, and ``center_pool=True``): two CPM trunks, stage 1 on its own, stages 2..T
  sharing the other through a 5x5 conv 32 each (``feature_channels``);
* the VGG-19 variant of the released MPII model (``backbone="vgg19", feature_channels=0,
  stage1_layers=0, stage_kernel=7, stage_layers=5``): one trunk shared by every stage, no projection;
* mmpose's CPM (``batch_norm=True, center_map=False, beliefs_first=True, init="mmpose"``, padded pools, and
  ``background=False``; `experiments/mmpose_cpm.toml`), and switches for the centre map, the background channel and the
  stage count (1..6).

The refinement stages concatenate [features, previous beliefs, centre map] (the released LSP/FLIC nets), or
[previous beliefs, features, centre map] with ``beliefs_first=True`` (the released VGG MPII net and mmpose): the
order matters as soon as released weights are loaded (`cpm.inference.caffe`).

The two keyword arguments come from the config's ``[targets]`` (they shape the maps the codec makes):
``background`` adds the background belief channel (K + 1 maps, the default), and with ``center_pool=True`` the
model takes the centre map at input resolution (B, 1, H, W), as the
Caffe nets do, and average-pools it with a (s+1)x(s+1)/s window in Caffe's ceil mode (9x9/8:
368 -> 46) before the concatenations.

With ``checkpoint_stages=True`` a training forward pass keeps no activations inside the refinement stages
(`torch.utils.checkpoint`, non-reentrant): each stage's layers are run again in the backward pass. The
outputs and gradients are the same; the memory of T - 1 stages' activations is traded for a second forward
pass through them, which lets a GPU train larger batches.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cpm.config import Init, ModelConfig, check_names
from cpm.models.backbones import CPMTrunk, build_backbone, conv_block, trunk_widths_for

__all__ = ["INITS", "ConvolutionalPoseMachine", "RefinementStage", "conv_block", "init_convolutions"]

INIT_STD = {"caffe": 0.01, "mmpose": 0.001}  # Gaussian std of every conv weight
INITS = ("kaiming", "kaiming-all", *INIT_STD)
check_names(INITS, Init, "model.init")


def init_convolutions(model: nn.Module, init: str) -> None:
    """Every convolution of ``model``, in `modules()` order: a Gaussian of ``INIT_STD[init]`` for ``caffe`` and
    ``mmpose``, He fan-in (ReLU) otherwise; zero biases. The output layers' ``kaiming`` std of 1e-3 is the model's
    own step after this one."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if init in INIT_STD:
                nn.init.normal_(module.weight, std=INIT_STD[init])
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class RefinementStage(nn.Module):
    """Stage t >= 2: [projected features, previous beliefs, centre map] -> beliefs (Sec. 3.1, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, *, width: int, kernel: int, layers: int,
                 batch_norm: bool, separable: bool = False) -> None:
        """``separable``: each kxk convolution is a depthwise kxk (no activation) followed by a 1x1 to ``width``
        with the activation (MobileNet's factorisation): the same receptive field for ~k^2 times fewer
        multiply-adds when ``width`` is large."""
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers):
            if separable:
                blocks.append(nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False))
                blocks.append(conv_block(channels, width, 1, batch_norm=batch_norm))
            else:
                blocks.append(conv_block(channels, width, kernel, batch_norm=batch_norm))
            channels = width
        blocks.append(conv_block(width, width, 1, batch_norm=batch_norm))
        blocks.append(nn.Conv2d(width, out_channels, 1))
        self.layers = nn.Sequential(*blocks)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def _cpm_trunk(c: ModelConfig) -> CPMTrunk:
    """The CPM image trunk of a ``[model]`` section."""
    return CPMTrunk(c.in_channels, widths=trunk_widths_for(c.trunk_widths, c.stride), kernel=c.trunk_kernel,
                    batch_norm=c.batch_norm, caffe_pooling=c.caffe_pooling, strided_levels=c.trunk_strided_levels)


def stage1_head(channels: int, c: ModelConfig, out_channels: int) -> nn.Sequential:
    """Stage 1's head on ``channels`` trunk features: [5x5 conv to feature_channels], stage1_layers x (kxk conv,
    stage1_width), 1x1, then 1x1 to the K[+1] belief maps."""
    head: list[nn.Module] = []
    if c.feature_channels:
        head.append(conv_block(channels, c.feature_channels, 5, batch_norm=c.batch_norm))
        channels = c.feature_channels
    for _ in range(c.stage1_layers):
        head.append(conv_block(channels, c.stage1_width, c.stage1_kernel, batch_norm=c.batch_norm, dropout=c.dropout))
        channels = c.stage1_width
    head += [conv_block(channels, c.stage1_width, 1, batch_norm=c.batch_norm, dropout=c.dropout),
             nn.Conv2d(c.stage1_width, out_channels, 1)]
    return nn.Sequential(*head)


class ConvolutionalPoseMachine(nn.Module):
    """A T-stage CPM. ``forward(image, center_map)`` returns the list of T belief-map tensors."""

    def __init__(self, config: ModelConfig | None = None, num_joints: int = 15, *, background: bool = True,
                 center_pool: bool = False) -> None:
        """``config``: the ``[model]`` section (`cpm.config.ModelConfig`; its defaults when None); ``num_joints``:
        K, from the skeleton of the data; ``background``: K + 1 belief maps; ``center_pool``: the centre map comes
        at input resolution (``targets.background``, ``targets.center_pool``)."""
        super().__init__()
        c = config if config is not None else ModelConfig()
        if c.stages < 1:
            raise ValueError(f"stages must be >= 1, got {c.stages}")
        if c.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {c.init!r}")
        self.config = c
        self.num_joints = num_joints
        self.in_channels = c.in_channels
        self.stride = stride = c.stride
        self.use_center_map = center_map = c.center_map
        self.checkpoint_stages = c.checkpoint_stages
        self.beliefs_first = c.beliefs_first
        self.out_channels = num_joints + int(background)
        refinements = c.stages - 1

        # Built in this order (each construction draws from torch's generator, which `_init_weights` then goes on
        # from): stage 1's trunk (or the shared backbone), stage 1's head, the trunk of stages 2..T, the stages.
        trunk_channels = self._stage1_features(c)
        self.stage1 = stage1_head(trunk_channels, c, self.out_channels)
        if c.backbone == "cpm":
            self.image_features = _cpm_trunk(c) if refinements or c.shared_trunk else None
        # Each refinement stage projects the shared features (5x5 conv 32 in the paper), or takes them as they are.
        self.project = nn.ModuleList(
            conv_block(trunk_channels, c.feature_channels, 5, batch_norm=c.batch_norm) if c.feature_channels
            else nn.Identity() for _ in range(refinements)
        )
        stage_inputs = (c.feature_channels or trunk_channels) + self.out_channels + int(center_map)
        self.stages = nn.ModuleList(
            RefinementStage(stage_inputs, self.out_channels, width=c.stage_width, kernel=c.stage_kernel,
                            layers=c.stage_layers, batch_norm=c.batch_norm, separable=c.stage_separable)
            for _ in range(refinements)
        )
        # Caffe's pool_center_lower: AvgPool 9x9/8, no padding, ceil mode, so H = 8h -> h.
        self.center_pooling = nn.AvgPool2d(stride + 1, stride, ceil_mode=True) if center_pool else None
        self._init_weights(c.init)

    def _stage1_features(self, c: ModelConfig) -> int:
        """Stage 1's image features: with the CPM backbone its own trunk (none with ``shared_trunk``: the trunk of
        the later stages, one trunk's convolutions fewer), a second one, computed once, feeding stages 2..T (Fig. 2);
        with another backbone one trunk for every stage, stage 1 included (the released VGG-based MPII model).
        Returns the trunk's channels."""
        if c.backbone == "cpm":
            self.image_features_stage1: nn.Module | None = None if c.shared_trunk else _cpm_trunk(c)
            return trunk_widths_for(c.trunk_widths, c.stride)[-1]
        shared = build_backbone(c.backbone, in_channels=c.in_channels, stride=c.stride,
                                vgg_cpm_widths=c.vgg_cpm_widths, batch_norm=c.batch_norm,
                                caffe_pooling=c.caffe_pooling)
        self.image_features_stage1 = None
        self.image_features = shared
        return shared.out_channels

    def _init_weights(self, init: str) -> None:
        """``kaiming`` (He fan-in; belief outputs start near zero, as the targets mostly are), ``kaiming-all`` (He
        fan-in for the output layers too: every layer of a stage alike, as the ``caffe`` filler has it), ``caffe``
        (the released prototxts' weight_filler: Gaussian std 0.01, zero biases) or ``mmpose`` (mmpose's CPM
        ``init_weights``: Gaussian std 0.001, zero biases; batch norm weight 1, bias 0 as PyTorch's)."""
        init_convolutions(self, init)
        if init == "kaiming":
            for head in [self.stage1[-1], *(stage.layers[-1] for stage in self.stages)]:
                nn.init.normal_(head.weight, std=1e-3)

    @property
    def num_stages(self) -> int:
        return 1 + len(self.stages)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the released prototxts' ``lr_mult`` / ``decay_mult`` groups (in `parameters()` order).

        ``stage1`` is everything stage 1's beliefs depend on (its trunk and head), ``refinement`` the rest;
        ``weight`` are conv kernels, ``bias`` conv biases and batch-norm parameters. The LSP/FLIC nets train
        stage 1 at lr x5 (weights) / x10 (biases) and the rest at x1 / x2; the VGG MPII net stage 1 at
        x1 / x2 and stages 2..6 at x4 / x8; biases are never decayed.
        """
        stage1_trunk = self.image_features_stage1 if self.image_features_stage1 is not None else self.image_features
        in_stage1 = {id(p) for module in (stage1_trunk, self.stage1) for p in module.parameters()}
        groups: dict[str, list[nn.Parameter]] = {
            "stage1.weight": [], "stage1.bias": [], "refinement.weight": [], "refinement.bias": []
        }
        for p in self.parameters():
            part = "stage1" if id(p) in in_stage1 else "refinement"
            groups[f"{part}.{'weight' if p.ndim > 1 else 'bias'}"].append(p)
        return groups

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        """image (B, C, H, W), center_map (B, 1, h, w) — (B, 1, H, W) with ``center_pool`` — ->
        [beliefs of stage t (B, K[+1], h, w)] * T."""
        if self.use_center_map and center_map is None and self.stages:
            raise ValueError("this model uses a centre map: pass center_map (B, 1, h, w)")
        if self.image_features_stage1 is not None:
            beliefs = self.stage1(self.image_features_stage1(image))  # (B, K+1, h, w)
            features = self.image_features(image) if self.image_features is not None else None
        else:
            features = self.image_features(image)  # (B, F, h, w), shared by every stage
            beliefs = self.stage1(features)
        outputs = [beliefs]
        if not self.stages:
            return outputs
        center = []
        if self.use_center_map:
            if self.center_pooling is not None:
                center_map = self.center_pooling(center_map)  # (B, 1, H, W) -> (B, 1, h, w)
            if center_map.shape[-2:] != beliefs.shape[-2:]:
                raise ValueError(f"centre map of size {tuple(center_map.shape[-2:])} after pooling, belief maps "
                                 f"{tuple(beliefs.shape[-2:])}")
            center = [center_map.to(features.dtype)]
        recompute = self.checkpoint_stages and self.training and torch.is_grad_enabled()
        for project, stage in zip(self.project, self.stages, strict=True):
            if recompute:  # activations inside the stage are recomputed in backward, not stored
                beliefs = checkpoint(_refine, project, stage, features, beliefs, *center, use_reentrant=False,
                                     beliefs_first=self.beliefs_first)
            else:
                beliefs = _refine(project, stage, features, beliefs, *center, beliefs_first=self.beliefs_first)
            outputs.append(beliefs)
        return outputs


def _refine(project: nn.Module, stage: nn.Module, features: torch.Tensor, beliefs: torch.Tensor,
            *center: torch.Tensor, beliefs_first: bool = False) -> torch.Tensor:
    """One refinement stage: [projected features, previous beliefs, centre map] -> beliefs (B, K[+1], h, w);
    [previous beliefs, features, centre map] with ``beliefs_first`` (the released VGG MPII net, mmpose)."""
    inputs = [beliefs, project(features)] if beliefs_first else [project(features), beliefs]
    return stage(torch.cat([*inputs, *center], dim=1))
