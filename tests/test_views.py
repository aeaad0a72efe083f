"""data.train_views: the shares of frontal, side and back views where the renderer draws the yaw."""

from __future__ import annotations

import numpy as np
import pytest

from cpm.config import Config, apply, validate
from cpm.data.synthetic.body import KINECT_VIEWS, sample_pose
from cpm.data.synthetic.frames import render_sample
from cpm.errors import ConfigError
from cpm.runtime.build import build_datasets


def yaws(views, n=400):
    return np.array([sample_pose(np.random.default_rng([7, i]), views).yaw for i in range(n)])


def test_the_default_shares_draw_the_kinect_yaws_and_any_shares_draw_as_many_numbers():
    for i in range(50):
        rng, again = np.random.default_rng([3, i]), np.random.default_rng([3, i])
        first, second = vars(sample_pose(rng)), vars(sample_pose(again, KINECT_VIEWS))
        assert all(np.array_equal(first[key], second[key]) for key in first)
        sample_pose(rng, (0.0, 0.0, 1.0))
        sample_pose(again, (1.0, 0.0, 0.0))
        assert rng.random() == again.random()  # the same draws whatever the shares: the rest of a frame is unchanged


@pytest.mark.parametrize(("views", "low", "high"), [((1.0, 0.0, 0.0), 0, 40), ((0.0, 1.0, 0.0), 40, 90),
                                                     ((0.0, 0.0, 1.0), 90, 180)])
def test_each_view_alone_draws_its_yaw_range(views, low, high):
    turned = np.abs((yaws(views) + 180) % 360 - 180)  # degrees from facing the camera
    assert turned.min() >= low and turned.max() <= high


def test_shares_are_kept_in_proportion():
    turned = np.abs((yaws((0.5, 0.25, 0.25), n=2000) + 180) % 360 - 180)
    assert np.mean(turned < 40) == pytest.approx(0.5, abs=0.04)
    assert np.mean(turned > 90) == pytest.approx(0.25, abs=0.04)


def test_back_views_put_the_persons_right_on_the_images_right():
    """Facing the camera, the person's right shoulder (ITOP_15 joint 2) is on the image's left; from the back on
    its right. Mostly upright poses: the procedural prior's."""
    def right_on_the_left(views):
        frames = [render_sample(11, i, views=views)["keypoints"] for i in range(40)]
        return np.mean([k[2, 0] < k[3, 0] for k in frames])

    assert right_on_the_left((1.0, 0.0, 0.0)) > 0.9
    assert right_on_the_left((0.0, 0.0, 1.0)) < 0.1


def test_train_views_reach_the_training_frames_only():
    config = validate(apply(Config(), {"data": {"train_views": [0.0, 0.0, 1.0], "train_samples": 8,
                                                "val_samples": 8}, "train": {"epochs": 1}}))
    train, val = build_datasets(config)
    assert train.source.views == (0.0, 0.0, 1.0) and val.source.views == KINECT_VIEWS
    back = [render_sample(config.data.seed, i, views=(0.0, 0.0, 1.0))["image"] for i in range(2)]
    assert all(np.array_equal(train.source_item(i)["image"], back[i]) for i in range(2))


@pytest.mark.parametrize("views", [[0.5, 0.5], [0.5, 0.6, 0.0], [1.2, -0.2, 0.0], [float("nan"), 0.5, 0.5]])
def test_bad_train_views_fail_naming_the_key(views):
    with pytest.raises(ConfigError, match=r"data.train_views"):
        validate(apply(Config(), {"data": {"train_views": views}}))
