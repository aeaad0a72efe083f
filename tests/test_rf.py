"""Receptive fields: the layer walk against hand-computed values, the gradients against the walk, the command."""

from pathlib import Path

import pytest
import torch
from torch import nn

from cpm.cli import main
from cpm.config import ModelConfig, load_config
from cpm.evaluation.receptive_field import (
    Field,
    equivalent_side,
    gradient_maps,
    stage_multiply_adds,
    theoretical_receptive_fields,
    through,
    union,
    walk,
)
from cpm.models import ConvolutionalPoseMachine
from cpm.runtime.build import build_network
from tests.helpers import TINY_MODEL, tiny, tiny_overrides

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_one_layer_moves_the_field_by_kernel_stride_dilation_and_padding():
    field = Field(jump=2, start=-1, end=3)  # cell u sees pixels 2u - 1 .. 2u + 3
    # 3x3 conv, stride 2, dilation 2, padding 1: cell v reads cells 2v - 1, 2v + 1, 2v + 3 of the input grid.
    out = through(nn.Conv2d(1, 1, 3, stride=2, dilation=2, padding=1), field)
    assert out == Field(jump=4, start=-1 - 2, end=3 + (2 * 2 - 1) * 2)
    assert out.size == 5 + 2 * 2 * 2  # the field grows by d * (k - 1) input cells of 2 pixels
    assert through(nn.MaxPool2d(3, 2, ceil_mode=True), Field()) == Field(jump=2, start=0, end=2)
    assert through(nn.ReLU(), field) == field
    with pytest.raises(ValueError, match="cannot walk Linear"):
        through(nn.Linear(2, 2), field)


def test_union_of_fields_spans_both():
    assert union(Field(8, -4, 10), Field(8, -20, 3)) == Field(8, -20, 10)
    with pytest.raises(ValueError, match="different grids"):
        union(Field(8), Field(4))


def test_theoretical_rf_of_a_small_cpm_matches_the_hand_computed_value():
    # Trunk: conv 3 -> 3; pool 3/2 -> 5 (jump 2); conv 3 -> 9; pool -> 13 (jump 4); conv 3 -> 21; pool -> 29 (jump 8).
    # Stage 1: 5x5 projection -> 29 + 4*8 = 61; 3x3 conv -> 77; 1x1 convs keep 77.
    # Stage t: union(projected trunk 61, previous beliefs) then three 3x3 convs: + 3 * 2 * 8 = 48 per stage.
    model = ConvolutionalPoseMachine(tiny(stages=3))
    fields = theoretical_receptive_fields(model)
    assert [f.size for f in fields] == [77, 125, 173]
    assert [f.jump for f in fields] == [8, 8, 8]
    assert fields[0].center(4) == 8 * 4  # padded 3x3/2 pools centre cell u on pixel 8u


def test_theoretical_rf_of_the_released_lsp_net():
    # 3 x (9x9 conv + 3x3/2 pool): 9, 11, 27, 31, 63, 71; stage 1: 5x5 -> 103, 9x9 -> 167;
    # each later stage: three 11x11 convs at jump 8 -> + 240. Caffe's unpadded pools centre cell u on 8u + 7.
    model = build_network(load_config(EXPERIMENTS / "paper_lsp.toml", ["model.dropout=0.0"]))
    fields = theoretical_receptive_fields(model)
    assert [f.size for f in fields] == [167 + 240 * t for t in range(6)]
    assert fields[1].size > 368 > 368 / 1.57  # stage 2 already sees more than the input and the person
    assert fields[0].center(23) == 8 * 23 + 7


def test_walk_follows_shared_backbones():
    model = ConvolutionalPoseMachine(ModelConfig(backbone="vgg19", in_channels=3, feature_channels=0, stage1_layers=0,
                                                 stages=2, stage_kernel=7, stage_layers=5, vgg_cpm_widths=[8],
                                                 stage_width=8, stage1_width=8))
    trunk = walk(model.image_features, Field())
    # vgg19 to conv4_2: 2 convs (5), pool (6), 2 convs at jump 2 (14), pool (16), 4 convs at jump 4 (48), pool (52),
    # 2 convs at jump 8 (84); one CPM conv: 100. VGG's unpadded 2x2 pools centre cell u on 8u + 3.5, the codec's grid.
    assert trunk.size == 100 and trunk.center(5) == 8 * 5 + 3.5
    assert [f.size for f in theoretical_receptive_fields(model)] == [100, 100 + 5 * 6 * 8]


def test_gradients_stay_inside_the_theoretical_field():
    torch.manual_seed(0)
    model = ConvolutionalPoseMachine(tiny(stages=3))
    size = 256  # larger than every field, so no field is clipped by the border
    maps = gradient_maps(model, torch.randn(2, 1, size, size), torch.rand(2, 1, size // 8, size // 8))
    assert all(p.requires_grad for p in model.parameters())  # restored after the measurement
    cell = size // 8 // 2
    for field, grad in zip(theoretical_receptive_fields(model), maps, strict=True):
        rows, cols = torch.nonzero(grad, as_tuple=True)
        low, high = field.start + cell * field.jump, field.end + cell * field.jump
        assert low <= int(rows.min()) and int(rows.max()) <= high
        assert low <= int(cols.min()) and int(cols.max()) <= high
        assert int(rows.max() - rows.min()) + 1 > field.size / 2  # and it is not much smaller


def _conv_multiply_adds_by_hooks(model: nn.Module, image: torch.Tensor, center: torch.Tensor) -> dict[str, int]:
    """Per top-level module (image_features, stage1, project.0, stages.0, ...): sum over its Conv2d layers of
    output elements x input channels per group x kernel area, counted from the shapes seen in a forward pass."""
    counts: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            top = ".".join(name.split(".")[:2]) if name.split(".")[0] in ("project", "stages") else name.split(".")[0]

            def hook(module, inputs, output, top=top):
                kh, kw = module.kernel_size
                counts[top] = counts.get(top, 0) + output.numel() * module.in_channels // module.groups * kh * kw

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(image, center)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize("overrides", [{}, {"shared_trunk": True}, {"stage_separable": True, "stage_kernel": 5}])
def test_multiply_adds_per_stage_match_the_convolutions_shapes(overrides):
    model = ConvolutionalPoseMachine(tiny(stages=3, **overrides))
    image, center = torch.randn(1, 1, 64, 64), torch.rand(1, 1, 8, 8)
    by_module = _conv_multiply_adds_by_hooks(model, image, center)
    totals = stage_multiply_adds(model, image, center)
    assert totals[-1] == sum(by_module.values())  # every convolution counted once, depthwise ones by their groups
    first = sum(v for k, v in by_module.items() if not k.startswith(("project", "stages")))
    assert totals[0] == first
    for t in (1, 2):
        assert totals[t] - totals[t - 1] == by_module[f"project.{t - 1}"] + by_module[f"stages.{t - 1}"]
    if overrides.get("stage_separable"):  # a depthwise 5x5 + 1x1 costs less than the plain 5x5 it replaces
        plain = stage_multiply_adds(ConvolutionalPoseMachine(tiny(stages=3, stage_kernel=5)), image, center)
        assert totals[0] == plain[0] and totals[2] - totals[1] < (plain[2] - plain[1]) / 2


def test_equivalent_side_is_the_square_root_of_the_area_above_the_threshold():
    grad = torch.zeros(20, 20)
    grad[2:8, 3:9] = 0.5  # 36 pixels at half the peak
    grad[10, 10] = 1.0
    grad[15:17, 0:2] = 0.005  # below 1 % of the peak
    assert equivalent_side(grad, 0.01) == pytest.approx(37**0.5)
    assert equivalent_side(grad, 0.6) == 1.0
    assert equivalent_side(torch.zeros(3, 3)) == 0.0


def test_rf_command_prints_one_row_per_stage(capsys):
    overrides = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + ["data.input_size=64", "model.stages=3"]
    args = ["rf", *(a for o in overrides for a in ("--set", o)), "--samples", "2"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| stage | theoretical RF (px) |") and "effective RF (px)" in lines[0]
    assert [line.split("|")[2].strip() for line in lines[2:5]] == ["77", "125", "173"]
    effective = [float(line.split("|")[5]) for line in lines[2:5]]
    assert all(0 < e <= 64 for e in effective)  # measured inside the 64 x 64 input
    assert "over 2 held-out synthetic frames" in lines[5]
    multiply_adds = [float(line.split("|")[7].replace(",", "")) for line in lines[2:5]]
    assert lines[0].endswith("forward multiply-adds to this stage (M per frame) |")
    assert 0 < multiply_adds[0] < multiply_adds[1] < multiply_adds[2]


def test_rf_command_reports_bad_arguments(capsys):
    assert main(["rf", "--samples", "0"]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err


def test_rf_command_measures_a_checkpoint(tmp_path, capsys):
    from cpm.training.loop import train

    train(load_config(None, tiny_overrides(tmp_path)), progress=False, log=lambda *a, **k: None)
    last = str(tmp_path / "runs" / "tiny" / "last.pt")
    assert main(["rf", "--checkpoint", last, "--samples", "1", "--set", "data.val_samples=1"]) == 0
    out = capsys.readouterr().out
    assert f"over 1 held-out synthetic frames, the weights of {last}." in out
    assert [line.split("|")[2].strip() for line in out.splitlines()[2:6]] == ["77", "125", "173", "221"]
    assert main(["rf", "experiments/default.toml", "--checkpoint", last]) == 2
    assert "give a config or --checkpoint, not both" in capsys.readouterr().err
