"""``data.epoch_input_sizes`` (progressive resizing): each training epoch crops at its own side, the loop encodes
its targets at that side's map size, and the held-out split stays at ``data.input_size``."""

import json

import numpy as np
import pytest
import torch

from cpm.config import ConfigError, load_config
from cpm.data.dataset import PoseDataset
from cpm.data.synthetic.frames import SyntheticPoses
from cpm.data.transforms import transform_keypoints
from cpm.runtime.build import build_datasets
from cpm.skeleton import get_skeleton
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def test_each_epoch_crops_at_its_own_side_and_the_last_side_goes_on():
    data = PoseDataset(SyntheticPoses(seed=0, size=40), input_size=64,
                       flip_permutation=get_skeleton("itop15").flip_permutation, augment=True, rotation=20.0,
                       scale_range=(0.9, 1.1), length=4, resample_each_epoch=True, epoch_input_sizes=(32, 48))
    sides = []
    for epoch in range(4):
        data.set_epoch(epoch)
        item = data[1]
        sides.append(item["image"].shape[-1])
        # the crop's keypoints are the source keypoints under the crop's matrix, at this side
        expected = transform_keypoints(item["source_keypoints"].double().numpy(), item["matrix"].double().numpy(),
                                       get_skeleton("itop15").flip_permutation,
                                       bool(np.linalg.det(item["matrix"][:, :2].double().numpy()) < 0))
        np.testing.assert_allclose(item["keypoints"].numpy()[:, :2], expected[:, :2], atol=1e-3)
        assert item["image"].shape == (1, sides[-1], sides[-1])
    assert sides == [32, 48, 48, 48]
    assert data.size_at(0) == 32 and PoseDataset([], input_size=64, flip_permutation=()).size_at(3) == 64


def test_the_config_reaches_the_training_set_only_and_is_checked():
    config = load_config(None, ["data.epoch_input_sizes=[48, 128]", "data.train_samples=8", "data.val_samples=2"])
    train_set, val_set = build_datasets(config)
    assert train_set.size_at(0) == 48 and train_set.size_at(1) == val_set.size_at(0) == 128  # the default side
    with pytest.raises(ConfigError, match=r"data.epoch_input_sizes: 60 is not a multiple of model.stride = 8"):
        load_config(None, ["data.epoch_input_sizes=[60, 64]"])


def test_training_encodes_each_epochs_targets_at_its_map_size_and_scores_at_the_input_size(tmp_path, monkeypatch):
    import cpm.training.loop as loop

    shapes = []
    real_step = loop.train_step

    def record(model, image, center_map, targets, *args, **kwargs):
        shapes.append((image.shape[-1], center_map.shape[-1], targets.shape[-1]))
        return real_step(model, image, center_map, targets, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", record)
    overrides = tiny_overrides(tmp_path, **{"train.epochs": 2, "data.epoch_input_sizes": [32, 64]})
    train(load_config(None, overrides), progress=False, log=lambda *_: None)
    stride = load_config(None, overrides).model.stride
    steps = len(shapes) // 2
    assert shapes[:steps] == [(32, 32 // stride, 32 // stride)] * steps  # epoch 1: 32 px crops, their maps
    assert shapes[steps:] == [(64, 64 // stride, 64 // stride)] * steps
    lines = [json.loads(x) for x in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and all(torch.isfinite(torch.tensor(
        [v for k, v in line.items() if k.startswith("val/")])).all() for line in lines)
