"""Property tests of the augmentation (cpm.data.transforms through cpm.data.dataset.PoseDataset) and of the
renderer's occluders: inverses, mirror twice, keypoints staying on the image content they mark, exact shifts,
and occluding boxes that move no keypoint and hide only what they cover."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpm.data.dataset import PIXEL_MEAN, PIXEL_STD, PoseDataset
from cpm.data.datasets.samples import person_box
from cpm.data.synthetic import zbuffer
from cpm.data.synthetic.camera import FRAME_HEIGHT, FRAME_WIDTH
from cpm.data.synthetic.frames import render_sample
from cpm.data.synthetic.scene import sample_scene
from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, transform_keypoints, warp_image
from cpm.skeleton import ITOP_15, SKELETONS
from tests.test_skeleton_names import mirror_name

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
coordinates = st.floats(-300, 600, allow_nan=False)
crops = st.fixed_dictionaries({
    "center": st.tuples(coordinates, coordinates).map(np.array),
    "crop_side": st.floats(20, 800),
    "output_size": st.integers(16, 384),
    "rotation": st.floats(-180, 180),
    "flip": st.booleans(),
    "shift": st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
})
points = st.lists(st.tuples(coordinates, coordinates), min_size=1, max_size=20).map(np.array)
seeds = st.integers(0, 2**31 - 1)


@PROPERTY
@given(crop=crops, xy=points)
def test_any_crop_then_its_inverse_gives_the_keypoints_back(crop, xy):
    center = crop.pop("center")
    matrix = crop_matrix(center, **crop)
    back = apply_affine(apply_affine(xy, matrix), invert_affine(matrix))
    assert np.abs(back - xy).max() < 1e-4


def augmented(source, seed, epoch, **options):
    """One augmented sample of a one-sample PoseDataset, with every augmentation on at wide ranges."""
    options = {"input_size": 128, "flip_permutation": ITOP_15.flip_permutation, "augment": True,
               "scale_range": (0.7, 1.3), "rotation": 180.0, "flip": True, "shift": 0.08, "seed": seed, **options}
    dataset = PoseDataset([source], **options)
    dataset.set_epoch(epoch)
    return dataset[0]


def flipped(matrix: np.ndarray) -> bool:
    return bool(np.linalg.det(matrix[:, :2]) < 0)  # a mirror reverses orientation; rotation and scale do not


def grid_keypoints(rng: np.random.Generator) -> np.ndarray:
    """15 labeled keypoints on a 5 x 3 grid 30 px apart, jittered by up to 4 px."""
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(3)), -1).reshape(15, 2)
    xy = 60.0 + 30.0 * grid + rng.uniform(-4, 4, (15, 2))
    return np.concatenate([xy, np.full((15, 1), 2.0)], axis=1).astype(np.float32)


@PROPERTY
@given(seed=seeds, epoch=st.integers(0, 100))
def test_the_dataset_matrix_maps_its_keypoints_back_to_the_source(seed, epoch):
    keypoints = grid_keypoints(np.random.default_rng(seed))
    center, scale = person_box(keypoints)
    item = augmented({"image": np.zeros((200, 240), np.uint8), "keypoints": keypoints, "center": center,
                      "scale": scale}, seed, epoch)
    matrix = item["matrix"].double().numpy()
    crop = item["keypoints"].double().numpy()
    if flipped(matrix):  # undo the left/right renaming (the permutation is its own inverse)
        crop = crop[list(ITOP_15.flip_permutation)]
    back = apply_affine(crop[:, :2], invert_affine(matrix))
    assert np.abs(back - keypoints[:, :2]).max() < 1e-4
    np.testing.assert_array_equal(crop[:, 2], keypoints[:, 2])


@PROPERTY
@given(name=st.sampled_from(sorted(SKELETONS)), data=st.data(), size=st.integers(1, 400))
def test_a_mirror_renames_left_and_right_and_twice_is_the_identity_for_every_skeleton(name, data, size):
    skeleton = SKELETONS[name]
    middle = (size - 1) / 2  # a crop of the same size centred on its middle mirrors x about it
    xy = data.draw(st.lists(st.tuples(coordinates, coordinates), min_size=skeleton.num_joints,
                            max_size=skeleton.num_joints).map(np.array))
    keypoints = np.concatenate([xy, np.full((len(xy), 1), 2.0)], axis=1).astype(np.float32)
    mirror = crop_matrix(np.array([middle, middle]), size, size, flip=True)  # x -> 2 * middle - x, y kept
    once = transform_keypoints(keypoints, mirror, skeleton.flip_permutation, flipped=True)
    names = skeleton.joint_names
    for k, name in enumerate(names):  # the joint now called "left_x" is the mirror image of the old "right_x"
        source = names.index(mirror_name(name))  # from the names, not from the table under test
        np.testing.assert_allclose(once[k, :2], [2 * middle - keypoints[source, 0], keypoints[source, 1]],
                                   atol=1e-3)
    twice = transform_keypoints(once, mirror, skeleton.flip_permutation, flipped=True)
    assert np.abs(twice - keypoints).max() < 1e-3  # float32 keypoints of up to 600 px


def dot_image(keypoints: np.ndarray, height: int = 200, width: int = 240) -> np.ndarray:
    """RGB image with a bright Gaussian dot (sigma 1.5 px) at each keypoint, joint j in channel j % 3 (every
    left/right pair of ITOP_15 has its two joints in different channels)."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3))
    for j, (x, y) in enumerate(keypoints[:, :2]):
        dot = 255.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2))
        image[..., j % 3] = np.maximum(image[..., j % 3], dot)
    return image.round().astype(np.uint8)


@PROPERTY
@given(seed=seeds, epoch=st.integers(0, 100))
def test_keypoints_stay_on_the_image_content_they_mark(seed, epoch):
    keypoints = grid_keypoints(np.random.default_rng(seed))
    center, scale = person_box(keypoints)
    item = augmented({"image": dot_image(keypoints), "keypoints": keypoints, "center": center, "scale": scale},
                     seed, epoch)
    image = (item["image"].numpy() * PIXEL_STD + PIXEL_MEAN) * 255  # (3, N, N)
    size = image.shape[1]
    mirrored = flipped(item["matrix"].double().numpy())
    checked = 0
    for k, (x, y, _) in enumerate(item["keypoints"].numpy()):
        name = ITOP_15.joint_names[k]  # the dot this keypoint must sit on: its mirror-named joint's, if mirrored
        source = ITOP_15.joint_names.index(mirror_name(name)) if mirrored else k
        cx, cy = int(round(x)), int(round(y))
        if not (2 <= cx < size - 2 and 2 <= cy < size - 2):
            continue  # shifted or turned out of the crop
        window = image[source % 3, cy - 2:cy + 3, cx - 2:cx + 3]
        row, col = np.unravel_index(np.argmax(window), window.shape)
        assert window[row, col] > 100, (k, window.max())  # the dot is there
        assert np.hypot(cx - 2 + col - x, cy - 2 + row - y) <= 1.0, (k, x, y, row, col)
        checked += 1
    assert checked >= 8


@PROPERTY
@given(dx=st.integers(-20, 20), dy=st.integers(-20, 20), cx=st.integers(0, 60), cy=st.integers(0, 50),
       flip=st.booleans())
def test_an_integer_shift_at_scale_one_moves_pixels_and_keypoints_exactly(dx, dy, cx, cy, flip):
    size = 33  # odd: the crop's middle (16, 16) is a pixel centre, so every sample falls on a source pixel
    image = np.random.default_rng(cx * 100 + cy).integers(1, 256, (50, 60), dtype=np.uint8)
    matrix = crop_matrix(np.array([cx, cy], float), size, size, flip=flip, shift=(dx, dy))
    crop = warp_image(image, matrix, size)
    ox, oy = 16 + dx - cx, 16 + dy - cy  # crop (x, y) shows source (x - ox, y - oy), or mirrored in x
    expected = np.zeros((size, size), np.uint8)
    for y in range(size):
        for x in range(size):
            sx, sy = (size - 1 - x if flip else x) - ox, y - oy
            if 0 <= sx < 60 and 0 <= sy < 50:
                expected[y, x] = image[sy, sx]
    np.testing.assert_array_equal(crop, expected)
    point = apply_affine(np.array([[cx + 3.25, cy - 1.5]]), matrix)[0]
    np.testing.assert_allclose(point, [size - 1 - (16 + dx + 3.25) if flip else 16 + dx + 3.25, 16 + dy - 1.5],
                               atol=1e-12)


@PROPERTY
@given(crop=crops, xy=points)
def test_the_shift_moves_crop_keypoints_by_exactly_the_shift(crop, xy):
    center, shift = crop.pop("center"), crop.pop("shift")
    plain = apply_affine(xy, crop_matrix(center, **crop))
    moved = apply_affine(xy, crop_matrix(center, **crop, shift=shift))
    expected = (-shift[0] if crop["flip"] else shift[0], shift[1])  # the shift is applied before the flip
    np.testing.assert_allclose(moved - plain, np.broadcast_to(expected, plain.shape), atol=1e-9)


boxes = st.fixed_dictionaries({
    "offset": st.floats(-0.4, 0.4), "half_width": st.floats(0.05, 0.5), "height": st.floats(0.1, 2.0),
    "gap": st.floats(0.02, 0.6), "depth": st.floats(0.05, 0.5)})


@PROPERTY
@given(seed=seeds, index=st.integers(0, 10**6), box=boxes)
def test_an_occluding_box_moves_no_keypoint_and_hides_only_joints_it_covers(seed, index, box):
    scene = sample_scene(np.random.default_rng([seed, index]))
    _, caps, radius = scene.geometry
    z_front = float(np.min(np.concatenate([caps[:, 2] - caps[:, 6], caps[:, 5] - caps[:, 7]])))
    x, distance = scene.position
    z1 = distance + z_front - box["gap"]  # in front of the whole body
    front = (x + box["offset"] - box["half_width"], x + box["offset"] + box["half_width"], box["height"],
             z1 - box["depth"], z1)
    before = zbuffer.render_scene(scene)
    after = zbuffer.render_scene(dataclasses.replace(scene, boxes=[*scene.boxes, front]))
    np.testing.assert_array_equal(after["keypoints"][:, :2], before["keypoints"][:, :2])
    np.testing.assert_array_equal(after["center"], before["center"])
    assert after["scale"] == before["scale"]

    cover = np.full((FRAME_HEIGHT, FRAME_WIDTH), np.inf, np.float32)
    zbuffer._render_box(cover, scene.camera, front)  # the box alone: its depth where it covers a pixel
    v0, v1 = before["keypoints"][:, 2], after["keypoints"][:, 2]
    changed = np.flatnonzero(v0 != v1)
    assert (v0[changed] == 2).all() and (v1[changed] == 1).all()  # a box only hides; it never reveals
    col, row = np.rint(before["keypoints"][:, :2]).astype(int).T
    for j in np.flatnonzero(v0 > 0):  # joints in the frame
        covered = np.isfinite(cover[row[j], col[j]])
        if j in changed:
            assert covered, f"joint {j} marked occluded where the box is not"
        gray = float(before["image"][row[j], col[j]])
        if covered and v0[j] == 2 and gray > 0:
            surface = 0.5 + 7.0 * (1.0 - gray / 255.0)  # the body's depth there, to half a gray level
            if cover[row[j], col[j]] < surface - 0.02 - radius[j] - zbuffer.VISIBILITY_MARGIN:
                assert v1[j] == 1, f"joint {j} behind the box still marked visible"


@PROPERTY
@given(seed=seeds, index=st.integers(0, 7))
def test_occluding_patches_move_no_keypoint_and_hide_only_what_they_cover(seed, index):
    source = [render_sample(5, i) for i in range(8)]
    common = {"input_size": 64, "flip_permutation": ITOP_15.flip_permutation, "augment": True,
              "scale_range": (0.8, 1.2), "rotation": 30.0, "flip": True, "shift": 0.05, "seed": seed}
    plain = PoseDataset(source, **common)[index]
    occluded = PoseDataset(source, **common, occlusion=1.0)[index]
    assert np.array_equal(plain["keypoints"][:, :2], occluded["keypoints"][:, :2])  # positions never move
    assert np.array_equal(plain["matrix"], occluded["matrix"])  # occlusion draws from its own random stream
    changed = (plain["image"] != occluded["image"]).any(0).numpy()
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    assert rows.size and cols.size
    y0, y1, x0, x1 = rows[0], rows[-1], cols[0], cols[-1]
    assert changed[y0:y1 + 1, x0:x1 + 1].mean() > 0.5  # one rectangle, not scattered pixels
    patch = occluded["image"][:, y0:y1 + 1, x0:x1 + 1]
    assert (patch == patch[:, :1, :1]).all()  # painted one value (the rectangle may equal some pixels it covers)
    x, y = plain["keypoints"][:, 0].numpy(), plain["keypoints"][:, 1].numpy()
    v_before, v_after = plain["keypoints"][:, 2].numpy(), occluded["keypoints"][:, 2].numpy()
    inside = (np.rint(x) >= x0) & (np.rint(x) <= x1) & (np.rint(y) >= y0) & (np.rint(y) <= y1)
    clear = ~inside & ((np.abs(x - x0) > 1) & (np.abs(x - x1) > 1) | (np.abs(y - y0) > 1) & (np.abs(y - y1) > 1))
    assert np.array_equal(v_after[clear], v_before[clear])  # joints away from the patch keep their flag
    assert ((v_after == v_before) | ((v_before == 2) & (v_after == 1))).all()  # only visible -> occluded
    deep = (x > x0 + 1) & (x < x1 - 1) & (y > y0 + 1) & (y < y1 - 1)
    assert (v_after[deep & (v_before > 0)] == 1).all()  # covered joints are marked occluded


def test_no_occlusion_leaves_the_training_stream_unchanged():
    source = [render_sample(5, i) for i in range(2)]
    common = {"input_size": 64, "flip_permutation": ITOP_15.flip_permutation, "augment": True,
              "rotation": 30.0, "flip": True, "shift": 0.05, "seed": 3}
    for a, b in zip(PoseDataset(source, **common), PoseDataset(source, **common, occlusion=0.0), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)
