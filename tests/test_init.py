"""model.init: the weights each init draws, the stages' output layers apart from the rest."""

from __future__ import annotations

import math

import pytest
import torch

from cpm.config import Config, apply, validate
from cpm.runtime.build import build_network


def outputs_and_rest(model):
    heads = [model.stage1[-1], *(stage.layers[-1] for stage in model.stages)]
    ids = {id(head.weight) for head in heads}
    rest = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and id(m.weight) not in ids]
    return heads, rest


def he_std(conv):
    return math.sqrt(2.0 / (conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups))


@pytest.mark.parametrize("init", ["kaiming", "kaiming-all", "caffe"])
def test_each_init_draws_its_std_and_only_kaiming_shrinks_the_outputs(init):
    torch.manual_seed(0)
    model = build_network(validate(apply(Config(), {"model": {"init": init, "stages": 3}})))
    heads, rest = outputs_and_rest(model)
    for conv in rest:
        expected = 0.01 if init == "caffe" else he_std(conv)
        assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.15), conv
    for head in heads:
        expected = {"kaiming": 1e-3, "kaiming-all": he_std(head), "caffe": 0.01}[init]
        assert float(head.weight.detach().std()) == pytest.approx(expected, rel=0.15), head
        assert float(head.bias.detach().abs().max()) == 0.0
