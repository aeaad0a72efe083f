"""data.train_views / data.val_views: the shares of frontal, side and back views where the renderer draws the yaw;
data.body_cues: a body whose front differs from its back."""

from __future__ import annotations

import numpy as np
import pytest

from cpm.config import Config, apply, validate
from cpm.data.synthetic.body import KINECT_VIEWS, Body, Pose, pose_body, pose_joints, sample_pose
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


def test_val_views_and_body_cues_reach_the_held_out_frames():
    config = validate(apply(Config(), {"data": {"val_views": [0.0, 0.0, 1.0], "body_cues": True, "train_samples": 8,
                                                "val_samples": 8}, "train": {"epochs": 1}}))
    train, val = build_datasets(config)
    assert train.source.views == KINECT_VIEWS and val.source.views == (0.0, 0.0, 1.0)
    assert train.source.cues and val.source.cues
    back = [render_sample(config.data.val_seed, i, views=(0.0, 0.0, 1.0), cues=True)["image"] for i in range(2)]
    assert all(np.array_equal(val.source_item(i)["image"], back[i]) for i in range(2))


@pytest.mark.parametrize("key", ["train_views", "val_views"])
@pytest.mark.parametrize("views", [[0.5, 0.5], [0.5, 0.6, 0.0], [1.2, -0.2, 0.0], [float("nan"), 0.5, 0.5]])
def test_bad_views_fail_naming_the_key(key, views):
    with pytest.raises(ConfigError, match=rf"data.{key}"):
        validate(apply(Config(), {"data": {key: views}}))


def surface(caps, axis, sign, band):
    """The body's outermost surface along ``sign`` * ``axis`` among capsule ends whose height is in ``band``."""
    ends = np.concatenate([caps[:, 0:3], caps[:, 3:6]])
    radii = np.concatenate([caps[:, 6], caps[:, 7]])
    keep = (ends[:, 1] >= band[0]) & (ends[:, 1] <= band[1])
    return float((sign * ends[keep, axis] + radii[keep]).max())


def test_body_cues_put_the_chest_in_front_and_the_buttocks_behind():
    """A 1.75 m body standing straight, facing the camera (yaw 0: the body frame's +z turned to the world's -z).
    Without cues the chest capsule (radius 0.068 H) is the front of the chest and the pelvis (0.062 H) the back of
    the hips; the cues bulge 0.09 H in front of the chest (0.045 H ahead, radius 0.045 H) and 0.085 H behind the
    hips (0.035 H behind, radius 0.05 H)."""
    H = 1.75
    plain, cued = (pose_body(Body(cues=cues), Pose())[1] for cues in (False, True))
    assert len(cued) == len(plain) + 5 and np.array_equal(cued[:len(plain)], plain)
    floor = pose_body(Body(), Pose())[0][9, 1]  # hips' height above the floor
    chest, hips = (floor + 0.15 * H, floor + 0.26 * H), (floor - 0.05 * H, floor + 0.01 * H)
    assert surface(plain, 2, -1, chest) == pytest.approx(0.068 * H, abs=0.01 * H)
    assert surface(cued, 2, -1, chest) == pytest.approx(0.09 * H, abs=1e-6)
    assert surface(plain, 2, 1, hips) == pytest.approx(0.062 * H, abs=1e-6)
    assert surface(cued, 2, 1, hips) == pytest.approx(0.085 * H, abs=1e-6)


def test_body_cues_of_given_joints_follow_the_way_the_body_faces():
    """`pose_joints` finds the front from the joints (left x up): the nose is where `pose_body` puts it for the
    body's own joints, and on the other side of the head for the same body turned around (a fixed forward axis,
    as the feet take, would put it on the same side)."""
    def nose_ahead_of_head(caps, joints):
        return np.sign(caps[-5, 2] - joints[0, 2])

    joints, caps, _ = pose_body(Body(cues=True), Pose(yaw=180.0))  # yaw 180 undoes the turn: facing +z
    ahead = nose_ahead_of_head(caps, joints)
    body_frame = joints - (joints[9] + joints[10]) / 2
    turned = body_frame * (-1.0, 1.0, -1.0)  # the same person turned 180 degrees about the vertical
    for posed, expected in ((body_frame, ahead), (turned, -ahead)):
        joints, caps, _ = pose_joints(Body(cues=True), posed, yaw=180.0)
        assert nose_ahead_of_head(caps, joints) == expected != 0
