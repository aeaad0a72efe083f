import numpy as np
import pytest

from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, transform_keypoints, warp_image
from cpm.skeleton import ITOP_15


def test_crop_matrix_maps_the_centre_to_the_middle_and_scales():
    matrix = crop_matrix(np.array([100.0, 50.0]), crop_side=200, output_size=100)
    points = apply_affine(np.array([[100.0, 50.0], [120.0, 50.0], [100.0, 30.0]]), matrix)
    assert points.ravel().tolist() == pytest.approx([49.5, 49.5, 59.5, 49.5, 49.5, 39.5])


def test_rotation_by_90_degrees_turns_right_into_up():
    matrix = crop_matrix(np.array([10.0, 10.0]), crop_side=64, output_size=64, rotation=90)
    # Counter-clockwise on screen: a point to the right of the centre ends up above it.
    point = apply_affine(np.array([[20.0, 10.0]]), matrix)[0]
    assert point == pytest.approx([31.5, 21.5])


def test_keypoints_follow_the_warped_image_pixels():
    image = np.zeros((60, 80), np.uint8)
    image[22, 37] = 255  # a single bright pixel at x=37, y=22
    matrix = crop_matrix(np.array([40.0, 30.0]), crop_side=50, output_size=100, rotation=25, shift=(3, -2))
    warped = warp_image(image, matrix, 100)
    expected = apply_affine(np.array([[37.0, 22.0]]), matrix)[0]
    ys, xs = np.nonzero(warped)
    weights = warped[ys, xs].astype(float)
    centroid = [np.average(xs, weights=weights), np.average(ys, weights=weights)]
    assert centroid == pytest.approx(expected, abs=0.15)


def test_inverse_matrix_round_trips_points():
    matrix = crop_matrix(np.array([31.0, 77.0]), crop_side=140, output_size=128, rotation=-33, flip=True,
                         shift=(5, 7))
    points = np.random.default_rng(0).uniform(0, 200, size=(15, 2))
    back = apply_affine(apply_affine(points, matrix), invert_affine(matrix))
    assert np.abs(back - points).max() < 1e-9


def test_flip_mirrors_x_and_swaps_left_and_right_joints():
    keypoints = np.zeros((15, 3), np.float32)
    keypoints[:, 0] = np.arange(15) * 2 + 10
    keypoints[:, 1] = 40
    keypoints[:, 2] = 2
    center = np.array([40.0, 40.0])
    plain = crop_matrix(center, 80, 80)
    mirrored = crop_matrix(center, 80, 80, flip=True)
    flipped = transform_keypoints(keypoints, mirrored, ITOP_15.flip_permutation, flipped=True)
    unflipped = transform_keypoints(keypoints, plain, ITOP_15.flip_permutation, flipped=False)
    right, left = ITOP_15.index("right_shoulder"), ITOP_15.index("left_shoulder")
    # The joint now called "right shoulder" is the mirror image of the original left shoulder.
    assert flipped[right, 0] == pytest.approx(79 - unflipped[left, 0])
    assert flipped[left, 0] == pytest.approx(79 - unflipped[right, 0])
    assert flipped[0, 0] == pytest.approx(79 - unflipped[0, 0])


def test_flipping_twice_is_the_identity():
    rng = np.random.default_rng(1)
    keypoints = np.concatenate([rng.uniform(0, 64, (15, 2)), np.full((15, 1), 2.0)], axis=1).astype(np.float32)
    mirror = crop_matrix(np.array([31.5, 31.5]), 64, 64, flip=True)  # a pure mirror about the middle
    once = transform_keypoints(keypoints, mirror, ITOP_15.flip_permutation, flipped=True)
    twice = transform_keypoints(once, mirror, ITOP_15.flip_permutation, flipped=True)
    assert np.abs(twice - keypoints).max() < 1e-4
    image = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    assert np.array_equal(warp_image(warp_image(image, mirror, 64), mirror, 64), image)
