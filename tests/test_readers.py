"""Dataset readers (cpm.data.datasets.readers), the skeletons they map to, and training on real photographs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from cpm.config import load_config
from cpm.data.datasets.itop import read_itop
from cpm.data.datasets.json_readers import read_coco, read_list, read_mpii_json
from cpm.data.datasets.mat_readers import read_k2hpd, read_lsp
from cpm.data.datasets.samples import ImageSamples
from cpm.errors import ConfigError, CPMError
from cpm.runtime.build import build_datasets
from cpm.skeleton import ITOP_15, LSP_14, SKELETONS, map_to_default
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def write_image(path, height=20, width=30, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))


def three_joint_rows():
    return [["a.png", 1, 2, 2, 5, 12, 1, 0, 0, 0], ["b.png", 3, 4, 2, 7, 8, 2, 9, 1, 2]]


def write_csv(path, rows, header=True):
    lines = (["image,x0,y0,v0,x1,y1,v1,x2,y2,v2"] if header else []) + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_csv_list_gives_keypoints_centre_and_scale_of_labeled_joints(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    write_csv(tmp_path / "list.csv", three_joint_rows())
    samples = read_list(tmp_path / "list.csv", skeleton="custom")
    assert len(samples) == 2
    first = samples[0]
    assert first["image"].shape == (20, 30, 3) and first["image"].dtype == np.uint8
    np.testing.assert_array_equal(first["keypoints"], [[1, 2, 2], [5, 12, 1], [0, 0, 0]])
    # Labeled joints (1, 2) and (5, 12): box centre (3, 7), longer side 10; the unlabeled (0, 0) is ignored.
    np.testing.assert_allclose(first["center"], [3, 7])
    assert first["scale"] == 10


def test_json_list_reads_the_same_as_the_csv(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png")
    write_csv(tmp_path / "list.csv", three_joint_rows(), header=False)
    entries = [{"image": r[0], "keypoints": np.reshape(r[1:], (3, 3)).tolist()} for r in three_joint_rows()]
    (tmp_path / "list.json").write_text(json.dumps(entries))
    from_csv, from_json = read_list(tmp_path / "list.csv"), read_list(tmp_path / "list.json")
    np.testing.assert_array_equal(from_csv.keypoints, from_json.keypoints)
    assert from_csv.images == from_json.images


@pytest.mark.parametrize("case, message", [
    ("missing_image", "'b.png' not found"),
    ("escape", "leaves the dataset root"),
    ("nan", "NaN"),
    ("joint_count", "expected 15"),
    ("empty", "no samples"),
    ("json_key", "missing key 'keypoints'"),
])
def test_bad_lists_raise_one_line_naming_the_file(tmp_path, case, message):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    rows, path, kwargs = three_joint_rows(), tmp_path / "list.csv", {}
    if case == "missing_image":
        (tmp_path / "b.png").unlink()
    elif case == "escape":
        write_image(tmp_path.parent / "outside.png")
        rows[1][0] = "../outside.png"
    elif case == "nan":
        rows[1][1] = "nan"
    elif case == "joint_count":
        kwargs["num_joints"] = 15
    elif case == "empty":
        rows = []
    if case == "json_key":
        path = tmp_path / "list.json"
        path.write_text(json.dumps([{"image": "a.png"}]))
    else:
        write_csv(path, rows)
    with pytest.raises(CPMError, match=message) as error:
        read_list(path, **kwargs)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_lsp_flag_one_is_occluded_and_lspet_flag_one_is_visible(tmp_path):
    joints = np.zeros((3, 14, 2))
    joints[0], joints[1] = 11.0, 21.0  # 1-based
    joints[2, 0, 0] = 1  # LSP: joint 0 of image 1 occluded
    savemat(tmp_path / "joints.mat", {"joints": joints})
    for n in (1, 2):
        write_image(tmp_path / "images" / f"im{n:04d}.jpg")
    lsp = read_lsp(tmp_path)
    assert lsp.skeleton == "lsp14" and len(lsp) == 2
    np.testing.assert_array_equal(lsp[0]["keypoints"][:2], [[10, 20, 1], [10, 20, 2]])

    extended = tmp_path / "lspet"
    joints_et = np.zeros((14, 3, 1))
    joints_et[:, :2, 0] = [11.0, 21.0]
    joints_et[1, 2, 0] = 1  # LSPET: joint 1 visible, the rest not annotated
    extended.mkdir()
    savemat(extended / "joints.mat", {"joints": joints_et})
    write_image(extended / "images" / "im00001.jpg")
    np.testing.assert_array_equal(read_lsp(extended)[0]["keypoints"][:2], [[10, 20, 0], [10, 20, 2]])


def test_mpii_json_is_one_based_and_joints_vis_zero_is_unlabeled(tmp_path):
    write_image(tmp_path / "x.jpg")
    joints = [[j + 1.0, 2 * j + 1.0] for j in range(16)]
    visible = [1] * 15 + [0]
    (tmp_path / "train.json").write_text(json.dumps(
        [{"image": "x.jpg", "center": [5, 5], "scale": 1.0, "joints": joints, "joints_vis": visible}]))
    keypoints = read_mpii_json(tmp_path / "train.json")[0]["keypoints"]
    np.testing.assert_array_equal(keypoints[3], [3, 6, 2])
    assert keypoints[15, 2] == 0


def test_coco_json_skips_crowds_and_people_without_keypoints(tmp_path):
    write_image(tmp_path / "p.jpg")
    names = list(SKELETONS["coco17"].joint_names)
    person = [v for j in range(17) for v in (j, 2 * j, 2)]
    data = {"images": [{"id": 7, "file_name": "p.jpg"}],
            "categories": [{"id": 1, "name": "person", "keypoints": names}],
            "annotations": [{"image_id": 7, "keypoints": person, "iscrowd": 0},
                            {"image_id": 7, "keypoints": person, "iscrowd": 1},
                            {"image_id": 7, "keypoints": [0] * 51, "iscrowd": 0}]}
    (tmp_path / "coco.json").write_text(json.dumps(data))
    samples = read_coco(tmp_path / "coco.json")
    assert len(samples) == 1 and samples.skeleton == "coco17"
    np.testing.assert_array_equal(samples[0]["keypoints"][5], [5, 10, 2])
    # To the default skeleton: ITOP right_shoulder (2) is COCO right_shoulder (6); COCO has no neck.
    default = samples.to_default()[0]["keypoints"]
    np.testing.assert_array_equal(default[2], [6, 12, 2])
    assert default[1, 2] == 0


def test_k2hpd_image_left_joints_become_the_persons_right(tmp_path):
    keypoints = np.arange(19 * 2, dtype=np.float64).reshape(1, 19, 2) + 1
    savemat(tmp_path / "k.mat", {"keypointsTest": keypoints})
    mapped = read_k2hpd(tmp_path / "k.mat").keypoints[0]
    np.testing.assert_array_equal(mapped[2], [6, 7, 2])  # right_shoulder <- K2HPD 3 (image-left shoulder)
    np.testing.assert_array_equal(mapped[3], [12, 13, 2])  # left_shoulder <- K2HPD 6
    np.testing.assert_array_equal(mapped[8], [4, 5, 2])  # torso <- K2HPD 2


def test_itop_without_h5py_names_the_missing_package(tmp_path):
    try:
        import h5py  # noqa: F401
        pytest.skip("h5py is installed")
    except ImportError:
        pass
    with pytest.raises(CPMError, match="needs h5py"):
        read_itop(tmp_path / "labels.h5", tmp_path / "depth.h5")


def test_every_skeleton_flips_twice_to_identity():
    for skeleton in SKELETONS.values():
        permutation = np.array(skeleton.flip_permutation)
        np.testing.assert_array_equal(permutation[permutation], np.arange(skeleton.num_joints))


def test_mapping_to_default_keeps_names_and_leaves_missing_joints_unlabeled():
    keypoints = np.stack([np.arange(14), np.arange(14) + 100, np.full(14, 2)], axis=1)
    mapped = map_to_default(keypoints, "lsp14")
    for name in ("neck", "right_shoulder", "left_knee", "right_foot"):
        lsp_name = {"right_foot": "right_ankle"}.get(name, name)
        assert mapped[ITOP_15.index(name), 0] == LSP_14.index(lsp_name)
    assert mapped[ITOP_15.index("head"), 2] == 0 and mapped[ITOP_15.index("torso"), 2] == 0


def test_exclude_drops_samples_by_dataset_index(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    write_csv(tmp_path / "list.csv", three_joint_rows())
    samples = read_list(tmp_path / "list.csv").exclude([0])
    assert len(samples) == 1 and samples[0]["index"] == 1


def test_real_source_without_root_or_with_a_missing_root_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_config(None, ["data.source=\"lsp\""])
    config = load_config(None, ["data.source=\"lsp\"", f"data.root=\"{tmp_path / 'nowhere'}\""])
    with pytest.raises(ConfigError, match="data.root"):
        build_datasets(config)
    with pytest.raises(ConfigError, match="data.bvh_files: data.pose_mix.bvh = 1 needs its file or folder"):
        load_config(None, ["data.pose_mix.bvh=1"])


def test_real_lspet_photographs_and_fixtures_load(shared_data):
    lspet = read_lsp(shared_data / "lspet400")
    assert len(lspet) == 400 and isinstance(lspet, ImageSamples)
    sample = lspet[0]
    assert sample["image"].ndim == 3 and sample["image"].shape[2] == 3
    assert set(np.unique(lspet.keypoints[..., 2])) <= {0.0, 2.0}
    mpii = read_mpii_json(shared_data / "fixtures" / "mpii" / "test_mpii.json")
    assert len(mpii) == 5 and mpii[0]["keypoints"].shape == (16, 3)
    np.testing.assert_allclose(mpii[0]["keypoints"][0], [803, 710, 2])  # 804, 711 in the file, 1-based
    coco = read_coco(shared_data / "fixtures" / "coco" / "test_coco.json")
    assert coco.skeleton == "coco17" and len(coco) == 12
    jhmdb = read_coco(shared_data / "fixtures" / "jhmdb" / "test_jhmdb_sub1.json")
    assert jhmdb.skeleton == "jhmdb15" and len(jhmdb) == 3 and jhmdb[0]["image"].shape == (240, 320, 3)
    k2hpd = read_k2hpd(shared_data / "k2hpd" / "k2hpd_keypoints_test.mat")
    assert k2hpd.keypoints.shape == (39732, 15, 3)


def test_training_runs_end_to_end_on_the_lspet_photographs(tmp_path, shared_data):
    overrides = tiny_overrides(tmp_path, **{
        "data.source": "lsp", "data.root": str(shared_data / "lspet400"), "data.skeleton": "lsp14",
        "model.in_channels": 3, "data.train_samples": 32, "data.val_samples": 16})
    config = load_config(None, overrides)
    train_set, val_set = build_datasets(config)
    assert len(train_set) == 32 and len(val_set) == 16
    batch = train_set[0]
    assert batch["image"].shape == (3, 64, 64) and batch["keypoints"].shape == (14, 3)
    results = train(config, progress=False, log=lambda *a, **k: None)
    assert results["samples"] == 16 and 0 <= results["pck"][0.2][-1] <= 1
    assert (tmp_path / "runs" / "tiny" / "last.pt").is_file()
