"""J-HMDB's own per-clip ``joint_positions.mat`` (`cpm.data.datasets.readers.read_jhmdb`): frames as samples, 1-based
pixels, the JHMDB_15 joint order, and agreement with mmpose's COCO-style J-HMDB JSON on the same numbers."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from cpm.data.datasets.json_readers import read_coco
from cpm.data.datasets.mat_readers import read_jhmdb, read_jhmdb_clip
from cpm.data.datasets.readers import open_dataset, split_dataset
from cpm.errors import CPMError
from cpm.skeleton import ITOP_15, JHMDB_15


def hand_positions(frames: int) -> np.ndarray:
    """pos_img 2 x 15 x T, 1-based: joint j of frame t (0-based) at x = 10 j + t + 1, y = 2 j + 0.5 t + 5."""
    j, t = np.meshgrid(np.arange(15), np.arange(frames), indexing="ij")
    return np.stack([10.0 * j + t + 1, 2.0 * j + 0.5 * t + 5])


def write_clip(root, name, positions, *, images=None, **mat_options):
    """joint_positions.mat of clip ``name`` (<class>/<clip>) and its frames, frame t filled with gray 20 t."""
    folder = root / "joint_positions" / name
    folder.mkdir(parents=True)
    frames = positions.shape[2] if positions.ndim == 3 else 1
    savemat(folder / "joint_positions.mat", {"pos_img": positions, "pos_world": positions / 100.0,
                                             "scale": np.ones((1, frames)), "viewpoint": np.array(["E"] * frames)},
            **mat_options)
    frame_folder = root / "Rename_Images" / name
    frame_folder.mkdir(parents=True)
    for t in range(frames if images is None else images):
        cv2.imwrite(str(frame_folder / f"{t + 1:05d}.png"), np.full((240, 320, 3), 20 * t, np.uint8))


def test_frames_are_samples_with_zero_based_pixels_in_the_jhmdb_order(tmp_path):
    write_clip(tmp_path, "catch/clip_a", hand_positions(3))
    write_clip(tmp_path, "walk/clip_b", hand_positions(1)[:, :, 0], do_compression=True)  # 2 x 15: one frame
    samples = read_jhmdb(tmp_path)
    assert len(samples) == 4 and samples.skeleton == "jhmdb15"
    assert [p.relative_to(tmp_path.resolve()).as_posix() for p in samples.images] == [
        "Rename_Images/catch/clip_a/00001.png", "Rename_Images/catch/clip_a/00002.png",
        "Rename_Images/catch/clip_a/00003.png", "Rename_Images/walk/clip_b/00001.png"]
    third = samples[2]  # clip_a, frame 3 (t = 2)
    assert third["image"][0, 0].tolist() == [40, 40, 40]
    head, left_wrist = JHMDB_15.index("head"), JHMDB_15.index("left_wrist")
    # Head (2): 1-based (10 * 2 + 2 + 1, 2 * 2 + 1 + 5) = (23, 10) -> 0-based (22, 9).
    # Left wrist (12): (10 * 12 + 2 + 1, 2 * 12 + 1 + 5) = (123, 30) -> (122, 29).
    np.testing.assert_array_equal(third["keypoints"][head], [22, 9, 2])
    np.testing.assert_array_equal(third["keypoints"][left_wrist], [122, 29, 2])
    np.testing.assert_array_equal(samples[3]["keypoints"][:, :2], hand_positions(1)[:, :, 0].T - 1)
    assert (samples.keypoints[..., 2] == 2).all()


def test_to_the_default_skeleton_face_is_head_and_belly_is_torso(tmp_path):
    write_clip(tmp_path, "catch/clip_a", hand_positions(1))
    default = read_jhmdb(tmp_path).to_default()[0]["keypoints"]
    np.testing.assert_array_equal(default[ITOP_15.index("head")], [20, 8, 2])  # J-HMDB joint 2
    np.testing.assert_array_equal(default[ITOP_15.index("torso")], [10, 6, 2])  # J-HMDB joint 1, belly
    np.testing.assert_array_equal(default[ITOP_15.index("left_foot")], [140, 32, 2])  # J-HMDB 14, left ankle


def test_a_clip_list_picks_clips_and_the_config_source_reads_it(tmp_path):
    write_clip(tmp_path, "catch/clip_a", hand_positions(3))
    write_clip(tmp_path, "walk/clip_b", hand_positions(2))
    (tmp_path / "train_clips.txt").write_text("# one <class>/<clip> per line\nwalk/clip_b\n\ncatch/clip_a\n")
    samples = open_dataset("jhmdb", root=tmp_path, annotations="train_clips.txt")
    assert [p.parent.name for p in samples.images] == ["clip_b", "clip_b", "clip_a", "clip_a", "clip_a"]
    train, val = split_dataset(source="jhmdb", root=tmp_path, annotations="train_clips.txt", val_samples=2,
                               skeleton="jhmdb15")
    assert train.indices == [0, 1, 2] and val.indices == [3, 4]
    clip = read_jhmdb_clip(tmp_path / "joint_positions/walk/clip_b/joint_positions.mat",
                           images=tmp_path / "Rename_Images/walk/clip_b")
    np.testing.assert_array_equal(clip.keypoints, samples.keypoints[:2])


@pytest.mark.parametrize("case, message", [
    ("missing_frame", "frame 3: image '00003.png' not found"),
    ("joint_count", "'pos_img' has shape 2x14x3, expected 2x15xT (J-HMDB)"),
    ("no_pos_img", "no variable 'pos_img'"),
    ("nan", "'pos_img' holds 1 NaN"),
    ("empty_root", "no joint_positions/<class>/<clip>/joint_positions.mat files"),
    ("escape", "clip '../outside/clip' leaves the dataset root"),
])
def test_bad_jhmdb_files_raise_one_line_naming_the_file(tmp_path, case, message):
    positions = hand_positions(3)
    if case == "joint_count":
        positions = positions[:, :14]
    elif case == "nan":
        positions[0, 4, 1] = np.nan
    if case != "empty_root":
        write_clip(tmp_path, "catch/clip_a", positions, images=2 if case == "missing_frame" else None)
    if case == "no_pos_img":
        savemat(tmp_path / "joint_positions/catch/clip_a/joint_positions.mat", {"pos_world": positions})
    kwargs = {}
    if case == "escape":
        (tmp_path / "clips.txt").write_text("../outside/clip\n")
        kwargs["clips"] = "clips.txt"
    with pytest.raises(CPMError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        read_jhmdb(tmp_path, **kwargs)
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_jhmdb_json_keypoints_are_one_based_like_the_mat_file(tmp_path):
    cv2.imwrite(str(tmp_path / "f.png"), np.zeros((8, 8, 3), np.uint8))
    person = [v for j in range(15) for v in ((j + 1.0, 2 * j + 1.0, 2) if j else (0, 0, 0))]
    data = {"images": [{"id": 1, "file_name": "f.png"}], "annotations": [{"image_id": 1, "keypoints": person}],
            "categories": [{"id": 1, "name": "person", "keypoints": list(JHMDB_15.joint_names)}]}
    (tmp_path / "jhmdb.json").write_text(json.dumps(data))
    keypoints = read_coco(tmp_path / "jhmdb.json").keypoints[0]
    np.testing.assert_array_equal(keypoints[3], [3, 6, 2])  # 4, 7 in the file
    np.testing.assert_array_equal(keypoints[0], [0, 0, 0])  # unlabeled stays (0, 0, 0)


def test_the_mat_reader_agrees_with_the_json_reader_on_the_mmpose_fixture(tmp_path, shared_data):
    fixture = shared_data / "fixtures" / "jhmdb"
    json_samples = read_coco(fixture / "test_jhmdb_sub1.json")
    data = json.loads((fixture / "test_jhmdb_sub1.json").read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    for annotation in data["annotations"]:  # each clip's first frame, J-HMDB's layout with a class folder
        clip = files[annotation["image_id"]].split("/")[0]
        folder = tmp_path / "joint_positions" / "catch" / clip
        folder.mkdir(parents=True)
        positions = np.reshape(annotation["keypoints"], (15, 3))[:, :2].T  # the same numbers, 2 x 15
        savemat(folder / "joint_positions.mat", {"pos_img": positions[:, :, None]})
        (tmp_path / "Rename_Images" / "catch" / clip).mkdir(parents=True)
        shutil.copy(fixture / files[annotation["image_id"]], tmp_path / "Rename_Images" / "catch" / clip)
    mat_samples = read_jhmdb(tmp_path)
    assert len(mat_samples) == len(json_samples) == 3
    by_clip = {p.parent.name: n for n, p in enumerate(mat_samples.images)}
    for n, image in enumerate(json_samples.images):
        m = by_clip[image.parent.name]
        np.testing.assert_allclose(mat_samples.keypoints[m], json_samples.keypoints[n], atol=1e-4)
        np.testing.assert_array_equal(mat_samples[m]["image"], json_samples[n]["image"])
        np.testing.assert_allclose(mat_samples[m]["center"], json_samples[n]["center"], atol=1e-4)
    np.testing.assert_allclose(json_samples.keypoints[0, 0], [97.851746, 91.59851, 2], atol=1e-4)  # 98.85, 92.60
