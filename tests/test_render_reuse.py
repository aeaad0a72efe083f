"""``data.render_epochs``: a rendered training frame serves several consecutive epochs, each under its own
augmentation, and a process renders it once; ``data.prerender``: a block's frames rendered ahead on every core are
the frames the DataLoader would have rendered."""

import json

import pytest
import torch

from cpm.config import ConfigError, load_config
from cpm.data.dataset import PoseDataset
from cpm.data.synthetic.frames import SyntheticPoses
from cpm.runtime.build import build_datasets
from cpm.skeleton import get_skeleton
from cpm.training.loop import train
from tests.helpers import tiny_overrides


class CountingSource:
    """SyntheticPoses that counts its renders."""

    def __init__(self, size: int) -> None:
        self.poses, self.renders = SyntheticPoses(seed=0, size=size), []

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, index: int) -> dict:
        self.renders.append(index)
        return self.poses[index]


def dataset(reuse: int, length: int = 3, epochs: int = 4) -> PoseDataset:
    return PoseDataset(CountingSource(length * epochs), input_size=64, flip_permutation=get_skeleton("itop15")
                       .flip_permutation, augment=True, scale_range=(0.8, 1.2), rotation=30.0, flip=True,
                       shift=0.05, length=length, resample_each_epoch=True, reuse_epochs=reuse)


def read_epoch(data: PoseDataset, epoch: int) -> list[dict]:
    data.set_epoch(epoch)
    return [data[i] for i in range(len(data))]


def test_frames_serve_render_epochs_epochs_under_new_augmentations_and_render_once():
    reused, fresh = dataset(reuse=2), dataset(reuse=1)
    epochs = [read_epoch(reused, e) for e in range(4)]
    assert reused.source.renders == [0, 1, 2, 3, 4, 5]  # blocks {0, 1} and {2, 3}: each frame rendered once
    for i in range(3):
        for a, b in ((0, 1), (2, 3)):  # the same frame: the same labels in the source frame
            assert torch.equal(epochs[a][i]["source_keypoints"], epochs[b][i]["source_keypoints"])
        assert not torch.equal(epochs[0][i]["source_keypoints"], epochs[2][i]["source_keypoints"])  # a new frame
    assert any(not torch.equal(epochs[0][i]["image"], epochs[1][i]["image"]) for i in range(3))  # new augmentations
    first = read_epoch(fresh, 0)  # epoch 0 is the same with or without reuse
    assert all(torch.equal(a[k], b[k]) for a, b in zip(epochs[0], first, strict=True) for k in a)
    # a kept frame is what rendering it again gives: epoch 3 read by a process that never read epoch 2
    again = read_epoch(dataset(reuse=2), 3)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(epochs[3], again, strict=True) for k in a)
    assert len(reused._kept) == 3  # the current block only


def test_the_config_reaches_the_training_set_and_refuses_a_real_dataset(tmp_path):
    config = load_config(None, ["data.render_epochs=3", "data.train_samples=8", "data.val_samples=2"])
    train_set, val_set = build_datasets(config)
    assert train_set.reuse_epochs == 3 and val_set.reuse_epochs == 1
    with pytest.raises(ConfigError, match="data.render_epochs"):
        load_config(None, ["data.render_epochs=0"])
    with pytest.raises(ConfigError, match="data.render_epochs: reuses rendered frames; data.source = 'list'"):
        load_config(None, ["data.render_epochs=2", 'data.source="list"', f'data.root="{tmp_path}"',
                           'data.annotations="a.json"'])


def same_items(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


@pytest.mark.parametrize("processes", [1, 2])
def test_prerendered_blocks_are_the_frames_a_reader_renders_and_replace_the_last_block(processes):
    ahead, reader = dataset(reuse=2), dataset(reuse=2)
    expected = [read_epoch(reader, e) for e in range(4)]
    ahead.prerender(0, processes=processes)
    assert sorted(ahead._kept) == [0, 1, 2]  # block 0: epochs 0 and 1
    # two processes render in forked children (the parent's counter sees none); one renders here, once each
    assert ahead.source.renders == ([] if processes == 2 else [0, 1, 2])
    assert same_items(read_epoch(ahead, 0), expected[0]) and same_items(read_epoch(ahead, 1), expected[1])
    assert len(ahead.source.renders) == (0 if processes == 2 else 3)  # reading the block rendered nothing more
    ahead.prerender(3, processes=processes)  # epoch 3 is in block 1: items 3, 4, 5
    assert sorted(ahead._kept) == [3, 4, 5]
    assert same_items(read_epoch(ahead, 2), expected[2]) and same_items(read_epoch(ahead, 3), expected[3])
    every_epoch = dataset(reuse=1)  # render_epochs = 1: a block is one epoch
    every_epoch.prerender(2, processes=processes)
    assert sorted(every_epoch._kept) == [6, 7, 8]
    assert same_items(read_epoch(every_epoch, 2), read_epoch(dataset(reuse=1), 2))


def test_a_run_with_prerendered_blocks_trains_the_same_batches(tmp_path):
    """Blocks of two epochs over three epochs (a worker process reads them): the same losses and weights as the
    worker rendering them, and the rendering time in the metrics of each block's first epoch."""
    runs = {}
    for prerender in (False, True):
        overrides = tiny_overrides(tmp_path / str(prerender), **{
            "train.epochs": 3, "data.render_epochs": 2, "data.train_samples": 32, "data.workers": 1,
            "data.prerender": prerender})
        result = train(load_config(None, overrides), progress=False, log=lambda *_: None)
        lines = [json.loads(line) for line in open(f"{result['run_dir']}/metrics.jsonl")]
        weights = torch.load(f"{result['run_dir']}/last.pt", weights_only=False)["model"]
        runs[prerender] = lines, weights
    (plain, plain_weights), (ahead, ahead_weights) = runs[False], runs[True]
    assert [line["train/loss"] for line in ahead] == [line["train/loss"] for line in plain]
    assert all(torch.equal(plain_weights[k], ahead_weights[k]) for k in plain_weights)
    assert ["render_seconds" in line for line in ahead] == [True, False, True]
    assert not any("render_seconds" in line for line in plain)
    with pytest.raises(ConfigError, match="data.prerender: renders synthetic frames ahead; data.source = 'list'"):
        load_config(None, ["data.prerender=true", 'data.source="list"', f'data.root="{tmp_path}"',
                           'data.annotations="a.json"'])
