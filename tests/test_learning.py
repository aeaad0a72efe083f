"""Training learns: a tiny model trained for about a minute beats the best pose that ignores the image (the mean
training pose, placed in every held-out crop the way the crop places the person) by a clear margin."""

import numpy as np

from cpm.config import load_config
from cpm.evaluation.metrics import pck, torso_size
from cpm.runtime.build import build_datasets
from cpm.skeleton import get_skeleton
from cpm.training.loop import train
from tests.helpers import tiny_overrides

SETTINGS = {"train.epochs": 1, "data.train_samples": 5120, "data.val_samples": 96, "train.batch_size": 16,
            "train.warmup_steps": 10, "model.stages": 2, "train.log_every": 16, "model.stride": 4,
            "model.trunk_widths": [8, 16], "model.stage1_width": 32, "model.stage1_kernel": 5,
            "model.stage_width": 16, "model.stage_kernel": 5, "model.feature_channels": 8, "train.lr": 5e-3,
            "targets.sigma": 1.5, "data.rotation": 0.0, "data.scale_range": [1.0, 1.0], "data.shift": 0.0,
            "train.amp": "off"}  # 320 steps in one epoch (one evaluation); fp32 on every CPU


def mean_pose_baseline(config) -> tuple[np.ndarray, np.ndarray]:
    """(predictions (N, K, 2) in source pixels, ground truth (N, K, 3)): the mean of the training crops' labelled
    keypoints (crop pixels) mapped back through each held-out sample's crop."""
    train_set, val_set = build_datasets(config)
    train_set.set_epoch(0)
    crops = np.stack([train_set[i]["keypoints"].numpy() for i in range(256)])  # (256, K, 3) crop pixels
    labelled = crops[..., 2:] > 0
    mean = (crops[..., :2] * labelled).sum(0) / np.maximum(labelled.sum(0), 1)  # (K, 2)
    predictions, truths = [], []
    for i in range(len(val_set)):
        sample = val_set[i]
        matrix = sample["matrix"].numpy().astype(np.float64)  # (2, 3) source -> crop
        linear = np.linalg.inv(matrix[:, :2])
        predictions.append((mean - matrix[:, 2]) @ linear.T)
        truths.append(sample["source_keypoints"].numpy())
    return np.stack(predictions), np.stack(truths).astype(np.float64)


def test_a_minute_of_training_beats_the_mean_pose_by_a_clear_margin(tmp_path):
    config = load_config(None, tiny_overrides(tmp_path, **SETTINGS))
    results = train(config, progress=False, log=lambda *_: None)
    torso = get_skeleton(config.data.skeleton).torso
    predicted, truth = mean_pose_baseline(config)
    np.testing.assert_allclose(truth, results["ground_truth"])  # the same held-out frames, the same labels
    baseline = pck(predicted, truth, torso_size(truth, torso), 0.2).mean
    learnt = results["pck"][0.2][-1]
    assert 0.05 < baseline < 0.6  # the baseline is a real one: some joints land near the mean pose
    assert learnt > baseline + 0.15, (learnt, baseline)  # measured: 0.637 against 0.431
