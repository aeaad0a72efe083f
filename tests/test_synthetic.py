"""Behaviour of the procedural depth frames (cpm.data.synthetic: body, camera, scene, zbuffer, frames)."""

from __future__ import annotations

import numpy as np
import pytest

from cpm.data.synthetic.body import NUM_JOINTS, Body, Pose
from cpm.data.synthetic.camera import CX, CY, FRAME_HEIGHT, FRAME_WIDTH, Camera, depth_to_gray, project_points
from cpm.data.synthetic.frames import SyntheticPoses, render_sample
from cpm.data.synthetic.scene import Scene, sample_scene
from cpm.data.synthetic.zbuffer import render_scene

RIGHT = {"shoulder": 2, "elbow": 4, "hand": 6, "hip": 9, "knee": 11, "foot": 13}
LEFT = {"shoulder": 3, "elbow": 5, "hand": 7, "hip": 10, "knee": 12, "foot": 14}


@pytest.fixture(scope="module")
def many_samples() -> list[dict]:
    return [render_sample(7, i) for i in range(200)]


def _neutral_scene(yaw: float, arm_flexion: float = 0.0) -> Scene:
    """A 1.75 m person standing with straight arms (at the sides unless flexed forwards), 3 m in
    front of a level camera."""
    pose = Pose(yaw=yaw, arms=np.array([[arm_flexion, 10.0, 0.0, 0.0]] * 2))
    return Scene(Body(), pose, Camera(height=1.0, pitch=0.0), position=(0.0, 3.0), wall=6.0)


def test_same_seed_and_index_give_identical_samples():
    a, b = render_sample(3, 11), render_sample(3, 11)
    assert np.array_equal(a["image"], b["image"])
    assert np.array_equal(a["keypoints"], b["keypoints"])
    assert np.array_equal(a["center"], b["center"])
    assert a["scale"] == b["scale"]


def test_samples_do_not_depend_on_global_random_state_or_render_order():
    first = render_sample(0, 5)
    np.random.seed(123)  # noqa: NPY002 - the point is that legacy global state has no effect
    for i in range(3):
        render_sample(0, i)
    again = render_sample(0, 5)
    assert np.array_equal(first["image"], again["image"])
    assert np.array_equal(first["keypoints"], again["keypoints"])


def test_different_index_or_seed_gives_different_samples():
    base = render_sample(0, 0)
    for other in (render_sample(0, 1), render_sample(1, 0)):
        assert not np.array_equal(base["image"], other["image"])
        assert not np.array_equal(base["keypoints"], other["keypoints"])


def test_sample_has_documented_shapes_and_dtypes():
    sample = render_sample(0, 0)
    assert set(sample) == {"image", "keypoints", "center", "scale"}
    assert sample["image"].shape == (FRAME_HEIGHT, FRAME_WIDTH) == (212, 256)
    assert sample["image"].dtype == np.uint8
    assert sample["keypoints"].shape == (NUM_JOINTS, 3) == (15, 3)
    assert sample["keypoints"].dtype == np.float32
    assert sample["center"].shape == (2,) and sample["center"].dtype == np.float32
    assert isinstance(sample["scale"], float) and sample["scale"] > 0


def test_render_sample_is_sample_scene_then_render_scene_with_one_generator():
    rng = np.random.default_rng([4, 2])
    composed = render_scene(sample_scene(rng), rng)
    direct = render_sample(4, 2)
    assert np.array_equal(composed["image"], direct["image"])
    assert np.array_equal(composed["keypoints"], direct["keypoints"])


def test_dataset_indexes_like_render_sample_and_rejects_out_of_range():
    ds = SyntheticPoses(seed=2, size=5)
    assert len(ds) == 5
    assert np.array_equal(ds[3]["image"], render_sample(2, 3)["image"])
    assert np.array_equal(ds[-1]["keypoints"], render_sample(2, 4)["keypoints"])
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds[-6]
    assert len(SyntheticPoses()) == 1000


def test_projection_puts_optical_axis_at_principal_point_and_x_right_y_down():
    points = np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0], [0.0, 0.5, 2.0]])
    uv = project_points(points)
    np.testing.assert_allclose(uv[0], (CX, CY))
    assert uv[1, 0] > CX and uv[2, 1] > CY


def test_person_facing_camera_has_right_side_on_image_left():
    kp = render_scene(_neutral_scene(yaw=0.0))["keypoints"]
    for part in RIGHT:
        assert kp[RIGHT[part], 0] < kp[LEFT[part], 0], part
    assert np.all(kp[:, 2] == 2)  # nothing hides anything in a frontal neutral pose


def test_person_with_back_to_camera_has_right_side_on_image_right():
    kp = render_scene(_neutral_scene(yaw=180.0))["keypoints"]
    for part in RIGHT:
        assert kp[RIGHT[part], 0] > kp[LEFT[part], 0], part


def test_side_view_marks_far_side_joints_occluded_and_near_side_visible():
    # yaw 90: the person's right side faces the camera, the left side is behind the body. Arms are
    # held forwards, else the near arm would (rightly) hide the near hip.
    kp = render_scene(_neutral_scene(yaw=90.0, arm_flexion=90.0))["keypoints"]
    for part in ("shoulder", "hip", "knee"):
        assert kp[RIGHT[part], 2] == 2, part
        assert kp[LEFT[part], 2] == 1, part
    assert kp[0, 2] == 2 and kp[8, 2] == 2  # head and torso stay visible from the side


def test_neutral_person_is_upright_and_sized_by_distance():
    near = render_scene(_neutral_scene(0.0))
    kp = near["keypoints"]
    assert kp[0, 1] < kp[1, 1] < kp[8, 1] < kp[9, 1] < kp[11, 1] < kp[13, 1]  # head to foot, downwards
    # Head centre to ankle is ~0.88 of 1.75 m; at 3 m with f = 182.5 px that is ~94 px.
    assert 80 < near["scale"] < 110
    far = _neutral_scene(0.0)
    far.position = (0.0, 4.5)  # the camera and position are not part of the cached geometry
    assert render_scene(far)["scale"] < near["scale"]


def test_near_surfaces_are_brighter_and_clean_render_has_no_holes():
    image = render_scene(_neutral_scene(0.0))["image"]
    kp = render_scene(_neutral_scene(0.0))["keypoints"]
    torso = image[int(round(kp[8, 1])), int(round(kp[8, 0]))]
    assert torso > image[5, 5] + 30  # body at 3 m vs wall at 6 m
    assert image[5, 5] == np.uint8(round(float(depth_to_gray(6.0))))
    assert image.min() > 0  # without a generator there is no noise and no dropout


def test_visible_keypoints_lie_on_body_pixels_brighter_than_the_wall():
    on_body = total = 0
    for i in range(60):
        rng = np.random.default_rng([7, i])
        scene = sample_scene(rng)
        sample = render_scene(scene, rng)
        wall = depth_to_gray(scene.wall)
        for x, y, v in sample["keypoints"]:
            if v == 2:
                col, row = int(round(x)), int(round(y))
                assert 0 <= col < FRAME_WIDTH and 0 <= row < FRAME_HEIGHT
                total += 1
                on_body += sample["image"][row, col] > wall + 5
    assert total > 0.75 * 60 * NUM_JOINTS
    assert on_body / total > 0.95  # the rest fell into a simulated dropout hole


def test_visibility_flags_are_valid_and_zero_exactly_outside_the_frame(many_samples):
    flags = np.concatenate([s["keypoints"][:, 2] for s in many_samples])
    assert set(np.unique(flags)) <= {0.0, 1.0, 2.0}
    assert (flags == 1).any() and (flags == 2).any()
    assert 0.03 < (flags == 1).mean() < 0.3  # some self-occlusion, but most joints visible
    for s in many_samples:
        col, row = np.rint(s["keypoints"][:, :2]).T
        inside = (col >= 0) & (col < FRAME_WIDTH) & (row >= 0) & (row < FRAME_HEIGHT)
        assert np.array_equal(inside, s["keypoints"][:, 2] > 0)


def test_most_people_are_fully_in_frame_but_some_are_cut(many_samples):
    cut = np.mean([(s["keypoints"][:, 2] == 0).any() for s in many_samples])
    assert 0.0 < cut < 0.15


def test_head_is_above_the_feet_in_almost_all_samples(many_samples):
    above = [s["keypoints"][0, 1] < s["keypoints"][[13, 14], 1].min() for s in many_samples]
    assert np.mean(above) > 0.97


def test_center_and_scale_match_the_keypoint_bounding_box(many_samples):
    for s in many_samples[:50]:
        xy = s["keypoints"][:, :2].astype(np.float64)
        lo, hi = xy.min(0), xy.max(0)
        np.testing.assert_allclose(s["center"], (lo + hi) / 2, atol=1e-3)
        assert s["scale"] == pytest.approx((hi - lo).max(), abs=1e-3)


def test_person_centres_spread_over_the_middle_of_the_frame(many_samples):
    centres = np.stack([s["center"] for s in many_samples])
    assert centres[:, 0].min() < 0.35 * FRAME_WIDTH and centres[:, 0].max() > 0.65 * FRAME_WIDTH
    assert np.all((centres[:, 0] > 0) & (centres[:, 0] < FRAME_WIDTH))
