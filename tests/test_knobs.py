"""The config's knobs that no shipped config sets or that no other test names by their key: each set through the config
and its effect checked (the optimiser's groups and schedule, the target cutoff, gradient clipping, the held-out seed,
separable refinement stages, occlusion, compiling the training step and starting from another run's weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cpm.config import load_config
from cpm.data.synthetic.frames import render_sample
from cpm.runtime.build import build_codec, build_datasets, build_network
from cpm.training.optim import build_optimizer
from tests.helpers import TINY_MODEL, tiny_overrides

TINY = [f"model.{key}={value}" for key, value in TINY_MODEL.items()] + ["data.input_size=64"]


def initial_lrs(config, model) -> dict[str, float]:
    optimizer, _ = build_optimizer(model, config, total_steps=100)
    return {name: group["initial_lr"] for group in optimizer.param_groups for name in group["name"].split("+")}


def test_the_lr_multipliers_scale_stage_one_the_refinement_stages_and_the_biases():
    """train.stage1_lr_mult, train.refinement_lr_mult, train.bias_lr_mult: the released prototxts' lr_mult groups
    (stage 1 and its trunk, the rest; biases at bias_lr_mult times their weights')."""
    config = load_config(None, [*TINY, "model.stages=2", "train.lr=0.01", "train.stage1_lr_mult=5",
                                "train.refinement_lr_mult=0.5", "train.bias_lr_mult=2"])
    lrs = initial_lrs(config, build_network(config))
    assert lrs == pytest.approx({"stage1.weight": 0.05, "stage1.bias": 0.1, "refinement.weight": 0.005,
                                 "refinement.bias": 0.01})
    plain = load_config(None, [*TINY, "model.stages=2", "train.lr=0.01"])
    assert set(initial_lrs(plain, build_network(plain)).values()) == {0.01}


def lr_at(scheduler, step: int) -> float:
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step)


def test_the_step_schedule_decays_by_lr_gamma_every_lr_step_size_steps_or_at_lr_milestones():
    every = load_config(None, ["train.schedule=step", "train.lr=1", "train.warmup_steps=0", "train.lr_step_size=10",
                               "train.lr_gamma=0.5"])
    _, scheduler = build_optimizer(torch.nn.Linear(1, 1), every, total_steps=40)
    assert [lr_at(scheduler, s) for s in (0, 9, 10, 19, 20, 39)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.125])
    milestones = load_config(None, ["train.schedule=step", "train.lr=1", "train.warmup_steps=0", "train.epochs=4",
                                    "train.lr_milestones=[1, 3]", "train.lr_gamma=0.1"])
    _, scheduler = build_optimizer(torch.nn.Linear(1, 1), milestones, total_steps=40)  # 10 steps an epoch
    assert [lr_at(scheduler, s) for s in (9, 10, 29, 30)] == pytest.approx([1, 0.1, 0.1, 0.01])


def test_targets_cutoff_zeroes_the_gaussians_below_it():
    keypoints = torch.tensor([[[27.5, 27.5, 2.0]]])  # cell (3, 3) of 8 x 8, stride 8
    tails = build_codec(load_config(None, ["data.input_size=64"])).encode(keypoints)[0][0, 0]
    cut = build_codec(load_config(None, ["data.input_size=64", "targets.cutoff=0.5"])).encode(keypoints)[0][0, 0]
    assert tails[3, 5].item() == pytest.approx(np.exp(-2.0)) and cut[3, 5].item() == 0.0  # two cells off: 0.135
    assert cut[3, 4].item() == pytest.approx(np.exp(-0.5)) and torch.equal(cut > 0, tails >= 0.5)


def test_grad_clip_bounds_the_gradient_norm_of_a_step():
    from cpm.training.step import train_step

    class Scale(torch.nn.Module):  # a model of the training step's signature: (image, centre map) -> outputs
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(()))

        def forward(self, image, center_map):
            return self.weight * image

    config = load_config(None, ["train.grad_clip=0.001"])
    model = Scale()
    norms = []

    def loss_fn(outputs, targets, weights, stage_weights):
        return {"loss": (outputs - 100).square().mean()}

    def record() -> None:  # after the clip, before the update
        norms.append(float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()))

    for clip in (0.0, config.train.grad_clip):
        train_step(model, torch.ones(2, 1, 4, 4), None, None, None, optimizer=torch.optim.SGD(model.parameters(), 0.0),
                   loss_fn=loss_fn, stage_weights=[1.0], device=torch.device("cpu"),
                   scaler=torch.amp.GradScaler("cpu", enabled=False), grad_clip=clip, inspect=record)
    assert norms[0] > 1 and norms[1] == pytest.approx(0.001, rel=1e-3)


def test_data_val_seed_draws_the_held_out_frames():
    _, val_set = build_datasets(load_config(None, ["data.val_samples=2", "data.val_seed=7"]))
    for index in range(2):
        np.testing.assert_array_equal(val_set.source[index]["image"], render_sample(7, index)["image"])


def test_stage_separable_and_occlusion_reach_the_model_and_the_training_crops():
    dense = build_network(load_config(None, [*TINY, "model.stages=2"]))
    separable = build_network(load_config(None, [*TINY, "model.stages=2", "model.stage_separable=true"]))
    first = separable.stages[0].layers[0]
    assert first.groups == first.in_channels > 1 and dense.stages[0].layers[0][0].groups == 1
    train_set, val_set = build_datasets(load_config(None, ["data.occlusion=0.25", "data.train_samples=2",
                                                           "data.val_samples=2"]))
    assert (train_set.occlusion, val_set.occlusion) == (0.25, 0.0)  # training crops only


def test_compile_and_init_from_reach_the_training_run(tmp_path, monkeypatch):
    """train.compile compiles the training step's network (here a stand-in for `torch.compile`); train.init_from
    starts a run from the weights of another run's checkpoint that fit (the stages it shares)."""
    from cpm.training import loop

    compiled = []
    monkeypatch.setattr(loop, "compile_model", lambda network, device: compiled.append(network) or network)
    lines: list[str] = []
    one = loop.train(load_config(None, tiny_overrides(tmp_path, **{"model.stages": 1, "train.name": "one",
                                                                   "data.train_samples": 8})),
                     progress=False, log=lines.append)
    checkpoint = Path(one["run_dir"]) / "last.pt"
    assert compiled == [] and not any(line.startswith("init_from") for line in lines)
    config = load_config(None, tiny_overrides(tmp_path, **{"model.stages": 2, "train.name": "two",
                                                          "data.train_samples": 8, "train.compile": True,
                                                          "train.init_from": str(checkpoint)}))
    loop.train(config, progress=False, log=lines.append)
    assert len(compiled) == 1
    shared = len(torch.load(checkpoint, weights_only=False)["model"])
    assert any(line.startswith(f"init_from {checkpoint}: {shared} of ") for line in lines)
