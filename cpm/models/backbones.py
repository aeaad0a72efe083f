"""Image feature extractors ("backbones") that any head can sit on.

Every backbone is an ``nn.Sequential`` (a chain of layers, so `cpm.evaluation.receptive_field` can walk it) with two
attributes: ``out_channels`` and ``stride``; ``forward(image (B, C, H, W)) -> features
(B, out_channels, H / stride, W / stride)``.

``BACKBONES`` maps the ``model.backbone`` config value to the class:

* ``cpm``: the CPM image trunk (Wei et al. 2016, Fig. 2): one kxk conv + 3x3/2 max-pool per level;
  the paper uses three levels of 9x9 conv 128. ``caffe_pooling`` reproduces the released Caffe nets'
  pools (no padding, ceil mode: 368 -> 184 -> 92 -> 46); the default pads by 1 (same sizes, cell
  centres shifted by a few pixels).
* ``vgg19``: torchvision's ``vgg19`` feature layers conv1_1 .. conv4_2 (stride 8, 512 channels), then
  the CPM-specific 3x3 convs ``conv4_3_CPM``, ``conv4_4_CPM``, ... of ``cpm_widths`` channels: the
  trunk of the released MPII model (_trained_MPI, ``cpm_widths = (256, 256, 256, 256, 128)``) and of
  the later OpenPose-style CPMs (``(256, 128)``). ``caffe_pooling`` rounds its 2x2/2 pools up, as Caffe does
  (the released net runs at any input size whose centre map pools to the same grid: 36 -> 18 -> 9 -> 5).
* ``vgg16``: torchvision's ``vgg16`` feature layers conv1_1 .. conv4_3 (stride 8, 512 channels), the
  regression baseline's backbone, plus optional ``cpm_widths`` convs.
* ``fourconv``: the baseline small network: conv 5x5/96 + max-pool 3/2, conv 3x3/128, dropout
  0.5 (training only), conv 1x1/128, each conv with batch norm and ReLU (stride 2).

ImageNet weights come only from a file the user names (`load_vgg_weights`), never from a download.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cpm.config import FIXED_STRIDES, Backbone, check_names
from cpm.errors import CPMError


def conv_block(in_channels: int, out_channels: int, kernel: int, *, batch_norm: bool, relu: bool = True,
               dropout: float = 0.0, stride: int = 1) -> nn.Sequential:
    """kxk 'same' convolution (Caffe's pad = k // 2; with ``stride`` 2 it halves the map), optional batch norm,
    ReLU, optional dropout."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))  # element-wise, as Caffe's Dropout layer
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


class CPMTrunk(nn.Sequential):
    """(B, C, H, W) -> (B, widths[-1], H / 2^L, W / 2^L): L levels of kxk conv + 3x3/2 max-pool (Fig. 2).
    ``strided_levels``: the first N levels are one kxk convolution of stride 2 instead (no pool): the same map sizes
    without the convolution, activation and pool at the level's full resolution (`model.trunk_strided_levels`; its
    speed-up on make train's model is a `make bench` row, `python -m cpm.bench.variants`)."""

    def __init__(self, in_channels: int = 3, *, widths: Sequence[int] = (128, 128, 128), kernel: int = 9,
                 batch_norm: bool = False, caffe_pooling: bool = False, strided_levels: int = 0) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for level, width in enumerate(widths):
            if level < strided_levels:
                layers.append(conv_block(channels, width, kernel, batch_norm=batch_norm, stride=2))
                channels = width
                continue
            pool = (nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True) if caffe_pooling
                    else nn.MaxPool2d(3, stride=2, padding=1))
            layers += [conv_block(channels, width, kernel, batch_norm=batch_norm), pool]
            channels = width
        super().__init__(*layers)
        self.out_channels = channels
        self.stride = 2 ** len(widths)


class _VGGBackbone(nn.Sequential):
    """torchvision VGG feature layers up to the last conv before the fourth pool, then ``cpm_widths`` 3x3 convs."""

    config = ""  # torchvision's cfgs key
    num_layers = 23  # features[:23]: through conv4_2 + ReLU (vgg19) or conv4_3 + ReLU (vgg16)
    stride = 8

    def __init__(self, in_channels: int = 3, *, cpm_widths: Sequence[int] = (), batch_norm: bool = False,
                 caffe_pooling: bool = False) -> None:
        from torchvision.models.vgg import cfgs, make_layers  # imported late: torchvision is slow to import

        layers = list(make_layers(cfgs[self.config], batch_norm=False)[: self.num_layers])
        if caffe_pooling:  # Caffe's pooling output is ceil((H - 2) / 2) + 1; torchvision's floors
            layers = [nn.MaxPool2d(2, stride=2, ceil_mode=True) if isinstance(layer, nn.MaxPool2d) else layer
                      for layer in layers]
        if in_channels != 3:
            layers[0] = nn.Conv2d(in_channels, layers[0].out_channels, 3, padding=1)
        channels = 512
        for width in cpm_widths:  # conv4_3_CPM, conv4_4_CPM, ...
            layers.append(conv_block(channels, width, 3, batch_norm=batch_norm))
            channels = width
        super().__init__(*layers)
        self.out_channels = channels

    def load_vgg_weights(self, path: str | Path) -> None:
        """Copy torchvision ImageNet weights (a ``vgg16``/``vgg19`` state dict, keys ``features.N.*``) from
        ``path`` into the VGG layers. A 1-channel first layer gets the sum over RGB (a grey image is R = G = B)."""
        path = Path(path)
        if not path.is_file():
            raise CPMError(f"{path}: VGG weights file not found (model.backbone_weights)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable file is bad input (pickle, zip, EOF errors...)
            raise CPMError(f"{path}: cannot read VGG weights ({type(error).__name__}: {error})") from None
        if not isinstance(state, dict):
            raise CPMError(f"{path}: expected a torchvision VGG state dict, got {type(state).__name__}")
        own = self.state_dict()
        loaded = {}
        for index in range(self.num_layers):
            for name in ("weight", "bias"):
                key = f"{index}.{name}"
                if key not in own:
                    continue
                source = f"features.{key}"
                if source not in state:
                    raise CPMError(f"{path}: no {source} in the file; expected torchvision {self.config_name} weights")
                value = state[source]
                if key == "0.weight" and own[key].shape[1] == 1 and value.ndim == 4 and value.shape[1] == 3:
                    value = value.sum(dim=1, keepdim=True)
                if tuple(value.shape) != tuple(own[key].shape):
                    raise CPMError(f"{path}: {source} has shape {tuple(value.shape)}, the {self.config_name} "
                                   f"backbone expects {tuple(own[key].shape)}")
                loaded[key] = value
        self.load_state_dict(loaded, strict=False)

    @property
    def config_name(self) -> str:
        return {"D": "vgg16", "E": "vgg19"}[self.config]


class VGG19Backbone(_VGGBackbone):
    """vgg19 conv1_1 .. conv4_2 (stride 8), then conv4_3_CPM ... (the released CPM MPII trunk)."""

    config = "E"


class VGG16Backbone(_VGGBackbone):
    """vgg16 conv1_1 .. conv4_3 (stride 8), the baseline backbone."""

    config = "D"


class FourConvBackbone(nn.Sequential):
    """The small 4-conv baseline: (B, C, H, W) -> (B, 128, H/2, W/2). Batch norm is part of its definition."""

    stride = 2

    def __init__(self, in_channels: int = 3, *, dropout: float = 0.5) -> None:
        super().__init__(
            conv_block(in_channels, 96, 5, batch_norm=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            conv_block(96, 128, 3, batch_norm=True, dropout=dropout),
            conv_block(128, 128, 1, batch_norm=True),
        )
        self.out_channels = 128


BACKBONES: dict[str, type[nn.Module]] = {
    "cpm": CPMTrunk,
    "vgg19": VGG19Backbone,
    "vgg16": VGG16Backbone,
    "fourconv": FourConvBackbone,
}
check_names(BACKBONES, Backbone, "model.backbone")
if {name: BACKBONES[name].stride for name in FIXED_STRIDES} != FIXED_STRIDES:
    raise TypeError(f"cpm.config.FIXED_STRIDES = {FIXED_STRIDES} is not the strides of BACKBONES")


def build_backbone(name: str, *, in_channels: int, stride: int, trunk_widths: int | Sequence[int] = (16, 32, 64),
                   trunk_kernel: int = 5, caffe_pooling: bool = False, vgg_cpm_widths: Sequence[int] = (),
                   batch_norm: bool = False, trunk_strided_levels: int = 0) -> nn.Module:
    """A backbone of `BACKBONES` by name, with the stride the config asks for checked against it."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    if name == "cpm":
        backbone: nn.Module = CPMTrunk(in_channels, widths=trunk_widths_for(trunk_widths, stride),
                                       kernel=trunk_kernel, batch_norm=batch_norm, caffe_pooling=caffe_pooling,
                                       strided_levels=trunk_strided_levels)
    elif name in ("vgg16", "vgg19"):
        backbone = BACKBONES[name](in_channels, cpm_widths=tuple(vgg_cpm_widths), batch_norm=batch_norm,
                                   caffe_pooling=caffe_pooling)
    else:
        backbone = BACKBONES[name](in_channels)
    if backbone.stride != stride:
        raise ValueError(f"backbone {name!r} has stride {backbone.stride}, not {stride}")
    return backbone
