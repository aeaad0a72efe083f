"""python -m cpm.bench.layers: every convolution of the step timed alone, with its FLOPs by hand."""

from __future__ import annotations

import torch

from cpm.bench.layers import conv_inputs, conv_step, main
from cpm.bench.timing import TrainStep
from cpm.config import load_config

TINY = ("data.input_size=64", "train.batch_size=2", "train.threads=1", "model.stages=2")


def test_flops_of_a_convolution_by_hand():
    step = TrainStep(load_config(None, list(TINY)), batch=2, device=torch.device("cpu"), fast=False)
    layer = torch.nn.Conv2d(4, 8, 3, padding=1)
    # 2 x 8 x 10 x 10 outputs, 4 x 3 x 3 multiply-adds each = 57,600; 2 FLOPs each; forward + weight gradient (+ input)
    assert conv_step(layer, torch.Size([2, 4, 10, 10]), step, input_gradient=True)[1] == 3 * 2 * 57_600
    run, flops = conv_step(torch.nn.Conv2d(4, 8, 3, stride=2), torch.Size([2, 4, 11, 11]), step, input_gradient=False)
    assert flops == 2 * 2 * (2 * 8 * 5 * 5 * 4 * 9)
    run()


def test_the_table_has_a_row_per_convolution_in_call_order(capsys):
    config = load_config(None, list(TINY))
    step = TrainStep(config, batch=2, device=torch.device("cpu"), fast=True)
    layers = conv_inputs(step)
    convs = [m for m in step.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == len(convs) and layers[0][2][1:] == step.image.shape[1:]
    assert main(["experiments/default.toml", "--seconds", "0.01", *sum((["--set", t] for t in TINY), [])]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    made = TrainStep(load_config("experiments/default.toml", list(TINY)), batch=2, device=torch.device("cpu"),
                     fast=True)
    assert len(rows) == len(conv_inputs(made)) + 1
    assert rows[-1].startswith("| all convolutions |") and "whole step" in out


def test_a_bad_config_fails_in_one_line(capsys):
    assert main(["no-such.toml"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
