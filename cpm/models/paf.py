"""Part affinity fields: a two-branch pose machine for many people (Cao, Simon, Wei, Sheikh, CVPR 2017, Sec. 2 and
Fig. 3).

Glossary: B batch, C input channels, H x W input size, K joints, L limbs (of the skeleton), s stride, h = H/s,
w = W/s, T stages, F the image features' channels.

::

    image ──► image_features ──► F (B, F, h, w) ─┬──────────────────────────┬─ ... (every stage reads F)
                                                 │                          │
                                  stage 1: ┌ maps ─► S1 (B, K[+1], h, w) ┐  │
                                           └ fields ► L1 (B, 2L, h, w)   ┘──┴ concat [F, S1, L1] ─► stage 2 ─► ...

Every stage has two branches on the same input: the joints' confidence maps S (K channels, and the background with
``background``) and the limbs' part affinity fields L (an x and a y channel per limb). Stage 1 reads the image
features F; stage t >= 2 reads [F, S^(t-1), L^(t-1)]. The model returns, per stage, [S, L] concatenated in the
channel order of `cpm.targets.paf.PafCodec` (joint maps, [background], then limb l's x at K[+1] + 2l and y at
K[+1] + 2l + 1), so the training step, the staged loss and intermediate supervision treat it as any heatmap head.

The branches are the stages' conv stacks of `cpm.config.ModelConfig`:

* stage 1: ``stage1_layers`` kxk convs (k = ``stage1_kernel``) of ``stage_width``, a 1x1 conv of ``stage1_width``
  (its wide layer, with ``dropout``), a 1x1 conv to the branch's outputs;
* stages >= 2: ``stage_layers`` kxk convs (k = ``stage_kernel``) of ``stage_width``, a 1x1 conv of ``stage_width``,
  a 1x1 conv to the outputs (`cpm.models.pose_machine.RefinementStage`, separable with ``stage_separable``);
* F: the backbone of ``model.backbone`` (`cpm.models.backbones.build_backbone`), shared by every stage: the paper's
  is VGG-19's first 10 layers and 3x3 convs to 256 and 128 (``backbone = "vgg19"``, ``vgg_cpm_widths = [256, 128]``).

The paper's network (`experiments/paf_paper.toml`): stage 1 three 3x3 convs of 128, 1x1 512; stages 2..6 five 7x7
convs of 128, 1x1 128 (``stage1_layers = 3, stage1_kernel = 3, stage1_width = 512, stage_width = 128,
stage_kernel = 7, stage_layers = 5``), 368 px input at stride 8.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cpm.config import ModelConfig
from cpm.models.backbones import build_backbone, conv_block
from cpm.models.pose_machine import INITS, RefinementStage, init_convolutions

__all__ = ["PafStage", "PartAffinityFields", "stage1_branch"]


def stage1_branch(channels: int, c: ModelConfig, out_channels: int) -> nn.Sequential:
    """Stage 1's branch on ``channels`` image features: stage1_layers x (kxk conv, stage_width), 1x1 conv of
    stage1_width, 1x1 conv to ``out_channels``."""
    layers: list[nn.Module] = []
    for _ in range(c.stage1_layers):
        layers.append(conv_block(channels, c.stage_width, c.stage1_kernel, batch_norm=c.batch_norm))
        channels = c.stage_width
    layers += [conv_block(channels, c.stage1_width, 1, batch_norm=c.batch_norm, dropout=c.dropout),
               nn.Conv2d(c.stage1_width, out_channels, 1)]
    return nn.Sequential(*layers)


class PafStage(nn.Module):
    """One stage: its input -> [confidence maps S (B, joint_channels, h, w), fields L (B, field_channels, h, w)]
    concatenated along the channels."""

    def __init__(self, maps: nn.Module, fields: nn.Module) -> None:
        super().__init__()
        self.maps, self.fields = maps, fields

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.maps(inputs), self.fields(inputs)], dim=1)


class PartAffinityFields(nn.Module):
    """A T-stage two-branch network. ``forward(image, center_map=None)`` returns the list of T tensors
    (B, K[+1] + 2L, h, w)."""

    def __init__(self, config: ModelConfig | None = None, num_joints: int = 15, *, num_limbs: int,
                 background: bool = True, center_pool: bool = False) -> None:
        """``config``: the ``[model]`` section (`cpm.config.ModelConfig`; its defaults when None); ``num_joints``:
        K and ``num_limbs``: L, from the skeleton of the data; ``background``: K + 1 confidence maps
        (``targets.background``). There is no centre map (``model.center_map`` must be false, ``center_pool``
        too)."""
        super().__init__()
        c = config if config is not None else ModelConfig()
        if c.stages < 1:
            raise ValueError(f"stages must be >= 1, got {c.stages}")
        if c.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {c.init!r}")
        if c.center_map or center_pool:
            raise ValueError("a part-affinity-field model has no centre map: model.center_map = false")
        if num_limbs < 1:
            raise ValueError(f"a part-affinity-field model needs limbs, got {num_limbs}")
        self.config = c
        self.num_joints, self.num_limbs = num_joints, num_limbs
        self.in_channels = c.in_channels
        self.stride = c.stride
        self.use_center_map = False
        self.checkpoint_stages = c.checkpoint_stages
        self.joint_channels = num_joints + int(background)  # S: K[+1]
        self.field_channels = 2 * num_limbs  # L: x, y per limb
        self.out_channels = self.joint_channels + self.field_channels

        self.image_features = build_backbone(c.backbone, in_channels=c.in_channels, stride=c.stride,
                                             trunk_widths=c.trunk_widths, trunk_kernel=c.trunk_kernel,
                                             caffe_pooling=c.caffe_pooling, vgg_cpm_widths=c.vgg_cpm_widths,
                                             batch_norm=c.batch_norm, trunk_strided_levels=c.trunk_strided_levels)
        self.image_features_stage1 = None  # one trunk for every stage (what `cpm rf` walks)
        features = self.image_features.out_channels
        self.stage1 = PafStage(stage1_branch(features, c, self.joint_channels),
                               stage1_branch(features, c, self.field_channels))
        self.project = nn.ModuleList(nn.Identity() for _ in range(c.stages - 1))  # F as it is, to every stage
        self.stage_inputs = features + self.out_channels  # [F, S, L]

        def refinement(out_channels: int) -> RefinementStage:
            return RefinementStage(self.stage_inputs, out_channels, width=c.stage_width, kernel=c.stage_kernel,
                                   layers=c.stage_layers, batch_norm=c.batch_norm, separable=c.stage_separable)

        self.stages = nn.ModuleList(PafStage(refinement(self.joint_channels), refinement(self.field_channels))
                                    for _ in range(c.stages - 1))
        self._init_weights(c.init)

    def _init_weights(self, init: str) -> None:
        """As `cpm.models.pose_machine.ConvolutionalPoseMachine`: ``kaiming`` (He fan-in, the output layers
        near zero), ``kaiming-all`` (He fan-in, the output layers too), or a Gaussian of ``caffe`` / ``mmpose``'s
        std with zero biases."""
        init_convolutions(self, init)
        if init == "kaiming":
            for stage in [self.stage1, *self.stages]:
                for branch in (stage.maps, stage.fields):
                    last = branch[-1] if isinstance(branch, nn.Sequential) else branch.layers[-1]
                    nn.init.normal_(last.weight, std=1e-3)

    @property
    def num_stages(self) -> int:
        return 1 + len(self.stages)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the released prototxts' lr groups (`cpm.training.optim.build_optimizer`): ``stage1`` the
        trunk and stage 1, ``refinement`` the later stages; ``weight`` conv kernels, ``bias`` biases and batch-norm
        parameters."""
        in_stage1 = {id(p) for module in (self.image_features, self.stage1) for p in module.parameters()}
        groups: dict[str, list[nn.Parameter]] = {
            "stage1.weight": [], "stage1.bias": [], "refinement.weight": [], "refinement.bias": []
        }
        for p in self.parameters():
            part = "stage1" if id(p) in in_stage1 else "refinement"
            groups[f"{part}.{'weight' if p.ndim > 1 else 'bias'}"].append(p)
        return groups

    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage's output (B, K[+1] + 2L, h, w) -> confidence maps S (B, K[+1], h, w), fields L (B, 2L, h, w)."""
        return outputs[:, :self.joint_channels], outputs[:, self.joint_channels:]

    def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> list[torch.Tensor]:
        """image (B, C, H, W) -> [[S, L] of stage t (B, K[+1] + 2L, h, w)] * T; ``center_map`` is not read (the
        training step passes the codec's, None)."""
        features = self.image_features(image)  # (B, F, h, w), read by every stage
        outputs = [self.stage1(features)]  # (B, K[+1] + 2L, h, w)
        recompute = self.checkpoint_stages and self.training and torch.is_grad_enabled()
        for project, stage in zip(self.project, self.stages, strict=True):
            inputs = torch.cat([project(features), outputs[-1]], dim=1)  # [F, S^(t-1), L^(t-1)]
            outputs.append(checkpoint(stage, inputs, use_reentrant=False) if recompute else stage(inputs))
        return outputs
