"""Receptive fields of a CPM's stages, theoretical and effective (Wei et al. 2016, Sec. 3.2 and Fig. 3).

The paper's argument for multiple stages is that each stage widens the image context a belief can
use: at 368 x 368 input the receptive field of stage 2 of the released network already exceeds the
person. This module measures that for any `ConvolutionalPoseMachine`:

* **theoretical**: walking the model's layers (kernel k, stride s, dilation d, padding p of every
  conv and pool) with interval arithmetic. Output cell u of a tensor sees input pixels
  ``[start + u * jump, end + u * jump]``; a layer maps (jump, start, end) to
  ``(jump * s, start - p * jump, end + (d * (k - 1) - p) * jump)``; a concatenation takes the union.
  Image borders are ignored, so the field may exceed the input.
* **effective** (Luo et al., NIPS 2016): the area where the gradient magnitude of the centre belief
  cell (summed over the K[+1] channels) w.r.t. the input, averaged over a few frames, exceeds a
  fraction (default 1 %) of its peak, reported as the side of the square of that area, in pixels.
  It is measured inside the input, so it is at most the input side.

``cpm rf CONFIG`` prints both per stage as a Markdown table (`receptive_field_report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

PASS_THROUGH = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class Field:
    """Output cell u sees input pixels start + u * jump .. end + u * jump (inclusive)."""

    jump: int = 1
    start: int = 0
    end: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def center(self, cell: int) -> float:
        """Input pixel at the centre of cell ``cell``'s field."""
        return (self.start + self.end) / 2 + cell * self.jump


def _pair_first(value) -> int:
    return value[0] if isinstance(value, tuple) else value


def through(layer: nn.Module, field: Field) -> Field:
    """The field after one layer (square kernels, strides and paddings)."""
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, padding = (_pair_first(layer.kernel_size), _pair_first(layer.stride or layer.kernel_size),
                                   _pair_first(layer.padding))
        dilation = _pair_first(getattr(layer, "dilation", 1))
        if isinstance(padding, str):
            raise ValueError(f"{layer}: string padding is not supported")
        return Field(jump=field.jump * stride, start=field.start - padding * field.jump,
                     end=field.end + (dilation * (kernel - 1) - padding) * field.jump)
    if isinstance(layer, PASS_THROUGH):
        return field
    raise ValueError(f"cannot walk {type(layer).__name__}: not a conv, pool or per-pixel layer")


def walk(module: nn.Module, field: Field) -> Field:
    """Through every leaf layer of a chain module (layers registered in the order forward applies them)."""
    for layer in module.modules():
        if not list(layer.children()):
            field = through(layer, field)
    return field


def union(*fields: Field) -> Field:
    """The field of a concatenation of tensors on the same grid."""
    if len({f.jump for f in fields}) != 1:
        raise ValueError(f"concatenated tensors on different grids: jumps {[f.jump for f in fields]}")
    return Field(fields[0].jump, min(f.start for f in fields), max(f.end for f in fields))


def theoretical_receptive_fields(model: nn.Module) -> list[Field]:
    """One `Field` per stage, following `ConvolutionalPoseMachine.forward` (the centre map is not the image)."""
    image = Field()
    shared = walk(model.image_features, image) if model.image_features is not None else None
    own = walk(model.image_features_stage1, image) if model.image_features_stage1 is not None else shared
    beliefs = walk(model.stage1, own)
    fields = [beliefs]
    for project, stage in zip(model.project, model.stages, strict=True):
        beliefs = walk(stage, union(walk(project, shared), beliefs))
        fields.append(beliefs)
    return fields


def stage_multiply_adds(model: nn.Module, image: torch.Tensor, center_map: torch.Tensor | None) -> list[int]:
    """Forward multiply-adds per frame up to the beliefs of each stage, cumulative: stage 1 counts every image trunk
    (the one the refinement stages read too) and stage 1's layers, each later stage adds its projection and its
    refinement layers. Counted by ``torch.utils.flop_counter`` (a multiply-add is two FLOPs) on one forward pass of
    ``image`` (a batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image, center_map)
    counts = counter.get_flop_counts()

    def macs(name: str) -> int:
        return sum(counts.get(f"{type(model).__name__}.{name}", {}).values()) // 2

    totals = [macs("image_features") + macs("image_features_stage1") + macs("stage1")]  # absent modules count 0
    for i in range(len(model.stages)):
        totals.append(totals[-1] + macs(f"project.{i}") + macs(f"stages.{i}"))
    return totals


def gradient_maps(model: nn.Module, images: torch.Tensor, center_maps: torch.Tensor | None) -> torch.Tensor:
    """images (N, C, H, W) -> (T, H, W): per stage, the mean over frames of |d (sum over channels of the centre
    belief cell) / d image|, summed over input channels. Eval mode (no dropout, batch-norm running stats), so the
    frames of a batch are independent and one backward pass per stage serves them all."""
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only input gradients are needed
    try:
        image = images.detach().clone().requires_grad_(True)
        beliefs = model(image, center_maps)
        maps = []
        for t, stage_beliefs in enumerate(beliefs):
            h, w = stage_beliefs.shape[-2:]
            (grad,) = torch.autograd.grad(stage_beliefs[:, :, h // 2, w // 2].sum(), image,
                                          retain_graph=t < len(beliefs) - 1)
            maps.append(grad.abs().sum(dim=1).mean(dim=0))  # (H, W)
        return torch.stack(maps)
    finally:
        for p, flag in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(flag)


def equivalent_side(gradient_map: torch.Tensor, threshold: float = 0.01) -> float:
    """Side (px) of the square whose area is that of the pixels where the map exceeds ``threshold`` * its peak."""
    peak = gradient_map.max()
    if not peak > 0:
        return 0.0
    return math.sqrt(float((gradient_map > threshold * peak).sum()))


def format_table(fields: list[Field], effective: list[float] | None, *, input_size: int,
                 person_size: float, multiply_adds: list[int] | None = None) -> str:
    """Markdown: stage | theoretical RF | / input side | covers the person [| effective RF | effective / RF]
    [| forward multiply-adds to the stage]."""
    rows = ["| stage | theoretical RF (px) | RF / input side | RF >= person |", "|---:|---:|---:|:---:|"]
    if effective is not None:
        rows = [rows[0] + " effective RF (px) | effective / RF |", rows[1] + "---:|---:|"]
    for t, field in enumerate(fields):
        row = (f"| {t + 1} | {field.size} | {field.size / input_size:.2f} | "
               f"{'yes' if field.size >= person_size else 'no'} |")
        if effective is not None:
            row += f" {effective[t]:.0f} | {effective[t] / field.size:.2f} |"
        if multiply_adds is not None:
            row += f" {multiply_adds[t] / 1e6:,.1f} |"
        rows.append(row)
    if multiply_adds is not None:
        rows[0] += " forward multiply-adds to this stage (M per frame) |"
        rows[1] += "---:|"
    return "\n".join(rows)


def receptive_field_report(config_path: str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                           checkpoint: str | None = None, samples: int = 4, threshold: float = 0.01,
                           effective: bool = True) -> str:
    """Entry point of ``cpm rf``: the model of a config (initialised as for a new run) or of a checkpoint (its
    saved config, plus ``overrides``), measured on ``samples`` held-out synthetic frames; a Markdown table."""
    from cpm.config import apply, load_config, parse_override, validate
    from cpm.data.synthetic.sources import drop_missing_pose_files
    from cpm.errors import CPMError
    from cpm.runtime.build import build_codec, build_datasets, build_network
    from cpm.runtime.checkpoint import load_model

    if checkpoint is None:
        config = load_config(config_path, overrides)
        torch.manual_seed(config.train.seed)  # the initialisation a run with this config starts from
        model = build_network(config)
        if config.model.backbone_weights:
            model.image_features.load_vgg_weights(config.model.backbone_weights)
        source = f"initialised weights (model.init = {config.model.init})"
    else:
        if config_path is not None:
            raise CPMError(f"give a config or --checkpoint, not both ({config_path}, {checkpoint})")
        model, config = load_model(checkpoint)
        for override in overrides:
            apply(config, parse_override(override), source="--set")
        validate(config)
        source = f"the weights of {checkpoint}"
    size = config.data.input_size
    person = size / config.data.crop_padding  # the person's extent in the crop (data.crop_padding)
    fields = theoretical_receptive_fields(model)
    image = torch.zeros(1, config.model.in_channels, size, size)
    codec = build_codec(config)
    center = codec.center_map(torch.full((1, 2), size / 2)) if config.model.center_map else None
    multiply_adds = stage_multiply_adds(model, image, center)
    sides = None
    if effective:
        _, val_set = build_datasets(drop_missing_pose_files(config))
        frames = [val_set[i] for i in range(min(samples, len(val_set)))]
        maps = torch.zeros(len(fields), size, size)
        for frame in frames:  # one frame at a time: the paper model at 368 px needs ~1 GB per frame
            center_map = codec.center_map(frame["center"][None]) if config.model.center_map else None
            maps += gradient_maps(model, frame["image"][None], center_map) / len(frames)
        sides = [equivalent_side(m, threshold) for m in maps]
    cell = size // config.model.stride // 2
    notes = (f"\n{size} x {size} input, {model.num_stages} stages, {sum(p.numel() for p in model.parameters()):,}"
             f" parameters; person extent ~{person:.0f} px (input / data.crop_padding). Theoretical RF from the"
             f" layers' kernels, strides, dilations and paddings (centre of cell {cell}: pixel "
             f"{fields[-1].center(cell):g}).")
    if sides is not None:
        notes += (f" Effective RF: side of the square with the area where the mean |gradient| of the centre belief"
                  f" cell w.r.t. the input exceeds {threshold:.0%} of its peak, over {len(frames)} held-out synthetic"
                  f" frames, {source}.")
    notes += " Multiply-adds: one forward pass of one frame, counted by torch.utils.flop_counter."
    return format_table(fields, sides, input_size=size, person_size=person, multiply_adds=multiply_adds) + notes
